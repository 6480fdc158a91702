"""Observability: JSON log events tied to dbt's invocation, scoring_runs with an input fingerprint, the per-row
input hash, `scorehouse reproduce`, and `scorehouse metrics` scraped by a real Prometheus."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from scorehouse.fingerprint import fingerprint, fingerprint_select, row_hash, row_hash_sql
from scorehouse.schema import Feature
from scorehouse.sql import DUCKDB

from helpers import ROOT, run_cli

FEATURES = [Feature("x", "numeric"), Feature("c", "categorical"), Feature("b", "categorical")]
# the values whose text differs between engines and libraries: ties in decimal rounding (2^-15), float32
# subnormals and overflow, NaN, signed zero, non-ASCII text, booleans, NULLs
EDGE_ROWS = [
    (1.5, "a", True),
    (0.1, None, False),
    (None, "é", None),
    (-3.0517578125e-05, "b", True),
    (1e39, "x", True),
    (-1e-45, "y", False),
    (float("nan"), "z", True),
    (-0.0, "", True),
    (123456789.0, "q", False),
    (1.401298464324817e-45, "s", True),
    (16777217.0, "t", True),
    (3.4028235e38, "🙂", False),
    (-math.inf, "u", None),
]


def edge_table(con, rows=EDGE_ROWS) -> None:
    con.execute("create or replace table t (x double, c varchar, b boolean)")
    con.executemany("insert into t values (?, ?, ?)", rows)


def test_the_row_hash_in_duckdb_equals_the_documented_one_in_python():
    with duckdb.connect() as con:
        edge_table(con)
        rows = con.sql(f"select x, c, b, {row_hash_sql(FEATURES, '', DUCKDB)} as h from t").fetchall()
    for x, c, b, h in rows:
        assert h == row_hash({"x": x, "c": c, "b": b}, FEATURES), (x, c, b)
    assert row_hash({"x": 1.5, "c": "a", "b": True}, FEATURES) == row_hash(
        {"x": 1.5000000001, "c": "a", "b": True}, FEATURES
    )  # the same float32


def test_the_fingerprint_ignores_row_order_and_changes_with_one_value():
    with duckdb.connect() as con:
        edge_table(con)
        first = con.sql(fingerprint_select(FEATURES, DUCKDB, "t")).fetchall()[0]
        edge_table(con, list(reversed(EDGE_ROWS)))
        reordered = con.sql(fingerprint_select(FEATURES, DUCKDB, "t")).fetchall()[0]
        edge_table(con, [(0.1000001, *EDGE_ROWS[1][1:]) if i == 1 else r for i, r in enumerate(EDGE_ROWS)])
        changed = con.sql(fingerprint_select(FEATURES, DUCKDB, "t")).fetchall()[0]
        edge_table(con, EDGE_ROWS + EDGE_ROWS[:1])
        duplicated = con.sql(fingerprint_select(FEATURES, DUCKDB, "t")).fetchall()[0]
    assert first == reordered and first[:2] == fingerprint([dict(zip("xcb", r)) for r in EDGE_ROWS], FEATURES)
    assert changed[1] != first[1] and changed[0] == first[0] and changed[2] == first[2]
    assert duplicated[0] == first[0] + 1 and duplicated[1] != first[1]
    assert len(first[1]) == 16 and len(first[2]) == 32


def test_cli_events_are_json_lines_with_one_trace_id_per_command(small_copy):
    """A command's events (here: scoring through predict()) as JSON lines, all with the command's trace id."""
    result = run_cli(
        "sql",
        "select count(predict('mortgage_deny', f)) from features_mortgage f",
        env={**small_copy.env, "SCOREHOUSE_LOG_FORMAT": "json"},
        check=True,
    )
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert events and len({e["trace_id"] for e in events}) == 1
    kinds = {e["event"] for e in events}
    assert {"resolved", "loaded"} <= kinds
    loaded = next(e for e in events if e["event"] == "loaded")
    assert loaded["model"] == "mortgage_deny" and len(loaded["sha256"]) == 64 and loaded["version"] == 1


def test_a_dbt_build_logs_versions_methods_and_rows_under_its_invocation_id(workspace):
    result = subprocess.run(
        workspace.dbt_command("run", "--select", "mart_mortgage_risk", "mart_diamond_prices"),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, **workspace.env, "SCOREHOUSE_LOG_FORMAT": "json"},
    )
    assert result.returncode == 0, result.stdout[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line the package wrote parses
    invocation = json.loads((workspace.root / "target" / "run_results.json").read_text())["metadata"]["invocation_id"]
    assert {e["trace_id"] for e in events} == {invocation}
    # the demo GBT scores in steps (SQL: no onnxruntime call to count), the HGB row by row through onnxruntime
    forms = {e["model"]: e for e in events if e["event"] == "table_form"}
    assert forms["mortgage_deny"]["method"] == "steps" and forms["mortgage_deny"]["version"] == 1
    assert forms["diamond_price"]["method"] == "row by row" and "tree nodes" in forms["diamond_price"]["reason"]
    scored = {e["model"]: e for e in events if e["event"] == "scored"}
    assert set(scored) == {"diamond_price"}
    assert scored["diamond_price"]["rows"] == 53940 and scored["diamond_price"]["seconds"] > 0
    methods = [e for e in events if e["event"] == "scoring_method"]
    assert {e["model"] for e in methods} == {"diamond_price"} and all(e["reason"] for e in methods)


def test_scoring_runs_record_the_version_its_sha256_and_the_input_fingerprint(built):
    runs = built.query(
        "select * from scoring_runs where invocation_id = (select max_by(invocation_id, finished_at) "
        "from scoring_runs) order by scored_relation"
    )
    assert list(runs.scored_relation) == ["mart_diamond_prices", "mart_mortgage_risk"]
    for run in runs.itertuples():
        card = built.registry.card(run.model_name, run.model_version)
        assert run.artifact_sha256 == card.manifest.onnx_sha256
        features = built.query(f"select * from {run.input_relation}")
        assert run.rows_in == run.rows_out == len(features)
        assert (
            run.input_fingerprint
            == fingerprint(features.astype(object).where(features.notna(), None).to_dict("records"), card.features)[1]
        )
        assert run.finished_at >= run.started_at
    mart = built.query("select application_id, input_hash from mart_mortgage_risk order by application_id")
    features = built.query("select * from features_mortgage order by application_id")
    card = built.registry.card("mortgage_deny", 1)
    for i in (0, 17, len(features) - 1):
        row = {
            k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
            for k, v in features.iloc[i].to_dict().items()
        }
        assert mart.input_hash[i] == row_hash(row, card.features)


def test_reproduce_says_reproduced_and_names_what_differs(workspace):
    workspace.dbt("build")
    ok = workspace.cli("reproduce", "mart_mortgage_risk", "application_id=17")
    assert ok.returncode == 0 and ok.stdout.startswith(
        "reproduced: mart_mortgage_risk application_id=17: deny_probability "
    ), ok.stdout + ok.stderr
    assert "= mortgage_deny version 1 (sha256 " in ok.stdout
    with duckdb.connect(str(workspace.warehouse)) as con:  # the build recorded another artifact, the input moved
        con.execute("update scoring_runs set artifact_sha256 = repeat('0', 64)")
        con.execute("update features_mortgage set lvr = lvr + 0.25 where application_id = 17")
    moved = workspace.cli("reproduce", "mart_mortgage_risk", "application_id=17")
    assert moved.returncode == 1 and moved.stdout.startswith("not reproduced: ")
    lines = moved.stdout.splitlines()
    assert any(
        line.startswith("artifact differs: mortgage_deny version 1's model.onnx is sha256 ")
        and "the build recorded 000000000000…" in line
        for line in lines
    ), moved.stdout
    assert any(line.startswith("input differs: features_mortgage row application_id=17 ") for line in lines)
    assert any(line.startswith("score differs: mortgage_deny version 1 gives ") for line in lines)
    missing = workspace.cli("reproduce", "mart_mortgage_risk", "application_id=999999")
    assert missing.returncode == 1 and missing.stderr.strip() == (
        "error: mart_mortgage_risk has 0 rows where application_id = '999999'; expected one"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60):
    deadline = time.time() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read().decode()
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


def test_prometheus_scrapes_the_drift_of_a_broken_batch_and_fires_the_alert(workspace, tmp_path):
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not prometheus or not promtool:
        pytest.skip("Prometheus is not installed (.ci/run installs Debian's prometheus)")
    from scorehouse.metrics import RULES

    from test_guards import load_broken_batch

    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 3 rules found" in checked.stdout, checked.stdout + checked.stderr
    workspace.dbt("build")
    load_broken_batch()(workspace.root / "broken")
    assert workspace.dbt("build", data_dir=workspace.root / "broken", expect_ok=False).returncode != 0

    port, prom_port = free_port(), free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "scorehouse"), "metrics", "--serve", f"127.0.0.1:{port}"],
        env={**os.environ, **workspace.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{RULES}]\n"
        "scrape_configs:\n  - job_name: scorehouse\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = wait_for(f"http://127.0.0.1:{port}/metrics")
        assert text.endswith("# EOF\n") and 'scorehouse_drift_level{model="mortgage_deny"' in text
        api = f"http://127.0.0.1:{prom_port}/api/v1"
        deadline, drift, alerts = time.time() + 90, [], []
        while time.time() < deadline and not (drift and alerts):
            time.sleep(1)
            try:
                query = urllib.request.quote('scorehouse_drift_level{feature="dir"} == 2')
                drift = json.loads(wait_for(f"{api}/query?query={query}", 5))["data"]["result"]
                alerts = [
                    a
                    for a in json.loads(wait_for(f"{api}/alerts", 5))["data"]["alerts"]
                    if a["labels"]["alertname"] == "ScorehouseDriftError" and a["state"] == "firing"
                ]
            except OSError:
                continue
        assert drift and drift[0]["metric"]["model"] == "mortgage_deny" and drift[0]["value"][1] == "2"
        assert {a["labels"]["feature"] for a in alerts} == {"dir", "lvr", "self"}
    finally:
        for process in (prom, server):
            process.terminate()
            process.wait(timeout=30)


def test_quality_alerts_follow_the_alias_not_a_version_prod_was_rolled_back_from(small_copy, tmp_path):
    """Versions 1 and 2 of mortgage_deny both measured below their holdout in the latest build: the quality alert
    fires for the version prod points at, and, once prod is rolled back to 1, for 1 only (promtool's rule tests,
    on the series `scorehouse metrics` exports)."""
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("Prometheus is not installed (.ci/run installs Debian's prometheus)")
    import yaml

    from scorehouse.metrics import RULES

    candidate = small_copy.candidates["mortgage_deny"]
    small_copy.registry.register(candidate.manifest, candidate.files)
    with duckdb.connect(str(small_copy.warehouse)) as con:  # the columns record_quality_history appends
        con.execute(
            "create table quality_history as select 'build-1' as invocation_id, now() as recorded_at, "
            "'quality_mortgage' as quality_relation, 'mortgage_deny' as model_name, v as model_version, "
            "'week' as window_unit, timestamp '2026-11-30' as window_start, 1000 as rows_scored, "
            "700 as labels_arrived, 0.7 as label_coverage, 'auc' as metric, auc as value, "
            "0.85 as holdout_value, 'higher' as better from (values (1, 0.70), (2, 0.60)) as t(v, auc)"
        )

    def firing(prod: int) -> subprocess.CompletedProcess:
        text = small_copy.cli("metrics", check=True).stdout
        assert f'scorehouse_model_alias{{model="mortgage_deny",alias="prod",version="{prod}"}} 1' in text
        series = [line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")]
        case = tmp_path / f"prod_{prod}.yml"
        auc = {1: "0.700", 2: "0.600"}[prod]
        expected = [
            {
                "exp_labels": {
                    "alertname": "ScorehouseQualityBelowHoldout",
                    "severity": "ticket",
                    "model": "mortgage_deny",
                    "version": str(prod),
                    "metric": "auc",
                },
                "exp_annotations": {
                    "summary": f"mortgage_deny v{prod}: AUC {auc} is more than 0.05 below its holdout",
                    "description": "Measured on the latest window with outcomes (label coverage "
                    "above 20%), for a version prod or a rollout points at.",
                },
            }
        ]
        case.write_text(
            yaml.safe_dump(
                {
                    "rule_files": [str(RULES)],
                    "evaluation_interval": "1m",
                    "tests": [
                        {
                            "interval": "1m",
                            "input_series": [{"series": name, "values": f"{value}x90"} for name, value in series],
                            "alert_rule_test": [
                                {
                                    "eval_time": "75m",
                                    "alertname": "ScorehouseQualityBelowHoldout",
                                    "exp_alerts": expected,
                                }
                            ],
                        }
                    ],
                }
            )
        )
        return subprocess.run([promtool, "test", "rules", str(case)], capture_output=True, text=True)

    small_copy.registry.promote("mortgage_deny", 2)
    result = firing(2)
    assert result.returncode == 0, result.stdout + result.stderr
    small_copy.registry.rollback("mortgage_deny")
    result = firing(1)
    assert result.returncode == 0, result.stdout + result.stderr  # version 2's series stays, its alert does not
