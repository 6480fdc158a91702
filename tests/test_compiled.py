"""The compiled-SQL path: every estimator either compiles with parity or says why not; DuckDB uses it."""

import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import scorehouse.duckdb
from scorehouse.errors import IntegrityError, ScorehouseError
from scorehouse.scoring import Scorer

from helpers import COMPILED_CASES, sklearn_answers

# What orbital 0.6 cannot translate: multiclass linear models, and trees that send missing values to the left
# (HistGradientBoosting's and LightGBM's on the diamond data; the mortgage classifiers' trees do not); and the
# multiclass trees left to onnxruntime by their case (see helpers.ESTIMATOR_CASES).
_MISSING_LEFT = "Missing value tracks true not supported"
NOT_COMPILED = {"c_multiclass_logistic": "Multi-class classification is not implemented",
                **dict.fromkeys(["c_multiclass_forest", "c_multiclass_hgb", "c_multiclass_xgboost",
                                 "c_multiclass_lightgbm"], "compile: never"),
                **dict.fromkeys(["c_regression_hgb", "c_regression_hgb_poisson", "c_regression_hgb_gamma",
                                 "c_regression_lightgbm", "c_regression_lightgbm_poisson",
                                 "c_regression_lightgbm_gamma",
                                 "c_regression_lightgbm_tweedie"], _MISSING_LEFT)}


def _output(candidate) -> str:
    return "label" if candidate.manifest["task"] == "multiclass" else "score"


def _compare(candidate, got, rows):
    """Assert the compiled SQL's answers equal scikit-learn's, as the ONNX graph's must."""
    want = sklearn_answers(candidate, rows)
    output = _output(candidate)
    if output == "label":
        assert list(got) == want["label"].tolist()
    else:
        tolerance = candidate.manifest["parity"]["tolerance"]
        assert np.abs(np.asarray(got, dtype=float) - want["score"]).max() <= tolerance


def test_every_case_is_either_compiled_with_parity_or_says_why(compiled_models):
    _, models = compiled_models
    assert set(models) == set(COMPILED_CASES)
    for name, (candidate, _) in models.items():
        record = candidate.manifest["compiled"]
        if name in NOT_COMPILED:
            assert NOT_COMPILED[name] in record["skipped"]
            assert "compiled.json" not in candidate.files
            continue
        assert record["parity"]["ok"] and record["parity"]["rows"] == candidate.manifest["parity"]["rows"], name
        assert record["parity"].get("max_abs_diff", 0) <= record["parity"]["tolerance"]
        assert record["parity"].get("label_mismatches", 0) == 0
        assert record["duckdb_timing"]["onnx_seconds"] > 0 and record["duckdb_timing"]["sql_seconds"] > 0
        assert record["preferred"]["duckdb"] == (record["duckdb_timing"]["sql_seconds"]
                                                 < 0.9 * record["duckdb_timing"]["onnx_seconds"])


@pytest.mark.parametrize("name", sorted(set(COMPILED_CASES) - set(NOT_COMPILED)))
def test_compiled_sql_equals_scikit_learn_in_duckdb(compiled_models, name):
    registry, models = compiled_models
    candidate, rows = models[name]
    scorer = Scorer(registry)
    expression = scorehouse.duckdb.predict_sql(scorer, name, "r", _output(candidate), "compiled")
    # plain SQL behind the input check, which DuckDB calls once while planning
    assert "predict" not in expression and expression.count("scorehouse_") == 1
    assert expression.startswith(f"(CASE WHEN scorehouse_check_input('{name}', typeof(struct_pack(")
    with scorehouse.duckdb.connect(":memory:", registry) as con:
        con.register("features", pa.Table.from_pandas(rows, preserve_index=False))
        got = con.sql(f"select {expression} as v from features as r").fetchnumpy()["v"]
    _compare(candidate, got, rows)


def test_the_table_form_in_steps_equals_scikit_learn_for_every_explained_case(compiled_models):
    """score() in steps (scorehouse.staged, written from explain.json) on each explained case's 4,000 rows:
    scikit-learn's gradient boosting, HGB, forests and linear models, XGBoost, LightGBM, every link."""
    registry, models = compiled_models
    scorer = Scorer(registry)
    stepped = set()
    for name, (candidate, rows) in sorted(models.items()):
        query = scorer.table_sql(name, "features", "default", "duckdb", "compiled")
        if "skipped" in candidate.manifest["explanation"]:
            assert query is None, name
            continue
        with scorehouse.duckdb.connect(":memory:", registry) as con:
            con.register("features", pa.Table.from_pandas(rows, preserve_index=False))
            got = con.sql(f"select prediction from ({query})").fetchnumpy()["prediction"]
            assert len(got) == len(rows)
        _compare(candidate, got, rows)
        stepped.add(candidate.manifest["estimator"]["kind"])
    assert {"gradient_boosting", "hist_gradient_boosting", "random_forest", "logistic_regression", "xgboost",
            "lightgbm"} <= stepped, stepped


