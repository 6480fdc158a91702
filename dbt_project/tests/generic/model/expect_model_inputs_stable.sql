{#-
  Every input guard of a model in one line of YAML: schema, PSI, category distance, unseen
  categories, NULL-rate increase and out-of-range share, for every feature (or `features`).
  `thresholds` overrides defaults per metric, e.g. {psi: [0.2, 0.4]}.
-#}
{% test expect_model_inputs_stable(model, model_ref, features=none, thresholds={}) %}
  {{ scorehouse.guard_config() }}
  select * from ({{ scorehouse.stability_levels(model, model_ref, features, thresholds) }}) as levels
  where level is not null
{% endtest %}
