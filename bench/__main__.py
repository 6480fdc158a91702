"""Benchmark predict() in DuckDB against raw onnxruntime, side by side in one run.

    python -m bench [--rows 1000000] [--repeat 3] [--model mortgage_deny]

Builds a private workspace (dbt staging + features, the demo model trained from its spec), resamples
the real feature rows with a fixed seed to --rows, then times on the same rows and the same model:
  limit     onnxruntime on one in-memory batch (inputs already prepared; default threads)
  fast      SELECT predict_<model>(struct_pack(...)) in DuckDB
  generic   SELECT predict('<model>', t) in DuckDB (JSON transport)
Each is the best of --repeat runs, interleaved; ratios are rows/s relative to the limit.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "dbt_project"
FEATURE_TABLES = {"mortgage_deny": "features_mortgage", "diamond_price": "features_diamonds"}


def build_workspace(folder: Path, model: str) -> dict[str, str]:
    """Build the training tables with dbt and train the model into a private registry."""
    from udfs.registry import Registry
    from udfs.spec import load_spec
    from udfs.training import train_and_register

    env = {"SCOREHOUSE_WAREHOUSE": str(folder / "bench.duckdb"), "SCOREHOUSE_REGISTRY": str(folder / "registry"),
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1"}
    dbt = Path(sys.executable).parent / "dbt"
    subprocess.run([str(dbt), "build", "--exclude", "tag:scoring", "tag:scorehouse_guard", "--quiet", "--project-dir", str(PROJECT),
                    "--profiles-dir", str(ROOT), "--target-path", str(folder / "target"),
                    "--log-path", str(folder / "logs"), "--vars", f"{{data_dir: '{PROJECT / 'data'}'}}"],
                   check=True, cwd=ROOT, env={**os.environ, **env})
    registry = Registry(env["SCOREHOUSE_REGISTRY"])
    spec = load_spec(PROJECT / "training" / f"{model}.yml")
    version, _ = train_and_register(spec, registry, env["SCOREHOUSE_WAREHOUSE"])
    registry.promote(model, version)
    return env


def resample(con: duckdb.DuckDBPyConnection, model: str, rows: int, seed: int = 0) -> None:
    """Create table `bench_rows`: `rows` rows drawn with replacement from the real features table."""
    source = con.sql(f"select * from {FEATURE_TABLES[model]}").to_arrow_table()
    picks = np.random.default_rng(seed).integers(0, source.num_rows, rows)
    sample = source.take(picks)  # noqa: F841 (read by DuckDB below)
    con.execute("create or replace table bench_rows as select * from sample")


def interleaved_best(repeat: int, runs: dict) -> dict[str, float]:
    """Time each run `repeat` times, alternating between them so machine noise hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def markdown_table(results: dict[str, float], rows: int, baseline: str, ratio_header: str) -> str:
    """Results as a Markdown table: seconds, rows/s, and speed relative to `baseline` (baseline time / time)."""
    lines = [f"| path | seconds | rows/s | {ratio_header} |", "|---|---:|---:|---:|"]
    for name, seconds in results.items():
        lines.append(f"| {name} | {seconds:.3f} | {rows / seconds:,.0f} | {results[baseline] / seconds:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", choices=sorted(FEATURE_TABLES), default="mortgage_deny")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="DuckDB threads")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    import udfs.duckdb as engine
    from udfs.registry import Registry
    from udfs.schema import model_inputs, quote_identifier

    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-") as tmp:
        print(f"building the workspace in {tmp} ...", file=sys.stderr, flush=True)
        env = build_workspace(Path(tmp), args.model)
        registry = Registry(env["SCOREHOUSE_REGISTRY"])
        con = engine.connect(env["SCOREHOUSE_WAREHOUSE"], registry, config={"threads": args.threads})
        resample(con, args.model, args.rows)
        model = registry.load(args.model, registry.aliases(args.model)["prod"])
        table = con.sql("select * from bench_rows").to_arrow_table()
        feeds = model_inputs(model.label, model.features, {n: table.column(n) for n in table.column_names})
        session = ort.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
        names = list(model.manifest["onnx_outputs"].values())
        struct = ", ".join(quote_identifier(f.name) for f in model.features)

        print(f"timing {args.rows:,} rows, best of {args.repeat} ...", file=sys.stderr, flush=True)
        results = interleaved_best(args.repeat, {
            "limit: onnxruntime, one batch": lambda: session.run(names, feeds),
            "DuckDB fast path predict_<model>(struct)": lambda: con.sql(
                f"select sum(predict_{args.model}(struct_pack({struct}))) from bench_rows").fetchall(),
            "DuckDB generic predict('<model>', t)": lambda: con.sql(
                f"select sum(predict('{args.model}', t)) from bench_rows t").fetchall(),
        })
        con.close()

    print(f"\n{args.model} ({model.manifest['estimator']['class']}), {args.rows:,} resampled rows, "
          f"DuckDB threads={args.threads}, {platform.machine()} {os.cpu_count()} cores, "
          f"onnxruntime {ort.__version__}, duckdb {duckdb.__version__}\n")
    print(markdown_table(results, args.rows, "limit: onnxruntime, one batch", "ratio to the limit"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
