"""The scorehouse benchmark: every way to score the same model on the same rows, side by side, in one run.

    python -m bench [--sizes 1000000,5000000,20000000] [--repeat 3] [--spark-rows 2000000] [--out bench/RESULTS.md]
    (make bench)

Builds a private workspace (dbt staging + features, the models trained from their specs), resamples the
real mortgage and diamond feature rows with a fixed seed to each size, then runs on the same rows:
  limit            onnxruntime on one in-memory batch (inputs prepared; onnxruntime's default threads)
  duckdb_onnx      SELECT predict over the typed ONNX function (scorehouse_onnx_<model>(struct))
  duckdb_generic   SELECT predict('<model>', t) (any reference; the row travels as its values' text)
  duckdb_compiled  predict()'s one SQL expression, written from the explanation (method 'sql', where written)
  duckdb_predict   what the dbt predict() macro compiles to by default (SQL for linear models and small trees)
  duckdb_table     the table form, score_<model>('<table>'): in steps where the model allows (udfs/staged.py)
  orbital          orbital's own SQL for the same scikit-learn pipeline, run by DuckDB
  pandas           fetch the table into pandas, scikit-learn predict_proba, write the scores back
and, in Spark local[2] (bench/spark.py): predict() (ONNX Arrow UDF), predict()'s SQL expression, the table
form in steps, MLflow's spark_udf.
Each arm runs in a process of its own (its peak RSS is its own), arms alternate round by round (machine
noise hits all alike), and each figure is the best of --repeat rounds (sizes above --repeat-up-to run one
round; sizes above --all-models-up-to, the first model only). Cold start: a fresh process's first
predict() of a 200-tree GBT, connect and model load included. Writes the tables to --out with the machine they ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SECTION = re.compile(r"<!-- (\w+) -->.*?<!-- /\1 -->", re.S)  # a section another bench module writes
PROJECT = ROOT / "dbt_project" / "demo"  # the demo dbt project (which installs the scorehouse package)
FEATURE_TABLES = {"mortgage_deny": "features_mortgage", "diamond_price": "features_diamonds"}
# name -> (spec it starts from, estimator override, features table)
MODELS = {
    "mortgage_deny": ("mortgage_deny", None, "features_mortgage"),
    "mortgage_logistic": (
        "mortgage_deny",
        {"kind": "logistic_regression", "params": {"max_iter": 2000}},
        "features_mortgage",
    ),
    "diamond_price": ("diamond_price", None, "features_diamonds"),
}
COLD_START_MODEL = (
    "mortgage_gbt200",
    (
        "mortgage_deny",
        {
            "kind": "gradient_boosting",
            "params": {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.1, "random_state": 0},
        },
        "features_mortgage",
    ),
)
ARMS = [
    "limit",
    "duckdb_onnx",
    "duckdb_generic",
    "duckdb_compiled",
    "duckdb_predict",
    "duckdb_table",
    "orbital",
    "pandas",
]
ARM_NAMES = {
    "limit": "limit: onnxruntime, one in-memory batch",
    "duckdb_onnx": "DuckDB predict, ONNX UDF (typed)",
    "duckdb_generic": "DuckDB predict('<ref>', t), ONNX UDF (generic)",
    "duckdb_compiled": "DuckDB predict, SQL expression",
    "duckdb_predict": "DuckDB dbt predict() macro (default choice)",
    "duckdb_table": "DuckDB table form score_<model>(t) (default choice)",
    "orbital": "orbital's SQL in DuckDB",
    "pandas": "pandas round trip (fetch, scikit-learn, write back)",
}


def write_section(out: Path, section: str) -> None:
    """Put `section` (between its <!-- name --> and <!-- /name --> markers) into `out`, replacing its previous run."""
    begin = section.split("\n", 1)[0]
    page = out.read_text() if out.exists() else "# Benchmark results\n"
    old = next((m.group(0) for m in SECTION.finditer(page) if m.group(0).startswith(begin)), None)
    out.write_text(page.replace(old, section) if old else page.rstrip("\n") + "\n\n" + section + "\n")


def ran(command: str) -> str:
    """How a section opens: the command that wrote it, when, and on what machine."""
    return (
        f"`{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
        f"Python {platform.python_version()}"
    )


def publish(out: Path, section: str) -> None:
    """Write a bench module's section into `out` (see write_section) and print it."""
    write_section(out, section)
    print(section)


