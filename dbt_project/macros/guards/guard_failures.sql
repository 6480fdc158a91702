{#-
  default_thresholds(): metric -> [warn above, error above]. scorehouse.profile.DEFAULT_THRESHOLDS holds the
  same numbers for the report (a test keeps the two equal). Schema problems always error.
-#}
{% macro default_thresholds() -%}
  {{ return({
      'psi': [0.1, 0.25],
      'js_distance': [0.1, 0.1],
      'unseen_share': [0.01, 0.05],
      'null_rate_increase': [0.02, 0.05],
      'out_of_range_share': [0.01, 0.05],
      'output_psi': [0.1, 0.25],
      'schema': [0, 0],
  }) }}
{%- endmacro %}


{#- thresholds(metric, warn_above, error_above): the given values, else the defaults; checked. -#}
{% macro thresholds(metric, warn_above=none, error_above=none) -%}
  {%- set default = scorehouse.default_thresholds()[metric] -%}
  {%- set warn = default[0] if warn_above is none else warn_above -%}
  {%- set error = default[1] if error_above is none else error_above -%}
  {%- if warn is not number or error is not number or warn > error -%}
    {{ exceptions.raise_compiler_error("Guard " ~ metric ~ ": warn_above (" ~ warn ~ ") and error_above (" ~ error ~ ") must be numbers with warn_above <= error_above") }}
  {%- endif -%}
  {{ return([warn, error]) }}
{%- endmacro %}


{#-
  guard_levels(rows, warn_above, error_above): metric rows with their thresholds and level ('warn',
  'error' or NULL), each explaining itself. NULL-rate rows compare the increase over training;
  all others compare the current value.
-#}
{% macro guard_levels(rows, warn_above, error_above) -%}
select model_name, model_version, feature, metric,
       cast(baseline_value as double) as baseline_value,
       cast(current_value as double) as current_value,
       cast({{ warn_above }} as double) as warn_above,
       cast({{ error_above }} as double) as error_above,
       case when measured > {{ error_above }} then 'error'
            when measured > {{ warn_above }} then 'warn' end as level,
       detail
from (
    select model_name, model_version, feature, metric, baseline_value, current_value, detail,
           case when metric = 'null_rate_increase' then current_value - baseline_value else current_value end as measured
    from ({{ rows }}) as metric_rows
) as measured_rows
{%- endmacro %}


{#- guard_failures(rows, warn_above, error_above): the rows of guard_levels past a threshold. -#}
{% macro guard_failures(rows, warn_above, error_above) -%}
select * from ({{ scorehouse.guard_levels(rows, warn_above, error_above) }}) as levels where level is not null
{%- endmacro %}


{#-
  stability_levels(relation, model_ref, features, thresholds): every input metric of a model on a
  relation, with levels. Features the schema check finds missing or mistyped are reported by it
  alone (the other metrics could not read them).
-#}
{% macro stability_levels(relation, model_ref, features=none, thresholds={}) -%}
  {%- set broken = scorehouse.schema_problems(relation, model_ref) | map(attribute='feature') | list -%}
  {%- set numeric = scorehouse.by_name(scorehouse.guard_features(model_ref, 'numeric', features) | reject('in', broken) | list) -%}
  {%- set categorical = scorehouse.by_name(scorehouse.guard_features(model_ref, 'categorical', features) | reject('in', broken) | list) -%}
  {%- set every = {} -%}{%- do every.update(numeric) -%}{%- do every.update(categorical) -%}
  {%- set checks = [
      ('schema', scorehouse.schema_rows(relation, model_ref)),
      ('psi', scorehouse.psi_rows(relation, model_ref, numeric)),
      ('js_distance', scorehouse.js_distance_rows(relation, model_ref, categorical)),
      ('unseen_share', scorehouse.unseen_share_rows(relation, model_ref, categorical)),
      ('null_rate_increase', scorehouse.null_rate_rows(relation, model_ref, every)),
      ('out_of_range_share', scorehouse.out_of_range_rows(relation, model_ref, numeric)),
  ] -%}
  {%- for metric, rows in checks -%}
    {%- set override = thresholds.get(metric, [none, none]) -%}
    {%- set limits = scorehouse.thresholds(metric, override[0], override[1]) %}
    {% if not loop.first %}union all {% endif %}select * from ({{ scorehouse.guard_levels(rows, limits[0], limits[1]) }}) as {{ metric }}_levels
  {%- endfor %}
{%- endmacro %}


{#-
  guard_config(): how a guard test turns rows into a result. Its result is its worst level
  (1 = a warn row, 2 = an error row), so dbt warns at 1 and errors at 2; failing rows are stored
  and printed at the end of the run. `severity`, `warn_if` and `error_if` still apply.
-#}
{% macro guard_config() -%}
  {{ config(fail_calc="coalesce(max(case when level = 'error' then 2 else 1 end), 0)",
            warn_if=">=1", error_if=">=2", store_failures=true, tags=["scorehouse_guard"]) }}
{%- endmacro %}
