-- The mortgage_deny model's input: its features by name, the key, and the label where known.
-- `black` is deliberately absent: a protected attribute is never a model feature.
select
    application_id,
    dir,
    hir,
    lvr,
    ccs,
    mcs,
    uria,
    pbcr,
    dmi,
    self,
    single,
    condominium,
    is_denied
from {{ ref('stg_mortgage_applications') }}
