-- One row per mortgage application, typed; NA becomes NULL.
select
    cast(column00 as integer) as application_id,
    cast(nullif(dir, 'NA') as double) as dir,
    cast(nullif(hir, 'NA') as double) as hir,
    cast(nullif(lvr, 'NA') as double) as lvr,
    cast(nullif(ccs, 'NA') as double) as ccs,
    cast(nullif(mcs, 'NA') as double) as mcs,
    nullif(pbcr, 'NA') as pbcr,
    nullif(dmi, 'NA') as dmi,
    nullif(self, 'NA') as self,
    nullif(single, 'NA') as single,
    cast(nullif(uria, 'NA') as double) as uria,
    case nullif(comdominiom, 'NA') when '1' then 'yes' when '0' then 'no' end as condominium,
    nullif(black, 'NA') as black,
    case nullif(deny, 'NA') when 'yes' then true when 'no' then false end as is_denied
from {{ source('raw', 'hmda_boston') }}
