"""The one SQL writer: every explained case's SQL (predict()'s expression and the table form's steps), written
from explain.json, equals its library's scores; the rest score through onnxruntime and say why."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import scorehouse.duckdb
from scorehouse import staged
from scorehouse.errors import ScorehouseError
from scorehouse.scoring import Session
from scorehouse.sql import DUCKDB, SPARK
from scorehouse.writer import SqlWriter

from helpers import ESTIMATOR_CASES, sklearn_answers

EXPLAINED = sorted(name for name, (task, *_) in ESTIMATOR_CASES.items() if task != "multiclass")


def _compare(candidate, got, rows):
    """Assert the SQL's scores equal the library's, as the ONNX graph's must."""
    want = sklearn_answers(candidate, rows)
    tolerance = candidate.manifest["parity"]["tolerance"]
    assert np.abs(np.asarray(got, dtype=float) - want["score"]).max() <= tolerance


def test_every_case_records_its_sql_check_or_why_it_has_none(estimator_models):
    _, models = estimator_models
    assert set(models) == set(ESTIMATOR_CASES)
    for name, (candidate, _) in models.items():
        assert "compiled.json" not in candidate.files and "compiled" not in candidate.manifest, name
        if name not in EXPLAINED:  # multiclass: not explained, so no SQL is written; onnxruntime scores it
            assert "sql" not in candidate.manifest and candidate.explanation is None, name
            continue
        record = candidate.manifest["sql"]
        assert record["ok"] and record["rows"] == candidate.manifest["parity"]["rows"], name
        assert 0 <= record["max_abs_diff"] <= candidate.manifest["parity"]["tolerance"], name
        assert "sql" in candidate.manifest["registration_seconds"], name


@pytest.mark.parametrize("name", EXPLAINED)
def test_predict_sql_equals_the_library_in_duckdb(estimator_models, name):
    registry, models = estimator_models
    candidate, rows = models[name]
    expression = scorehouse.duckdb.predict_sql(Session(registry), name, "r", "score", "sql")
    # plain SQL behind the input check, which DuckDB calls once while planning
    assert "predict" not in expression and expression.count("scorehouse_") == 1
    assert expression.startswith(f"(CASE WHEN scorehouse_check_input('{name}', typeof(struct_pack(")
    with scorehouse.duckdb.connect(":memory:", registry) as con:
        con.register("features", pa.Table.from_pandas(rows, preserve_index=False))
        got = con.sql(f"select {expression} as v from features as r").fetchnumpy()["v"]
    _compare(candidate, got, rows)


def test_the_table_form_in_steps_equals_the_library_for_every_explained_case(estimator_models):
    """score() in steps on each explained case's 4,000 rows: scikit-learn's gradient boosting, HGB, forests and
    linear models, XGBoost, LightGBM, every link."""
    registry, models = estimator_models
    scorer = Session(registry)
    stepped = set()
    for name, (candidate, rows) in sorted(models.items()):
        query = SqlWriter(scorer, DUCKDB).table_sql(name, "features", "default", "sql")
        if name not in EXPLAINED:
            assert query is None, name
            continue
        with scorehouse.duckdb.connect(":memory:", registry) as con:
            con.register("features", pa.Table.from_pandas(rows, preserve_index=False))
            got = con.sql(f"select prediction from ({query})").fetchnumpy()["prediction"]
            assert len(got) == len(rows)
        _compare(candidate, got, rows)
        stepped.add(candidate.manifest["estimator"]["kind"])
    assert {
        "gradient_boosting",
        "hist_gradient_boosting",
        "random_forest",
        "logistic_regression",
        "xgboost",
        "lightgbm",
    } <= stepped, stepped


def test_auto_writes_one_expression_for_linear_models_and_small_trees_only(estimator_models):
    registry, models = estimator_models
    scorer = Session(registry)
    for name, (candidate, _) in models.items():
        if name not in EXPLAINED:  # multiclass: its default output is the label
            assert SqlWriter(scorer, DUCKDB).scoring_choice(name, "default") == (
                None,
                "SQL is written for the score, not the label",
            ), name
            continue
        expression, why = SqlWriter(scorer, DUCKDB).scoring_choice(name, "score")
        if candidate.explanation.kind == "linear":
            assert expression is not None, (name, why)
        else:
            nodes = candidate.explanation.nodes
            assert (expression is not None) == (nodes <= staged.EXPRESSION_NODES), (name, nodes, why)
            if expression is None:
                assert why.startswith(f"{nodes:,} tree nodes, more than 300"), why
    # the label and the probabilities are never written in SQL
    assert SqlWriter(scorer, DUCKDB).scoring_choice("c_binary_logistic", "label") == (
        None,
        "SQL is written for the score, not the label",
    )


