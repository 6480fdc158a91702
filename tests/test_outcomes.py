"""Outcomes are typed against the model (udfs/outcomes.py), and every stored metric is the positive class's:
models whose positive class is a text label sorting first ('bad' of bad/good) and last ('Yes' of No/Yes), one
trained on a BOOLEAN, one on numbers; each outcome spelling (text, BOOLEAN, 0/1) read on real rows in DuckDB,
compared with scikit-learn's pos_label; the spellings the rule refuses stop the query in one line."""

import shutil
from pathlib import Path

import duckdb
import pytest
from sklearn import metrics

from scorehouse.errors import ScorehouseError
from scorehouse.registration.spec import parse_spec
from scorehouse.registration.training import prepare, read_source, sklearn_outputs, train
from scorehouse.registry import Registry
from scorehouse.scoring import Session
from scorehouse.sql import DUCKDB
from scorehouse.writer import SqlWriter

FIXTURES = Path(__file__).parent / "fixtures"
FEATURES = {"numeric": ["dir", "hir", "lvr", "ccs", "mcs", "uria"], "categorical": ["pbcr", "dmi", "self", "single"]}
# name -> (the target as SQL over features_mortgage, its positive class, task)
TARGETS = {
    "credit_risk": ("case when is_denied then 'bad' else 'good' end", "bad", "binary"),  # sorts first
    "churn": ("case when is_denied then 'Yes' else 'No' end", "Yes", "binary"),  # sorts last
    "grade": ("case when is_denied then 2 else 1 end", "2", "binary"),  # numbers
    "band": ("case when lvr < 0.7 then 'low' when lvr < 0.85 then 'mid' else 'high' end", None, "multiclass"),
}


def spec_of(name: str):
    target, positive, task = TARGETS[name]
    return parse_spec(
        {
            "name": name,
            "task": task,
            "target": "y",
            **({"positive_class": positive} if positive else {}),
            "source": {"query": f"select *, {target} as y from features_mortgage"},
            "estimator": {"kind": "logistic_regression", "params": {"max_iter": 2000}},
            "features": FEATURES,
        }
    )


@pytest.fixture(scope="module")
def models(small, tmp_path_factory):
    """The models above trained on the mortgage rows and registered, with their candidates."""
    registry = Registry(tmp_path_factory.mktemp("outcomes") / "registry")
    candidates = {}
    for name in TARGETS:
        spec = spec_of(name)
        candidates[name] = train(spec, read_source(spec, small.warehouse))
        registry.promote(name, registry.register(candidates[name].manifest, candidates[name].files))
    return small, Session(registry), candidates


# Each outcome spelling of "denied", as a user writes it for a model trained on text, numbers or a BOOLEAN
SPELLINGS = {
    "credit_risk": [
        "case when is_denied then 'bad' else 'good' end",
        "is_denied",
        "cast(is_denied as integer)",
        "cast(is_denied as integer) * 1.0",
    ],
    "churn": ["case when is_denied then 'Yes' else 'No' end", "is_denied", "cast(is_denied as tinyint)"],
    "grade": ["case when is_denied then 2 else 1 end", "is_denied", "case when is_denied then '2' else '1' end"],
    "mortgage_deny": ["is_denied", "cast(is_denied as integer)", "cast(is_denied as varchar)"],
}


@pytest.mark.parametrize("name", list(SPELLINGS))
def test_every_outcome_spelling_reads_as_the_positive_class(models, name):
    small, scorer, _ = models
    scorer = scorer if name != "mortgage_deny" else Session(small.registry)
    for spelling in SPELLINGS[name]:
        with duckdb.connect(str(small.warehouse), read_only=True) as con:
            query = (
                f"select is_denied, {SqlWriter(scorer, DUCKDB).outcome_sql(name, 'o', 'outcome')} as y "
                f"from (select is_denied, {spelling} as outcome from features_mortgage) as o"
            )
            rows = con.sql(query).fetchall()
        assert [y for _, y in rows] == [None if d is None else float(d) for d, _ in rows], (name, spelling)


def test_outcomes_the_rule_cannot_read_stop_the_query_naming_the_model_column_type_and_classes(models):
    small, scorer, _ = models
    refused = {
        (
            "credit_risk",
            "case when is_denied then 'bad' else 'maybe' end",
        ): "Model credit_risk v1: outcome 'outcome' holds 'maybe' (VARCHAR), which is not one of the model's "
        "classes; the outcome is one of the classes 'bad', 'good' (positive class 'bad'), a BOOLEAN "
        "(true: 'bad') or 0/1 (1: 'bad')",
        (
            "credit_risk",
            "case when is_denied then 2 else 0 end",
        ): "Model credit_risk v1: outcome 'outcome' holds '2' (INTEGER), which is neither 0 nor 1",
        ("credit_risk", "date '2026-01-01'"): "Model credit_risk v1: outcome 'outcome' has type DATE; the outcome is",
        (
            "grade",
            "cast(is_denied as integer)",
        ): "Model grade v1: outcome 'outcome' holds '0' (INTEGER), which is not one of the model's classes; "
        "the outcome is one of the classes '1', '2' (positive class '2'), or a BOOLEAN",
        (
            "mortgage_deny",
            "case when is_denied then 'yes' else 'no' end",
        ): "(VARCHAR), which is not one of the model's classes",
    }
    for (name, spelling), message in refused.items():
        each = scorer if name != "mortgage_deny" else Session(small.registry)
        with duckdb.connect(str(small.warehouse), read_only=True) as con, pytest.raises(duckdb.Error) as error:
            con.sql(
                f"select {SqlWriter(each, DUCKDB).outcome_sql(name, 'o', 'outcome')} "
                f"from (select {spelling} as outcome from features_mortgage) as o"
            ).fetchall()
        assert message in str(error.value) and len(str(error.value).splitlines()) == 1, (name, spelling, error.value)
    with pytest.raises(
        ScorehouseError,
        match="Model band v1 is a multiclass classifier: quality and comparisons "
        "measure binary classifiers and regressors",
    ):
        SqlWriter(scorer, DUCKDB).outcome_sql("band", "o", "outcome")


