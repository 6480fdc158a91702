"""BOOLEAN is a first-class input, and other types are accepted or refused the same way everywhere."""

import duckdb
import numpy as np
import pytest

import scorehouse.duckdb as engine
from scorehouse.errors import SpecError
from scorehouse.registration.spec import parse_spec
from scorehouse.registration.training import read_source, train
from scorehouse.registry import Registry
from scorehouse.scoring import Session

from helpers import sklearn_answers

# The mortgage features with yes/no as BOOLEAN, as DuckDB's CSV reader and dbt seeds type them.
BOOLEAN_FEATURES = """
create table applications as
select application_id, dir, lvr, ccs, pbcr = 'yes' as pbcr, dmi = 'yes' as dmi, self = 'yes' as self,
       single, is_denied
from small.features_mortgage
"""


@pytest.fixture(scope="module")
def booleans(small, tmp_path_factory):
    """(registry, warehouse, {model: candidate}): one model reads BOOLEANs as categories, one as numbers."""
    folder = tmp_path_factory.mktemp("booleans")
    warehouse = folder / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"attach '{small.warehouse}' as small (read_only)")
        con.execute(BOOLEAN_FEATURES)
    registry = Registry(folder / "registry")
    candidates = {}
    for name, kind, numeric, categorical in (
        ("bool_categories", "logistic_regression", ["dir", "lvr", "ccs"], ["pbcr", "dmi", "self", "single"]),
        ("bool_numbers", "gradient_boosting", ["dir", "lvr", "ccs", "pbcr", "dmi", "self"], ["single"]),
    ):
        spec = parse_spec(
            {
                "name": name,
                "task": "binary",
                "target": "is_denied",
                "source": {"table": "applications"},
                "estimator": {
                    "kind": kind,
                    "params": {"max_iter": 1000}
                    if kind == "logistic_regression"
                    else {"n_estimators": 20, "random_state": 0},
                },
                "features": {"numeric": numeric, "categorical": categorical},
            }
        )
        candidate = train(spec, read_source(spec, warehouse))
        registry.promote(name, registry.register(candidate.manifest, candidate.files))
        candidates[name] = candidate
    return registry, warehouse, candidates


def test_boolean_columns_train_as_the_kind_the_spec_gives_them(booleans):
    _, _, candidates = booleans
    categories = {f["name"]: f for f in candidates["bool_categories"].manifest["features"]}
    assert categories["pbcr"]["sql_type"] == "BOOLEAN" and categories["pbcr"]["categories"] == ["false", "true"]
    assert categories["single"]["sql_type"] == "VARCHAR"
    numbers = {f["name"]: f for f in candidates["bool_numbers"].manifest["features"]}
    assert numbers["pbcr"]["kind"] == "numeric" and numbers["pbcr"]["sql_type"] == "BOOLEAN"
    profile = candidates["bool_numbers"].manifest["profile"]["features"]["pbcr"]
    assert profile["min"] == 0.0 and profile["max"] == 1.0


@pytest.mark.parametrize("model", ["bool_categories", "bool_numbers"])
def test_boolean_columns_score_on_every_duckdb_path_as_scikit_learn_does(booleans, model):
    registry, warehouse, candidates = booleans
    candidate = candidates[model]
    spec = candidate.manifest["spec"]
    names = spec["numeric"] + spec["categorical"]
    scorer = Session(registry)
    with engine.connect(warehouse, registry, read_only=True) as con:
        frame = con.sql("select * from applications order by application_id").to_arrow_table().to_pandas()
        paths = {
            "typed": f"predict_{model}(struct_pack({', '.join(names)}))",
            "generic": f"predict('{model}', f)",
            "onnx": engine.predict_sql(scorer, model, "f", "score", "onnx"),
        }
        if candidate.explanation is not None:
            paths["sql"] = engine.predict_sql(scorer, model, "f", "score", "sql")
        scores = {
            name: con.sql(f"select {sql} as p from applications as f order by application_id").fetchnumpy()["p"]
            for name, sql in paths.items()
        }
    assert "sql" in scores  # both are explained: the SQL is written from their explanations
    want = sklearn_answers(candidate, frame)["score"]  # scikit-learn fed as training fed it
    for name, got in scores.items():
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=name)


def test_boolean_guards_and_profiles_read_true_and_false(booleans):
    registry, warehouse, _ = booleans
    with engine.connect(warehouse, registry, read_only=True) as con:
        categories = con.sql(
            "select category from scorehouse_bins('bool_categories') where feature = 'pbcr' order by 1"
        ).fetchall()
        assert categories == [("false",), ("true",)]
        problems = con.sql(
            "select scorehouse_schema_problems('bool_categories', "
            '\'{"dir": "DOUBLE", "lvr": "DOUBLE", "ccs": "DOUBLE", "pbcr": "BOOLEAN", '
            '"dmi": "BOOLEAN", "self": "VARCHAR", "single": "VARCHAR"}\')'
        ).fetchall()
        assert problems == [("[]",)]


@pytest.mark.parametrize(
    "column, sql, kind, message",
    [
        ("dir", "current_date - cast(dir * 100 as integer)", "numeric", "numeric feature 'dir' has type DATE"),
        ("dir", "current_timestamp", "numeric", "numeric feature 'dir' has type TIMESTAMP WITH TIME ZONE"),
        ("pbcr", "cast(ccs as integer)", "categorical", "categorical feature 'pbcr' has type INTEGER"),
        ("pbcr", "[pbcr]", "categorical", r"categorical feature 'pbcr' has type VARCHAR\[\]"),
    ],
)
def test_types_predict_would_refuse_are_refused_at_training_with_a_fix(small, column, sql, kind, message):
    spec = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "is_denied",
            "estimator": "logistic_regression",
            "source": {"query": f"select * replace ({sql} as {column}) from features_mortgage"},
            "features": {
                "numeric": ["lvr", column] if kind == "numeric" else ["lvr"],
                "categorical": [column] if kind == "categorical" else [],
            },
        }
    )
    with pytest.raises(SpecError, match=message) as error:
        train(spec, read_source(spec, small.warehouse))
    fix = "cast it to text in the model that builds the features" if kind == "categorical" else "turn it into a number"
    assert fix in str(error.value)


def test_decimal_and_bigint_numbers_are_accepted_everywhere(small):
    spec = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "is_denied",
            "estimator": "logistic_regression",
            "source": {
                "query": "select cast(dir as decimal(10, 4)) as dir, cast(ccs as bigint) as ccs, "
                "is_denied from features_mortgage"
            },
            "features": {"numeric": ["dir", "ccs"]},
        }
    )
    candidate = train(spec, read_source(spec, small.warehouse))
    assert [f["sql_type"] for f in candidate.manifest["features"]] == ["DOUBLE", "DOUBLE"]
