"""Training: every supported estimator exports to ONNX with parity, or is refused."""

import duckdb
import numpy as np
import onnx
import pyarrow as pa
import pytest

from scorehouse.errors import ParityError, SpecError
from scorehouse.model import LoadedModel
from scorehouse.registration import training
from scorehouse.registration.spec import parse_spec
from scorehouse.registration.training import read_source, train, train_and_register
from scorehouse.registry import Registry

from helpers import PROJECT

MORTGAGE = {
    "numeric": ["dir", "hir", "lvr", "ccs", "mcs", "uria"],
    "categorical": ["pbcr", "dmi", "self", "single", "condominium"],
}
DIAMONDS = {
    "numeric": ["carat", "depth_pct", "table_pct", "length_mm", "width_mm", "height_mm"],
    "categorical": ["cut", "color", "clarity"],
}
SMALL = {
    "random_forest": {"n_estimators": 20, "max_depth": 6, "random_state": 0},
    "gradient_boosting": {"n_estimators": 30, "random_state": 0},
    "hist_gradient_boosting": {"max_iter": 30, "random_state": 0},
    "logistic_regression": {"max_iter": 2000},
}


@pytest.fixture(scope="module")
def tables(trained):
    with duckdb.connect(str(trained.warehouse), read_only=True) as con:
        mortgage = con.sql("select * from features_mortgage order by application_id").to_arrow_table()
        diamonds = con.sql("select * from features_diamonds order by diamond_id limit 4000").to_arrow_table()
    return {"mortgage": mortgage, "diamonds": diamonds}


def spec(task, kind, features, target, **extra):
    return parse_spec(
        {
            "name": "m",
            "task": task,
            "target": target,
            "source": {"table": "t"},
            "estimator": {"kind": kind, "params": SMALL.get(kind, {})},
            "features": features,
            **extra,
        }
    )


CLASSIFIERS = ["logistic_regression", "random_forest", "gradient_boosting", "hist_gradient_boosting"]
REGRESSORS = ["linear_regression", "ridge", "random_forest", "gradient_boosting", "hist_gradient_boosting"]


@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_binary_classifiers_match_onnxruntime(tables, kind):
    candidate = train(spec("binary", kind, MORTGAGE, "is_denied"), tables["mortgage"])
    parity = candidate.manifest["parity"]
    assert parity["compared"] == "probabilities" and parity["rows"] == 596
    assert parity["max_abs_diff"] <= 1e-5
    assert 0.5 < candidate.manifest["metrics"]["auc"] <= 1.0
    assert candidate.manifest["classes"] == ["false", "true"] and candidate.manifest["positive_class"] == "true"
    # every row of the table, labels and scores, as scikit-learn gives them
    model = LoadedModel({**candidate.manifest, "version": 1}, candidate.onnx_bytes)
    columns = {n: tables["mortgage"].column(n) for n in MORTGAGE["numeric"] + MORTGAGE["categorical"]}
    frame = _frame(model, columns)
    assert model.predict(columns, "label").to_pylist() == candidate.pipeline.predict(frame).astype(str).tolist()
    np.testing.assert_allclose(
        model.predict(columns).to_numpy(), candidate.pipeline.predict_proba(frame)[:, 1], atol=1e-5
    )
    # categories reach the graph as int64 codes; NULL and categories never seen in training score as in scikit-learn
    graph = onnx.load_from_string(candidate.onnx_bytes).graph
    coded = {i.name for i in graph.input if i.type.tensor_type.elem_type == onnx.TensorProto.INT64}
    assert coded == set(MORTGAGE["categorical"]) == set(candidate.manifest["onnx_category_codes"])
    rows = len(frame)
    odd = {
        **columns,
        "pbcr": pa.array((["maybe", None, "yes", "no"] * rows)[:rows]),
        "dmi": pa.array(([None, "NO", "yes"] * rows)[:rows]),
    }
    np.testing.assert_allclose(
        model.predict(odd).to_numpy(), candidate.pipeline.predict_proba(_frame(model, odd))[:, 1], atol=1e-5
    )
    # boosted trees are stored as one-target tree regressors with their link (udfs/registration/onnx_graph.py)
    operators = {node.op_type for node in graph.node}
    trees = {
        "gradient_boosting": "TreeEnsembleRegressor",
        "hist_gradient_boosting": "TreeEnsembleRegressor",
        "random_forest": "TreeEnsembleClassifier",
    }
    assert operators & {"TreeEnsembleRegressor", "TreeEnsembleClassifier"} == (
        {trees[kind]} if kind in trees else set()
    )
    # the SQL written from the explanation agrees with the library on the holdout
    assert candidate.manifest["sql"]["ok"] and candidate.manifest["sql"]["rows"] == 596
    assert "compiled" not in candidate.manifest and "compiled.json" not in candidate.files


@pytest.mark.parametrize("kind", REGRESSORS)
def test_regressors_match_onnxruntime(tables, kind):
    candidate = train(spec("regression", kind, DIAMONDS, "price"), tables["diamonds"])
    parity = candidate.manifest["parity"]
    assert parity["compared"] == "value" and parity["max_abs_diff"] <= parity["tolerance"]
    assert parity["tolerance"] == pytest.approx(
        1e-5
        * np.abs(
            training.sklearn_outputs(
                candidate.pipeline, _holdout(candidate, tables["diamonds"]), "regression", [], None
            )["score"]
        ).mean()
    )
    assert candidate.manifest["metrics"]["r2"] > 0.8


