"""Readers while writing: BI tools read the serving file, which each build replaces whole."""

import json
import subprocess
import sys

import pandas as pd

# A BI tool polling the serving file, in one of two ways: "hold" keeps one connection open from the start
# (it must go on reading the publication it opened); "poll" opens a fresh connection each time (it must
# see each new publication). Every poll checks every published mart against the publication record:
# all its rows, one build's scores. (DuckDB shares one open file among a process's connections, so a
# process sees a new publication once all its connections to the old one are closed.)
READER = """
import json, os, sys, time
import duckdb

path, stop, mode = sys.argv[1:4]
held = duckdb.connect(path, read_only=True) if mode == "hold" else None
seen, polls = set(), 0

def check(con):
    published = con.sql("select mart, rows, invocation_id from scorehouse_publication").fetchall()
    assert published, "no publication record"
    for mart, rows, invocation in published:
        n, builds, unscored = con.sql(f"select count(*), count(distinct scored_at), count(*) - count(model_version) "
                                      f"from {mart}").fetchall()[0]
        assert (n, builds, unscored) == (rows, 1, 0), (mart, invocation, n, rows, builds, unscored)
    return {invocation for _, _, invocation in published}

while not os.path.exists(stop):
    if held is not None:
        seen |= check(held)
    else:
        with duckdb.connect(path, read_only=True) as con:
            seen |= check(con)
    polls += 1
    time.sleep(0.05)
print(json.dumps({"polls": polls, "publications": sorted(seen)}))
"""


def test_a_reader_polls_the_serving_file_through_three_builds(built, tmp_path):
    workspace = built.copy(tmp_path / "ws")
    stop = tmp_path / "stop"
    publications = [workspace.query("select distinct invocation_id from scorehouse_publication", workspace.serving)]
    readers = {
        mode: subprocess.Popen(
            [sys.executable, "-c", READER, str(workspace.serving), str(stop), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in ("hold", "poll")
    }
    try:
        for _ in range(3):  # the held connection and the polls never stop a build
            workspace.dbt("build", "--select", "tag:scoring")
            publications.append(
                workspace.query("select distinct invocation_id from scorehouse_publication", workspace.serving)
            )
    finally:
        stop.touch()
        outputs = {mode: reader.communicate(timeout=120) for mode, reader in readers.items()}
    for mode, reader in readers.items():
        assert reader.returncode == 0, (mode, outputs[mode][1][-3000:])  # no error, never a half-written mart
    reports = {mode: json.loads(out) for mode, (out, _) in outputs.items()}
    published = [p.invocation_id.item() for p in publications]
    assert len(set(published)) == 4  # each build published once, whole
    assert reports["hold"]["publications"] == published[:1], reports  # the open connection kept its snapshot
    assert set(reports["poll"]["publications"]) >= set(published[1:3]), reports  # new connections saw each build
    assert min(report["polls"] for report in reports.values()) > 10, reports
    # readers get the warehouse's marts as the last build left them, and a record of them
    marts = {"mart_mortgage_risk": "application_id", "mart_diamond_prices": "diamond_id"}
    for mart, key in marts.items():
        served = workspace.query(f"select * from {mart} order by {key}", workspace.serving)
        pd.testing.assert_frame_equal(served, workspace.query(f"select * from {mart} order by {key}"))
    record = workspace.query("select mart, rows from scorehouse_publication", workspace.serving)
    assert dict(zip(record.mart, record.rows)) == {
        mart: workspace.query(f"select count(*) as n from {mart}").n[0] for mart in marts
    }
    assert sorted(p.name for p in workspace.serving.parent.iterdir()) == [  # no staged file left behind
        "scorehouse.duckdb",
        "scorehouse_serving.duckdb",
    ]


def test_a_build_without_published_models_publishes_nothing(trained):
    assert trained.warehouse.exists() and not trained.serving.exists()  # built with --exclude tag:scoring
