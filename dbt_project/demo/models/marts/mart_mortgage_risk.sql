-- Every mortgage application scored by the mortgage_deny model's prod version, or, during a gray release
-- (scorehouse rollout), by the rollout's version for its share of applications, routed by application_id.
-- One score() call gives each row its score, the version that scored it, its input hash and its explanation
-- (its top three features by contribution), all routed alike; an application predicted to be denied carries
-- the features that pushed its score up.
select
    s.application_id,
    s.prediction as deny_probability,
    s.prediction >= {{ var('mortgage_deny_threshold') }} as predicted_deny,
    s.is_denied as actual_denied,
    'mortgage_deny' as model_name,
    s.model_version,
    current_timestamp as scored_at,
    s.input_hash,
    case when s.prediction >= {{ var('mortgage_deny_threshold') }}
         then {{ scorehouse.reasons('s.explanation', var('mortgage_feature_descriptions')) }} end as deny_reasons
from {{ scorehouse.score(ref('features_mortgage'), 'mortgage_deny', key='application_id', input_hash=true,
                         explain_top_k=3) }} as s
