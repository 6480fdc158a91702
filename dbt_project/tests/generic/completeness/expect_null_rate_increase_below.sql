{#- Increase of each feature's NULL share over its training NULL share (default warn 0.02, error 0.05). -#}
{% test expect_null_rate_increase_below(model, model_ref, features=none, warn_above=none, error_above=none) %}
  {{ scorehouse.guard_config() }}
  {%- set limits = scorehouse.thresholds('null_rate_increase', warn_above, error_above) -%}
  {%- set names = scorehouse.guard_features(model_ref, 'numeric', features) + scorehouse.guard_features(model_ref, 'categorical', features) -%}
  {{ scorehouse.guard_failures(scorehouse.null_rate_rows(model, model_ref, scorehouse.by_name(names)), limits[0], limits[1]) }}
{% endtest %}
