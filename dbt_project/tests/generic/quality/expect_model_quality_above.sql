{#-
  Quality in production no worse than on the holdout, on a model_quality relation: for each version's
  latest window (all windows with latest_only=false), each metric in `allowed_drop` ({metric: how much
  worse than its holdout value it may be}) errors when it is worse by more. A window with fewer than
  `min_labels` labelled rows or a label coverage under `min_coverage` warns "not enough labels"
  instead of being judged. Higher is better for auc, accuracy, precision, recall and r2; lower for the
  others (mean_bias by its size).
-#}
{% test expect_model_quality_above(model, allowed_drop={'auc': 0.05}, min_labels=100, min_coverage=0.0,
                                   latest_only=true) %}
  {{ scorehouse.guard_config() }}
  {%- if allowed_drop is not mapping or not allowed_drop -%}
    {{ exceptions.raise_compiler_error("expect_model_quality_above: allowed_drop maps metrics to how much worse than the holdout they may be, e.g. {auc: 0.05}") }}
  {%- endif -%}
  {%- set higher_is_better = ['auc', 'accuracy', 'precision', 'recall', 'r2'] -%}
with quality as (
    select * from {{ model }}
    where metric in ({{ scorehouse.literal_list(allowed_drop.keys()) }})
),
latest as (
    select model_version, max(window_start) as window_start from quality group by model_version
),
judged as (
    select q.*,
           case {% for metric, drop in allowed_drop.items() %}
                when q.metric = {{ scorehouse.literal(metric) }} then
                  {% if metric in higher_is_better %}q.holdout_value - {{ drop }}
                  {%- elif metric == 'mean_bias' %}{{ drop }}
                  {%- else %}q.holdout_value + {{ drop }}{% endif %}
                {%- endfor %}
           end as bound,
           case when q.labels_arrived < {{ min_labels }} or q.label_coverage < {{ min_coverage }} then 'warn'
                {%- for metric, drop in allowed_drop.items() %}
                when q.metric = {{ scorehouse.literal(metric) }} and
                  {% if metric in higher_is_better %}q.value < q.holdout_value - {{ drop }}
                  {%- elif metric == 'mean_bias' %}abs(q.value) > {{ drop }}
                  {%- else %}q.value > q.holdout_value + {{ drop }}{% endif %} then 'error'
                {%- endfor %}
           end as level
    from quality as q
    {%- if latest_only %}
    join latest as l on l.model_version = q.model_version and l.window_start = q.window_start
    {%- endif %}
)
select model_name, model_version, cast(window_start as {{ dbt.type_string() }}) as feature, metric,
       holdout_value as baseline_value, value as current_value, bound as warn_above, bound as error_above, level,
       case when level = 'warn' then 'not enough labels: ' || cast(labels_arrived as {{ dbt.type_string() }}) || ' of '
                 || cast(rows_scored as {{ dbt.type_string() }}) || ' rows (at least {{ min_labels }} and a coverage of {{ min_coverage }} needed)'
            else metric || ' ' || cast(round(value, 4) as {{ dbt.type_string() }}) || ' against ' || cast(round(holdout_value, 4) as {{ dbt.type_string() }})
                 || ' on the holdout (allowed: ' || cast(round(bound, 4) as {{ dbt.type_string() }}) || ')' end as detail
from judged
where level is not null
{% endtest %}
