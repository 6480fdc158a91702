"""Write a realistic broken batch of the raw CSVs, as an upstream bug would deliver it.

    python dbt_project/data/broken_batch.py OUT_DIR

hmda_boston.csv gets three breakages the mortgage_deny guards must catch:
  dir   debt-to-income sent in percent instead of a ratio (a unit change: x100)
  lvr   NULL (NA) in 30% of the rows (a NULL-rate jump)
  self  a new category, 'unknown', in 25% of the rows
diamonds.csv is copied unchanged. Rows are picked by a hash of the row number: the batch is the
same every time. Then build with: dbt build --vars '{data_dir: OUT_DIR}'
"""

import sys
from pathlib import Path

import duckdb

DATA = Path(__file__).resolve().parent


def write_broken_batch(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"""
            copy (
                select * replace (
                    case when dir = 'NA' then dir else cast(cast(dir as double) * 100 as varchar) end as dir,
                    case when hash(column00 || 'lvr') % 100 < 30 then 'NA' else lvr end as lvr,
                    case when hash(column00 || 'self') % 100 < 25 then 'unknown' else self end as self
                )
                from read_csv('{DATA / "hmda_boston.csv"}', all_varchar = true, header = true)
                order by cast(column00 as integer)
            ) to '{out / "hmda_boston.csv"}' (header, delimiter ',')
        """)
    finally:
        con.close()
    (out / "diamonds.csv").write_bytes((DATA / "diamonds.csv").read_bytes())
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"broken batch written to {write_broken_batch(sys.argv[1])}")
