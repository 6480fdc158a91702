{#-
  predict(model_ref, relation=none, output='default', method=none, key=none)

  Score the current row with a registry model, its features bound by name. The feature list
  comes from the registry when the model is compiled: nothing is copied into the project.
    model_ref   'name' (its prod version; the typed fast path), 'name@alias' or 'name@<version>'
    relation    the alias of the relation holding the features, e.g. 'f' for `from ... as f`
    output      'default' (probability of the positive class, or the value of a regressor),
                'score', 'label' or 'probabilities'
    method      'auto' (the model's SQL, written from its explanation into the query, for a linear
                model or small trees; else onnxruntime), 'sql' or 'onnx' ('compiled', the name before
                0.3.0, is read as 'sql'); default: var scorehouse_scoring, else $SCOREHOUSE_SCORING,
                else 'auto'
    key         a column of the relation: during a gray release (`scorehouse rollout`), rows whose key
                falls in the rollout's share score with its version; pair with model_version(..., key=)
-#}
{% macro predict(model_ref, relation=none, output='default', method=none, key=none) -%}
  {%- set method = method or var('scorehouse_scoring', '') -%}
  {%- do scorehouse.record_scoring(model_ref, output, method, key, 'predict') -%}
  {{ return(adapter.dispatch('predict', 'scorehouse')(model_ref, relation, output, method, key)) }}
{%- endmacro %}

{% macro default__predict(model_ref, relation, output, method, key=none) -%}
  {%- if not execute -%}
    {{ return("null") }}
  {%- endif -%}
  {%- set query -%}
    select scorehouse_predict_sql({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(relation or '') }}, {{ scorehouse.literal(output) }}, {{ scorehouse.literal(method or '') }}, {{ scorehouse.literal(key or '') }})
  {%- endset -%}
  {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}


{#-
  record_scoring(model_ref, output, method, key, form): while dbt parses the model calling predict() or score(),
  record the call in the model's meta (one key per distinct call, `scorehouse:scoring <ref>|<output>|<method>|
  <key>|<form>`), where the record_scoring_runs hook reads it after the build: lineage travels as data in the
  project's manifest, never in the SQL text.
-#}
{% macro record_scoring(model_ref, output, method, key, form) -%}
  {%- if not execute and config is defined -%}
    {%- set call = {'ref': model_ref, 'output': output, 'method': method or '', 'key': key or '', 'form': form} -%}
    {%- do config(meta={'scorehouse:scoring ' ~ ([model_ref, output, method or '', key or '', form] | join('|')): call}) -%}
  {%- endif -%}
{%- endmacro %}


{#-
  input_hash(model_ref, relation=none)

  A hash of the current row's features as the model sees them: md5 (32 hex digits) of `name=value`
  for each feature in the manifest's order, numbers as the exact float32 the model is fed, text as its
  md5 (see udfs/fingerprint.py). The same on DuckDB and Spark; `scorehouse reproduce` compares it.
-#}
{% macro input_hash(model_ref, relation=none) -%}
  {%- if not execute -%}
    {{ return("null") }}
  {%- endif -%}
  {%- set query -%}
    select scorehouse_input_hash_sql({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(relation or '') }})
  {%- endset -%}
  {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}


{#-
  explain(model_ref, relation=none, top_k=3, key=none)

  Why the current row got its score: {baseline, margin, contributions: [{feature, value, contribution}]},
  the top_k features by |contribution| in the model's margin (log-odds for a binary classifier, the
  probability for a random forest classifier, the prediction for a regressor, its log for a Poisson,
  Gamma or Tweedie model). baseline + every feature's contribution = margin. With `key`, rows of a gray
  release are explained by the version that scored them (pair with predict(..., key=)).
-#}
{% macro explain(model_ref, relation=none, top_k=3, key=none) -%}
  {%- if not execute -%}
    {{ return("null") }}
  {%- endif -%}
  {%- set top_k = scorehouse.number(top_k, 'explain: top_k') -%}
  {%- set query -%}
    select scorehouse_explain_sql({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(relation or '') }}, cast({{ top_k | int }} as int), {{ scorehouse.literal(key or '') }})
  {%- endset -%}
  {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}


{#-
  reasons(explanation, descriptions, positive_only=true)

  The contributions of an explain() expression (or column) as text an analyst reads: "<description> (<value>)" for each,
  largest first, joined by '; ' — `descriptions` maps feature names to words (a feature without one is
  named as is); positive_only keeps the features that pushed the score up.
-#}
{% macro reasons(explanation, descriptions, positive_only=true) -%}
  {{ return(adapter.dispatch('reasons', 'scorehouse')(explanation, descriptions, positive_only)) }}
{%- endmacro %}

{% macro default__reasons(explanation, descriptions, positive_only) -%}
  {%- set words -%}case c.feature{% for name, text in descriptions.items() %} when {{ scorehouse.literal(name) }} then {{ scorehouse.literal(text) }}{% endfor %} else c.feature end{%- endset -%}
array_to_string(list_transform(list_filter(({{ explanation }}).contributions, lambda c: {{ 'c.contribution > 0' if positive_only else 'true' }}), lambda c: {{ words }} || ' (' || coalesce(c."value", 'missing') || ')'), '; ')
{%- endmacro %}

{% macro spark__reasons(explanation, descriptions, positive_only) -%}
  {%- set words -%}case c.feature{% for name, text in descriptions.items() %} when {{ scorehouse.literal(name) }} then {{ scorehouse.literal(text) }}{% endfor %} else c.feature end{%- endset -%}
array_join(transform(filter(({{ explanation }}).contributions, c -> {{ 'c.contribution > 0' if positive_only else 'true' }}), c -> {{ words }} || ' (' || coalesce(c.value, 'missing') || ')'), '; ')
{%- endmacro %}
