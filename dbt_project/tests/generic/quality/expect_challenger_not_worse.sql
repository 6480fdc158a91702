{#-
  A promotion gate on a compare_models relation: the challenger's `metric` on the rows whose outcome has
  arrived (auc, log_loss, brier; rmse, mae for regressors) is not worse than the champion's by more than
  `margin` (which way is better: the relation's better column).
-#}
{% test expect_challenger_not_worse(model, metric='auc', margin=0.0) %}
  {{ scorehouse.guard_config() }}
  {%- set margin = scorehouse.number(margin, 'expect_challenger_not_worse: margin') -%}
  {%- set metrics = ['auc', 'log_loss', 'brier', 'rmse', 'mae'] -%}
  {%- if metric not in metrics -%}
    {%- do scorehouse.misconfigured("expect_challenger_not_worse: metric must be one of " ~ metrics | join(', ')
                                    ~ ", found '" ~ metric ~ "'") -%}
  {%- endif -%}
select c.champion || ' v' || cast(c.champion_version as {{ dbt.type_string() }}) as model_name,
       c.challenger_version as model_version, c.challenger as feature, c.metric,
       c.champion_value as baseline_value, c.challenger_value as current_value,
       cast({{ margin }} as double) as warn_above, cast({{ margin }} as double) as error_above, 'error' as level,
       c.metric || ': challenger ' || cast(round(c.challenger_value, 4) as {{ dbt.type_string() }}) || ', champion '
         || cast(round(c.champion_value, 4) as {{ dbt.type_string() }}) || ' on '
         || cast(c.labelled_rows as {{ dbt.type_string() }}) || ' labelled rows (margin {{ margin }})' as detail
from {{ model }} as c
where c.metric = {{ scorehouse.literal(metric) }}
  and ((c.better = 'higher' and c.value < {{ -margin }}) or (c.better = 'lower' and c.value > {{ margin }}))
{% endtest %}
