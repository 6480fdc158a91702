"""What holds on every engine: each test runs once on DuckDB and once on Spark (the `engine` fixture), with
the same registry, the same rows and the same SQL but for each engine's spelling (its Dialect)."""

import math
import re

import numpy as np
import pytest
from numpy.testing import assert_allclose

from helpers import MORTGAGE_FEATURES

MODELS = ["mortgage_deny", "mortgage_logit"]  # the GBT (onnxruntime by default) and the logistic model (SQL)


@pytest.fixture(scope="module")
def rows(small):
    return small.query("select * from features_mortgage order by application_id")


def features(engine, relation: str = "t") -> str:
    """The struct of the model's features read from `relation`, in the engine's spelling (a typed function
    takes exactly its features; the generic one finds them by name)."""
    sql = engine.dialect
    return sql.struct((name, f"{relation}.{sql.identifier(name)}") for name in MORTGAGE_FEATURES)


@pytest.mark.parametrize("model", MODELS)
def test_predict_generic_and_typed_equal_scikit_learn(engine, small, rows, model):
    row = features(engine)
    scored = engine.rows(
        f"select application_id, predict('{model}', {row}), predict_{model}({row}), predict('{model}@1', {row}) "
        "from features_mortgage as t order by application_id"
    )
    expected = small.sklearn_scores(model, rows)["score"]
    generic, typed, pinned = (np.asarray([r[i] for r in scored], dtype=np.float64) for i in (1, 2, 3))
    assert [r[0] for r in scored] == rows["application_id"].tolist()  # every row in comes out scored
    assert_allclose(generic, expected, atol=1e-5, rtol=0)
    assert_allclose(typed, generic, atol=1e-6, rtol=0)
    assert_allclose(pinned, generic, atol=0, rtol=0)  # version 1 is prod


@pytest.mark.parametrize("model", MODELS)
def test_missing_and_non_finite_numbers_score_as_scikit_learn(engine, small, rows, model):
    base = rows.iloc[0][MORTGAGE_FEATURES].to_dict()
    cases = {
        "NULL": ("CAST(NULL AS DOUBLE)", None),
        "NaN": ("CAST('NaN' AS DOUBLE)", None),
        "+inf": ("CAST('Infinity' AS DOUBLE)", 1e30),
    }
    for case, (sql, stands_for) in cases.items():
        fields = {name: literal(value) for name, value in base.items()} | {"lvr": sql}
        got = engine.value(f"select predict('{model}', {engine.dialect.struct(fields.items())})")
        frame = rows.iloc[[0]].assign(lvr=stands_for if stands_for is not None else np.nan)
        assert got == pytest.approx(small.sklearn_scores(model, frame)["score"][0], abs=1e-5), case


def test_the_version_and_the_explanation_agree_with_the_score(engine, rows):
    assert engine.value("select scorehouse_model_version('mortgage_logit')") == 1
    explained = engine.rows(
        "select s.p, s.e.baseline, s.e.margin, s.e.contributions from ("
        f"select application_id, predict('mortgage_logit', {features(engine)}) as p, "
        f"explain('mortgage_logit', {features(engine)}, 3) as e from features_mortgage as t) as s "
        "order by s.application_id"
    )
    assert len(explained) == len(rows)
    for score, baseline, margin, listed in explained:
        assert len(listed) == 3 and math.isfinite(baseline)
        assert 1 / (1 + math.exp(-margin)) == pytest.approx(score, abs=1e-6)  # the margin is the log-odds


def test_a_mistyped_feature_stops_the_query_naming_model_feature_expected_and_found(engine, rows):
    base = rows.iloc[0][MORTGAGE_FEATURES].to_dict()
    fields = {name: literal(value) for name, value in base.items()} | {"lvr": "'0.8'"}
    for model in MODELS:  # (DuckDB's typed functions refuse a mistyped struct when binding, in DuckDB's words)
        with pytest.raises(engine.errors) as error:
            engine.rows(f"select predict('{model}', {engine.dialect.struct(fields.items())})")
        assert re.search(rf"Model {model} \(version 1\): feature 'lvr' has type \w+, expected DOUBLE", str(error.value))


def test_an_unknown_model_is_refused_by_name(engine):
    with pytest.raises(engine.errors) as error:
        engine.rows(f"select predict('no_such_model', {features(engine)}) from features_mortgage as t")
    assert "no_such_model" in str(error.value) and "Traceback" not in str(error.value).split("\n")[0]


def literal(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "NULL"
    return f"'{value}'" if isinstance(value, str) else f"CAST({float(value)!r} AS DOUBLE)"
