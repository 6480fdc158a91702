"""Real `dbt build` runs on a temporary DuckDB warehouse, scores checked against scikit-learn."""

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

from scorehouse.registration.spec import Split

from helpers import FEATURE_TABLES

pytestmark = pytest.mark.dbt


def test_mortgage_mart_equals_scikit_learn(built):
    features = built.query("select * from features_mortgage order by application_id")
    mart = built.query("select * from mart_mortgage_risk order by application_id")
    assert len(mart) == len(features) == 2381
    assert mart["application_id"].tolist() == features["application_id"].tolist()
    expected = built.sklearn_scores("mortgage_deny", features)
    assert_allclose(mart["deny_probability"], expected["score"], atol=1e-5, rtol=0)
    assert (mart["predicted_deny"] == (mart["deny_probability"] >= 0.5)).all()
    assert set(mart["model_name"]) == {"mortgage_deny"}
    assert set(mart["model_version"]) == {built.registry.aliases("mortgage_deny")["prod"]}
    assert mart["scored_at"].notna().all()


def test_each_application_predicted_denied_carries_its_reasons_in_words(built):
    """deny_reasons: of the top three contributions to the deny score, those that pushed it up, described
    with the project's var, in order; NULL for applications not predicted denied."""
    import yaml

    from scorehouse.duckdb import connect

    from helpers import PROJECT

    descriptions = yaml.safe_load((PROJECT / "dbt_project.yml").read_text())["vars"]["mortgage_feature_descriptions"]
    mart = built.query("select application_id, predicted_deny, deny_reasons from mart_mortgage_risk order by 1")
    con = connect(built.warehouse, registry=built.registry_path, read_only=True)
    explained = dict(
        con.sql("select application_id, explain('mortgage_deny', f, 3) from features_mortgage f").fetchall()
    )
    con.close()
    assert mart.predicted_deny.sum() > 100 and mart.deny_reasons.isna().tolist() == (~mart.predicted_deny).tolist()
    for row in mart[mart.predicted_deny].itertuples():
        up = [c for c in explained[row.application_id]["contributions"] if c["contribution"] > 0]
        assert row.deny_reasons == "; ".join(f"{descriptions[c['feature']]} ({c['value'] or 'missing'})" for c in up)
    assert any("denied mortgage insurance (yes)" in text for text in mart.deny_reasons.dropna())


def test_diamond_mart_equals_scikit_learn(built):
    features = built.query("select * from features_diamonds order by diamond_id")
    mart = built.query("select * from mart_diamond_prices order by diamond_id")
    assert len(mart) == len(features) == 53940
    expected = built.sklearn_scores("diamond_price", features)["score"]
    # float32 ONNX: the registry's tolerance for this regressor, recorded in its manifest
    tolerance = built.candidates["diamond_price"].manifest["parity"]["tolerance"]
    assert tolerance < 0.1  # a tenth of a cent on prices in the thousands of dollars
    assert_allclose(mart["predicted_price"], expected, atol=tolerance, rtol=0)
    assert_allclose(mart["residual"], mart["listed_price"] - mart["predicted_price"])
    assert set(mart["model_version"]) == {1}


def test_protected_attribute_is_never_a_feature(built):
    manifest = built.registry.card("mortgage_deny", 1).raw
    assert "black" not in [f["name"] for f in manifest["features"]]
    columns = built.query("describe features_mortgage")["column_name"].tolist()
    assert "black" not in columns


def test_the_marts_score_in_one_call_and_their_lineage_is_data_in_the_manifest(built):
    """score() writes the mart's query (the GBT in steps; the HGB through its typed ONNX function, features
    bound by name); each call is recorded in the model's meta while dbt parses it, and the hook reads it there:
    no lineage comment in the SQL."""
    marts = built.root / "target" / "compiled" / "scorehouse_demo" / "models" / "marts"
    risk, prices = ((marts / f"{name}.sql").read_text() for name in ("mart_mortgage_risk", "mart_diamond_prices"))
    assert "__scorehouse_step" in risk and "scorehouse:scoring" not in risk + prices
    assert 'predict_diamond_price(struct_pack("carat" := "__scorehouse_input"."carat"' in prices
    nodes = json.loads((built.root / "target" / "manifest.json").read_text())["nodes"]
    calls = {
        name: {
            k: v
            for k, v in nodes[f"model.scorehouse_demo.{name}"]["config"]["meta"].items()
            if k.startswith("scorehouse:")
        }
        for name in ("mart_mortgage_risk", "mart_diamond_prices")
    }
    assert calls == {
        "mart_mortgage_risk": {
            "scorehouse:scoring mortgage_deny|default||application_id|table": {
                "ref": "mortgage_deny",
                "output": "default",
                "method": "",
                "key": "application_id",
                "form": "table",
            }
        },
        "mart_diamond_prices": {
            "scorehouse:scoring diamond_price|default|||table": {
                "ref": "diamond_price",
                "output": "default",
                "method": "",
                "key": "",
                "form": "table",
            }
        },
    }
    runs = built.query(
        "select scored_relation, model_name, model_version, method from scoring_runs "
        "where invocation_id = (select max_by(invocation_id, finished_at) from scoring_runs) "
        "order by scored_relation"
    )
    assert runs.values.tolist() == [
        ["mart_diamond_prices", "diamond_price", 1, "onnx"],
        ["mart_mortgage_risk", "mortgage_deny", 1, "steps"],
    ]


