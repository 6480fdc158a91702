-- Every diamond priced by the diamond_price model's prod version, with the version and each row's input hash.
select
    s.diamond_id,
    s.prediction as predicted_price,
    s.price as listed_price,
    s.price - s.prediction as residual,
    'diamond_price' as model_name,
    s.model_version,
    current_timestamp as scored_at,
    s.input_hash
from {{ scorehouse.score(ref('features_diamonds'), 'diamond_price', input_hash=true) }} as s
