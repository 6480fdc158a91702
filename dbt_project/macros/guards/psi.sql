{#- psi_rows: population stability index of numeric columns against the training bins. -#}
{% macro psi_rows(relation, model_ref, columns, metric='psi') -%}
  {{ return(adapter.dispatch('psi_rows', 'scorehouse')(relation, model_ref, columns, metric)) }}
{%- endmacro %}

{% macro default__psi_rows(relation, model_ref, columns, metric) -%}
  {%- set eps = 0.0001 -%}{#- an empty bin counts as this share (scorehouse.profile.EPSILON) -#}
with bins as (
    select model_name, model_version, feature, bin, lower, upper, share
    from {{ scorehouse.profile_relation('bins', model_ref) }}
    where kind = 'numeric' and feature in ({{ scorehouse.literal_list(columns.keys()) }})
),
present as (
    select feature, value from ({{ scorehouse.feature_values(relation, columns, 'numeric') }}) as v
    where value is not null
),
totals as (
    select feature, count(*) as n from present group by feature
),
counts as (
    select b.feature, b.bin, count(p.value) as n
    from bins as b
    left join present as p
      on p.feature = b.feature
     and (b.lower is null or p.value > b.lower)
     and (b.upper is null or p.value <= b.upper)
    group by b.feature, b.bin
),
shares as (
    select b.model_name, b.model_version, b.feature,
           greatest(b.share, cast({{ eps }} as double)) as expected,
           greatest(coalesce(cast(c.n as double) / nullif(t.n, 0), 0), cast({{ eps }} as double)) as actual
    from bins as b
    join counts as c on c.feature = b.feature and c.bin = b.bin
    left join totals as t on t.feature = b.feature
)
select model_name, model_version, feature, {{ scorehouse.literal(metric) }} as metric,
       0.0 as baseline_value,
       sum((actual - expected) * ln(actual / expected)) as current_value,
       cast(null as {{ dbt.type_string() }}) as detail
from shares
group by model_name, model_version, feature
{%- endmacro %}