def _holdout(candidate, table):
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from scorehouse.model import ModelCard
    from scorehouse.schema import model_inputs

    card = ModelCard(candidate.manifest)
    inputs = model_inputs("m", card.features, {n: table.column(n) for n in table.column_names})
    frame = pd.DataFrame({n: v.reshape(-1) for n, v in inputs.items()})
    return train_test_split(frame, test_size=0.25, random_state=0)[1]


def test_multiclass_labels_and_probabilities(tables):
    features = {"numeric": ["carat", "depth_pct", "table_pct"], "categorical": ["color", "clarity"]}
    candidate = train(spec("multiclass", "logistic_regression", features, "cut"), tables["diamonds"])
    assert candidate.manifest["classes"] == ["Fair", "Good", "Ideal", "Premium", "Very Good"]
    assert candidate.manifest["parity"]["max_abs_diff"] <= 1e-5
    model = LoadedModel({**candidate.manifest, "version": 1}, candidate.onnx_bytes)
    columns = {n: tables["diamonds"].column(n) for n in model.manifest.spec["numeric"] + ["color", "clarity"]}
    labels = model.predict(columns).to_pylist()
    assert labels == candidate.pipeline.predict(_frame(model, columns)).astype(str).tolist()
    with pytest.raises(Exception, match="multiclass classifier: it has no single 'score'"):
        model.predict(columns, "score")


def _frame(model, columns):
    import pandas as pd

    from scorehouse.schema import model_inputs

    return pd.DataFrame({n: v.reshape(-1) for n, v in model_inputs("m", model.features, columns).items()})


def test_a_scaler_in_front_of_trees_breaks_parity_and_is_refused(tables, monkeypatch, tmp_path):
    # float32 scaler outputs flip tree split thresholds: the check must catch it.
    monkeypatch.setattr(training, "SCALED_KINDS", training.SCALED_KINDS | {"hist_gradient_boosting"})
    with pytest.raises(ParityError, match="disagree on the holdout .*not registered"):
        train(
            spec("binary", "hist_gradient_boosting", MORTGAGE, "is_denied", split={"test_size": 0.25, "seed": 42}),
            tables["mortgage"],
        )


def test_training_from_a_csv_file_and_idempotent_registration(tmp_path):
    import shutil

    shutil.copy(PROJECT / "data" / "hmda_boston.csv", tmp_path / "hmda.csv")
    raw = {
        "name": "deny_from_csv",
        "task": "binary",
        "target": "deny",
        "source": {"path": "hmda.csv"},
        "estimator": {"kind": "logistic_regression", "params": {"max_iter": 2000}},
        "features": {"numeric": ["dir", "hir", "lvr"], "categorical": ["single"]},
    }
    csv_spec = parse_spec(raw, base_dir=tmp_path)
    registry = Registry(tmp_path / "reg")
    assert train_and_register(csv_spec, registry) == (1, True)
    assert train_and_register(csv_spec, registry) == (1, False)  # same spec, same data: up to date
    changed = parse_spec({**raw, "source": {"path": "hmda.csv", "where": "lvr < 1.5"}}, base_dir=tmp_path)
    assert train_and_register(changed, registry) == (2, True)
    manifest = registry.card("deny_from_csv", 2).manifest
    assert manifest.training.rows < registry.card("deny_from_csv", 1).manifest.training.rows


def test_source_errors_name_the_model_and_column(trained, tmp_path):
    bad = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "is_denied",
            "source": {"table": "main.features_mortgage"},
            "estimator": "logistic_regression",
            "features": {"numeric": ["lvr", "income"]},
        }
    )
    with pytest.raises(SpecError, match=r"lacks column\(s\) income; it has: "):
        read_source(bad, trained.warehouse)
    with pytest.raises(SpecError, match="warehouse .* does not exist"):
        read_source(bad, tmp_path / "none.duckdb")


def test_a_source_lacking_thousands_of_columns_says_so_in_a_short_line(tmp_path):
    import pyarrow.parquet as pq

    # 3,000 columns in the file (DuckDB takes seconds to load 30,000), 30,000 features in the spec
    pq.write_table(pa.table({**{f"c{i}": [1.0] for i in range(3_000)}, "deny": ["no"]}), tmp_path / "wide.parquet")
    wide = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "deny",
            "source": {"path": "wide.parquet"},
            "estimator": "logistic_regression",
            "features": {"numeric": [f"x{i}" for i in range(30_000)]},
        },
        base_dir=tmp_path,
    )
    with pytest.raises(SpecError) as error:
        read_source(wide)
    assert str(error.value) == (
        f"Model m: source {tmp_path.resolve() / 'wide.parquet'} lacks column(s) "
        f"{', '.join(f'x{i}' for i in range(10))} and 29,990 more; "
        f"it has: {', '.join(f'c{i}' for i in range(10))} and 2,991 more"
    )
