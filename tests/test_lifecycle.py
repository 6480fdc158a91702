"""After deployment: the audit trail of alias moves, gray release by key, and retention."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import duckdb
import numpy as np
import pytest

import scorehouse.duckdb as engine
from scorehouse.errors import ScorehouseError
from scorehouse.registry import Registry
from scorehouse.scoring import Session
from scorehouse.sql import BUCKETS, DUCKDB, bucket
from scorehouse.writer import SqlWriter

from helpers import failed_quality_gate

FEATURES = "dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, self, single, condominium"


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def register_versions(workspace, count: int) -> list[int]:
    candidate = workspace.candidates["mortgage_deny"]
    return [workspace.registry.register(candidate.manifest, candidate.files) for _ in range(count)]


def test_every_alias_move_is_appended_to_the_audit_log(small_copy):
    registry = small_copy.registry
    register_versions(small_copy, 2)  # versions 2 and 3
    small_copy.cli("promote", "mortgage_deny", "2", "--reason", "better AUC on March", check=True)
    small_copy.cli("rollout", "mortgage_deny", "3", "--share", "5", "--reason", "gray release", check=True)
    small_copy.cli("rollback", "mortgage_deny", "--reason", "complaints", check=True)
    events = registry.history("mortgage_deny")
    moves = [(e["action"], e["alias"], e["from"], e["to"], e.get("share"), e["reason"]) for e in events]
    assert moves == [
        ("promote", "prod", None, 1, None, None),
        ("promote", "prod", 1, 2, None, "better AUC on March"),
        ("rollout", "rollout", None, 3, 5.0, "gray release"),
        ("rollback", "prod", 2, 1, None, "complaints"),
    ]
    assert all(e["user"] and e["at"] and e["command"] for e in events)
    assert "scorehouse rollback mortgage_deny --reason complaints" in events[-1]["command"]
    shown = small_copy.cli("history", "mortgage_deny", check=True).stdout
    assert "rollback" in shown and "complaints" in shown and "rollout 5%" in shown
    # the rolled-back version stays in the record, and the audit log was only ever appended to
    assert any(e["to"] == 2 for e in events)
    assert json.loads(small_copy.cli("history", "mortgage_deny", "--json", check=True).stdout) == events


def test_history_shows_an_audit_line_written_by_hand_without_an_action(small_copy):
    """A JSON object without "action" (an edit audit_problems warns about) is listed, not a crash."""
    with (small_copy.registry_path / "mortgage_deny" / "audit.jsonl").open("a") as audit:
        audit.write(json.dumps({"at": "2026-01-01T00:00:00+00:00", "user": "someone", "alias": "prod"}) + "\n")
    shown = small_copy.cli("history", "mortgage_deny")
    assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert "warning: Model mortgage_deny: audit.jsonl line 2" in shown.stderr
    assert shown.stdout.splitlines()[-1].split()[:3] == ["2026-01-01T00:00:00+00:00", "someone", "-"]


def test_promoting_prod_ends_a_rollout_and_says_so(small_copy):
    registry = small_copy.registry
    register_versions(small_copy, 1)
    registry.rollout("mortgage_deny", 2, 10)
    assert registry.catalog(["mortgage_deny"]).shares == {"mortgage_deny": 10}
    registry.promote("mortgage_deny", 2, reason="the rollout went well")
    assert registry.catalog(["mortgage_deny"]).shares == {}
    assert [e["action"] for e in registry.history("mortgage_deny")][-2:] == ["promote", "rollout_end"]
    with pytest.raises(ScorehouseError, match="share must be a percentage between 0 and 100"):
        registry.rollout("mortgage_deny", 2, 150)
    with pytest.raises(ScorehouseError, match="is set by `scorehouse rollout"):
        registry.promote("mortgage_deny", 1, alias="rollout")


def test_buckets_are_md5_of_the_key_the_same_in_duckdb_and_python():
    import duckdb

    keys = np.arange(100_000)
    with duckdb.connect() as con:
        got = con.sql(f"select {DUCKDB.bucket('k')} as b from range(100000) t(k) order by k").fetchnumpy()["b"]
    assert got.tolist() == [bucket(int(k)) for k in keys]
    assert abs((got < 5 * BUCKETS // 100).mean() - 0.05) < 0.01  # 5% of keys, within a point
    assert bucket("application-42") == bucket("application-42") and bucket(None) == bucket("None")


def test_a_gray_release_routes_rows_by_key_and_each_row_carries_its_version(small_copy):
    registry = small_copy.registry
    (version,) = register_versions(small_copy, 1)
    registry.rollout("mortgage_deny", version, 20)
    scorer = Session(registry)
    score = engine.predict_sql(scorer, "mortgage_deny", "f", key="application_id")
    version_sql = SqlWriter(scorer, DUCKDB).version_sql("mortgage_deny", "f", "application_id")
    with engine.connect(small_copy.warehouse, registry, read_only=True) as con:
        rows = con.sql(
            f"select application_id, {score} as routed, {version_sql} as version, "
            f"predict_mortgage_deny(struct_pack({FEATURES})) as prod, "
            f"predict('mortgage_deny@{version}', f) as rollout "
            "from features_mortgage f order by application_id"
        ).to_df()
    in_rollout = rows.application_id.map(bucket) < 20 * BUCKETS // 100
    assert 0.15 < in_rollout.mean() < 0.25
    assert (rows["version"] == np.where(in_rollout, version, 1)).all()
    np.testing.assert_allclose(rows["routed"], np.where(in_rollout, rows["rollout"], rows["prod"]), atol=1e-12)
    # no key, or a pinned reference: no routing
    assert "CASE" not in engine.predict_sql(Session(registry), "mortgage_deny", "f")
    assert "md5" not in engine.predict_sql(Session(registry), "mortgage_deny@1", "f", key="application_id")


def test_gc_removes_only_versions_no_alias_holds_or_held_recently(small_copy):
    registry = small_copy.registry
    register_versions(small_copy, 3)  # 2, 3, 4
    registry.promote("mortgage_deny", 2)
    registry.promote("mortgage_deny", 2, alias="candidate")
    registry.promote("mortgage_deny", 1, alias="candidate")  # candidate: 2 -> 1, and rolls back to 2
    registry.rollout("mortgage_deny", 3, 5)
    week = registry.gc("mortgage_deny", keep_days=7)
    assert week.removed == [] and week.aliased == [1, 2, 3]
    assert week.kept == {4: "created within 7 days"}
    assert registry.gc("mortgage_deny", keep_days=0, dry_run=True).removed == [4]
    assert registry.versions("mortgage_deny") == [1, 2, 3, 4]
    dry = small_copy.cli("gc", "--keep-days", "0", "--dry-run", check=True).stdout
    assert "mortgage_deny: would remove version(s) 4" in dry
    assert registry.gc("mortgage_deny", keep_days=0).removed == [4]
    registry.promote("mortgage_deny", 1)  # prod: 2 -> 1, which ends the rollout of 3
    after = registry.gc("mortgage_deny", keep_days=0)
    assert after.removed == [3] and after.kept == {2: "candidate rolls back to it; prod rolls back to it"}
    assert registry.versions("mortgage_deny") == [1, 2]
    assert registry.aliases("mortgage_deny") == {"prod": 1, "candidate": 1}
    assert [e["from"] for e in registry.history("mortgage_deny") if e["action"] == "gc"] == [4, 3]
    assert not list((small_copy.registry_path / "mortgage_deny").glob(".staging-*"))


PROMOTER = """
import sys
from scorehouse.registry import Registry
registry = Registry(sys.argv[1])
for round in range(40):
    for version in (2, 3, 4, 5):
        try:
            registry.promote("mortgage_deny", version)
        except Exception as exc:  # gc removed it first: refused, nothing half-done
            assert "does not exist" in str(exc) or "was removed by gc" in str(exc), exc
