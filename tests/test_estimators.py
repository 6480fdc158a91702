"""Every estimator kind and loss against its own library, on rows with NULLs, unseen categories, BOOLEAN and
large-integer inputs: onnxruntime and, where the model compiles, its SQL. NULL handling is one contract
across scikit-learn (and XGBoost, LightGBM), onnxruntime and the SQL."""

import sys

import numpy as np
import pyarrow as pa
import pytest

import scorehouse.duckdb
from scorehouse.errors import SpecError
from scorehouse.registration.estimators import KINDS
from scorehouse.registration.spec import parse_spec
from scorehouse.registration.training import build_pipeline
from scorehouse.scoring import Session

from helpers import ESTIMATOR_CASES, sklearn_answers

# Every loss for count and positive targets a spec can name: (kind, params key, value).
LOSSES = {
    ("hist_gradient_boosting", "loss", "poisson"),
    ("hist_gradient_boosting", "loss", "gamma"),
    ("poisson_regression", None, None),
    ("gamma_regression", None, None),
    ("tweedie_regression", None, None),
    ("xgboost", "objective", "count:poisson"),
    ("xgboost", "objective", "reg:gamma"),
    ("xgboost", "objective", "reg:tweedie"),
    ("lightgbm", "objective", "poisson"),
    ("lightgbm", "objective", "gamma"),
    ("lightgbm", "objective", "tweedie"),
}


def test_every_kind_and_loss_has_a_case():
    cases = {(task, kind) for task, kind, *_ in ESTIMATOR_CASES.values()}
    assert {(task, kind) for task, kinds in KINDS.items() for kind in kinds} <= cases
    covered = {
        (kind, key, params.get(key) if key else None)
        for _, kind, params, *_ in ESTIMATOR_CASES.values()
        for key in ("loss", "objective", None)
    }
    assert LOSSES <= covered, LOSSES - covered


def odd_rows(rows):
    """The case's rows with the inputs users send: NULLs in every feature somewhere, categories never seen."""
    table = pa.Table.from_pandas(rows, preserve_index=False)
    n = table.num_rows
    columns = {}
    for i, name in enumerate(table.column_names):
        column = table.column(name).combine_chunks()
        nulls = (np.arange(n) % 7) == (i % 7)  # a NULL in each column, on different rows
        if pa.types.is_string(column.type):
            unseen = np.where((np.arange(n) % 11) == (i % 11), "never seen", column.to_numpy(zero_copy_only=False))
            column = pa.array(unseen, pa.string())
        columns[name] = pa.array(column.to_pylist(), column.type, mask=nulls)
    return pa.table(columns)


@pytest.mark.parametrize("name", sorted(ESTIMATOR_CASES))
def test_every_case_scores_odd_rows_as_its_library_does(estimator_models, name):
    registry, models = estimator_models
    candidate, rows = models[name]
    odd = odd_rows(rows.head(1500))
    frame = odd.to_pandas()
    want = sklearn_answers(candidate, frame)
    output = "label" if candidate.manifest["task"] == "multiclass" else "score"
    model = registry.load(name, 1)
    got = model.predict({n: odd.column(n) for n in odd.column_names}, output).to_pylist()
    paths = {"onnx": got}
    if output == "score" and candidate.explanation is not None:  # SQL is written for the score, from explain.json
        with scorehouse.duckdb.connect(":memory:", registry) as con:
            con.register("odd", odd)
            sql = scorehouse.duckdb.predict_sql(Session(registry), name, "r", output, "sql")
            paths["sql"] = con.sql(f"select {sql} as v from odd as r").fetchnumpy()["v"].tolist()
    for path, values in paths.items():
        if output == "label":
            assert values == want["label"].tolist(), path
        else:
            tolerance = candidate.manifest["parity"]["tolerance"]
            assert np.abs(np.asarray(values, dtype=float) - want["score"]).max() <= tolerance, path


def test_count_and_positive_targets_stay_in_their_domain(estimator_models):
    registry, models = estimator_models
    for name, (_, kind, params, *_) in ESTIMATOR_CASES.items():
        loss = params.get("loss") or params.get("objective") or kind
        if not any(word in str(loss) for word in ("poisson", "gamma", "tweedie")):
            continue
        candidate, rows = models[name]
        assert "mean_deviance" in candidate.manifest["metrics"], name
        table = pa.Table.from_pandas(rows, preserve_index=False)
        scores = registry.load(name, 1).predict({n: table.column(n) for n in table.column_names}).to_numpy()
        assert (scores > 0).all(), name  # the log link: a count or an amount is never below zero


def test_a_kind_whose_library_is_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost raises ImportError
    spec = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "y",
            "source": {"table": "t"},
            "estimator": "xgboost",
            "features": {"numeric": ["a"]},
        }
    )
    with pytest.raises(
        SpecError,
        match=r"Model m: estimator 'xgboost' needs the xgboost extra: "
        r"pip install 'scorehouse\[xgboost\]'",
    ):
        build_pipeline(spec)
