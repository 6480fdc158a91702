{#-
  Quality in production no worse than on the holdout, on a model_quality relation: for each version's
  latest window (all windows with latest_only=false), each metric in `allowed_drop` ({metric: how much
  worse than its holdout value it may be}) errors when it is worse by more. A window with fewer than
  `min_labels` labelled rows or a label coverage under `min_coverage` warns "not enough labels"
  instead of being judged, and so does a relation with no rows yet. Past that, a metric that could not be
  computed (NULL or NaN: every label one class, no row predicted positive...) or without a holdout value to
  compare with errors: the gate never passes on a number it does not have. Which way each metric is better
  comes from the relation's better column (mean_bias: by its size, allowed_drop being the largest bias
  allowed); counts (true_positives, ...) are not judged.
-#}
{% test expect_model_quality_above(model, allowed_drop={'auc': 0.05}, min_labels=100, min_coverage=0.0,
                                   latest_only=true) %}
  {{ scorehouse.guard_config() }}
  {%- if allowed_drop is not mapping or not allowed_drop -%}
    {%- do scorehouse.misconfigured("expect_model_quality_above: allowed_drop maps metrics to how much worse than the holdout they may be, e.g. {auc: 0.05}, found '" ~ allowed_drop ~ "'") -%}
    {%- set allowed_drop = {'auc': 0} -%}
  {%- endif -%}
  {%- set drops = {} -%}
  {%- for metric, drop in allowed_drop.items() -%}
    {%- do drops.update({metric: scorehouse.number(drop, 'expect_model_quality_above: allowed_drop of ' ~ metric)}) -%}
  {%- endfor -%}
  {%- set allowed_drop = drops -%}
  {%- set min_labels = scorehouse.number(min_labels, 'expect_model_quality_above: min_labels') -%}
  {%- set min_coverage = scorehouse.number(min_coverage, 'expect_model_quality_above: min_coverage') -%}
  {%- if execute -%}
    {%- set measured = run_query("select distinct metric from " ~ model).columns[0].values() -%}
    {%- set unknown = allowed_drop.keys() | reject('in', measured) | list -%}
    {%- if measured and unknown -%}
      {{ exceptions.raise_compiler_error("expect_model_quality_above on " ~ model.identifier ~ ": no metric "
          ~ unknown | join(', ') ~ " in it; it has " ~ measured | sort | join(', ')) }}
    {%- endif -%}
    {%- set counts = allowed_drop.keys() | select('in', scorehouse.counts()) | list -%}
    {%- if counts -%}
      {{ exceptions.raise_compiler_error("expect_model_quality_above on " ~ model.identifier ~ ": " ~ counts | join(', ')
          ~ " are counts, which no gate judges; gate a rate instead (precision, recall, f1, accuracy)") }}
    {%- endif -%}
  {%- endif -%}
with quality as (
    select * from {{ model }}
    where metric in ({{ scorehouse.literal_list(allowed_drop.keys()) }})
),
latest as (
    select model_version, max(window_start) as window_start from quality group by model_version
),
dropped as (
    select q.*,
           case {% for metric, drop in allowed_drop.items() %}when q.metric = {{ scorehouse.literal(metric) }} then {{ drop }} {% endfor %}end as allowed_drop
    from quality as q
    {%- if latest_only %}
    join latest as l on l.model_version = q.model_version and l.window_start = q.window_start
    {%- endif %}
),
bounded as (
    select d.*,
           case d.better when 'higher' then d.holdout_value - d.allowed_drop when 'lower' then d.holdout_value + d.allowed_drop
                else d.allowed_drop end as bound
    from dropped as d
),
judged as (
    select b.*,
           case when b.labels_arrived < {{ min_labels }} or b.label_coverage < {{ min_coverage }} then 'not enough labels'
                when b.value is null or isnan(b.value) then 'not computed'
                when b.bound is null or isnan(b.bound) then 'no holdout'
                when b.better = 'higher' and b.value < b.bound then 'worse'
                when b.better = 'lower' and b.value > b.bound then 'worse'
                when b.better = 'nearer_zero' and abs(b.value) > b.bound then 'worse'
           end as verdict
    from bounded as b
)
select model_name, model_version, cast(window_start as {{ dbt.type_string() }}) as window_start, metric,
       holdout_value as baseline_value, value as current_value, bound as warn_above, bound as error_above,
       case when verdict = 'not enough labels' then 'warn' else 'error' end as level,
       'window ' || cast(cast(window_start as date) as {{ dbt.type_string() }}) || ': '
       || case verdict
            when 'not enough labels' then 'not enough labels: ' || cast(labels_arrived as {{ dbt.type_string() }}) || ' of '
                 || cast(rows_scored as {{ dbt.type_string() }}) || ' rows (at least {{ min_labels }} and a coverage of {{ min_coverage }} needed)'
            when 'not computed' then metric || ' could not be computed on ' || cast(labels_arrived as {{ dbt.type_string() }})
                 || ' labelled rows (' || case metric when 'auc' then 'every label is of one class'
                                                      when 'precision' then 'no row was predicted positive'
                                                      when 'recall' then 'no label is of the positive class'
                                                      else 'no usable row' end || ')'
            when 'no holdout' then metric || ' ' || cast(round(value, 4) as {{ dbt.type_string() }})
                 || ' has no holdout value to compare with (the version was registered without it; retrain it to get one)'
            else metric || ' ' || cast(round(value, 4) as {{ dbt.type_string() }}) || ' against ' || cast(round(holdout_value, 4) as {{ dbt.type_string() }})
                 || ' on the holdout (allowed: ' || cast(round(bound, 4) as {{ dbt.type_string() }}) || ')' end as detail,
       verdict
from judged
where verdict is not null
union all
select cast(null as {{ dbt.type_string() }}) as model_name, cast(null as {{ dbt.type_int() }}) as model_version,
       cast(null as {{ dbt.type_string() }}) as window_start, cast(null as {{ dbt.type_string() }}) as metric,
       cast(null as double) as baseline_value, cast(null as double) as current_value, cast(null as double) as warn_above,
       cast(null as double) as error_above, 'warn' as level,
       'no scored rows yet: nothing to judge' as detail, 'not enough labels' as verdict
from (select 1 as one) as nothing
where not exists (select 1 from quality)
{% endtest %}
