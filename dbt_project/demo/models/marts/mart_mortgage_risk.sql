-- Every mortgage application scored by the mortgage_deny model's prod version, or, during a gray release
-- (scorehouse rollout), by the rollout's version for its share of applications, routed by application_id;
-- an application predicted to be denied carries the features that pushed its score up most (of its top
-- three by contribution), explained by the version that scored it. Only those rows are explained.
with scored as (
    select
        f.*,
        {{ scorehouse.predict('mortgage_deny', relation='f', key='application_id') }} as deny_probability,
        {{ scorehouse.model_version('mortgage_deny', relation='f', key='application_id') }} as model_version,
        {{ scorehouse.input_hash('mortgage_deny', relation='f') }} as input_hash
    from {{ ref('features_mortgage') }} as f
)
select
    s.application_id,
    s.deny_probability,
    s.deny_probability >= {{ var('mortgage_deny_threshold') }} as predicted_deny,
    s.is_denied as actual_denied,
    'mortgage_deny' as model_name,
    s.model_version,
    current_timestamp as scored_at,
    s.input_hash,
    case when s.deny_probability >= {{ var('mortgage_deny_threshold') }}
         then {{ scorehouse.reasons(scorehouse.explain('mortgage_deny', relation='s', top_k=3, key='application_id'),
                                    var('mortgage_feature_descriptions')) }} end as deny_reasons
from scored as s