def test_spark_keeps_expressions_within_what_it_compiles(estimator_models):
    registry, models = estimator_models
    for name in EXPLAINED:
        explanation = models[name][0].explanation
        reason = staged.expression_reason(explanation, SPARK)
        length = len(staged.score_expression(explanation, SPARK))
        assert (reason is None) == (
            length <= SPARK.max_expression_chars and explanation.nodes <= staged.EXPRESSION_NODES
        ), name
        assert staged.expression_reason(explanation, DUCKDB) is None or explanation.nodes > 300


def test_predict_function_is_the_sql_expression_for_a_linear_model(estimator_models):
    registry, models = estimator_models
    candidate, rows = models["c_binary_logistic"]
    with scorehouse.duckdb.connect(":memory:", registry) as con:
        con.register("features", pa.Table.from_pandas(rows, preserve_index=False))
        kinds = dict(
            con.sql(
                "select function_name, function_type from duckdb_functions() "
                "where function_name = 'predict_c_binary_logistic' and function_type = 'macro'"
            ).fetchall()
        )
        assert kinds == {"predict_c_binary_logistic": "macro"}
        columns = ", ".join(
            f"{c} := {c}" for c in candidate.manifest["spec"]["numeric"] + candidate.manifest["spec"]["categorical"]
        )
        both = con.sql(
            f"select predict_c_binary_logistic(struct_pack({columns})) as sql_path, "
            f"scorehouse_onnx_c_binary_logistic(struct_pack({columns})) as onnx_path "
            "from features"
        ).fetchnumpy()
        assert np.abs(both["sql_path"] - both["onnx_path"]).max() <= 1e-6  # float32 graph vs double SQL
        _compare(candidate, both["sql_path"], rows)
        import duckdb

        with pytest.raises(duckdb.BinderException) as error:
            con.sql("select predict_c_binary_logistic({'dir': 'high'})").fetchall()
        assert scorehouse.duckdb.explain_bind_error(str(error.value), Session(registry)).startswith(
            "Model c_binary_logistic (version 1): predict_c_binary_logistic() takes a struct of its features (dir "
        )
        struct = ", ".join(f"{f['name']} {f['sql_type']}" for f in candidate.manifest["features"])
        assert con.sql(f"select predict_c_binary_logistic(NULL::STRUCT({struct}))").fetchall() == [(None,)]


def test_methods_can_be_forced_and_say_why_they_cannot(estimator_models, monkeypatch):
    registry, _ = estimator_models
    scorer = Session(registry)
    assert scorehouse.duckdb.predict_sql(scorer, "c_binary_gbt", "f", "score", "onnx").startswith(
        "scorehouse_onnx_c_binary_gbt("
    )
    assert scorehouse.duckdb.predict_sql(scorer, "c_binary_logistic", "f", "score", "onnx").startswith(
        "scorehouse_onnx_"
    )
    assert scorehouse.duckdb.predict_sql(scorer, "c_binary_gbt", "f", "score", "sql").startswith("(CASE WHEN ")
    # the name releases before 0.3.0 gave the method still works
    assert scorehouse.duckdb.predict_sql(
        scorer, "c_binary_gbt", "f", "score", "compiled"
    ) == scorehouse.duckdb.predict_sql(scorer, "c_binary_gbt", "f", "score", "sql")
    with pytest.raises(
        ScorehouseError,
        match=r"Model c_multiclass_hgb \(version 1\) has no SQL expression for "
        "'label': SQL is written for the score, not the label",
    ):
        scorehouse.duckdb.predict_sql(scorer, "c_multiclass_hgb", "f", "label", "sql")
    monkeypatch.setenv("SCOREHOUSE_SCORING", "onnx")
    assert scorehouse.duckdb.predict_sql(Session(registry), "c_binary_logistic", "f").startswith("scorehouse_onnx_")
    monkeypatch.setenv("SCOREHOUSE_SCORING", "fastest")
    with pytest.raises(
        ScorehouseError, match=r"Unknown scoring method 'fastest'; choose one of \['auto', 'sql', 'onnx'\]"
    ):
        scorehouse.duckdb.predict_sql(Session(registry), "c_binary_logistic", "f")


