"""A stranger's project: what the package's on-run-end hooks cost next to the models they follow.

    python -m bench.hooks [--marts 12] [--rows 8000] [--repeat 2] [--out bench/RESULTS.md]

Builds a private workspace (the demo GBT as mortgage_deny), then a dbt project of its own that installs
the scorehouse package and plugin as the guide does: --marts source tables of --rows real mortgage feature
rows each (resampled with a fixed seed) and one table model per source scoring it with
`scorehouse.predict('mortgage_deny', relation='f')`. Each round runs `dbt build` with every hook on and with
every hook off (their vars false), alternating, and reads dbt's run_results.json: the models' own
execution seconds, each on-run-end hook's, and the build's wall time. Reports the best round of each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

from bench.__main__ import MODELS, ROOT, build_workspace, publish, ran, resample

BEGIN, END = "<!-- hooks -->", "<!-- /hooks -->"
HOOK_VARS = (
    "scorehouse_guard_summary",
    "scorehouse_publish",
    "scorehouse_drift_history",
    "scorehouse_quality_history",
    "scorehouse_scoring_runs",
)
DBT = str(Path(sys.executable).parent / "dbt")


def write_project(folder: Path, registry: str, features: str, marts: int, rows: int) -> Path:
    """A dbt project scoring `marts` tables of `rows` rows each; return its folder."""
    project = folder / "stranger"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {
                "name": "stranger",
                "profile": "stranger",
                "config-version": 2,
                "models": {"stranger": {"+materialized": "table"}},
            }
        )
    )
    (project / "profiles.yml").write_text(
        yaml.safe_dump(
            {
                "stranger": {
                    "target": "dev",
                    "outputs": {
                        "dev": {
                            "type": "duckdb",
                            "path": "warehouse.duckdb",
                            "threads": 2,
                            "plugins": [
                                {
                                    "module": "scorehouse.dbt_plugin",
                                    "alias": "scorehouse",
                                    "config": {"registry": registry},
                                }
                            ],
                        }
                    },
                }
            }
        )
    )
    (project / "packages.yml").write_text(yaml.safe_dump({"packages": [{"local": str(ROOT / "dbt_project")}]}))
    names = [f"applications_{i:02d}" for i in range(marts)]
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute("attach ? as bench (read_only)", [features])
        con.execute("create table features as select * from bench.features_mortgage")
        for i, name in enumerate(names):
            sample = resample(con, "features", rows, seed=i)
            con.execute(f"create table {name} as select * from {sample}")
            con.execute(f"drop table {sample}")
        con.execute("drop table features")
    (project / "models" / "sources.yml").write_text(
        yaml.safe_dump(
            {"version": 2, "sources": [{"name": "raw", "schema": "main", "tables": [{"name": n} for n in names]}]}
        )
    )
    for name in names:
        (project / "models" / f"scored_{name}.sql").write_text(
            "select f.*, {{ scorehouse.predict('mortgage_deny', relation='f') }} as denial_probability\n"
            f"from {{{{ source('raw', '{name}') }}}} as f\n"
        )
    dbt(project, "deps", "--quiet")
    return project


def dbt(project: Path, *arguments: str) -> None:
    subprocess.run(
        [DBT, *arguments, "--project-dir", str(project), "--profiles-dir", str(project)],
        check=True,
        cwd=project,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "False", "DO_NOT_TRACK": "1"},
        capture_output=True,
    )


def build(project: Path, hooks: bool) -> dict[str, float]:
    """One `dbt build`: wall seconds, the models' execution seconds, the on-run-end hooks' seconds."""
    arguments = ["build", "--quiet"]
    if not hooks:
        arguments += ["--vars", json.dumps(dict.fromkeys(HOOK_VARS, False))]
    start = time.perf_counter()
    dbt(project, *arguments)
    wall = time.perf_counter() - start
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    models = sum(r["execution_time"] for r in results if r["unique_id"].startswith("model."))
    hook_time = sum(r["execution_time"] for r in results if "on-run-end" in r["unique_id"])
    return {"wall": wall, "models": models, "hooks": hook_time}


def section(best: dict[bool, dict[str, float]], marts: int, rows: int, repeat: int) -> str:
    on, off = best[True], best[False]
    lines = [
        BEGIN,
        "## A stranger's project: the hooks against the models",
        "",
        ran(f"python -m bench.hooks --marts {marts} --rows {rows} --repeat {repeat}") + ".",
        f"{marts} table models, each scoring {rows:,} rows with `scorehouse.predict('mortgage_deny', relation='f')`; "
        f"`dbt build` with every on-run-end hook on and with every one off, alternating, best of {repeat}. "
        "Models and hooks: dbt's run_results.json execution times (the models' summed; they run 2 at a time).",
        "",
        "| build | wall seconds | models' seconds | on-run-end hooks' seconds | hooks / models |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, run in (("hooks on", on), ("hooks off", off)):
        share = run["hooks"] / run["models"] if run["models"] else 0.0
        lines.append(f"| {name} | {run['wall']:.1f} | {run['models']:.1f} | {run['hooks']:.1f} | {share:.0%} |")
    return "\n".join([*lines, END])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--marts", type=int, default=12)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scorehouse-hooks-") as folder:
        env = build_workspace(Path(folder), {"mortgage_deny": MODELS["mortgage_deny"]})
        project = write_project(
            Path(folder), env["SCOREHOUSE_REGISTRY"], env["SCOREHOUSE_WAREHOUSE"], args.marts, args.rows
        )
        best: dict[bool, dict[str, float]] = {}
        for round_ in range(args.repeat):
            for hooks in (True, False):
                print(f"  round {round_ + 1}/{args.repeat}: hooks {'on' if hooks else 'off'} ...", file=sys.stderr)
                run = build(project, hooks)
                if hooks not in best or run["wall"] < best[hooks]["wall"]:
                    best[hooks] = run
    publish(args.out, section(best, args.marts, args.rows, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
