-- Every mortgage application scored by the mortgage_deny model's prod version, or, during a gray release
-- (scorehouse rollout), by the rollout's version for its share of applications, routed by application_id.
select
    f.application_id,
    {{ scorehouse.predict('mortgage_deny', relation='f', key='application_id') }} as deny_probability,
    deny_probability >= {{ var('mortgage_deny_threshold') }} as predicted_deny,
    f.is_denied as actual_denied,
    'mortgage_deny' as model_name,
    {{ scorehouse.model_version('mortgage_deny', relation='f', key='application_id') }} as model_version,
    current_timestamp as scored_at,
    {{ scorehouse.input_hash('mortgage_deny', relation='f') }} as input_hash
from {{ ref('features_mortgage') }} as f
