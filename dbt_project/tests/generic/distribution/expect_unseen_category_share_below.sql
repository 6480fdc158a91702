{#- Share of each categorical feature's values never seen in training (default warn 0.01, error 0.05). -#}
{% test expect_unseen_category_share_below(model, model_ref, features=none, warn_above=none, error_above=none) %}
  {{ scorehouse.guard_config() }}
  {%- set limits = scorehouse.thresholds('unseen_share', warn_above, error_above) -%}
  {%- set columns = scorehouse.by_name(scorehouse.guard_features(model_ref, 'categorical', features)) -%}
  {{ scorehouse.guard_failures(scorehouse.unseen_share_rows(model, model_ref, columns), limits[0], limits[1]) }}
{% endtest %}
