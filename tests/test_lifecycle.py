"""After deployment: the audit trail of alias moves, gray release by key, and retention."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import udfs.duckdb as engine
from udfs.errors import ScorehouseError
from udfs.registry import Registry
from udfs.scoring import Scorer
from udfs.sql import BUCKETS, DUCKDB, bucket

FEATURES = "dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, self, single, condominium"


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
    assert moves == [("promote", "prod", None, 1, None, None),
                     ("promote", "prod", 1, 2, None, "better AUC on March"),
                     ("rollout", "rollout", None, 3, 5.0, "gray release"),
                     ("rollback", "prod", 2, 1, None, "complaints")]
    assert all(e["user"] and e["at"] and e["command"] for e in events)
    assert "scorehouse rollback mortgage_deny --reason complaints" in events[-1]["command"]
    shown = small_copy.cli("history", "mortgage_deny", check=True).stdout
    assert "rollback" in shown and "complaints" in shown and "rollout 5%" in shown
    # the rolled-back version stays in the record, and the audit log was only ever appended to
    assert any(e["to"] == 2 for e in events)
    assert json.loads(small_copy.cli("history", "mortgage_deny", "--json", check=True).stdout) == events


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
    scorer = Scorer(registry)
    score = engine.predict_sql(scorer, "mortgage_deny", "f", key="application_id")
    version_sql = scorer.version_sql("mortgage_deny", "f", "application_id")
    with engine.connect(small_copy.warehouse, registry, read_only=True) as con:
        rows = con.sql(f"select application_id, {score} as routed, {version_sql} as version, "
                       f"predict_mortgage_deny(struct_pack({FEATURES})) as prod, "
                       f"predict('mortgage_deny@{version}', f) as rollout "
                       "from features_mortgage f order by application_id").to_df()
    in_rollout = rows.application_id.map(bucket) < 20 * BUCKETS // 100
    assert 0.15 < in_rollout.mean() < 0.25
    assert (rows["version"] == np.where(in_rollout, version, 1)).all()
    np.testing.assert_allclose(rows["routed"], np.where(in_rollout, rows["rollout"], rows["prod"]), atol=1e-12)
    # no key, or a pinned reference: no routing
    assert "CASE" not in engine.predict_sql(Scorer(registry), "mortgage_deny", "f")
    assert "md5" not in engine.predict_sql(Scorer(registry), "mortgage_deny@1", "f", key="application_id")


def test_gc_removes_only_versions_no_alias_holds_or_held_recently(small_copy):
    registry = small_copy.registry
    register_versions(small_copy, 3)  # 2, 3, 4
    registry.promote("mortgage_deny", 2)
    registry.promote("mortgage_deny", 1)  # 2 was prod a moment ago
    registry.rollout("mortgage_deny", 3, 5)
    assert registry.gc("mortgage_deny", keep_days=7) == []  # 2 aliased and 4 created within 7 days
    assert registry.gc("mortgage_deny", keep_days=0, dry_run=True) == [2, 4]
    assert registry.versions("mortgage_deny") == [1, 2, 3, 4]
    dry = small_copy.cli("gc", "--keep-days", "0", "--dry-run", check=True).stdout
    assert "mortgage_deny: would remove version(s) 2, 4" in dry
    assert registry.gc("mortgage_deny", keep_days=0) == [2, 4]
    assert registry.versions("mortgage_deny") == [1, 3] and registry.aliases("mortgage_deny") == {"prod": 1, "rollout": 3}
    assert [e["from"] for e in registry.history("mortgage_deny") if e["action"] == "gc"] == [2, 4]
    assert not list((small_copy.registry_path / "mortgage_deny").glob(".staging-*"))


PROMOTER = """
import sys
from udfs.registry import Registry
registry = Registry(sys.argv[1])
for round in range(40):
    for version in (2, 3, 4, 5):
        try:
            registry.promote("mortgage_deny", version)
        except Exception as exc:  # gc removed it first: refused, nothing half-done
            assert "does not exist" in str(exc), exc
"""
COLLECTOR = """
import sys
from udfs.registry import Registry
registry = Registry(sys.argv[1])
for round in range(40):
    registry.gc("mortgage_deny", keep_days=0)
"""


def test_a_concurrent_promote_and_gc_lose_nothing(small_copy):
    register_versions(small_copy, 4)
    env = {**os.environ, **small_copy.env}
    runs = [subprocess.Popen([sys.executable, "-c", code, str(small_copy.registry_path)], env=env,
                             stderr=subprocess.PIPE, text=True) for code in (PROMOTER, COLLECTOR)]
    assert [run.wait(timeout=300) for run in runs] == [0, 0], [run.stderr.read() for run in runs]
    registry = Registry(small_copy.registry_path)
    aliases = registry.aliases("mortgage_deny")
    assert aliases["prod"] in registry.versions("mortgage_deny")  # never an alias at a removed version
    assert registry.verify("mortgage_deny", aliases["prod"]) == []
    promoted = [e["to"] for e in registry.history("mortgage_deny") if e["action"] == "promote"]
    removed = [e["from"] for e in registry.history("mortgage_deny") if e["action"] == "gc"]
    assert aliases["prod"] == promoted[-1] and aliases["prod"] not in removed[-1:]
