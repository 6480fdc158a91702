"""When the table form takes its steps: tree ensembles of growing size and depth, side by side in one run.

    python -m bench.steps [--rows 1000000] [--gbts 50:3,100:3,200:3,400:3,800:3,10:6,30:6,100:6] [--repeat 3]
                          [--out bench/RESULTS.md]

By default (method 'auto') the table form scores an ensemble in steps (udfs/staged.py) only where
staged.row_by_row_reason finds no reason not to: at most MAX_NODES tree nodes, and at most NODES_FREE +
NODES_PER_SPLIT nodes per split a row passes through. This measures what those constants rest on. It
trains the demo GBT (mortgage_deny) with each --gbts trees:depth, takes the demo HGB (diamond_price) as it
is, resamples each model's real feature rows to --rows and to one row, and times (bench.arm, a process
each, arms alternating round by round, best of --repeat):
  limit         onnxruntime on one in-memory batch (--rows only)
  duckdb_onnx   the typed ONNX UDF, what row by row scores with
  duckdb_steps  the table form forced in steps (method 'sql'); on one row, its planning
Writes its section of bench/RESULTS.md (between markers, so `python -m bench` keeps it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb

from bench.__main__ import ARM_NAMES, MODELS, ROOT, build_workspace, publish, ran, resample, run_arm, table_choice

BEGIN, END = "<!-- steps -->", "<!-- /steps -->"
ARMS = ["limit", "duckdb_onnx", "duckdb_steps"]
ONE_ROW_ARMS = ["duckdb_onnx", "duckdb_steps"]
NAMES = {**ARM_NAMES, "duckdb_steps": "table form forced in steps"}
GBTS = [(50, 3), (100, 3), (200, 3), (400, 3), (800, 3), (10, 6), (30, 6), (100, 6)]


def models(gbts: list[tuple[int, int]]) -> dict:
    """name -> (spec, estimator, features table): the demo GBT with each (trees, depth), and the demo HGB."""
    gbts = {
        f"mortgage_gbt{n}_depth{depth}": (
            "mortgage_deny",
            {
                "kind": "gradient_boosting",
                "params": {"n_estimators": n, "max_depth": depth, "learning_rate": 0.1, "random_state": 0},
            },
            "features_mortgage",
        )
        for n, depth in gbts
    }
    return {**gbts, "diamond_price": MODELS["diamond_price"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.steps", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--gbts",
        type=lambda s: [tuple(map(int, x.split(":"))) for x in s.split(",")],
        default=GBTS,
        help="trees:depth of each GBT",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)

    from scorehouse.registry import Registry
    from scorehouse.staged import nodes, splits_per_row

    bench_models = models(args.gbts)
    results: dict[tuple[str, int], dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-steps-") as tmp:
        print(f"building the workspace in {tmp} ...", file=sys.stderr, flush=True)
        env = build_workspace(Path(tmp), bench_models)
        registry = Registry(env["SCOREHOUSE_REGISTRY"])
        explanations = {m: registry.explanation(*registry.resolve(m)) for m in bench_models}
        shapes = {
            m: (
                registry.card(*registry.resolve(m)).manifest.estimator_class,
                len(e["trees"]),
                nodes(e),
                splits_per_row(e),
                table_choice(e),
            )
            for m, e in explanations.items()
        }
        sizes = {args.rows: ARMS, 1: ONE_ROW_ARMS}
        with duckdb.connect(env["SCOREHOUSE_WAREHOUSE"]) as con:
            tables = {
                (table, rows): resample(con, table, rows) for _, _, table in bench_models.values() for rows in sizes
            }
        for round_ in range(args.repeat):
            for model, (_, _, table) in bench_models.items():
                for rows, arms in sizes.items():
                    for arm in arms:
                        print(
                            f"  round {round_ + 1}/{args.repeat}: {model} {arm} on {rows:,} rows ...",
                            file=sys.stderr,
                            flush=True,
                        )
                        result = run_arm(arm, env, model, tables[(table, rows)])
                        kept = results.setdefault((model, rows), {}).get(arm)
                        if kept is None or result.get("seconds", 0) < kept.get("seconds", float("inf")):
                            results[(model, rows)][arm] = result
    publish(args.out, report(results, shapes, args))
    return 0


def report(results: dict, shapes: dict, args) -> str:
    """The section: per model its trees, nodes and splits per row, each arm's seconds, the default."""
    from scorehouse.staged import MAX_NODES, NODES_FREE, NODES_PER_SPLIT

    def seconds(model: str, rows: int, arm: str) -> float | None:
        return results[(model, rows)][arm].get("seconds")

    lines = [
        BEGIN,
        "## When the table form takes the steps",
        "",
        ran(
            f"python -m bench.steps --rows {args.rows} --gbts {','.join(f'{n}:{d}' for n, d in args.gbts)} "
            f"--repeat {args.repeat}"
        )
        + ". "
        f"Seconds, best of {args.repeat}; each arm in its own process. Splits per row: how many splits a row "
        "passes through all the trees, on average over the training rows (udfs/staged.py splits_per_row). "
        f"The table form's default (udfs/staged.py): in steps up to {MAX_NODES:,} tree nodes and up to "
        f"{NODES_FREE:,} + {NODES_PER_SPLIT} nodes a split, else row by row with the typed ONNX UDF.",
        "",
        "| model | estimator | trees | tree nodes | splits per row | nodes / split | "
        + " | ".join(f"{NAMES[a]}, {args.rows:,} rows, s" for a in ARMS)
        + " | steps vs the ONNX UDF | "
        + " | ".join(f"{NAMES[a]}, one row, s" for a in ONE_ROW_ARMS)
        + " | default |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * (len(ARMS) + 1 + len(ONE_ROW_ARMS)) + "---|",
    ]
    for model, (estimator, trees, count, splits, choice) in shapes.items():
        cells = [seconds(model, args.rows, a) for a in ARMS]
        onnx, steps = seconds(model, args.rows, "duckdb_onnx"), seconds(model, args.rows, "duckdb_steps")
        ratio = f"{onnx / steps:.2f}x" if onnx and steps else "n/a"
        one_row = [seconds(model, 1, a) for a in ONE_ROW_ARMS]
        lines.append(
            f"| {model} | {estimator} | {trees} | {count:,} | {splits:,.0f} | "
            f"{count / splits if splits else 0:.1f} | "
            + " | ".join(_cell(s) for s in cells)
            + f" | {ratio} | "
            + " | ".join(_cell(s) for s in one_row)
            + f" | {choice} |"
        )
    return "\n".join([*lines, "", "Above 1.00x the steps are faster than the ONNX UDF.", END])


def _cell(seconds: float | None) -> str:
    return f"{seconds:.3f}" if seconds else "n/a"


if __name__ == "__main__":
    sys.exit(main())