"""
COLLECTOR = """
import sys
from scorehouse.registry import Registry
registry = Registry(sys.argv[1])
for round in range(40):
    registry.gc("mortgage_deny", keep_days=0)
"""


def test_a_concurrent_promote_and_gc_lose_nothing(small_copy):
    register_versions(small_copy, 4)
    env = {**os.environ, **small_copy.env}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(small_copy.registry_path)], env=env, stderr=subprocess.PIPE, text=True
        )
        for code in (PROMOTER, COLLECTOR)
    ]
    assert [run.wait(timeout=300) for run in runs] == [0, 0], [run.stderr.read() for run in runs]
    registry = Registry(small_copy.registry_path)
    aliases = registry.aliases("mortgage_deny")
    assert aliases["prod"] in registry.versions("mortgage_deny")  # never an alias at a removed version
    assert registry.verify("mortgage_deny", aliases["prod"]) == []
    promoted = [e["to"] for e in registry.history("mortgage_deny") if e["action"] == "promote"]
    removed = [e["from"] for e in registry.history("mortgage_deny") if e["action"] == "gc"]
    assert aliases["prod"] == promoted[-1] and aliases["prod"] not in removed[-1:]


def alias_state(workspace, model="mortgage_deny") -> tuple[bytes, bytes]:
    """The alias file and the audit log, byte for byte."""
    folder = workspace.registry_path / model
    return (folder / "aliases.json").read_bytes(), (folder / "audit.jsonl").read_bytes()


def test_gc_keeps_the_version_rollback_returns_to_whatever_its_age(small_copy):
    register_versions(small_copy, 1)  # 2
    small_copy.cli("promote", "mortgage_deny", "2", check=True)
    gc = small_copy.cli("gc", "mortgage_deny", "--keep-days", "0", check=True).stdout
    assert gc.splitlines() == [
        "mortgage_deny: nothing to remove",
        "mortgage_deny: kept version 1 (prod rolls back to it)",
    ]
    assert small_copy.registry.versions("mortgage_deny") == [1, 2]
    assert "prod -> version 1 (was 2)" in small_copy.cli("rollback", "mortgage_deny", check=True).stdout
    assert small_copy.registry.resolve("mortgage_deny") == ("mortgage_deny", 1)
    assert small_copy.registry.verify("mortgage_deny", 1) == []


def test_after_gc_rollback_goes_one_step_back_and_further_only_within_keep_days(small_copy):
    """prod went 1 -> 2 -> 3 just now. Within 7 days every step back is kept; with 0 days only the version
    prod rolls back to (2); the second rollback, to 1, is then refused and changes nothing."""
    registry = small_copy.registry
    register_versions(small_copy, 2)  # 2, 3
    small_copy.cli("promote", "mortgage_deny", "2", check=True)
    small_copy.cli("promote", "mortgage_deny", "3", check=True)
    week = small_copy.cli("gc", "mortgage_deny", "--dry-run", check=True).stdout.splitlines()
    assert week == [
        "mortgage_deny: nothing to remove",
        "mortgage_deny: kept version 1 (prod pointed at it within 7 days)",
        "mortgage_deny: kept version 2 (prod rolls back to it; prod pointed at it within 7 days)",
    ]
    assert (
        "mortgage_deny: removed version(s) 1"
        in small_copy.cli("gc", "mortgage_deny", "--keep-days", "0", check=True).stdout
    )
    assert registry.versions("mortgage_deny") == [2, 3]
    assert "prod -> version 2 (was 3)" in small_copy.cli("rollback", "mortgage_deny", check=True).stdout
    before = alias_state(small_copy)
    refused = small_copy.cli("rollback", "mortgage_deny")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "error: Model 'mortgage_deny': alias 'prod' would go back to version 1, which no longer exists "
        f"(removed by gc on {today()}); "
        "versions: 2, 3; promote an existing version instead: scorehouse promote mortgage_deny VERSION"
    ]
    assert alias_state(small_copy) == before and registry.resolve("mortgage_deny") == ("mortgage_deny", 2)


def test_rollback_to_a_version_deleted_by_hand_is_refused_and_so_is_the_automatic_one(small_copy):
    import shutil

    registry = small_copy.registry
    register_versions(small_copy, 1)  # 2
    registry.promote("mortgage_deny", 2)
    shutil.rmtree(small_copy.registry_path / "mortgage_deny" / "versions" / "1")
    before = alias_state(small_copy)
    refused = small_copy.cli("rollback", "mortgage_deny")
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        "error: Model 'mortgage_deny': alias 'prod' would go back to version 1, which no longer exists; "
        "versions: 2; promote an existing version instead: scorehouse promote mortgage_deny VERSION"
    ]
    assert alias_state(small_copy) == before
    # the build's quality gate failed for prod's version 2: the monitor keeps prod and says why
    target = failed_quality_gate(small_copy)
    monitored = small_copy.cli("monitor", "--target-path", str(target), "--rollback-on-error")
    assert monitored.returncode == 1, monitored.stderr
    assert monitored.stdout.splitlines()[-1] == (
        "mortgage_deny: prod kept at version 2: Model 'mortgage_deny': alias 'prod' would go back to version 1, "
        "which no longer exists; versions: 2; promote an existing version instead: "
        "scorehouse promote mortgage_deny VERSION"
    )
    assert alias_state(small_copy) == before
    with pytest.raises(ScorehouseError, match="would go back to version 1, which no longer exists"):
        registry.rollback("mortgage_deny", action="automatic_rollback", expect=2)
    assert alias_state(small_copy) == before


def test_gc_keeps_and_rolls_back_the_rollout_alias_keeping_its_share(small_copy):
    registry = small_copy.registry
    register_versions(small_copy, 2)  # 2, 3
    small_copy.cli("rollout", "mortgage_deny", "2", "--share", "10", check=True)
    small_copy.cli("rollout", "mortgage_deny", "3", "--share", "10", check=True)
    gc = small_copy.cli("gc", "mortgage_deny", "--keep-days", "0", check=True).stdout
    assert "mortgage_deny: kept version 2 (rollout rolls back to it)" in gc
    assert registry.versions("mortgage_deny") == [1, 2, 3]
    assert (
        "rollout -> version 2 (was 3)"
        in small_copy.cli("rollback", "mortgage_deny", "--alias", "rollout", check=True).stdout
    )
    assert registry.aliases("mortgage_deny") == {"prod": 1, "rollout": 2}
    assert registry.catalog(["mortgage_deny"]).shares == {"mortgage_deny": 10}


def test_gc_keeps_what_the_latest_build_scored_with_and_what_the_serving_file_serves(small_copy):
    """Versions 2-5, none aliased: the latest build in scoring_runs scored with 3 (an older one with 2), the
    published mart holds rows of 4; gc keeps 3 and 4 and says why."""
    registry = small_copy.registry
    register_versions(small_copy, 4)  # 2, 3, 4, 5
    with duckdb.connect(str(small_copy.warehouse)) as con:  # the columns record_scoring_runs writes
        con.execute(
            "create table scoring_runs (invocation_id varchar, scored_relation varchar, "
            "input_relation varchar, model_name varchar, model_version int, model_ref varchar, "
            "artifact_sha256 varchar, method varchar, rows_in bigint, rows_out bigint, "
            "input_fingerprint varchar, schema_hash varchar, started_at timestamp, finished_at timestamp)"
        )
        for invocation, version, finished in (("b1c0", 2, "2026-11-01 06:00:03"), ("b2c0", 3, "2026-11-02 06:00:03")):
            con.execute(
                "insert into scoring_runs values (?, 'mart_mortgage_risk', 'features_mortgage', "
                "'mortgage_deny', ?, 'mortgage_deny', ?, 'onnx', 2380, 2380, ?, ?, "
                "cast(? as timestamp) - interval 3 second, ?)",
                [invocation, version, "ab" * 32, "cd" * 32, "ef" * 16, finished, finished],
            )
    with engine.connect(small_copy.serving, registry) as con:
        con.execute(f"attach '{small_copy.warehouse}' as warehouse (read_only)")
        con.execute(
            "create table mart_mortgage_risk as select application_id, "
            "predict('mortgage_deny@4', f) as deny_probability, 'mortgage_deny' as model_name, "
            "4 as model_version, current_timestamp as scored_at from warehouse.features_mortgage f"
        )
        con.execute(
            "create table scorehouse_publication as select 'mart_mortgage_risk' as mart, count(*) as rows, "
            "'b2c0' as invocation_id, current_timestamp as published_at from mart_mortgage_risk"
        )
    dry = small_copy.cli("gc", "--keep-days", "0", "--dry-run", check=True).stdout.splitlines()
    assert dry == [
        "mortgage_deny: would remove version(s) 2, 5",
        "mortgage_deny: kept version 3 (recorded by the latest build in scoring_runs)",
        "mortgage_deny: kept version 4 (served by mart_mortgage_risk)",
        "mortgage_logit: nothing to remove",
    ]
    # no warehouse there: nothing is known to be in use, and gc says so
    elsewhere = small_copy.cli(
        "--warehouse",
        str(small_copy.root / "nowhere.duckdb"),
        "gc",
        "mortgage_deny",
        "--keep-days",
        "0",
        "--dry-run",
        check=True,
    )
    assert elsewhere.stdout.splitlines() == ["mortgage_deny: would remove version(s) 2, 3, 4, 5"]
    assert "nowhere.duckdb does not exist" in elsewhere.stderr
    assert "removed version(s) 2, 5" in small_copy.cli("gc", "mortgage_deny", "--keep-days", "0", check=True).stdout
    assert registry.versions("mortgage_deny") == [1, 3, 4]


@pytest.mark.parametrize("days", ["nan", "inf", "-1"])
def test_gc_keep_days_must_be_a_finite_number_not_below_zero(small_copy, days):
    register_versions(small_copy, 1)  # 2, never aliased
    refused = small_copy.cli("gc", "mortgage_deny", "--keep-days", days)
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        f"error: --keep-days must be a finite number of days >= 0, found {days}"
    ]
    assert small_copy.registry.versions("mortgage_deny") == [1, 2]


def test_gc_with_keep_days_beyond_the_calendar_keeps_everything(small_copy):
    register_versions(small_copy, 1)  # 2, never aliased
    assert small_copy.cli("gc", "mortgage_deny", "--keep-days", "1e12", check=True).stdout.splitlines()[0] == (
        "mortgage_deny: nothing to remove"
    )
    assert small_copy.registry.versions("mortgage_deny") == [1, 2]


def test_gc_of_an_unknown_model_lists_the_known_ones_and_creates_nothing(small_copy):
    refused = small_copy.cli("gc", "mortgage_dney", "--dry-run")
    assert refused.returncode == 1 and refused.stderr.splitlines() == [
        f"error: Model 'mortgage_dney' not found in registry {small_copy.registry_path}; "
        "known models: mortgage_deny, mortgage_logit"
    ]
    assert not (small_copy.registry_path / "mortgage_dney").exists()


def test_gc_keep_days_beyond_the_calendar_keeps_everything(small_copy):
    register_versions(small_copy, 1)  # 2, never aliased: kept, as created within 1e12 days
    kept = small_copy.cli("gc", "mortgage_deny", "--keep-days", "1e12", check=True)
    assert "Traceback" not in kept.stderr and small_copy.registry.versions("mortgage_deny") == [1, 2]
