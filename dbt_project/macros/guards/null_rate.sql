{#- null_rate_rows: each column's NULL share now (current) and in training (baseline). -#}
{% macro null_rate_rows(relation, model_ref, columns) -%}
  {{ return(adapter.dispatch('null_rate_rows', 'scorehouse')(relation, model_ref, columns)) }}
{%- endmacro %}

{% macro default__null_rate_rows(relation, model_ref, columns) -%}
with profile as (
    select model_name, model_version, feature, kind, null_rate
    from {{ scorehouse.profile_relation('features', model_ref) }}
    where feature in ({{ scorehouse.literal_list(columns.keys()) }})
),
observed as (
    {%- for feature, column in columns.items() %}
    select {{ scorehouse.literal(feature) }} as feature,
           avg(case when {{ scorehouse.identifier(column) }} is null then cast(1 as double) else cast(0 as double) end) as null_rate
    from {{ relation }}
    {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
)
select p.model_name, p.model_version, p.feature, 'null_rate_increase' as metric,
       p.null_rate as baseline_value, coalesce(o.null_rate, cast(0 as double)) as current_value,
       cast(null as {{ dbt.type_string() }}) as detail
from profile as p
join observed as o on o.feature = p.feature
{%- endmacro %}