def test_forcing_sql_or_onnx_builds_the_same_marts(workspace):
    # the mart's score() takes the steps for mortgage_deny's 100 trees by default; 'onnx' scores each row
    # through onnxruntime, 'sql' in steps; its SQL was checked against the library at registration
    record = workspace.registry.card("mortgage_deny", 1).manifest.sql
    assert record["ok"] and record["max_abs_diff"] <= 1e-5
    workspace.dbt("build", "--select", "mart_mortgage_risk", variables={"scorehouse_scoring": "onnx"})
    onnx = workspace.query("select application_id, deny_probability from mart_mortgage_risk order by 1")
    compiled_sql = (
        workspace.root / "target" / "compiled" / "scorehouse_demo" / "models" / "marts" / "mart_mortgage_risk.sql"
    )
    assert "scorehouse_onnx_mortgage_deny(struct_pack(" in compiled_sql.read_text()
    workspace.dbt("build", "--select", "mart_mortgage_risk", variables={"scorehouse_scoring": "sql"})
    in_sql = workspace.query("select application_id, deny_probability from mart_mortgage_risk order by 1")
    written = compiled_sql.read_text()
    assert "__scorehouse_step" in written and "predict_mortgage_deny(" not in written
    assert "scorehouse_onnx_mortgage_deny(" not in written
    assert len(in_sql) == len(onnx) == 2381
    assert_allclose(in_sql["deny_probability"], onnx["deny_probability"], atol=1e-6, rtol=0)
    result = workspace.dbt(
        "build", "--select", "mart_mortgage_risk", variables={"scorehouse_scoring": "fastest"}, expect_ok=False
    )
    assert result.returncode != 0
    assert "Unknown scoring method 'fastest'; choose one of ['auto', 'sql', 'onnx']" in result.stdout


def test_promote_changes_the_next_build_and_rollback_restores_it(workspace):
    workspace.dbt("build")
    v2 = workspace.train("mortgage_deny", split=Split(test_size=0.3, seed=7))
    assert v2 == 2
    workspace.dbt("build", "--select", "mart_mortgage_risk")
    mart = workspace.query("select * from mart_mortgage_risk order by application_id")
    assert set(mart["model_version"]) == {2}
    features = workspace.query("select * from features_mortgage order by application_id")
    assert_allclose(mart["deny_probability"], workspace.sklearn_scores("mortgage_deny@2", features)["score"], atol=1e-5)

    assert workspace.registry.rollback("mortgage_deny") == (2, 1)
    workspace.dbt("build", "--select", "mart_mortgage_risk")
    mart = workspace.query("select * from mart_mortgage_risk order by application_id")
    assert set(mart["model_version"]) == {1}
    assert_allclose(mart["deny_probability"], workspace.sklearn_scores("mortgage_deny@1", features)["score"], atol=1e-5)
    assert workspace.registry.versions("mortgage_deny") == [1, 2]


def test_model_without_prod_alias_fails_the_build_with_a_clear_message(workspace):
    aliases = workspace.registry_path / "diamond_price" / "aliases.json"
    aliases.write_text(json.dumps({"candidate": {"version": 1, "history": [1]}}))
    result = workspace.dbt("build", "--select", "mart_diamond_prices", expect_ok=False)
    assert result.returncode != 0
    message = result.stdout
    assert "diamond_price" in message and "no alias 'prod'" in message and "candidate -> 1" in message


