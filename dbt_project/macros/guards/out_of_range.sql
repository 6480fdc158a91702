{#- out_of_range_rows: share of non-NULL numeric values outside the training [min, max]. -#}
{% macro out_of_range_rows(relation, model_ref, columns) -%}
  {{ return(adapter.dispatch('out_of_range_rows', 'scorehouse')(relation, model_ref, columns)) }}
{%- endmacro %}

{% macro default__out_of_range_rows(relation, model_ref, columns) -%}
with profile as (
    select model_name, model_version, feature, min as low, max as high
    from {{ scorehouse.profile_relation('features', model_ref) }}
    where kind = 'numeric' and feature in ({{ scorehouse.literal_list(columns.keys()) }})
),
present as (
    select feature, value from ({{ scorehouse.feature_values(relation, columns, 'numeric') }}) as v
    where value is not null
)
select p.model_name, p.model_version, p.feature, 'out_of_range_share' as metric, 0.0 as baseline_value,
       coalesce(avg(case when v.value < p.low or v.value > p.high then cast(1 as double) else cast(0 as double) end), cast(0 as double)) as current_value,
       cast(null as {{ dbt.type_string() }}) as detail
from profile as p
left join present as v on v.feature = p.feature
group by p.model_name, p.model_version, p.feature
{%- endmacro %}
