"""A pipeline fitted in a notebook, registered through the same path as `scorehouse train`."""

import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

import scorehouse.duckdb as engine
from scorehouse.errors import ScorehouseError, SpecError
from scorehouse.registration.fitted import register_fitted
from scorehouse.registry import Registry

from helpers import ROOT

NUMERIC = ["dir", "hir", "lvr", "ccs", "mcs", "uria", "self_employed"]
CATEGORICAL = ["pbcr", "dmi", "single", "condominium"]


@pytest.fixture(scope="module")
def frames(small):
    """Train and test frames as a notebook has them: pandas, float64 numbers, a bool column, '' for a missing
    category."""
    frame = small.query("select *, self = 'yes' as self_employed from features_mortgage order by application_id")
    frame = frame[[*NUMERIC, *CATEGORICAL, "is_denied"]].fillna({c: "" for c in CATEGORICAL})
    return frame.iloc[:1800].reset_index(drop=True), frame.iloc[1800:].reset_index(drop=True)


def notebook_pipeline(estimator):
    columns = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), NUMERIC),
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
        ]
    )
    return Pipeline([("features", columns), ("estimator", estimator)])


def test_a_fitted_pipeline_registers_scores_like_itself_and_twice_is_one_version(frames, tmp_path):
    train, test = frames
    pipeline = notebook_pipeline(HistGradientBoostingClassifier(max_iter=40, random_state=0))
    floats = {c: "float32" for c in NUMERIC if c != "self_employed"}  # as the graph computes, so splits agree
    train, test = train.astype(floats), test.astype(floats)
    pipeline.fit(train.drop(columns="is_denied"), train.is_denied)
    registry = Registry(tmp_path / "registry")
    version = register_fitted(
        pipeline,
        train,
        target="is_denied",
        task="binary",
        name="notebook_deny",
        registry=registry,
        holdout=test,
        alias="prod",
    )
    manifest = registry.card("notebook_deny", version).manifest
    assert manifest.training.evaluated_on == "holdout" and manifest.parity.rows == len(test)
    assert manifest.classes == ("false", "true") and manifest.estimator_kind == "fitted"
    assert manifest.estimator_params["class"] == "ColumnTransformer > HistGradientBoostingClassifier"
    assert {f.name: f.sql_type for f in manifest.features}["self_employed"] == "BOOLEAN"
    assert 0.5 < manifest.metrics["auc"] <= 1
    # the registered model scores the test rows as the notebook's own object does
    with engine.connect(":memory:", registry) as con:
        con.register("test_rows", test)
        got = con.sql("select predict('notebook_deny', t) as p from test_rows t").fetchnumpy()["p"]
    np.testing.assert_allclose(got, pipeline.predict_proba(test.drop(columns="is_denied"))[:, 1], atol=1e-5)
    assert (
        register_fitted(
            pipeline, train, target="is_denied", task="binary", name="notebook_deny", registry=registry, holdout=test
        )
        == version
    )  # the same graph from the same rows


def test_xgboost_in_a_notebook_pipeline_is_labelled_by_class(frames, tmp_path):
    import xgboost

    train, test = frames
    pipeline = notebook_pipeline(xgboost.XGBClassifier(n_estimators=20, max_depth=3))
    pipeline.fit(train.drop(columns="is_denied"), train.is_denied.astype(int))  # XGBoost takes 0/1
    registry = Registry(tmp_path / "registry")
    version = register_fitted(
        pipeline, train, target="is_denied", task="binary", name="notebook_xgb", registry=registry, holdout=test
    )
    model = registry.load("notebook_xgb", version)
    rows = pa.Table.from_pandas(test, preserve_index=False)
    labels = set(model.predict({c: rows.column(c) for c in rows.column_names}, "label").to_pylist())
    assert labels <= {"false", "true"} and model.raw["parity"]["label_mismatches"] == 0


def test_a_count_model_from_a_notebook(small, tmp_path):
    frame = small.query("select dir, lvr, ccs, pbcr, cast(mcs as integer) as visits from features_mortgage")
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("n", SimpleImputer(), ["dir", "lvr", "ccs"]),
                        ("c", OneHotEncoder(handle_unknown="ignore"), ["pbcr"]),
                    ]
                ),
            ),
            ("estimator", HistGradientBoostingRegressor(loss="poisson", max_iter=30)),
        ]
    )
    frame = frame.fillna({"pbcr": ""})
    registry = Registry(tmp_path / "registry")
    pipeline.fit(frame.drop(columns="visits"), frame.visits)  # float64: splits fall between float32 values
    version = register_fitted(pipeline, frame, target="visits", task="regression", name="visits", registry=registry)
    manifest = registry.card("visits", version).manifest
    assert manifest.training.evaluated_on == "training frame" and "mean_deviance" in manifest.metrics
    # each such split holds the float32 that sends the float32 inputs as HistGradientBoosting does
    assert manifest.parity.thresholds_adjusted > 0


def test_what_cannot_be_registered_says_why(frames, tmp_path):
    train, _ = frames
    registry = Registry(tmp_path / "registry")
    unfitted = notebook_pipeline(HistGradientBoostingClassifier())
    with pytest.raises(SpecError, match="Model m: the pipeline is not fitted"):
        register_fitted(unfitted, train, target="is_denied", task="binary", name="m", registry=registry)
    custom = Pipeline(
        [
            ("features", ColumnTransformer([("n", SimpleImputer(), NUMERIC)])),
            ("squash", FunctionTransformer(np.tanh)),
            ("estimator", HistGradientBoostingClassifier(max_iter=5)),
        ]
    )
    custom.fit(train[NUMERIC], train.is_denied)
    with pytest.raises(SpecError, match=r"Model m: step 'squash' \(FunctionTransformer\) cannot be exported to ONNX"):
        register_fitted(
            custom, train[[*NUMERIC, "is_denied"]], target="is_denied", task="binary", name="m", registry=registry
        )
    with pytest.raises(ScorehouseError, match="Model name 'Not a name' is not valid"):
        register_fitted(custom, train, target="is_denied", task="binary", name="Not a name", registry=registry)
    assert not list((tmp_path / "registry").glob("*/versions/*"))


def test_the_documented_notebook_example_runs(tmp_path):
    page = (ROOT / "docs" / "pages" / "training.md").read_text()
    example = re.search(r"## Register a pipeline fitted in a notebook\n.*?```python\n(.*?)```", page, re.S).group(1)
    result = subprocess.run(
        [sys.executable, "-c", example],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SCOREHOUSE_REGISTRY": str(tmp_path / "registry")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert Registry(tmp_path / "registry").versions("notebook_deny") == [1]
