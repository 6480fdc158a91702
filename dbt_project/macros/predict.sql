{#-
  predict(model_ref, relation=none, output='default', method=none, key=none)

  Score the current row with a registry model, its features bound by name. The feature list
  comes from the registry when the model is compiled: nothing is copied into the project.
    model_ref   'name' (its prod version; the typed fast path), 'name@alias' or 'name@<version>'
    relation    the alias of the relation holding the features, e.g. 'f' for `from ... as f`
    output      'default' (probability of the positive class, or the value of a regressor),
                'score', 'label' or 'probabilities'
    method      'auto' (the model's compiled SQL where registration measured it faster than
                onnxruntime, inlined into the query), 'compiled' or 'onnx'; default: var
                scorehouse_scoring, else $SCOREHOUSE_SCORING, else 'auto'
    key         a column of the relation: during a gray release (`scorehouse rollout`), rows whose key
                falls in the rollout's share score with its version; pair with model_version(..., key=)
-#}
{% macro predict(model_ref, relation=none, output='default', method=none, key=none) -%}
  {{ return(adapter.dispatch('predict', 'scorehouse')(model_ref, relation, output, method or var('scorehouse_scoring', ''), key)) }}
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
