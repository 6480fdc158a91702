"""The scorehouse command, run as a user runs it."""

import json
import os
import re

import pytest

from helpers import SPECS, run_cli


def test_models_table_and_json(built):
    table = built.cli("models", check=True).stdout
    assert "mortgage_deny" in table and "prod->1" in table and "binary" in table
    rows = json.loads(built.cli("models", "--json", check=True).stdout)
    assert {r["model"]: r["aliases"] for r in rows} == {"diamond_price": {"prod": 1}, "mortgage_deny": {"prod": 1}}


def test_show_prints_features_metrics_and_parity(built):
    out = built.cli("show", "mortgage_deny@prod", check=True).stdout
    assert "mortgage_deny version 1 (prod)" in out
    assert "lvr" in out and "DOUBLE" in out and "no, yes" in out and "parity" in out and "auc" in out
    # the demo GBT's 100 trees are too many for one expression: its SQL is checked, predict() uses onnxruntime
    assert re.search(
        r"\n  sql +max \|SQL - library\| \S+ on [\d,]+ holdout rows; predict\(\) scores with: "
        r"duckdb onnxruntime \([\d,]+ tree nodes, more than 300: .*\), spark onnxruntime",
        out,
    ), out
    manifest = json.loads(built.cli("show", "mortgage_deny@1", "--json", check=True).stdout)
    assert manifest["version"] == 1 and manifest["task"] == "binary"


def test_sql_returns_probabilities_from_a_features_table(built):
    out = built.cli(
        "sql",
        "select predict('mortgage_deny', t) as p from features_mortgage t limit 5",
        "--format",
        "json",
        check=True,
    ).stdout
    values = [row["p"] for row in json.loads(out)]
    assert len(values) == 5 and all(0.0 <= v <= 1.0 for v in values)
    mart = built.query("select deny_probability from mart_mortgage_risk order by application_id limit 5")
    ordered = built.cli(
        "sql",
        "select predict('mortgage_deny', t) as p from features_mortgage t order by application_id limit 5",
        "--format",
        "json",
        check=True,
    ).stdout
    # the mart scores in steps (SQL in double), predict() through onnxruntime (float32): within float32's rounding
    assert [r["p"] for r in json.loads(ordered)] == pytest.approx(mart["deny_probability"].tolist(), abs=1e-6)


@pytest.mark.parametrize(
    "query, expected",
    [
        (
            "select predict('mortgage_deny', t) from (select * rename (lvr as lvrr) from features_mortgage) t limit 5",
            "feature 'lvr' is missing from the input; expected features: dir DOUBLE",
        ),
        (
            "select predict('mortgage_dny', t) from features_mortgage t limit 5",
            "Model 'mortgage_dny' not found in registry",
        ),
        (
            "select predict_mortgage_deny(struct_pack(dir, hir, lvr := 'high', ccs, mcs, uria, pbcr, dmi, self, "
            "single, condominium)) from features_mortgage",
            "feature 'lvr' has type VARCHAR, expected DOUBLE",
        ),
    ],
)
def test_sql_errors_are_messages_not_tracebacks(built, query, expected):
    result = built.cli("sql", query)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


def test_interactive_shell(built):
    result = built.cli(
        "sql", stdin="select count(*) as n\nfrom mart_diamond_prices;\nselect predict('nope', 1);\n.quit\n"
    )
    assert result.returncode == 0
    assert "53940" in result.stdout
    assert "Model 'nope' not found" in result.stderr


def test_promote_rollback_and_verify(workspace):
    workspace.train("mortgage_deny", promote=False)
    assert "prod -> version 2 (was 1)" in workspace.cli("promote", "mortgage_deny", "latest", check=True).stdout
    assert "already points at version 2" in workspace.cli("promote", "mortgage_deny", "2", check=True).stdout
    assert "prod -> version 1 (was 2)" in workspace.cli("rollback", "mortgage_deny", check=True).stdout
    failed = workspace.cli("rollback", "mortgage_deny")
    assert failed.returncode == 1 and "no earlier version" in failed.stderr
    report = json.loads(workspace.cli("verify", "--json", check=True).stdout)
    assert [(r["model"], r["version"], r["ok"]) for r in report] == [
        ("diamond_price", 1, True),
        ("diamond_price", None, True),
        ("mortgage_deny", 1, True),
        ("mortgage_deny", 2, True),
        ("mortgage_deny", None, True),
    ]
    assert all("audit_head" in r for r in report if r["version"] is None)

    onnx = workspace.registry_path / "mortgage_deny" / "versions" / "2" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\x00")
    result = workspace.cli("verify", "mortgage_deny")
    assert result.returncode == 1 and "model.onnx failed its sha256 check" in result.stdout
    unknown = workspace.cli("verify", "nope")
    assert unknown.returncode == 1 and "known models" in unknown.stderr