@pytest.mark.parametrize("name", ["credit_risk", "churn"])
def test_holdout_metrics_are_the_positive_class_s(models, name):
    """precision, recall, f1 and the counts in the manifest, against scikit-learn's pos_label on the holdout."""
    small, scorer, candidates = models
    spec, candidate = spec_of(name), candidates[name]
    data = prepare(spec, read_source(spec, small.warehouse))
    positive = candidate.manifest["positive_class"]
    score = sklearn_outputs(candidate.pipeline, data.x_test, "binary", data.classes, positive)["score"]
    truth, predicted = data.y_test == positive, score >= 0.5
    stored = scorer.card(name).metrics
    want = {
        "precision": metrics.precision_score(truth, predicted),
        "recall": metrics.recall_score(truth, predicted),
        "f1": metrics.f1_score(truth, predicted),
        "auc": metrics.roc_auc_score(truth, score),
        "brier": metrics.brier_score_loss(truth, score),
    }
    (tn, fp), (fn, tp) = metrics.confusion_matrix(truth, predicted)
    want.update(true_positives=tp, false_positives=fp, false_negatives=fn, true_negatives=tn)
    for metric, value in want.items():
        assert stored[metric] == pytest.approx(value, rel=1e-12), (name, metric)
    # the other class's precision is another number: a test of the class, not of the formula
    assert stored["precision"] != pytest.approx(metrics.precision_score(~truth, ~predicted), abs=1e-3)


def test_a_version_of_the_previous_format_is_read_without_the_other_class_metrics(tmp_path):
    """A registry the previous release wrote (tests/fixtures/registry_format1: credit_risk, positive class 'bad',
    whose stored precision and recall were those of 'good'): it loads and scores, its holdout metrics lack the
    two it got wrong, so no gate compares with them."""
    shutil.copytree(FIXTURES / "registry_format1", tmp_path / "registry")
    registry = Registry(tmp_path / "registry")
    card = registry.card("credit_risk", 1)
    assert card.raw["format"] == 1 and card.positive_class == "bad"
    assert {"precision", "recall"} <= set(card.raw["metrics"])
    assert not {"precision", "recall"} & set(card.metrics) and card.metrics["auc"] == card.raw["metrics"]["auc"]
    rows = {r["metric"] for r in Session(registry).profile_rows("credit_risk@1", "metrics")}
    assert rows == set(card.metrics)
    assert registry.verify("credit_risk", 1) == []  # its sample scores as it did


def test_a_fresh_version_writes_the_current_format(models):
    from scorehouse.manifest import MANIFEST_FORMAT

    _, scorer, _ = models
    assert scorer.card("credit_risk").manifest.format == MANIFEST_FORMAT == 2


def test_training_on_a_value_beyond_float32_names_the_column(small):
    spec = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "is_denied",
            "source": {
                "query": "select *, case when application_id = 7 then 1e39 else lvr end as lvr_big "
                "from features_mortgage"
            },
            "estimator": {"kind": "logistic_regression"},
            "features": {"numeric": ["dir", "lvr_big"], "categorical": ["pbcr"]},
        }
    )
    with pytest.raises(ScorehouseError) as error:
        train(spec, read_source(spec, small.warehouse))
    assert str(error.value) == (
        "Model m: numeric feature 'lvr_big' holds 1 value(s) that are infinite or beyond float32's range (±3.4e38), "
        "e.g. 1e+39, which the model reads as ±inf; scikit-learn cannot train on them: clip or drop them in the "
        "model that builds the features"
    )


def test_xgboost_training_says_nothing_a_user_cannot_act_on(small, recwarn):
    spec = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "is_denied",
            "source": {"table": "features_mortgage"},
            "estimator": {"kind": "xgboost", "params": {"n_estimators": 20, "max_depth": 3}},
            "features": FEATURES,
        }
    )
    train(spec, read_source(spec, small.warehouse))
    assert not [w for w in recwarn if "y_prob values do not sum to one" in str(w.message)]


def test_registration_records_the_rows_that_trained_the_version_as_input_hash_says_them(models):
    """training_rows.json: the first 16 hex digits of the input hash (scorehouse.fingerprint.row_hash, in Python here)
    of every row the pipeline was fitted on, and of no holdout row that differs from them all."""
    from scorehouse.fingerprint import row_hash

    small, scorer, candidates = models
    spec = spec_of("credit_risk")
    data = prepare(spec, read_source(spec, small.warehouse))
    card = scorer.card("credit_risk")
    rows = data.table.to_pylist()
    fitted = {row_hash(rows[i], card.features)[:16] for i in data.x_train.index}
    held_out = {row_hash(rows[i], card.features)[:16] for i in data.x_test.index}
    assert set(scorer.training_rows("credit_risk")) == fitted and len(fitted) > 1500
    assert card.manifest.training_rows == {"rows": len(data.x_train), "distinct": len(fitted)}
    assert held_out - fitted  # the holdout rows are not among them
    with duckdb.connect(str(small.warehouse), read_only=True) as con:
        import scorehouse.duckdb

        scorehouse.duckdb.register(con, registry=scorer.registry)
        (count,) = con.execute("select count(*) from scorehouse_training_rows('credit_risk')").fetchone()
    assert count == len(fitted)