def test_docs_generate(built):
    built.dbt("docs", "generate")
    catalog = json.loads((built.root / "target" / "catalog.json").read_text())
    nodes = {n.split(".")[-1]: v for n, v in catalog["nodes"].items()}
    assert "deny_probability" in {c.lower() for c in nodes["mart_mortgage_risk"]["columns"]}
    manifest = json.loads((built.root / "target" / "manifest.json").read_text())
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["name"].startswith("mart_"):
            undocumented = [c for c, v in node["columns"].items() if not v["description"]]
            assert not undocumented, f"{node['name']}: {undocumented}"
            actual = set(built.query(f"describe {node['name']}")["column_name"])
            assert actual == set(node["columns"]), node["name"]


@pytest.mark.parametrize("name", sorted(FEATURE_TABLES))
def test_every_input_row_is_scored(built, name):
    table, key = FEATURE_TABLES[name]
    mart = {"mortgage_deny": "mart_mortgage_risk", "diamond_price": "mart_diamond_prices"}[name]
    counts = built.query(
        f"select (select count(*) from {table}) as n_in, count(*) as n_out, count(distinct {key}) as keys from {mart}"
    )
    assert counts.n_in[0] == counts.n_out[0] == counts["keys"][0]
    assert np.isfinite(built.query(f"select * from {mart}").iloc[:, 1]).all()


MID_BUILD = '''
import json, subprocess, sys, threading
from dbt.cli.main import dbtRunner

command, specs, registry = json.loads(sys.argv[1])
trained, once = [], threading.Lock()


def train_once(event):
    """When the build's first model has finished, train and promote models as another process would."""
    if event.info.name != "NodeFinished" or event.data.node_info.resource_type != "model" or not once.acquire(False):
        return
    for spec in specs:
        done = subprocess.run([SCOREHOUSE, "--registry", registry, "train", spec, "--alias", "prod"],
                              capture_output=True, text=True)
        trained.append(done.returncode)
        print(done.stderr, file=sys.stderr)


result = dbtRunner(callbacks=[train_once]).invoke(command)
print(json.dumps({"trained": trained, "success": result.success}))
'''


def test_a_model_trained_mid_build_is_not_seen_until_the_next_build(workspace, tmp_path):
    """`scorehouse train` finishing while `dbt build` runs (a new model, and a new prod version of a scored one):
    the build keeps the set of models it started with, from its first node to its hooks, and passes; the next
    build sees the new ones."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from helpers import ROOT, SPECS

    # trained from a file: the build holds the warehouse's write lock meanwhile
    workspace.query("select * from features_mortgage").to_parquet(tmp_path / "features.parquet")
    new_model = tmp_path / "late_model.yml"
    new_model.write_text(
        yaml.safe_dump(
            {
                "name": "late_model",
                "task": "binary",
                "target": "is_denied",
                "source": {"path": "features.parquet"},
                "estimator": {"kind": "logistic_regression", "params": {"max_iter": 1000}},
                "features": {"numeric": ["dir", "lvr"], "categorical": ["self"]},
            }
        )
    )
    retrained = tmp_path / "mortgage_deny.yml"  # another prod version of the scored model
    spec = yaml.safe_load(SPECS["mortgage_deny"].read_text())
    spec["estimator"]["params"]["n_estimators"] = 20
    spec["source"] = {"path": "features.parquet"}
    retrained.write_text(yaml.safe_dump(spec))
    script = tmp_path / "mid_build.py"
    script.write_text(f"SCOREHOUSE = {str(Path(sys.executable).parent / 'scorehouse')!r}\n" + MID_BUILD)
    command = workspace.dbt_command("build")[1:]
    run = subprocess.run(
        [
            sys.executable,
            str(script),
            json.dumps([command, [str(new_model), str(retrained)], str(workspace.registry_path)]),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, **workspace.env},
        timeout=900,
    )
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    assert outcome == {"trained": [0, 0], "success": True}, run.stdout[-4000:] + run.stderr[-2000:]
    assert "does not exist" not in run.stdout and "Traceback" not in run.stdout + run.stderr
    assert workspace.registry.aliases("mortgage_deny")["prod"] == 2 and workspace.registry.aliases("late_model")
    assert set(workspace.query("select model_version from mart_mortgage_risk").model_version) == {1}
    runs = workspace.query(
        "select model_name, model_version from scoring_runs where scored_relation = 'mart_mortgage_risk'"
    )
    assert set(runs.model_version) == {1}  # the hooks saw the build's set too
    workspace.dbt("build")
    assert set(workspace.query("select model_version from mart_mortgage_risk").model_version) == {2}
