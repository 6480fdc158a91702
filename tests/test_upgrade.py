"""Upgrades keep users' data: the project, registry and warehouse that release 0.2.0 left on disk
(tests/fixtures/release-0.2.0) keep scoring, building, publishing and appending history after the
upgrade steps of CHANGELOG.md."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from helpers import ROOT

pytestmark = pytest.mark.dbt
FIXTURE = ROOT / "tests" / "fixtures" / "release-0.2.0"
BIN = Path(sys.executable).parent
HISTORY = ("drift_history", "quality_history", "scoring_runs")
# drift_history as a release before the history tables were declared could leave it: columns in another order,
# one missing (scoring_runs and quality_history stay exactly as 0.2.0 left them)
OLDER_DRIFT_LAYOUT = (
    "create table drift_layout as select model_name, model_version, invocation_id, recorded_at, "
    "model_ref, input_relation, feature, metric, current_value, baseline_value, warn_above, "
    "error_above, level from drift_history; drop table drift_history; "
    "alter table drift_layout rename to drift_history"
)


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREHOUSE_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", DBT_SEND_ANONYMOUS_USAGE_STATS="False", DO_NOT_TRACK="1")
    result = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command}\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
    return result


def restore_warehouse(export: Path, database: Path) -> None:
    """The warehouse as 0.2.0 left it, from its EXPORT DATABASE (schema.sql, then each table's parquet)."""
    database.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(database)) as con:
        for statement in (export / "schema.sql").read_text().split(";\n"):
            if statement.strip():
                con.execute(statement)
        for table in sorted(p.stem for p in export.glob("*.parquet")):
            con.execute(f'insert into "{table}" select * from read_parquet(?)', [str(export / f"{table}.parquet")])


@pytest.fixture
def upgraded(tmp_path):
    """A copy of the 0.2.0 project after CHANGELOG's upgrade steps: `scorehouse init`, `dbt deps`."""
    project = tmp_path / "loans"
    shutil.copytree(FIXTURE / "loans", project, ignore=shutil.ignore_patterns("warehouse_0.2.0"))
    restore_warehouse(FIXTURE / "loans" / "warehouse_0.2.0", project / "warehouse" / "loans.duckdb")
    with duckdb.connect(str(project / "warehouse" / "loans.duckdb")) as con:
        con.execute(OLDER_DRIFT_LAYOUT)
        before = {table: con.sql(f"select * from {table}").to_df() for table in (*HISTORY, "scored_applications")}
    init = run("scorehouse init", project)
    run("dbt deps", project)
    return project, before, init


def test_a_project_of_release_0_2_0_keeps_scoring_building_and_appending_history(upgraded):
    project, before, init = upgraded
    assert "renamed the plugin module udfs.dbt_plugin to scorehouse.dbt_plugin" in init.stdout
    assert "the scorehouse dbt package now comes from" in init.stdout
    assert "ok" in run("scorehouse verify loan_denial", project).stdout
    run("dbt build", project)
    with duckdb.connect(str(project / "warehouse" / "loans.duckdb"), read_only=True) as con:
        after = {table: con.sql(f"select * from {table}").to_df() for table in (*HISTORY, "scored_applications")}
        builds = {
            table: con.sql(f"select count(distinct invocation_id) from {table}").fetchall()[0][0] for table in HISTORY
        }
    for table in HISTORY:  # every old row kept, as it was, and this build's rows appended
        old = before[table]
        assert len(after[table]) > len(old), table
        kept = after[table][list(old.columns)].head(len(old)).reset_index(drop=True)
        assert kept.astype(str).equals(old.astype(str)), table
        assert builds[table] == before[table].invocation_id.nunique() + 1, table
    # the declared column drift_history lacked was added: NULL in the old rows, this build's values in the new,
    # and every value landed in its own column although the table's columns were in another order
    drift, old_drift = after["drift_history"], before["drift_history"]
    assert "detail" in drift.columns and drift.detail.head(len(old_drift)).isna().all()
    new_drift = drift.iloc[len(old_drift) :]
    assert set(new_drift.model_name) == {"loan_denial"} and set(new_drift.model_version) <= {1, 2}
    assert new_drift.invocation_id.str.len().eq(36).all() and new_drift.recorded_at.notna().all()
    assert set(new_drift.metric) == set(old_drift.metric) and new_drift.current_value.notna().all()
    # prod is version 2 and the rollout ended: every row is now scored by version 2, as 0.2.0 scored its share
    scored = after["scored_applications"].set_index("application_id").sort_index()
    old = before["scored_applications"].set_index("application_id").sort_index()
    assert (scored.model_version == 2).all() and len(scored) == len(old) == 2381
    by_v2 = old.model_version == 2
    assert by_v2.sum() > 100
    assert (scored.denial_probability[by_v2] - old.denial_probability[by_v2]).abs().max() < 1e-6
    assert (scored.input_hash == old.input_hash).all()
    with duckdb.connect(str(project / "warehouse" / "loans_serving.duckdb"), read_only=True) as serving:
        published = serving.sql("select count(*) from scored_applications").fetchall()[0][0]
    assert published == 2381
    shown = run(
        "scorehouse sql \"select predict('loan_denial', a) as p from applications a order by application_id limit 3\"",
        project,
    ).stdout
    assert f"{scored.denial_probability.iloc[0]:.6f}"[:6] in shown
