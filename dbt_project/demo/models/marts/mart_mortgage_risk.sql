-- Every mortgage application scored by the mortgage_deny model's prod version.
select
    f.application_id,
    {{ scorehouse.predict('mortgage_deny', relation='f') }} as deny_probability,
    deny_probability >= {{ var('mortgage_deny_threshold') }} as predicted_deny,
    f.is_denied as actual_denied,
    'mortgage_deny' as model_name,
    {{ scorehouse.model_version('mortgage_deny') }} as model_version,
    current_timestamp as scored_at
from {{ ref('features_mortgage') }} as f
