"""explain() against predict() on the same rows, side by side in one run (DuckDB, the demo models).

    python -m bench.explain [--rows 200000] [--repeat 3] [--out bench/RESULTS.md]

Builds a private workspace (dbt staging + features, the demo specs trained as `make demo` trains them),
repeats the real mortgage and diamond feature rows to --rows, and times, alternately, the generic
`predict('<model>', t)` and `explain('<model>', t, 3)` and the typed calls dbt's macros generate
(`predict_<model>(...)`, `explain_<model>(..., 3)`) over the same table (best of --repeat). Writes its
section of bench/RESULTS.md (between markers, so `python -m bench` keeps it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import ROOT, build_workspace, publish, ran

BEGIN, END = "<!-- explain -->", "<!-- /explain -->"
MODELS = {
    "mortgage_deny": ("mortgage_deny", None, "features_mortgage"),
    "diamond_price": ("diamond_price", None, "features_diamonds"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.explain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)

    import scorehouse.duckdb as engine
    from scorehouse.scoring import Session
    from scorehouse.sql import DUCKDB
    from scorehouse.writer import SqlWriter

    results = []
    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-explain-") as tmp:
        env = build_workspace(Path(tmp), MODELS)
        con = engine.connect(env["SCOREHOUSE_WAREHOUSE"], registry=env["SCOREHOUSE_REGISTRY"])
        for name, (_, _, table) in MODELS.items():
            con.execute(
                f"create or replace table bench_rows as select t.* from {table} as t, "
                f"range(({args.rows} + (select count(*) from {table}) - 1) // (select count(*) from {table})) "
                f"limit {args.rows}"
            )
            scorer = Session(env["SCOREHOUSE_REGISTRY"])
            arms = {
                "predict": f"predict('{name}', t)",
                "explain": f"explain('{name}', t, 3)",
                "typed predict": engine.predict_sql(scorer, name, "t"),
                "typed explain": SqlWriter(scorer, DUCKDB).explain_sql(name, "t", 3),
            }
            best = dict.fromkeys(arms, float("inf"))
            for _ in range(args.repeat):
                for arm, call in arms.items():
                    start = time.perf_counter()
                    con.execute(f"select count({call}) from bench_rows as t").fetchall()
                    best[arm] = min(best[arm], time.perf_counter() - start)
            results.append((name, args.rows, best))
            print(
                f"{name}: " + ", ".join(f"{arm} {args.rows / seconds:,.0f} rows/s" for arm, seconds in best.items()),
                file=sys.stderr,
            )
        con.close()
    publish(args.out, report(results))
    return 0


def report(results) -> str:
    lines = [
        BEGIN,
        "## explain() throughput",
        "",
        ran("python -m bench.explain") + "; DuckDB, the demo models as `make demo` "
        "trains them, the same rows for every arm, best of the rounds. The typed calls are what dbt's "
        "`predict()` and `explain()` macros generate (`predict_<model>` may be its SQL expression).",
        "",
        "| model | rows | predict() rows/s | explain(…, 3) rows/s | explain / predict "
        "| predict_&lt;model&gt;() rows/s | explain_&lt;model&gt;(…, 3) rows/s | explain / predict (typed) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows, best in results:
        lines.append(
            f"| {name} | {rows:,} | {rows / best['predict']:,.0f} | {rows / best['explain']:,.0f} "
            f"| {best['predict'] / best['explain']:.2f}x | {rows / best['typed predict']:,.0f} "
            f"| {rows / best['typed explain']:,.0f} | {best['typed predict'] / best['typed explain']:.2f}x |"
        )
    return "\n".join([*lines, END])


if __name__ == "__main__":
    sys.exit(main())
