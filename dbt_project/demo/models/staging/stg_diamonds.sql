-- One row per diamond, typed; a zero dimension is a data error in the source and becomes NULL.
select
    cast(column00 as integer) as diamond_id,
    cast(carat as double) as carat,
    cut,
    color,
    clarity,
    cast(depth as double) as depth_pct,
    cast({{ scorehouse.identifier("table") }} as double) as table_pct,
    cast(nullif(cast(x as double), 0) as double) as length_mm,
    cast(nullif(cast(y as double), 0) as double) as width_mm,
    cast(nullif(cast(z as double), 0) as double) as height_mm,
    cast(price as integer) as price
from {{ source('raw', 'diamonds') }}
