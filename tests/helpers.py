"""What the tests share besides fixtures: paths, the workspace a user's project has, runners of dbt, Spark
and the CLI, scikit-learn's own answers, and the estimator cases (tests/conftest.py holds the fixtures)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from scorehouse.registration.spec import load_spec
from scorehouse.registration.training import Candidate, read_source, sklearn_outputs, train
from scorehouse.registry import Registry
from scorehouse.schema import model_inputs
from scorehouse.sql import Dialect

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dbt_project"  # the dbt package users install
PROJECT = PACKAGE / "demo"  # the demo dbt project, which installs it
SPECS = {
    "mortgage_deny": PROJECT / "training" / "mortgage_deny.yml",
    "diamond_price": PROJECT / "training" / "diamond_price.yml",
}
DBT = str(Path(sys.executable).parent / "dbt")  # the dbt of this interpreter's environment
FEATURE_TABLES = {
    "mortgage_deny": ("features_mortgage", "application_id"),
    "diamond_price": ("features_diamonds", "diamond_id"),
}


@dataclass
class Engine:
    """A SQL engine with scorehouse's functions registered on a workspace's registry, as the engine fixture
    gives it: `rows(sql)` runs a query; a user's mistake raises one of `errors`."""

    name: str
    dialect: Dialect
    run: Callable[[str], list[tuple]]
    errors: tuple[type[BaseException], ...]

    def rows(self, sql: str) -> list[tuple]:
        return [tuple(row) for row in self.run(sql)]

    def value(self, sql: str):
        """The one value of a one-row, one-column query."""
        [(value,)] = self.rows(sql)
        return value


os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")


@dataclass
class Workspace:
    """A warehouse file and a registry directory, as a user's project has them."""

    root: Path
    candidates: dict[str, Candidate] = field(default_factory=dict)

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse" / "scorehouse.duckdb"  # a folder dbt must create

    @property
    def serving(self) -> Path:
        """The file BI tools read: the published marts, replaced whole after each build."""
        return self.warehouse.with_name("scorehouse_serving.duckdb")

    @property
    def registry_path(self) -> Path:
        return self.root / "registry"

    @property
    def registry(self) -> Registry:
        return Registry(self.registry_path)

    @property
    def env(self) -> dict[str, str]:
        return {"SCOREHOUSE_WAREHOUSE": str(self.warehouse), "SCOREHOUSE_REGISTRY": str(self.registry_path)}

    def copy(self, dest: Path) -> Workspace:
        shutil.copytree(self.root, dest)
        return Workspace(dest, dict(self.candidates))

    def dbt(
        self, *args: str, expect_ok: bool = True, data_dir: Path = PROJECT / "data", variables: dict | None = None
    ) -> subprocess.CompletedProcess:
        """Run dbt in its own process, as a user does (dbt-duckdb keeps the warehouse open in-process)."""
        result = subprocess.run(
            self.dbt_command(*args, data_dir=data_dir, variables=variables),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
            env={**os.environ, **self.env},
        )
        if expect_ok:
            assert result.returncode == 0, (
                f"dbt {' '.join(args)} failed:\n{result.stdout[-5000:]}\n{result.stderr[-2000:]}"
            )
        return result

    def dbt_command(self, *args: str, data_dir: Path = PROJECT / "data", variables: dict | None = None) -> list[str]:
        return [
            DBT,
            *args,
            "--project-dir",
            str(PROJECT),
            "--profiles-dir",
            str(ROOT),
            "--target-path",
            str(self.root / "target"),
            "--log-path",
            str(self.root / "logs"),
            "--vars",
            json.dumps({"data_dir": str(data_dir), **(variables or {})}),
        ]

    def query(self, sql: str, database: Path | None = None) -> pd.DataFrame:
        with duckdb.connect(str(database or self.warehouse), read_only=True) as con:
            return con.sql(sql).to_arrow_table().to_pandas()

    def train(self, demo: str, promote: bool = True, **overrides) -> int:
        """Train a demo spec (its fields replaced by `overrides`, `name` among them) and register it."""
        spec = load_spec(SPECS[demo])
        for key, value in overrides.items():
            setattr(spec, key, value)
        candidate = train(spec, read_source(spec, self.warehouse))
        version = self.registry.register(candidate.manifest, candidate.files)
        self.candidates[f"{spec.name}@{version}"] = candidate
        if promote:
            self.candidates[spec.name] = candidate
            self.registry.promote(spec.name, version)
        return version

    def sklearn_scores(self, ref: str, frame: pd.DataFrame):
        """scikit-learn's own answers for rows of a features table."""
        return sklearn_answers(self.candidates[ref], frame)

    def cli(
        self, *args: str, check: bool = False, stdin: str | None = None, preexec_fn=None
    ) -> subprocess.CompletedProcess:
        """Run the installed `scorehouse` command against this workspace."""
        return run_cli(*args, env=self.env, check=check, stdin=stdin, preexec_fn=preexec_fn)


