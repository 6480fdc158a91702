{#-
  score(relation, model_ref, output='default', method=none, key=none, column='prediction')

  The table form, as BigQuery's ML.PREDICT(MODEL m, TABLE t): the relation's rows with two columns added,
  the model's output (named `column`) and the version that computed it (`model_version`), as a subquery:

      select * from {{ scorehouse.score(ref('features_mortgage'), 'mortgage_deny') }} as s

  Each row is scored by predict() (the same expression, guards, lineage and bad-input behaviour; see
  predict for output, method and key) and versioned by model_version(); with `key`, a gray release's rows
  carry the rollout's version.
-#}
{% macro score(relation, model_ref, output='default', method=none, key=none, column='prediction') -%}
  {%- set row = '__scorehouse_input' -%}
  {%- if column == 'model_version' -%}
    {{ exceptions.raise_compiler_error("score(): column must not be 'model_version', the column the version goes in") }}
  {%- endif -%}
  (select {{ row }}.*,
          {{ scorehouse.predict(model_ref, relation=row, output=output, method=method, key=key) }} as {{ scorehouse.identifier(column) }},
          {{ scorehouse.model_version(model_ref, relation=row, key=key) }} as model_version
   from {{ relation }} as {{ row }})
{%- endmacro %}
