"""Registration time against the plain library fit of the same pipeline, measured in the same run.

    python -m bench.registration [--out bench/RESULTS.md]

For the demo specs (as `make demo` trains them), a 300-tree gradient boosting model and a 100-tree random
forest on 22,000 diamond rows, and a logistic regression: the seconds of
the plain fit of the scorehouse pipeline (scikit-learn alone, on the same rows), and of `scorehouse
train` (read, fit, ONNX export, parity, explanations, SQL check, metrics and profile, registration) with its
steps. The ratio is registration / plain fit. Writes its section of bench/RESULTS.md (between
markers, so `python -m bench` keeps it).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.__main__ import PROJECT, ROOT, build_workspace, publish, ran

BEGIN, END = "<!-- registration -->", "<!-- /registration -->"
BIG = {"source": {"query": "select * from features_diamonds order by diamond_id limit 22000"}}
# name -> (demo spec it starts from, changes)
CASES = {
    "mortgage_deny (demo, GBT 100 trees)": ("mortgage_deny", {}),
    "diamond_price (demo, HGB 200 iterations)": ("diamond_price", {}),
    "GBT 300 trees, 22,000 rows": (
        "diamond_price",
        {
            **BIG,
            "estimator": {
                "kind": "gradient_boosting",
                "params": {"n_estimators": 300, "max_depth": 3, "random_state": 0},
            },
        },
    ),
    "random forest 100 trees, 22,000 rows": (
        "diamond_price",
        {
            **BIG,
            "estimator": {"kind": "random_forest", "params": {"n_estimators": 100, "random_state": 0, "n_jobs": 1}},
        },
    ),
    "mortgage logistic regression": (
        "mortgage_deny",
        {"estimator": {"kind": "logistic_regression", "params": {"max_iter": 2000}}},
    ),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.registration", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)

    from scorehouse.registration.spec import parse_spec
    from scorehouse.registration.training import build_pipeline, prepare, read_source, train_and_register
    from scorehouse.registry import Registry

    rows = []
    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-registration-") as tmp:
        env = build_workspace(Path(tmp), {})
        for label, (base, changes) in CASES.items():
            raw = {**yaml.safe_load((PROJECT / "training" / f"{base}.yml").read_text()), **changes}
            raw["name"] = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:60]
            spec = parse_spec(raw, base_dir=PROJECT / "training")
            table = read_source(spec, env["SCOREHOUSE_WAREHOUSE"])
            data = prepare(spec, table)
            start = time.perf_counter()
            build_pipeline(spec).fit(data.x_train, data.y_train)
            fit = time.perf_counter() - start
            registry = Registry(Path(tmp) / "bench_registry")
            start = time.perf_counter()
            version, _ = train_and_register(spec, registry, env["SCOREHOUSE_WAREHOUSE"])
            total = time.perf_counter() - start
            manifest = registry.card(spec.name, version).manifest
            steps = manifest.registration_seconds
            sql = manifest.sql or {}
            checked = sql.get("skipped") or (f"max diff {sql['max_abs_diff']:.1e}" if sql else "none")
            explained = (manifest.explanation or {}).get("skipped") or (manifest.explanation or {}).get("kind")
            rows.append((label, len(data.x_train), fit, total, steps, checked, explained))
            print(f"{label}: fit {fit:.2f} s, registration {total:.2f} s ({total / fit:.2f}x)", file=sys.stderr)
    publish(args.out, report(rows))
    return 0


def report(rows) -> str:
    lines = [
        BEGIN,
        "## Registration time",
        "",
        ran("python -m bench.registration") + ". Plain fit: the same scikit-learn pipeline "
        "fitted on the same rows, alone. Registration: `scorehouse train` as a whole (read, fit, ONNX export, "
        "parity, explanations, SQL check, metrics and profile, write).",
        "",
        "| model | fit rows | plain fit s | registration s | ratio | export | parity | explain | sql "
        "| profile | SQL check | explanations |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, n, fit, total, steps, checked, explained in rows:
        lines.append(
            f"| {label} | {n:,} | {fit:.2f} | {total:.2f} | {total / fit:.2f}x | {steps['export']:.2f} | "
            f"{steps['parity']:.2f} | {steps.get('explain', 0):.2f} | {steps.get('sql', 0):.2f} | "
            f"{steps['profile']:.2f} "
            f"| {checked[:70]} | {explained[:70]} |"
        )
    return "\n".join([*lines, END])


if __name__ == "__main__":
    sys.exit(main())