def failed_quality_gate(workspace: Workspace, invocation: str = "build-7") -> Path:
    """A target folder as `dbt build` writes it when prod's version 2 of mortgage_deny failed its quality gate
    (auc 0.61 on the window of 2026-11-09), with the gate's stored failures in the warehouse; returns the folder."""
    target = workspace.root / "target"
    target.mkdir()
    gate, quality = "test.demo.expect_model_quality_above_quality", "model.demo.quality"
    (target / "manifest.json").write_text(
        json.dumps(
            {
                "nodes": {
                    gate: {
                        "name": "expect_model_quality_above_quality",
                        "schema": "main",
                        "alias": "gate_failures",
                        "test_metadata": {"name": "expect_model_quality_above"},
                        "config": {"store_failures": True},
                        "attached_node": quality,
                    },
                    quality: {"name": "quality", "schema": "main"},
                }
            }
        )
    )
    (target / "run_results.json").write_text(
        json.dumps(
            {
                "metadata": {"invocation_id": invocation, "generated_at": "2026-12-02T10:00:00Z"},
                "args": {"which": "build", "invocation_command": "dbt build"},
                "results": [{"unique_id": gate, "status": "fail"}],
            }
        )
    )
    with duckdb.connect(str(workspace.warehouse)) as con:
        con.execute(
            "create table gate_failures as select 'mortgage_deny' as model_name, 2 as model_version, "
            "'2026-11-09 00:00:00' as window_start, 'auc' as metric, 0.61 as current_value, "
            "'window 2026-11-09: auc 0.61 against 0.8 on the holdout (allowed: 0.75)' as detail, "
            "'error' as level, 'worse' as verdict"
        )
    return target


def build_package(
    project: Path, package: str, workspace: Workspace, out: Path
) -> tuple[subprocess.CompletedProcess, dict]:
    """`dbt build` a test project that uses this project as a package; return the run and its results by node name."""
    install_package(project)
    build = subprocess.run(
        [
            DBT,
            "build",
            "--select",
            f"package:{package}",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(ROOT),
            "--target-path",
            str(out / "target"),
            "--log-path",
            str(out / "logs"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **workspace.env},
        timeout=900,
    )
    return build, run_results(out / "target", build.stdout)


def install_package(project: Path) -> None:
    """Make this dbt project a package of the test project at `project` (`dbt deps`)."""
    (project / "packages.yml").write_text(f"packages:\n  - local: {PACKAGE}\n")
    deps = subprocess.run(
        [DBT, "deps", "--project-dir", str(project), "--profiles-dir", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert deps.returncode == 0, deps.stdout


def run_results(target: Path, log: str) -> dict:
    """The results of the dbt run that wrote `target`, by node name."""
    assert (target / "run_results.json").exists(), log[-3000:]
    return {r["unique_id"].split(".")[2]: r for r in json.loads((target / "run_results.json").read_text())["results"]}


def run_dbt_on_spark(ws: Workspace, warehouse: Path, *extra: str) -> subprocess.CompletedProcess:
    """spark_jobs/dbt_build.py with the workspace's registry, its tables kept under `warehouse`."""
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "spark_jobs" / "dbt_build.py"),
            "--warehouse-dir",
            str(warehouse),
            "--registry",
            str(ws.registry_path),
            *extra,
            "--",
            "--target-path",
            str(warehouse / "target"),
            "--log-path",
            str(warehouse / "logs"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        env={**os.environ, **ws.env, "PYSPARK_PYTHON": sys.executable},
    )


def read_parquet_table(warehouse: Path, schema: str, table: str) -> pd.DataFrame:
    """A table a Spark build wrote under `warehouse`."""
    with duckdb.connect() as con:
        return (
            con.sql(f"select * from read_parquet('{warehouse}/{schema}.db/{table}/*.parquet', union_by_name = true)")
            .to_arrow_table()
            .to_pandas()
        )


def sklearn_answers(candidate: Candidate, frame: pd.DataFrame) -> dict:
    """scikit-learn's own answers (score, label, probabilities) for rows of a features table."""
    from scorehouse.model import ModelCard

    card = ModelCard(candidate.manifest)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    inputs = model_inputs(card.label, card.features, {n: table.column(n) for n in table.column_names})
    x = pd.DataFrame({n: v.reshape(-1) for n, v in inputs.items()})
    return sklearn_outputs(candidate.pipeline, x, card.task, card.classes, candidate.manifest["positive_class"])


def run_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = False, stdin: str | None = None, preexec_fn=None
):
    command = [str(Path(sys.executable).parent / "scorehouse"), *args]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=300,
        preexec_fn=preexec_fn,
    )
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


