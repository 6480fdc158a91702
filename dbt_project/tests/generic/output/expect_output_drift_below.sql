{#-
  Drift of a scored column from the model's output on its training holdout: PSI for a probability
  or a value (default warn 0.1, error 0.25); Jensen-Shannon distance for a multiclass label.
-#}
{% test expect_output_drift_below(model, column_name, model_ref, warn_above=none, error_above=none) %}
  {{ scorehouse.guard_config() }}
  {%- set kind = 'numeric' -%}
  {%- if execute -%}
    {%- set kind = run_query("select kind from " ~ scorehouse.profile_relation('features', model_ref) ~ " where feature = '__output__'").columns[0].values()[0] -%}
  {%- endif -%}
  {%- if kind == 'numeric' -%}
    {%- set limits = scorehouse.thresholds('output_psi', warn_above, error_above) -%}
    {{ scorehouse.guard_failures(scorehouse.psi_rows(model, model_ref, {'__output__': column_name}, metric='output_psi'), limits[0], limits[1]) }}
  {%- else -%}
    {%- set limits = scorehouse.thresholds('js_distance', warn_above, error_above) -%}
    {{ scorehouse.guard_failures(scorehouse.js_distance_rows(model, model_ref, {'__output__': column_name}), limits[0], limits[1]) }}
  {%- endif -%}
{% endtest %}
