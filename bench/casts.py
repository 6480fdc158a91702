"""What the checks in front of compiled SQL cost in DuckDB, side by side on the same rows.

    python -m bench.casts [--rows 1000000] [--repeat 7]

Trains the demo's logistic regression (the model whose compiled SQL scores by default) and times, on
--rows rows (the real mortgage rows, repeated) in one DuckDB table, the sum of its score computed by:
  the stored SQL as orbital wrote it   CAST(feature AS FLOAT): a value beyond float32 stops the query
  the SQL predict() runs               the overflow-safe float32 (udfs/sql.py) behind the type check
best of --repeat, interleaved; both must give the same sum.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.__main__ import PROJECT, build_workspace, interleaved_best, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.casts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)

    import scorehouse.duckdb as engine
    from scorehouse.compiled import bind
    from scorehouse.registry import Registry
    from scorehouse.scoring import Scorer
    from scorehouse.spec import Estimator, load_spec
    from scorehouse.training import read_source, train

    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-casts-") as tmp:
        env = build_workspace(Path(tmp), {})
        spec = load_spec(PROJECT / "training" / "mortgage_deny.yml")
        spec.name, spec.estimator = "logistic", Estimator("logistic_regression", {"max_iter": 2000})
        candidate = train(spec, read_source(spec, env["SCOREHOUSE_WAREHOUSE"]))
        registry = Registry(Path(tmp) / "bench_registry")
        registry.promote("logistic", registry.register(candidate.manifest, candidate.files))
        stored = bind(candidate.compiled["expressions"]["duckdb"]["score"], "duckdb", '"f".')
        checked = engine.predict_sql(Scorer(registry), "logistic", "f", "score", "compiled")
        with engine.connect(":memory:", registry) as con:
            con.execute(f"attach '{env['SCOREHOUSE_WAREHOUSE']}' as w (read_only)")
            con.execute("create table rows as select f.* from w.features_mortgage as f, "
                        f"range(cast(ceil({args.rows} / 2381) as integer)) limit {args.rows}")
            runs = {name: (lambda sql=sql: con.sql(f"select sum({sql}) from rows as f").fetchall())
                    for name, sql in (("stored SQL (plain CAST)", stored), ("predict()'s SQL (checked)", checked))}
            sums = {name: run()[0][0] for name, run in runs.items()}
            results = interleaved_best(args.repeat, runs)
    if abs(sums["stored SQL (plain CAST)"] - sums["predict()'s SQL (checked)"]) > 1e-6 * args.rows:
        raise SystemExit(f"the two paths disagree: {sums}")
    print(f"logistic regression (mortgage features), {args.rows:,} rows in DuckDB, best of {args.repeat}\n")
    print(markdown_table(results, args.rows, "stored SQL (plain CAST)", "speed vs the plain CAST"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
