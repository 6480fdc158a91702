{#-
  category_share_rows: per categorical column, the current share of each training bucket
  (a category, or __other__ for the rare ones), with unseen categories as __unseen__.
-#}
{% macro category_shares(relation, model_ref, columns) -%}
  {{ return(adapter.dispatch('category_shares', 'scorehouse')(relation, model_ref, columns)) }}
{%- endmacro %}

{% macro default__category_shares(relation, model_ref, columns) -%}
with categories as (
    select model_name, model_version, feature, category, bucket, share
    from {{ scorehouse.profile_relation('bins', model_ref) }}
    where kind = 'categorical' and feature in ({{ scorehouse.literal_list(columns.keys()) }})
),
present as (
    select feature, value from ({{ scorehouse.feature_values(relation, columns, 'categorical') }}) as v
    where value is not null and value <> ''
),
labelled as (
    select p.feature, coalesce(c.bucket, '__unseen__') as bucket
    from present as p
    left join categories as c on c.feature = p.feature and c.category = p.value
),
current_shares as (
    select feature, bucket, cast(count(*) as double) / sum(count(*)) over (partition by feature) as share
    from labelled group by feature, bucket
),
baseline_shares as (
    select distinct model_name, model_version, feature, bucket, share from categories
),
models as (
    select distinct model_name, model_version from categories
)
select m.model_name, m.model_version,
       coalesce(b.feature, c.feature) as feature,
       coalesce(b.bucket, c.bucket) as bucket,
       coalesce(b.share, cast(0 as double)) as baseline_share,
       coalesce(c.share, cast(0 as double)) as current_share
from baseline_shares as b
full outer join current_shares as c on c.feature = b.feature and c.bucket = b.bucket
cross join models as m
{%- endmacro %}


{#- js_distance_rows: Jensen-Shannon distance (base 2) of each categorical column's shares. -#}
{% macro js_distance_rows(relation, model_ref, columns) -%}
  {{ return(adapter.dispatch('js_distance_rows', 'scorehouse')(relation, model_ref, columns)) }}
{%- endmacro %}

{% macro default__js_distance_rows(relation, model_ref, columns) -%}
with shares as ({{ scorehouse.category_shares(relation, model_ref, columns) }}),
terms as (
    select model_name, model_version, feature,
           case when baseline_share > 0
                then 0.5 * baseline_share * ln(baseline_share / ((baseline_share + current_share) / 2)) else 0 end
         + case when current_share > 0
                then 0.5 * current_share * ln(current_share / ((baseline_share + current_share) / 2)) else 0 end as term
    from shares
)
select model_name, model_version, feature, 'js_distance' as metric, 0.0 as baseline_value,
       sqrt(greatest(sum(term) / ln(2), 0)) as current_value,
       cast(null as {{ dbt.type_string() }}) as detail
from terms
group by model_name, model_version, feature
{%- endmacro %}


{#- unseen_share_rows: share of non-NULL values whose category was never seen in training. -#}
{% macro unseen_share_rows(relation, model_ref, columns) -%}
  {{ return(adapter.dispatch('unseen_share_rows', 'scorehouse')(relation, model_ref, columns)) }}
{%- endmacro %}

{% macro default__unseen_share_rows(relation, model_ref, columns) -%}
with shares as ({{ scorehouse.category_shares(relation, model_ref, columns) }})
select model_name, model_version, feature, 'unseen_share' as metric, 0.0 as baseline_value,
       sum(case when bucket = '__unseen__' then current_share else 0 end) as current_value,
       cast(null as {{ dbt.type_string() }}) as detail
from shares
group by model_name, model_version, feature
{%- endmacro %}
