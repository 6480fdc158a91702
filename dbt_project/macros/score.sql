{#-
  score(relation, model_ref, output='default', method=none, key=none, column='prediction')

  The table form, as BigQuery's ML.PREDICT(MODEL m, TABLE t): the relation's rows with two columns added,
  the model's output (named `column`) and the version that computed it (`model_version`), as a subquery:

      select * from {{ scorehouse.score(ref('features_mortgage'), 'mortgage_deny') }} as s

  A ref() or source() is checked against the catalog when the model compiles: a feature missing or of the
  wrong type, or a column already named `column` or model_version, stops the model with predict()'s message.
  A version with explanations whose trees are few and shallow enough (or any, with method='sql'), and whose
  SQL agreed with the library at registration, scores its `score` in steps over the whole relation: each
  input once, each split once, the trees summed (udfs/staged.py); the same numbers as predict(), faster
  than onnxruntime. Otherwise each row is scored by predict() (the same expression, guards, lineage and
  bad-input behaviour; see predict for output, method and key) and versioned by model_version(); with
  `key`, a gray release's rows carry the rollout's version.
-#}
{% macro score(relation, model_ref, output='default', method=none, key=none, column='prediction') -%}
  {%- set row = '__scorehouse_input' -%}
  {%- set steps = scorehouse.score_steps(relation, model_ref, row, output, method or var('scorehouse_scoring', ''), key, column) -%}
  {%- if steps -%}
  (with {{ row }} as (select * from {{ relation }}) select * from ({{ steps }}) as __scorehouse_scored)
  {%- else -%}
  (select {{ row }}.*,
          {{ scorehouse.predict(model_ref, relation=row, output=output, method=method, key=key) }} as {{ scorehouse.identifier(column) }},
          {{ scorehouse.model_version(model_ref, relation=row, key=key) }} as model_version
   from {{ relation }} as {{ row }})
  {%- endif -%}
{%- endmacro %}

{#- The table form's query in steps (scorehouse_score_sql), or '' where it scores row by row. A ref or a source is
    checked first against the catalog: a feature missing or mistyped, or a column where score() puts its own, stops
    the model in one line. Spark, which has no SELECT * EXCLUDE, is given the relation's columns (another relation
    scores row by row there). -#}
{% macro score_steps(relation, model_ref, source, output, method, key, column) -%}
  {%- if not execute -%}
    {{ return('') }}
  {%- endif -%}
  {%- if column | lower == 'model_version' -%}
    {{ exceptions.raise_compiler_error("score(): column must not be 'model_version', the column the version goes in") }}
  {%- endif -%}
  {%- set found = scorehouse.column_types(relation) if relation.identifier is defined else {} -%}
  {%- if found -%}
    {%- set check -%}
      select scorehouse_table_input_error({{ scorehouse.literal(model_ref) }}, {{ scorehouse.literal(tojson(found)) }}, {{ scorehouse.literal(column) }})
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
