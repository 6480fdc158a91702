"""Hardening: concurrent registry writers, parallel dbt threads and a killed build: complete answers, nothing lost."""

import json
import subprocess
import sys
import time

import pandas as pd

from udfs.registry import Registry

WRITERS = 20

# Each writer waits for the start file, then registers a version and moves two aliases to it.
WRITER = """
import json, sys, time
from pathlib import Path
from udfs.registry import Registry

root, payload, start = sys.argv[1:4]
manifest = json.loads(Path(payload, "manifest.json").read_text())
files = {p.name: p.read_bytes() for p in Path(payload, "files").iterdir()}
while not Path(start).exists():
    time.sleep(0.001)
registry = Registry(root)
version = registry.register(manifest, files)
registry.promote(manifest["name"], version)
registry.promote(manifest["name"], version, "candidate")
print(version)
"""


def test_twenty_processes_register_and_promote_at_once(trained, tmp_path):
    candidate = trained.candidates["mortgage_deny"]
    payload = tmp_path / "payload"
    (payload / "files").mkdir(parents=True)
    (payload / "manifest.json").write_text(json.dumps(candidate.manifest))
    for name, data in candidate.files.items():
        (payload / "files" / name).write_bytes(data)
    root, start = tmp_path / "registry", tmp_path / "start"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(payload), str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(WRITERS)]
    time.sleep(2)  # every writer imported and waiting
    start.touch()
    outputs = [w.communicate(timeout=300) for w in writers]
    assert [w.returncode for w in writers] == [0] * WRITERS, [err for _, err in outputs]

    registry = Registry(root)
    assert sorted(int(out) for out, _ in outputs) == list(range(1, WRITERS + 1))  # no version lost or shared
    assert registry.versions("mortgage_deny") == list(range(1, WRITERS + 1))
    for version in registry.versions("mortgage_deny"):
        assert registry.verify("mortgage_deny", version) == [], version  # complete: every hash and the sample
    aliases = json.loads((root / "mortgage_deny" / "aliases.json").read_text())
    for alias in ("prod", "candidate"):
        assert aliases[alias]["version"] in range(1, WRITERS + 1)
        assert sorted(aliases[alias]["history"]) == list(range(1, WRITERS + 1))  # every move recorded once
        assert aliases[alias]["history"][-1] == aliases[alias]["version"]
    leftovers = [p.name for p in (root / "mortgage_deny").iterdir() if p.name not in ("versions", "aliases.json")]
    assert all(name.startswith(".lock") for name in leftovers), leftovers


def test_dbt_with_eight_threads_scores_as_one_thread_does(workspace):
    marts = {"mart_mortgage_risk": "application_id", "mart_diamond_prices": "diamond_id"}

    def scored():
        return {m: workspace.query(f"select * exclude (scored_at) from {m} order by {key}") for m, key in marts.items()}

    workspace.dbt("build", "--select", "tag:scoring", "--threads", "1")
    one = scored()
    workspace.dbt("build", "--select", "tag:scoring", "--threads", "8")
    eight = scored()
    for mart in marts:
        assert len(eight[mart]) == len(one[mart]) > 0
        pd.testing.assert_frame_equal(eight[mart], one[mart], check_exact=True)


def test_a_build_killed_while_scoring_leaves_the_previous_marts_and_the_next_build_succeeds(built, tmp_path):
    import os
    import signal

    from conftest import ROOT

    workspace = built.copy(tmp_path / "ws")
    marts = {"mart_mortgage_risk": "application_id", "mart_diamond_prices": "diamond_id"}

    def read():
        return {m: workspace.query(f"select * from {m} order by {key}") for m, key in marts.items()}

    before = read()
    build = subprocess.Popen(workspace.dbt_command("build", "--select", "tag:scoring", "--threads", "1"),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                             env={**os.environ, **workspace.env})
    started = None
    for line in build.stdout:  # kill half a second after the first mart starts scoring
        if "START sql table model main.mart_" in line:
            started = line
            break
    assert started is not None, "dbt ended before a mart started"
    time.sleep(0.5)
    build.send_signal(signal.SIGKILL)
    build.wait(timeout=60)
    assert build.returncode == -signal.SIGKILL, started
    after = read()  # readable, and exactly the previous marts
    for mart in marts:
        pd.testing.assert_frame_equal(after[mart], before[mart])
    workspace.dbt("build", "--select", "tag:scoring")
    rebuilt = read()
    for mart in marts:
        pd.testing.assert_frame_equal(rebuilt[mart].drop(columns="scored_at"), before[mart].drop(columns="scored_at"))
