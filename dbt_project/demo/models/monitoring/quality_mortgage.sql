-- mortgage_deny's quality once decisions arrive: per model version and week, rows scored, labels arrived,
-- AUC, log-loss, Brier, accuracy, precision and recall beside the version's holdout values. Tagged
-- scorehouse_quality, so every build appends its rows to quality_history.
{{ config(tags=['scorehouse_quality']) }}
{{ scorehouse.model_quality(ref('mart_mortgage_risk'), ref('outcomes_mortgage'), 'mortgage_deny',
                            key='application_id', score='deny_probability', outcome='denied',
                            window='week', threshold=var('mortgage_deny_threshold')) }}
