{#- Population stability index of each numeric feature against its training bins (default warn 0.1, error 0.25). -#}
{% test expect_feature_psi_below(model, model_ref, features=none, warn_above=none, error_above=none) %}
  {{ scorehouse.guard_config() }}
  {%- set limits = scorehouse.thresholds('psi', warn_above, error_above) -%}
  {%- set columns = scorehouse.by_name(scorehouse.guard_features(model_ref, 'numeric', features)) -%}
  {{ scorehouse.guard_failures(scorehouse.psi_rows(model, model_ref, columns), limits[0], limits[1]) }}
{% endtest %}
