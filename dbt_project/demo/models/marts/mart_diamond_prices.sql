-- Every diamond priced by the diamond_price model's prod version.
select
    f.diamond_id,
    {{ scorehouse.predict('diamond_price', relation='f') }} as predicted_price,
    f.price as listed_price,
    f.price - predicted_price as residual,
    'diamond_price' as model_name,
    {{ scorehouse.model_version('diamond_price') }} as model_version,
    current_timestamp as scored_at,
    {{ scorehouse.input_hash('diamond_price', relation='f') }} as input_hash
from {{ ref('features_diamonds') }} as f