def test_a_version_whose_sql_disagreed_at_registration_scores_through_onnxruntime(estimator_models, tmp_path):
    """A manifest recording a failed SQL check (the SQL written from explain.json and the library disagreed on
    the holdout) keeps predict() and the table form on onnxruntime, and forcing the SQL says why."""
    import hashlib
    import json
    import shutil

    from scorehouse.registry import Registry

    registry, _ = estimator_models
    copy = tmp_path / "registry"
    shutil.copytree(registry.root, copy)
    folder = copy / "c_binary_logistic" / "versions" / "1"
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sql"] = {"rows": 800, "max_abs_diff": 0.25, "ok": False}
    body = json.dumps(manifest, indent=1).encode()
    (folder / "manifest.json").write_bytes(body)
    (folder / "manifest.sha256").write_text(hashlib.sha256(body).hexdigest() + "\n")
    scorer = Session(Registry(copy))
    assert scorer.card("c_binary_logistic").manifest.sql_refused == (
        "max |difference| 0.25 on 800 holdout rows, tolerance 1e-05"
    )
    why = "its SQL disagreed with the library at registration (max |difference| 0.25 on 800 holdout rows"
    expression, reason = SqlWriter(scorer, DUCKDB).scoring_choice("c_binary_logistic", "score")
    assert expression is None and reason.startswith(why)
    assert scorehouse.duckdb.predict_sql(scorer, "c_binary_logistic", "f").startswith("predict_c_binary_logistic(")
    with pytest.raises(ScorehouseError, match=r"has no SQL expression for 'score': its SQL disagreed"):
        scorehouse.duckdb.predict_sql(scorer, "c_binary_logistic", "f", "score", "sql")
    assert SqlWriter(scorer, DUCKDB).table_sql("c_binary_logistic", "features", "default", "sql") is None


def test_a_version_of_release_0_2_0_is_checked_on_its_sample_before_its_sql_is_written(tmp_path):
    """Versions registered before the holdout check of their SQL: the SQL written from their explain.json must
    reproduce their stored sample first (once per scorer), else they score through onnxruntime and say why."""
    import hashlib
    import json
    import shutil

    from scorehouse.registry import Registry

    from helpers import ROOT

    copy = tmp_path / "registry"
    shutil.copytree(ROOT / "tests" / "fixtures" / "release-0.2.0" / "loans" / "registry", copy)
    scorer = Session(Registry(copy))
    assert scorer.card("loan_denial").manifest.sql is None and scorer.sql_refusal("loan_denial") is None
    assert SqlWriter(scorer, DUCKDB).scoring_choice("loan_denial", "score", "sql")[0].startswith("(1 / (1 + exp(-(")
    assert (
        SqlWriter(scorer, DUCKDB)
        .scoring_choice("loan_denial", "score")[1]
        .startswith("2,100 tree nodes, more than 300")
    )
    folder = copy / "loan_denial" / "versions" / "2"
    sample = json.loads((folder / "sample.json").read_text())
    sample["expected"]["score"] = [1 - p for p in sample["expected"]["score"]]
    data = json.dumps(sample).encode()
    (folder / "sample.json").write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"]["sample.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    body = json.dumps(manifest, indent=1).encode()
    (folder / "manifest.json").write_bytes(body)
    (folder / "manifest.sha256").write_text(hashlib.sha256(body).hexdigest() + "\n")
    scorer = Session(Registry(copy))
    reason = scorer.sql_refusal("loan_denial@2")
    assert reason.startswith(
        "Model loan_denial v2: the SQL written from explain.json gives sample scores that differ from the library's by"
    ), reason
    with pytest.raises(ScorehouseError, match="has no SQL expression for 'score': Model loan_denial v2: the SQL"):
        SqlWriter(scorer, DUCKDB).scoring_choice("loan_denial@2", "score", "sql")
    assert SqlWriter(scorer, DUCKDB).table_sql("loan_denial@2", "t", "score", "sql") is None


def test_the_recorded_sql_strings_cover_every_reference_and_engine(small, tmp_path):
    """bench.sql_strings (what a change to the writer is diffed with) records each reference on each engine:
    the logistic model's predict() as its expression, the GBT's through its ONNX functions (typed for the prod
    alias, generic for a pin), the GBT's table in steps and the logistic model's in one SELECT."""
    import json
    import subprocess
    import sys

    out = tmp_path / "sql.json"
    subprocess.run(
        [sys.executable, "-m", "bench.sql_strings", str(small.registry_path), str(out)],
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    texts = json.loads(out.read_text())
    assert sorted(texts) == sorted(
        f"{model}{pin} {engine}"
        for model in ("mortgage_deny", "mortgage_logit")
        for pin in ("", "@1")
        for engine in ("duckdb", "spark")
    )
    for engine in ("duckdb", "spark"):
        assert texts[f"mortgage_deny {engine}"]["predict"].startswith("predict_mortgage_deny(")
        assert texts[f"mortgage_deny@1 {engine}"]["predict"].startswith("predict('mortgage_deny@1', ")
        assert texts[f"mortgage_deny {engine}"]["table"].startswith("WITH __scorehouse_step0 AS (SELECT ")
        for ref in ("mortgage_logit", "mortgage_logit@1"):
            assert texts[f"{ref} {engine}"]["predict"].startswith("(CASE WHEN ")
            assert "(1 / (1 + exp(-(" in texts[f"{ref} {engine}"]["predict"]
            assert texts[f"{ref} {engine}"]["table"].startswith("SELECT ")
