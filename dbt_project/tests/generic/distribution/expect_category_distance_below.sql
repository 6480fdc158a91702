{#- Jensen-Shannon distance of each categorical feature's shares from training (default error above 0.1). -#}
{% test expect_category_distance_below(model, model_ref, features=none, warn_above=none, error_above=none) %}
  {{ scorehouse.guard_config() }}
  {%- set limits = scorehouse.thresholds('js_distance', warn_above, error_above) -%}
  {%- set columns = scorehouse.by_name(scorehouse.guard_features(model_ref, 'categorical', features)) -%}
  {{ scorehouse.guard_failures(scorehouse.js_distance_rows(model, model_ref, columns), limits[0], limits[1]) }}
{% endtest %}
