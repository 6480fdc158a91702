{#- The relation holds every feature of the model, each with a type predict() accepts. -#}
{% test expect_model_inputs_match_schema(model, model_ref) %}
  {{ scorehouse.guard_config() }}
  {{ scorehouse.guard_failures(scorehouse.schema_rows(model, model_ref), 0, 0) }}
{% endtest %}
