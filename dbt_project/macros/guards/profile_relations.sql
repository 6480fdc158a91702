{#-
  The registry's training profile as relations, for the version `model_ref` points at now.
    profile_relation('features', ref): one row per feature: kind, sql_type, null_rate, mean, std, min, max
    profile_relation('bins', ref):     numeric bins (lower < value <= upper) and categorical buckets, with shares
  The feature named __output__ is the model's own output on the training holdout.
-#}
{% macro profile_relation(name, model_ref) -%}
  {{ return(adapter.dispatch('profile_relation', 'scorehouse')(name, model_ref)) }}
{%- endmacro %}

{% macro default__profile_relation(name, model_ref) -%}
  scorehouse_{{ name }}({{ scorehouse.literal(model_ref) }})
{%- endmacro %}

{#- Spark: temporary views holding every reference, registered by scorehouse.spark.register -#}
{% macro spark__profile_relation(name, model_ref) -%}
  (select * from scorehouse_{{ name }} where model_ref = {{ scorehouse.literal(model_ref) }})
{%- endmacro %}


{#- guard_features(model_ref, kind, features): the model's features of a kind, or the requested subset. -#}
{% macro guard_features(model_ref, kind, features=none) -%}
  {%- if not execute -%}{{ return(features or []) }}{%- endif -%}
  {%- set query -%}
    select feature from {{ scorehouse.profile_relation('features', model_ref) }}
    where kind = {{ scorehouse.literal(kind) }} and feature <> '__output__' order by feature
  {%- endset -%}
  {%- set known = run_query(query).columns[0].values() | list -%}
  {%- if features is none -%}{{ return(known) }}{%- endif -%}
  {%- set all_known = run_query("select feature from " ~ scorehouse.profile_relation('features', model_ref)).columns[0].values() | list -%}
  {%- for feature in features if feature not in all_known -%}
    {{ exceptions.raise_compiler_error("Model " ~ model_ref ~ " has no feature '" ~ feature ~ "'; its features: " ~ (all_known | reject('equalto', '__output__') | join(', '))) }}
  {%- endfor -%}
  {{ return(features | select('in', known) | list) }}
{%- endmacro %}


{#-
  feature_values(relation, columns, kind): (feature, value) rows, one per row and feature; `columns`
  maps a profile feature to its column. Numeric values pass through float (32-bit) as the model sees
  them and as its training profile was taken (beyond float32's range: ±inf); categories are strings.
-#}
{% macro feature_values(relation, columns, kind) -%}
  {%- set value_type = 'double' if kind == 'numeric' else dbt.type_string() -%}
  {%- if columns | length == 0 -%}
    select cast(null as {{ dbt.type_string() }}) as feature, cast(null as {{ value_type }}) as value from (select 1 as one) as empty where 1 = 0
  {%- else -%}
    {%- for feature, column in columns.items() %}
    select {{ scorehouse.literal(feature) }} as feature,
           {% if kind == 'numeric' %}cast({{ scorehouse.float32(scorehouse.identifier(column)) }} as double){% else %}cast({{ scorehouse.identifier(column) }} as {{ dbt.type_string() }}){% endif %} as value
    from {{ relation }}
    {%- if not loop.last %} union all{% endif %}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro %}


{#- by_name(names): {name: name}, the column mapping when columns are named like the features. -#}
{% macro by_name(names) -%}
  {%- set mapping = {} -%}
  {%- for name in names -%}{%- do mapping.update({name: name}) -%}{%- endfor -%}
  {{ return(mapping) }}
{%- endmacro %}
