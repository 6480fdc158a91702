-- The decisions on mortgage applications, as they arrive after scoring (in production: the table the
-- lending system writes them to). The demo splits the data set's real labels by application: the decisions
-- on 7 applications in 10 (application_id % 10 < 7) have arrived, the other 3 are still pending.
select
    application_id,
    is_denied as denied
from {{ ref('features_mortgage') }}
where application_id % 10 < 7