def test_predict_function_is_the_compiled_sql_where_registration_measured_it_faster(compiled_models):
    registry, models = compiled_models
    candidate, rows = models["c_binary_logistic"]
    assert candidate.manifest["compiled"]["preferred"]["duckdb"], "SQL for a logistic regression beats onnxruntime"
    with scorehouse.duckdb.connect(":memory:", registry) as con:
        con.register("features", pa.Table.from_pandas(rows, preserve_index=False))
        kinds = dict(con.sql("select function_name, function_type from duckdb_functions() "
                             "where function_name = 'predict_c_binary_logistic' and function_type = 'macro'"
                             ).fetchall())
        assert kinds == {"predict_c_binary_logistic": "macro"}
        columns = ", ".join(f"{c} := {c}"
                            for c in candidate.manifest["spec"]["numeric"] + candidate.manifest["spec"]["categorical"])
        both = con.sql(f"select predict_c_binary_logistic(struct_pack({columns})) as sql_path, "
                       f"scorehouse_onnx_c_binary_logistic(struct_pack({columns})) as onnx_path "
                       "from features").fetchnumpy()
        assert np.abs(both["sql_path"] - both["onnx_path"]).max() <= 1e-6  # float32 graph vs double SQL
        _compare(candidate, both["sql_path"], rows)
        with pytest.raises(duckdb.BinderException) as error:
            con.sql("select predict_c_binary_logistic({'dir': 'high'})").fetchall()
        assert scorehouse.duckdb.explain_bind_error(str(error.value), Scorer(registry)).startswith(
            "Model c_binary_logistic (version 1): predict_c_binary_logistic() takes a struct of its features (dir ")
        struct = ", ".join(f"{f['name']} {f['sql_type']}" for f in candidate.manifest["features"])
        assert con.sql(f"select predict_c_binary_logistic(NULL::STRUCT({struct}))").fetchall() == [(None,)]


def test_methods_can_be_forced_and_say_why_they_cannot(compiled_models, monkeypatch):
    registry, _ = compiled_models
    scorer = Scorer(registry)
    assert scorehouse.duckdb.predict_sql(scorer, "c_binary_gbt", "f", "score",
                                         "onnx").startswith("scorehouse_onnx_c_binary_gbt(")
    assert scorehouse.duckdb.predict_sql(scorer, "c_binary_logistic", "f", "score",
                                         "onnx").startswith("scorehouse_onnx_")
    assert scorehouse.duckdb.predict_sql(scorer, "c_binary_gbt", "f", "score", "compiled").startswith("(")
    with pytest.raises(ScorehouseError, match=r"Model c_regression_hgb \(version 1\) has no compiled SQL for 'score': "
                                              "orbital cannot translate this graph"):
        scorehouse.duckdb.predict_sql(scorer, "c_regression_hgb", "f", "score", "compiled")
    # auto: ONNX
    assert scorehouse.duckdb.predict_sql(scorer, "c_regression_hgb", "f").startswith("predict_c_regression_hgb(")
    monkeypatch.setenv("SCOREHOUSE_SCORING", "onnx")
    assert scorehouse.duckdb.predict_sql(Scorer(registry), "c_binary_logistic", "f").startswith("scorehouse_onnx_")
    monkeypatch.setenv("SCOREHOUSE_SCORING", "fastest")
    with pytest.raises(ScorehouseError,
                       match=r"Unknown scoring method 'fastest'; choose one of \['auto', 'compiled', 'onnx'\]"):
        scorehouse.duckdb.predict_sql(Scorer(registry), "c_binary_logistic", "f")


def test_a_changed_byte_in_compiled_sql_is_refused(compiled_models, tmp_path):
    import shutil

    registry, _ = compiled_models
    copy = tmp_path / "registry"
    shutil.copytree(registry.root, copy)
    path = copy / "c_binary_logistic" / "versions" / "1" / "compiled.json"
    compiled = json.loads(path.read_text())
    compiled["expressions"]["duckdb"]["score"] = "0.0"
    path.write_text(json.dumps(compiled))
    with pytest.raises(IntegrityError, match="compiled.json failed its sha256 check"):
        scorehouse.duckdb.predict_sql(Scorer(type(registry)(copy)), "c_binary_logistic", "f", "score", "compiled")