def build_workspace(folder: Path, models: dict) -> dict[str, str]:
    """Build the training tables with dbt and train `models` (name -> (spec, estimator, table)) into a registry."""
    from scorehouse.registration.spec import load_spec
    from scorehouse.registration.training import train_and_register
    from scorehouse.registry import Registry

    env = {
        "SCOREHOUSE_WAREHOUSE": str(folder / "bench.duckdb"),
        "SCOREHOUSE_REGISTRY": str(folder / "registry"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DO_NOT_TRACK": "1",
    }
    dbt = Path(sys.executable).parent / "dbt"
    subprocess.run(
        [str(dbt), "deps", "--quiet", "--project-dir", str(PROJECT), "--profiles-dir", str(ROOT)],
        check=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    subprocess.run(
        [
            str(dbt),
            "build",
            "--exclude",
            "tag:scoring",
            "tag:scorehouse_guard",
            "--quiet",
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(ROOT),
            "--target-path",
            str(folder / "target"),
            "--log-path",
            str(folder / "logs"),
        ],
        check=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    registry = Registry(env["SCOREHOUSE_REGISTRY"])
    for name, (base, estimator, _) in models.items():
        raw = yaml.safe_load((PROJECT / "training" / f"{base}.yml").read_text())
        raw["name"] = name
        if estimator:
            raw["estimator"] = estimator
        path = folder / f"{name}.yml"
        path.write_text(yaml.safe_dump(raw))
        version, _ = train_and_register(load_spec(path), registry, env["SCOREHOUSE_WAREHOUSE"])
        registry.promote(name, version)
    return env


def resample(con: duckdb.DuckDBPyConnection, source_table: str, rows: int, seed: int = 0) -> str:
    """Create `<source>_<rows>`: `rows` rows drawn with replacement from the real features table."""
    name = f"{source_table}_{rows}"
    source = con.sql(f"select * from {source_table}").to_arrow_table()
    sample = source.take(np.random.default_rng(seed).integers(0, source.num_rows, rows))  # noqa: F841 (read by DuckDB)
    con.execute(f"create or replace table {name} as select * from sample")
    return name


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


def run_arm(arm: str, env: dict[str, str], model: str, table: str, *options: str) -> dict:
    """Run one arm in its own process; return its JSON line (seconds and peak RSS, or why it cannot run)."""
    command = [
        sys.executable,
        "-m",
        "bench.arm",
        arm,
        "--warehouse",
        env["SCOREHOUSE_WAREHOUSE"],
        "--registry",
        env["SCOREHOUSE_REGISTRY"],
        "--model",
        model,
        "--table",
        table,
        "--spec",
        str(Path(env["SCOREHOUSE_REGISTRY"]).parent / f"{model}.yml"),
        *options,
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env})
    if result.returncode != 0:
        raise RuntimeError(f"bench arm {arm} on {model} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_size(env: dict[str, str], models: list[str], tables: dict[str, str], rounds: int) -> dict:
    """{model: {arm: best result}} for one size, arms alternating round by round."""
    best: dict[str, dict[str, dict]] = {m: {} for m in models}
    for round_ in range(rounds):
        for model in models:
            for arm in ARMS:
                print(f"  round {round_ + 1}/{rounds}: {model} {arm} ...", file=sys.stderr, flush=True)
                result = run_arm(arm, env, model, tables[model])
                kept = best[model].get(arm)
                if kept is None or result.get("seconds", 0) < kept.get("seconds", float("inf")):
                    best[model][arm] = result
    return best


def report(results: dict, cold: dict, spark: dict | None, manifests: dict, args) -> str:
    """The Markdown page: per size and model, every arm's rows/s, ratio to the limit and peak RSS."""
    import onnxruntime

    lines = [
        "# Benchmark results",
        "",
        f"`python -m bench --sizes {','.join(map(str, args.sizes))} --repeat {args.repeat} "
        f"--repeat-up-to {args.repeat_up_to} --all-models-up-to {args.all_models_up_to} "
        f"--spark-rows {args.spark_rows}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{platform.machine()}, {os.cpu_count()} cores, {_memory_gb():.0f} GiB, "
        f"Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, onnxruntime {onnxruntime.__version__}. DuckDB threads = cores; "
        "onnxruntime one thread per UDF call. Each arm runs in its own process; peak RSS is that process's "
        "high-water mark (Python, libraries and setup included).",
        "",
    ]
    for size, per_model in results.items():
        for model, arms in per_model.items():
            manifest = manifests[model]
            lines += [
                f"## {model} ({manifest['estimator']['class']}), {size:,} rows",
                "",
                f"dbt predict() default: {manifest['predict_default']}",
                "",
                "| path | seconds | rows/s | ratio to the limit | peak RSS MB |",
                "|---|---:|---:|---:|---:|",
            ]
            limit = arms["limit"]["seconds"]
            for arm in ARMS:
                r = arms[arm]
                if "unsupported" in r:
                    lines.append(f"| {ARM_NAMES[arm]} | n/a | n/a | n/a | {r['unsupported'][:120]} |")
                else:
                    lines.append(
                        f"| {ARM_NAMES[arm]} | {r['seconds']:.3f} | {size / r['seconds']:,.0f} | "
                        f"{limit / r['seconds']:.2f}x | {r['peak_rss_mb']:,.0f} |"
                    )
            if "seconds" in arms["duckdb_table"] and "seconds" in arms["orbital"]:
                lines.append(
                    f"\nThe table form ({manifest['table_form']}) against orbital's SQL: "
                    f"**{arms['orbital']['seconds'] / arms['duckdb_table']['seconds']:.2f}x**."
                )
            lines.append("")
    lines += _scaling(results)
    lines += [
        "## Cold start",
        "",
        f"A fresh process: connect, register, verify and load {cold['model']} "
        f"(GradientBoostingClassifier, 200 trees), score one row: best of {args.repeat} = "
        f"**{cold['seconds']:.3f} s** (peak RSS {cold['peak_rss_mb']:,.0f} MB).",
        "",
    ]
    if spark:
        lines += ["## Spark local[2]", "", spark["markdown"], ""]
    return "\n".join(lines)


def table_choice(explanation: dict | None) -> str:
    """How the table form scores a version with this explain.json by default: in steps, or row by row and why."""
    from scorehouse.staged import row_by_row_reason

    reason = row_by_row_reason(explanation)
    return f"row by row: {reason}" if reason else "in steps"


def predict_choice(registry, model: str) -> str:
    """What dbt's predict() scores a model with by default on DuckDB: its SQL expression, or the ONNX UDF and why."""
    from scorehouse.scoring import Session
    from scorehouse.sql import DUCKDB
    from scorehouse.writer import SqlWriter

    scorer = Session(registry)
    expression, why = SqlWriter(scorer, DUCKDB).scoring_choice(model, "score")
    return "SQL expression" if expression is not None else f"ONNX UDF ({why})"


def _scaling(results: dict) -> list[str]:
    sizes = sorted(results)
    if len(sizes) < 2:
        return []
    first, last = sizes[0], sizes[-1]
    model = next(iter(results[last]))
    lines = [
        f"## Scaling {first:,} -> {last:,} rows ({model})",
        "",
        "| path | seconds per million rows, small | large | growth of time / growth of rows "
        "| peak RSS MB small -> large |",
        "|---|---:|---:|---:|---:|",
    ]
    for arm in ARMS:
        a, b = results[first][model].get(arm, {}), results[last][model].get(arm, {})
        if "seconds" in a and "seconds" in b:
            lines.append(
                f"| {ARM_NAMES[arm]} | {a['seconds'] / first * 1e6:.3f} | {b['seconds'] / last * 1e6:.3f} | "
                f"{(b['seconds'] / a['seconds']) / (last / first):.2f} | "
                f"{a['peak_rss_mb']:,.0f} -> {b['peak_rss_mb']:,.0f} |"
            )
    return [*lines, ""]


def _memory_gb() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1_000_000, 5_000_000, 20_000_000]
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--all-models-up-to", type=int, default=20_000_000, help="larger sizes run for the first model only"
    )
    parser.add_argument("--repeat-up-to", type=int, default=1_000_000, help="larger sizes run one round")
    parser.add_argument("--spark-rows", type=int, default=2_000_000, help="0 skips Spark")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)

    from scorehouse.registry import Registry

    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-") as tmp:
        folder = Path(tmp)
        print(f"building the workspace in {tmp} ...", file=sys.stderr, flush=True)
        env = build_workspace(folder, {**MODELS, COLD_START_MODEL[0]: COLD_START_MODEL[1]})
        registry = Registry(env["SCOREHOUSE_REGISTRY"])
        manifests = {
            m: {
                **registry.card(*registry.resolve(m)).raw,
                "table_form": table_choice(registry.explanation(*registry.resolve(m))),
                "predict_default": predict_choice(registry, m),
            }
            for m in MODELS
        }
        results = {}
        for size in args.sizes:
            models = list(MODELS) if size <= args.all_models_up_to else list(MODELS)[:1]
            with duckdb.connect(env["SCOREHOUSE_WAREHOUSE"]) as con:
                tables = {m: resample(con, MODELS[m][2], size) for m in models}
            print(f"timing {size:,} rows ...", file=sys.stderr, flush=True)
            results[size] = run_size(env, models, tables, args.repeat if size <= args.repeat_up_to else 1)
            with duckdb.connect(env["SCOREHOUSE_WAREHOUSE"]) as con:
                for table in set(tables.values()):
                    con.execute(f"drop table {table}")
        cold = min(
            (run_arm("cold_start", env, COLD_START_MODEL[0], COLD_START_MODEL[1][2]) for _ in range(args.repeat)),
            key=lambda r: r["seconds"],
        )
        cold["model"] = COLD_START_MODEL[0]
        spark = None
        if args.spark_rows:
            print(f"Spark local[2], {args.spark_rows:,} rows ...", file=sys.stderr, flush=True)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.spark",
                    "--rows",
                    str(args.spark_rows),
                    "--repeat",
                    str(args.repeat),
                    "--json",
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if out.returncode != 0:
                raise RuntimeError(f"the Spark benchmark failed:\n{out.stderr[-3000:]}")
            spark = json.loads(out.stdout.strip().splitlines()[-1])
    page = report(results, cold, spark, manifests, args)
    # the sections other bench modules wrote (registration, explain, cores), whole
    kept = [m.group(0) for m in SECTION.finditer(args.out.read_text())] if args.out.exists() else []
    args.out.write_text(page + "".join(f"\n{section}\n" for section in kept))
    print(page)
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
