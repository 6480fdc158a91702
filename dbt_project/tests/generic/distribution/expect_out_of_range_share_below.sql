{#- Share of each numeric feature's values outside the training [min, max] (default warn 0.01, error 0.05). -#}
{% test expect_out_of_range_share_below(model, model_ref, features=none, warn_above=none, error_above=none) %}
  {{ scorehouse.guard_config() }}
  {%- set limits = scorehouse.thresholds('out_of_range_share', warn_above, error_above) -%}
  {%- set columns = scorehouse.by_name(scorehouse.guard_features(model_ref, 'numeric', features)) -%}
  {{ scorehouse.guard_failures(scorehouse.out_of_range_rows(model, model_ref, columns), limits[0], limits[1]) }}
{% endtest %}
