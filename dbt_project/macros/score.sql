{#-
  score(relation, model_ref, output='default', method=none, key=none, column='prediction', input_hash=false,
        explain_top_k=none)

  The table form, as BigQuery's ML.PREDICT(MODEL m, TABLE t): the relation's rows with columns added, the
  model's output (named `column`) and the version that computed it (`model_version`), as a subquery; with
  input_hash=true, each row's `input_hash` (see input_hash); with explain_top_k, each row's `explanation`
  by the version that scored it (see explain). One call, so `key` routes all of them alike:

      select * from {{ scorehouse.score(ref('features_mortgage'), 'mortgage_deny', key='application_id',
                                        input_hash=true, explain_top_k=3) }} as s

  A ref() or source() is checked against the catalog when the model compiles: a feature missing or of the
  wrong type, or a column already named `column` or model_version, stops the model with predict()'s message.
  A version with explanations whose trees are few and shallow enough (or any, with method='sql'), and whose
  SQL agreed with the library at registration, scores its `score` in steps over the whole relation: each
  input once, each split once, the trees summed (udfs/staged.py); the same numbers as predict(), faster
  than onnxruntime. Otherwise each row is scored by predict() (the same expression, guards, lineage and
  bad-input behaviour; see predict for output, method and key) and versioned by model_version(); with
  `key`, a gray release's rows carry the rollout's version.
-#}
{% macro score(relation, model_ref, output='default', method=none, key=none, column='prediction', input_hash=false,
                explain_top_k=none) -%}
  {%- set method = method or var('scorehouse_scoring', '') -%}
  {%- if not execute -%}
    {#- Spark scores in steps only a relation whose columns dbt can list (a ref or a source) -#}
    {%- do scorehouse.record_scoring(model_ref, output, method, key,
                                     'table' if target.type == 'duckdb' or relation.identifier is defined else 'predict') -%}
    {{ return('(select 1)') }}
  {%- endif -%}
  {%- set row = '__scorehouse_input' -%}
  {%- set added = (['input_hash'] if input_hash else []) + (['explanation'] if explain_top_k is not none else []) -%}
  {%- set steps = scorehouse.score_steps(relation, model_ref, row, output, method, key, column, added) -%}
  {%- set scored = '__scorehouse_scored' if steps else row -%}
  {%- set extra -%}
    {%- if input_hash %}, {{ scorehouse.input_hash(model_ref, relation=scored) }} as input_hash{% endif -%}
    {%- if explain_top_k is not none %}, {{ scorehouse.explain(model_ref, relation=scored, top_k=explain_top_k, key=key) }} as explanation{% endif -%}
  {%- endset -%}
  {%- if steps -%}
  (with {{ row }} as (select * from {{ relation }}) select {{ scored }}.*{{ extra }} from ({{ steps }}) as {{ scored }})
  {%- else -%}
  (select {{ row }}.*,
          {{ adapter.dispatch('predict', 'scorehouse')(model_ref, row, output, method, key) }} as {{ scorehouse.identifier(column) }},
          {{ scorehouse.model_version(model_ref, relation=row, key=key) }} as model_version{{ extra }}
   from {{ relation }} as {{ row }})
  {%- endif -%}
{%- endmacro %}

{#- The table form's query in steps (scorehouse_score_sql), or '' where it scores row by row. A ref or a source is
    checked first against the catalog: a feature missing or mistyped, or a column where score() puts its own, stops
    the model in one line. Spark, which has no SELECT * EXCLUDE, is given the relation's columns (another relation
    scores row by row there). -#}
{% macro score_steps(relation, model_ref, source, output, method, key, column, added=[]) -%}
  {%- if not execute -%}
    {{ return('') }}
  {%- endif -%}
  {%- if column | lower in ['model_version'] + added -%}
    {{ exceptions.raise_compiler_error("score(): column must not be '" ~ (column | lower) ~ "', a column score() puts its own in") }}
  {%- endif -%}
  {%- set found = scorehouse.column_types(relation) if relation.identifier is defined else {} -%}
  {%- if found -%}
    {%- set check -%}
      select scorehouse_table_input_error({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(tojson(found)) }}, {{ scorehouse.literal(column) }}, {{ scorehouse.literal(tojson(added)) }})
    {%- endset -%}
    {%- set problem = run_query(check).columns[0].values()[0] -%}
    {%- if problem -%}
      {{ exceptions.raise_compiler_error(problem) }}
    {%- endif -%}
  {%- elif target.type != 'duckdb' -%}
    {{ return('') }}
  {%- endif -%}
  {%- set kept = (found.keys() | list | tojson) if target.type != 'duckdb' else '' -%}
  {%- set query -%}
    select scorehouse_score_sql({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(source) }}, {{ scorehouse.literal(output) }}, {{ scorehouse.literal(method or '') }}, {{ scorehouse.literal(key or '') }}, {{ scorehouse.literal(column) }}, {{ scorehouse.literal(kept) }})
  {%- endset -%}
  {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}
