-- The diamond_price model's input: its features by name, the key, and the price where known.
select
    diamond_id,
    carat,
    depth_pct,
    table_pct,
    length_mm,
    width_mm,
    height_mm,
    cut,
    color,
    clarity,
    price
from {{ ref('stg_diamonds') }}
