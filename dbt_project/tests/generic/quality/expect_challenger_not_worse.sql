{#-
  A promotion gate on a compare_models relation: the challenger's `metric` on the rows whose outcome has
  arrived (auc, log_loss, brier; rmse, mae for regressors) is not worse than the champion's by more than
  `margin` (which way is better: the relation's better column). With fewer than `min_labels` labelled rows
  it warns "not enough labels" instead of judging; past that, a metric either side could not compute (NULL
  or NaN: every label of one class...) errors: the gate never passes on a number it does not have.
-#}
{% test expect_challenger_not_worse(model, metric='auc', margin=0.0, min_labels=100) %}
  {{ scorehouse.guard_config() }}
  {%- set margin = scorehouse.number(margin, 'expect_challenger_not_worse: margin') -%}
  {%- set min_labels = scorehouse.number(min_labels, 'expect_challenger_not_worse: min_labels') -%}
  {%- set metrics = ['auc', 'log_loss', 'brier', 'rmse', 'mae'] -%}
  {%- if metric not in metrics -%}
    {%- do scorehouse.misconfigured("expect_challenger_not_worse: metric must be one of " ~ metrics | join(', ')
                                    ~ ", found '" ~ metric ~ "'") -%}
  {%- endif -%}
  {%- if execute and metric in metrics -%}
    {%- set measured = run_query("select distinct metric from " ~ model).columns[0].values() -%}
    {%- if metric not in measured -%}
      {{ exceptions.raise_compiler_error("expect_challenger_not_worse on " ~ model.identifier ~ ": no metric " ~ metric
          ~ " in it (compare_models measures quality only when given outcomes= and outcome=); it has "
          ~ measured | sort | join(', ')) }}
    {%- endif -%}
  {%- endif -%}
with judged as (
    select c.*,
           case when c.labelled_rows < {{ min_labels }} then 'not enough labels'
                when c.champion_value is null or isnan(c.champion_value)
                     or c.challenger_value is null or isnan(c.challenger_value) then 'not computed'
                when (c.better = 'higher' and c.value < {{ -margin }}) or (c.better = 'lower' and c.value > {{ margin }}) then 'worse'
           end as verdict
    from {{ model }} as c
    where c.metric = {{ scorehouse.literal(metric) }}
)
select champion as model_name, champion_version as model_version, challenger, challenger_version, metric,
       champion_value as baseline_value, challenger_value as current_value,
       cast({{ margin }} as double) as warn_above, cast({{ margin }} as double) as error_above,
       case when verdict = 'not enough labels' then 'warn' else 'error' end as level,
       'challenger ' || challenger || ' v' || cast(challenger_version as {{ dbt.type_string() }}) || ': '
       || case verdict
            when 'not enough labels' then 'not enough labels: ' || cast(labelled_rows as {{ dbt.type_string() }})
                 || ' labelled rows (at least {{ min_labels }} needed)'
            when 'not computed' then metric || ' could not be computed on ' || cast(labelled_rows as {{ dbt.type_string() }})
                 || ' labelled rows (champion ' || coalesce(cast(champion_value as {{ dbt.type_string() }}), 'NULL')
                 || ', challenger ' || coalesce(cast(challenger_value as {{ dbt.type_string() }}), 'NULL') || ')'
            else metric || ': challenger ' || cast(round(challenger_value, 4) as {{ dbt.type_string() }}) || ', champion '
                 || cast(round(champion_value, 4) as {{ dbt.type_string() }}) || ' on '
                 || cast(labelled_rows as {{ dbt.type_string() }}) || ' labelled rows (margin {{ margin }})' end as detail,
       verdict
from judged
where verdict is not null
{% endtest %}