MORTGAGE_FEATURES = ["dir", "hir", "lvr", "ccs", "mcs", "uria", "pbcr", "dmi", "self", "single", "condominium"]

# The demo's features_mortgage without dbt (the staging and features models in one statement), for the
# fast tier: tests of the registry, the SQL functions and the CLI that need real rows, not a dbt build.
MORTGAGE_FEATURES_SQL = """
create table features_mortgage as
select cast(column00 as integer) as application_id,
       cast(nullif(dir, 'NA') as double) as dir, cast(nullif(hir, 'NA') as double) as hir,
       cast(nullif(lvr, 'NA') as double) as lvr, cast(nullif(ccs, 'NA') as double) as ccs,
       cast(nullif(mcs, 'NA') as double) as mcs, cast(nullif(uria, 'NA') as double) as uria,
       nullif(pbcr, 'NA') as pbcr, nullif(dmi, 'NA') as dmi, nullif(self, 'NA') as self,
       nullif(single, 'NA') as single,
       case nullif(comdominiom, 'NA') when '1' then 'yes' when '0' then 'no' end as condominium,
       case nullif(deny, 'NA') when 'yes' then true when 'no' then false end as is_denied
from read_csv(?, all_varchar = true, header = true)
"""


# Every estimator kind and loss, trained on real rows (what `estimator_models` holds): name -> (task, kind,
# params, source). tests/test_estimators.py checks it covers every kind and loss.
ESTIMATOR_CASES = {
    "c_binary_logistic": ("binary", "logistic_regression", {"max_iter": 2000}, "mortgage"),
    "c_binary_forest": ("binary", "random_forest", {"n_estimators": 10, "max_depth": 5, "random_state": 0}, "mortgage"),
    "c_binary_gbt": ("binary", "gradient_boosting", {"n_estimators": 30, "random_state": 0}, "mortgage"),
    "c_binary_hgb": (
        "binary",
        "hist_gradient_boosting",
        {"max_iter": 20, "max_depth": 3, "random_state": 0},
        "mortgage",
    ),
    "c_binary_xgboost": ("binary", "xgboost", {"n_estimators": 20, "max_depth": 3}, "mortgage"),
    "c_binary_lightgbm": ("binary", "lightgbm", {"n_estimators": 20, "num_leaves": 8}, "mortgage"),
    "c_multiclass_logistic": ("multiclass", "logistic_regression", {"max_iter": 2000}, "diamonds_cut"),
    "c_multiclass_forest": (
        "multiclass",
        "random_forest",
        {"n_estimators": 10, "max_depth": 5, "random_state": 0},
        "diamonds_cut",
    ),
    "c_multiclass_gbt": ("multiclass", "gradient_boosting", {"n_estimators": 2, "max_depth": 2}, "diamonds_cut"),
    "c_multiclass_hgb": ("multiclass", "hist_gradient_boosting", {"max_iter": 10}, "diamonds_cut"),
    "c_multiclass_xgboost": ("multiclass", "xgboost", {"n_estimators": 10, "max_depth": 3}, "diamonds_cut"),
    "c_multiclass_lightgbm": ("multiclass", "lightgbm", {"n_estimators": 10}, "diamonds_cut"),
    "c_regression_linear": ("regression", "linear_regression", {}, "diamonds"),
    "c_regression_ridge": ("regression", "ridge", {}, "diamonds"),
    "c_regression_forest": (
        "regression",
        "random_forest",
        {"n_estimators": 10, "max_depth": 5, "random_state": 0},
        "diamonds",
    ),
    "c_regression_gbt": ("regression", "gradient_boosting", {"n_estimators": 30, "random_state": 0}, "diamonds"),
    "c_regression_hgb": ("regression", "hist_gradient_boosting", {"max_iter": 30, "random_state": 0}, "diamonds"),
    "c_regression_hgb_poisson": ("regression", "hist_gradient_boosting", {"loss": "poisson", "max_iter": 30}, "counts"),
    "c_regression_hgb_gamma": ("regression", "hist_gradient_boosting", {"loss": "gamma", "max_iter": 30}, "diamonds"),
    "c_regression_poisson": ("regression", "poisson_regression", {"max_iter": 1000}, "counts"),
    "c_regression_gamma": ("regression", "gamma_regression", {"max_iter": 1000}, "diamonds"),
    "c_regression_tweedie": ("regression", "tweedie_regression", {"power": 1.5, "max_iter": 1000}, "counts"),
    "c_regression_xgboost": ("regression", "xgboost", {"n_estimators": 20, "max_depth": 3}, "diamonds"),
    "c_regression_xgboost_poisson": (
        "regression",
        "xgboost",
        {"n_estimators": 20, "objective": "count:poisson"},
        "counts",
    ),
    "c_regression_xgboost_gamma": ("regression", "xgboost", {"n_estimators": 20, "objective": "reg:gamma"}, "diamonds"),
    "c_regression_xgboost_tweedie": (
        "regression",
        "xgboost",
        {"n_estimators": 20, "objective": "reg:tweedie", "tweedie_variance_power": 1.3},
        "counts",
    ),
    "c_regression_lightgbm": ("regression", "lightgbm", {"n_estimators": 20}, "diamonds"),
    "c_regression_lightgbm_poisson": ("regression", "lightgbm", {"n_estimators": 20, "objective": "poisson"}, "counts"),
    "c_regression_lightgbm_gamma": ("regression", "lightgbm", {"n_estimators": 20, "objective": "gamma"}, "diamonds"),
    "c_regression_lightgbm_tweedie": ("regression", "lightgbm", {"n_estimators": 20, "objective": "tweedie"}, "counts"),
}
# source -> (query, target, numeric, categorical). The mortgage rows carry a BOOLEAN feature (self_employed) and a
# BIGINT one above 2^24 (ccs_big), as users' tables do.
ESTIMATOR_SOURCES = {
    "mortgage": (
        "select *, self = 'yes' as self_employed, cast(ccs * 10000000 as bigint) as ccs_big from features_mortgage",
        "is_denied",
        ["dir", "hir", "lvr", "ccs_big", "mcs", "uria", "self_employed"],
        ["pbcr", "dmi", "single", "condominium"],
    ),
    "diamonds": (
        "select * from features_diamonds",
        "price",
        ["carat", "depth_pct", "table_pct", "length_mm", "width_mm", "height_mm"],
        ["cut", "color", "clarity"],
    ),
    "diamonds_cut": (
        "select * from features_diamonds",
        "cut",
        ["carat", "depth_pct", "table_pct"],
        ["color", "clarity"],
    ),
    "counts": (
        "select *, cast(round(price / 1000) as integer) as kilo_dollars from features_diamonds",
        "kilo_dollars",
        ["carat", "depth_pct", "table_pct"],
        ["cut", "color", "clarity"],
    ),
}