def test_train_command_is_idempotent(workspace, tmp_path):
    # the workspace's version 1 was trained from the demo spec (conftest.trained)
    same = workspace.cli("train", str(SPECS["mortgage_deny"]), "--json", check=True)
    assert json.loads(same.stdout) == [{"model": "mortgage_deny", "version": 1, "created": False}]
    assert "version 1 is up to date" in same.stderr
    changed = tmp_path / "mortgage_deny.yml"
    changed.write_text(SPECS["mortgage_deny"].read_text().replace("seed: 42", "seed: 43"))
    first = workspace.cli("train", str(changed), "--alias", "candidate", "--json", check=True)
    assert json.loads(first.stdout) == [{"model": "mortgage_deny", "version": 2, "created": True}]
    steps = re.findall(r"^mortgage_deny: (\w+) .*: \d+\.\d s$", first.stderr, re.MULTILINE)  # not a terminal
    assert steps == [
        "fitting",
        "exporting",
        "checking",
        "recording",
        "checking",
        "metrics",
    ], first.stderr
    assert "\r" not in first.stderr
    again = workspace.cli("train", str(changed), "--json", check=True)
    assert json.loads(again.stdout) == [{"model": "mortgage_deny", "version": 2, "created": False}]
    assert workspace.registry.aliases("mortgage_deny") == {"prod": 1, "candidate": 2}


def test_a_long_step_writes_a_line_while_it_runs_where_stderr_is_not_a_terminal(monkeypatch, capsys):
    """In a log, a step that runs long says so every PROGRESS_EVERY seconds, then gives its time; a step
    that fails writes no time (the error follows)."""
    import time

    from scorehouse import cli

    monkeypatch.setattr(cli, "PROGRESS_EVERY", 0.05)
    with cli._progress("m: fitting"):
        time.sleep(0.5)
    *running, done = capsys.readouterr().err.splitlines()
    assert running and set(running) == {"m: fitting … 0 s"} and re.fullmatch(r"m: fitting: \d+\.\d s", done), running
    with pytest.raises(ValueError), cli._progress("m: exporting"):
        raise ValueError("broken")
    assert capsys.readouterr().err == ""


def test_bad_spec_is_an_error_message(tmp_path):
    spec = tmp_path / "bad.yml"
    spec.write_text("name: m\ntask: ranking\n")
    result = run_cli("--registry", str(tmp_path / "reg"), "train", str(spec))
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_train_shows_each_long_step_in_a_terminal_and_records_its_time(small_copy, tmp_path):
    import os
    import pty
    import re
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    spec = yaml.safe_load(SPECS["mortgage_deny"].read_text())
    spec["estimator"]["params"]["n_estimators"] = 40
    path = tmp_path / "spec.yml"
    path.write_text(yaml.safe_dump(spec))
    terminal, stderr = pty.openpty()
    train = subprocess.Popen(
        [str(Path(sys.executable).parent / "scorehouse"), "train", str(path)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, **small_copy.env},
    )
    os.close(stderr)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        shown += chunk
    assert train.wait(timeout=300) == 0
    text = shown.decode()
    for label in (
        "fitting gradient_boosting on 1785 rows",
        "exporting to ONNX",
        "checking onnxruntime",
        "recording what explains each score",
        "checking its SQL against the library",
        "metrics and training profile",
    ):
        assert re.search(re.escape(label) + r".*: \d+\.\d s", text), (label, text)
    seconds = small_copy.registry.card("mortgage_deny", 2).manifest.registration_seconds
    assert set(seconds) == {"fit", "export", "parity", "explain", "sql", "profile"} and min(seconds.values()) >= 0
    assert "registered  in fit" in small_copy.cli("show", "mortgage_deny@2", check=True).stdout


def test_sql_output_cut_short_by_its_reader_ends_quietly(small_copy):
    """`scorehouse sql ... | head -1`: the reader stops reading; no traceback, the exit status of SIGPIPE."""
    import subprocess
    import sys
    from pathlib import Path

    for output_format in ("csv", "json", "table"):
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "scorehouse"),
                "sql",
                "select * from features_mortgage, range(20)",
                "--format",
                output_format,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **small_copy.env},
        )
        first = process.stdout.readline()
        process.stdout.close()  # as `head -1` does
        stderr = process.stderr.read().decode()
        assert process.wait(timeout=120) == 141 and first and stderr == "", (output_format, stderr[-2000:])
