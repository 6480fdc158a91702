"""Quality in production once outcomes arrive, on DuckDB and on Spark: model_quality equals scikit-learn on the
same rows, per version and window, beside the holdout; expect_model_quality_above passes, fails and says "not
enough labels"; compare_models and expect_challenger_not_worse; quality_history."""

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from scorehouse.sql import BUCKETS, bucket

from helpers import Workspace, build_package, install_package, read_parquet_table, run_dbt_on_spark, run_results

pytestmark = pytest.mark.dbt

PROJECT = "scorehouse_quality_cases"
# Two weeks of scores (rounded to two decimals: ties for the AUC), 70% of the outcomes arrived.
SCORED = """select application_id, round(deny_probability, 2) as deny_probability, model_version,
       case when application_id % 2 = 0 then timestamp '2026-11-02 10:00' else timestamp '2026-11-10 10:00' end
           as scored_at
from {{ input('mart_mortgage_risk') }}"""
OUTCOMES = (
    "select application_id, is_denied as denied from {{ input('features_mortgage') }} where application_id % 10 < 7"
)
# the same scores with each row's input hash: the rows that trained version 1 are told apart and left out
SCORED_WITH_HASHES = """select application_id, deny_probability, model_version, input_hash,
       timestamp '2026-11-10 10:00' as scored_at
from {{ input('mart_mortgage_risk') }}"""
PRICES = """select diamond_id, predicted_price, model_version, timestamp '2026-11-03 08:00' as scored_at
from {{ input('mart_diamond_prices') }}"""
PRICE_OUTCOMES = "select diamond_id, price from {{ input('features_diamonds') }} where diamond_id % 4 <> 0"
VISITS = """select application_id, {{ scorehouse.predict('visits', relation='f') }} as expected_visits,
       {{ scorehouse.model_version('visits') }} as model_version, timestamp '2026-11-04 09:00' as scored_at
from {{ input('features_mortgage') }} as f"""
VISIT_OUTCOMES = (
    "select application_id, cast(mcs as integer) as visits from {{ input('features_mortgage') }} where mcs is not null"
)
QUALITY = """{{{{ config(materialized='table', tags=['scorehouse_quality']) }}}}
{{{{ scorehouse.model_quality(ref('{scored}'), ref('{outcomes}'), '{model}', key='{key}', score='{score}',
                             outcome='{outcome}', window='week') }}}}"""
ROLLOUT = """select application_id,
       {{ scorehouse.predict('mortgage_deny', relation='f', key='application_id') }} as deny_probability,
       {{ scorehouse.model_version('mortgage_deny', relation='f', key='application_id') }} as model_version
from {{ ref('scoring_inputs') }} as f"""
# the same gray release in a relation that keeps neither the key nor the version: no count of its own
ROLLOUT_SCORES_ONLY = """select {{ scorehouse.predict('mortgage_deny', relation='f', key='application_id') }} as p
from {{ ref('scoring_inputs') }} as f"""
INPUTS = "select * from {{ input('features_mortgage') }}"
COMPARISON = """{{ config(materialized='table') }}
{{ scorehouse.compare_models(ref('scoring_inputs'), 'mortgage_deny', 'mortgage_deny@candidate', 'application_id',
                             outcomes=ref('outcomes_mortgage'), outcome='denied') }}"""
GATES = """
  - name: comparison
    data_tests:
      - scorehouse.expect_challenger_not_worse: {arguments: {metric: auc, margin: 0.5}}
      - scorehouse.expect_challenger_not_worse:
          arguments: {metric: brier, margin: -0.5}
          config: {error_if: "<2", warn_if: "<2"}
"""
TESTS = """version: 2
models:
  - name: quality_mortgage
    data_tests:
      - scorehouse.expect_model_quality_above:
          arguments: {allowed_drop: {auc: 0.2, brier: 0.1}, min_labels: 100}
      - scorehouse.expect_model_quality_above:
          arguments: {allowed_drop: {auc: -0.5}, min_labels: 100}
          config: {error_if: "<2", warn_if: "<2"}
      - scorehouse.expect_model_quality_above:
          arguments: {allowed_drop: {auc: 0.2}, min_labels: 100000}
          config: {warn_if: "<1", error_if: ">1"}
"""


# A model whose positive class is a text label sorting first ('bad' of bad/good), its outcomes spelled three ways
CREDIT_SPEC = {
    "name": "credit_risk",
    "task": "binary",
    "target": "risk",
    "positive_class": "bad",
    "source": {"query": "select *, case when is_denied then 'bad' else 'good' end as risk from features_mortgage"},
    "estimator": {"kind": "gradient_boosting", "params": {"n_estimators": 30, "max_depth": 2, "random_state": 0}},
    "features": {"numeric": ["dir", "hir", "lvr", "ccs", "mcs", "uria"], "categorical": ["pbcr", "dmi", "self"]},
}
CREDIT_SCORED = """select application_id, {{ scorehouse.predict('credit_risk', relation='f') }} as p_bad,
       {{ scorehouse.model_version('credit_risk') }} as model_version, timestamp '2026-11-04 09:00' as scored_at
from {{ input('features_mortgage') }} as f"""
CREDIT_OUTCOMES = {
    "text": "case when is_denied then 'bad' else 'good' end",
    "boolean": "is_denied",
    "number": "case when is_denied then 1 else 0 end",
    # refused: a text that is no class; a number that is neither a class nor 0/1
    "maybe": "case when is_denied then 'bad' when application_id % 3 = 0 then 'maybe' else 'good' end",
    "two": "case when is_denied then 2 else 0 end",
    "one_class": "is_denied",
}  # only the denied rows: the AUC cannot be computed
CREDIT_OUTCOME = """select application_id, {outcome} as risk from {{{{ input('features_mortgage') }}}}
where application_id % 10 < 7 and is_denied is not null{only}"""
CREDIT_COMPARISON = """{{{{ config(materialized='table') }}}}
{{{{ scorehouse.compare_models(ref('scoring_inputs'), 'credit_risk', 'credit_risk@candidate', 'application_id',
                             outcomes=ref('outcomes_credit_{spelling}'), outcome='risk') }}}}"""
CREDIT_GATES = """
  - name: quality_credit_boolean
    data_tests:
      - scorehouse.expect_model_quality_above:
          arguments: {allowed_drop: {auc: -0.5, precision: -0.5}, min_labels: 100}
          config: {error_if: "<2", warn_if: "<2"}
  - name: quality_credit_one_class
    data_tests:
      - scorehouse.expect_model_quality_above:
          arguments: {allowed_drop: {auc: 0.5}, min_labels: 100}
          config: {error_if: "<2", warn_if: "<2"}
  - name: comparison_credit_one_class
    data_tests:
      - scorehouse.expect_challenger_not_worse:
          arguments: {metric: auc, margin: 0.5}
          config: {error_if: "<2", warn_if: "<2"}
"""


INPUT_MACRO = """{% macro input(name) -%}
  {%- if target.type == 'spark' -%}parquet.`{{ var('data_dir') }}/{{ name }}.parquet`{%- else -%}
  main.{{ name }}{%- endif -%}
{%- endmacro %}
"""
INPUT_TABLES = ("features_mortgage", "mart_mortgage_risk", "features_diamonds", "mart_diamond_prices")


def write_project(folder: Path) -> None:
    """The test project: scored relations and outcomes from the demo's tables, quality and comparison models."""
    for sub in ("models", "macros"):
        (folder / sub).mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(
        f"name: {PROJECT}\nversion: '0.1.0'\nconfig-version: 2\n"
        f"profile: scorehouse\nmodels: {{{PROJECT}: {{+materialized: table}}}}\n"
    )
    (folder / "macros" / "input.sql").write_text(INPUT_MACRO)
    models = {
        "scored_mortgage": SCORED,
        "outcomes_mortgage": OUTCOMES,
        "scored_prices": PRICES,
        "outcomes_prices": PRICE_OUTCOMES,
        "scored_visits": VISITS,
        "outcomes_visits": VISIT_OUTCOMES,
        "quality_mortgage": QUALITY.format(
            scored="scored_mortgage",
            outcomes="outcomes_mortgage",
            model="mortgage_deny",
            key="application_id",
            score="deny_probability",
            outcome="denied",
        ),
        "quality_prices": QUALITY.format(
            scored="scored_prices",
            outcomes="outcomes_prices",
            model="diamond_price",
            key="diamond_id",
            score="predicted_price",
            outcome="price",
        ),
        "quality_visits": QUALITY.format(
            scored="scored_visits",
            outcomes="outcomes_visits",
            model="visits",
            key="application_id",
            score="expected_visits",
            outcome="visits",
        ),
        "scoring_inputs": INPUTS,
        "comparison": COMPARISON,
        "scored_in_rollout": ROLLOUT,
        "scores_only_in_rollout": ROLLOUT_SCORES_ONLY,
        "scored_credit": CREDIT_SCORED,
        "scored_with_hashes": SCORED_WITH_HASHES,
        "quality_unseen": QUALITY.format(
            scored="scored_with_hashes",
            outcomes="outcomes_mortgage",
            model="mortgage_deny",
            key="application_id",
            score="deny_probability",
            outcome="denied",
        ),
    }
    for spelling, outcome in CREDIT_OUTCOMES.items():
        models[f"outcomes_credit_{spelling}"] = CREDIT_OUTCOME.format(
            outcome=outcome, only=" and is_denied" if spelling == "one_class" else ""
        )
        models[f"quality_credit_{spelling}"] = QUALITY.format(
            scored="scored_credit",
            outcomes=f"outcomes_credit_{spelling}",
            model="credit_risk",
            key="application_id",
            score="p_bad",
            outcome="risk",
        )
    for spelling in ("boolean", "one_class"):
        models[f"comparison_credit_{spelling}"] = CREDIT_COMPARISON.format(spelling=spelling)
    for name, sql in models.items():
        (folder / "models" / f"{name}.sql").write_text(sql)
    (folder / "models" / "quality.yml").write_text(TESTS + GATES + CREDIT_GATES)


def train_candidate(workspace) -> None:
    """A challenger for the demo mortgage model: other hyper-parameters, at the alias candidate and a 10% rollout."""
    from scorehouse.registration.spec import Estimator

    workspace.train(
        "mortgage_deny",
        promote=False,
        estimator=Estimator("gradient_boosting", {"n_estimators": 30, "max_depth": 2, "random_state": 0}),
    )
    workspace.registry.promote("mortgage_deny", 2, "candidate")
    workspace.registry.rollout("mortgage_deny", 2, 10)


def train_visits(workspace) -> None:
    """A count model (Poisson loss) for the deviance."""
    from scorehouse.registration.spec import parse_spec
    from scorehouse.registration.training import read_source, train

    spec = parse_spec(
        {
            "name": "visits",
            "task": "regression",
            "target": "visits",
            "source": {"query": "select *, cast(mcs as integer) as visits from features_mortgage"},
            "estimator": {"kind": "hist_gradient_boosting", "params": {"loss": "poisson", "max_iter": 30}},
            "features": {"numeric": ["dir", "hir", "lvr", "ccs"], "categorical": ["pbcr", "self"]},
        }
    )
    candidate = train(spec, read_source(spec, workspace.warehouse))
    workspace.registry.promote("visits", workspace.registry.register(candidate.manifest, candidate.files))


def train_credit(workspace) -> None:
    """credit_risk (positive class 'bad', which sorts first) at prod, and a challenger at the alias candidate."""
    from scorehouse.registration.spec import parse_spec
    from scorehouse.registration.training import read_source, train

    for alias, depth in (("prod", 2), ("candidate", 3)):
        spec = parse_spec(
            {
                **CREDIT_SPEC,
                "estimator": {"kind": "gradient_boosting", "params": {"n_estimators": 30, "max_depth": depth}},
            }
        )
        candidate = train(spec, read_source(spec, workspace.warehouse))
        version = workspace.registry.register(candidate.manifest, candidate.files)
        workspace.registry.promote("credit_risk", version, alias)
        workspace.candidates[f"credit_risk@{version}"] = candidate


@dataclass
class Build:
    """One `dbt build` of the test project on an engine: the run, its results by node name, and `read`, which
    returns a table it wrote (by name, or by a manifest's relation_name)."""

    workspace: Workspace
    run: subprocess.CompletedProcess
    results: dict
    target: Path
    read: Callable[[str], pd.DataFrame]


@pytest.fixture(scope="module")
def quality_project(built, tmp_path_factory):
    """The workspace with the count model and the challenger registered, and the test project."""
    root = tmp_path_factory.mktemp("quality")
    workspace = built.copy(root / "ws")
    train_visits(workspace)
    train_candidate(workspace)
    train_credit(workspace)
    write_project(root / PROJECT)
    install_package(root / PROJECT)
    return workspace, root


def build_on_duckdb(workspace: Workspace, root: Path) -> Build:
    run, results = build_package(root / PROJECT, PROJECT, workspace, root / "duckdb")
    return Build(
        workspace, run, results, root / "duckdb" / "target", lambda table: workspace.query(f"select * from {table}")
    )


def build_on_spark(workspace: Workspace, root: Path) -> Build:
    """The same project on Spark local[2], reading the demo's tables from Parquet files."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java 17")
    inputs = root / "inputs"
    inputs.mkdir(exist_ok=True)
    for table in INPUT_TABLES:
        workspace.query(f"select * from {table}").to_parquet(inputs / f"{table}.parquet")
    warehouse = root / "spark"
    run = run_dbt_on_spark(workspace, warehouse, "--project-dir", str(root / PROJECT), "--data-dir", str(inputs))

    def read(table: str) -> pd.DataFrame:
        *_, schema, name = [part.strip("`") for part in table.split(".")] if "." in table else ["scorehouse", table]
        frame = read_parquet_table(warehouse, schema, name)
        for column in frame.select_dtypes("datetimetz"):  # Spark stores instants, in the machine's zone
            frame[column] = frame[column].dt.tz_convert(datetime.now().astimezone().tzinfo).dt.tz_localize(None)
        return frame

    return Build(workspace, run, run_results(warehouse / "target", run.stdout), warehouse / "target", read)


@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def quality(request, quality_project) -> Build:
    workspace, root = quality_project
    return (build_on_duckdb if request.param == "duckdb" else build_on_spark)(workspace, root)


def by_metric(frame: pd.DataFrame) -> dict:
    return {(int(r.model_version), pd.Timestamp(r.window_start), r.metric): r for r in frame.itertuples()}


def test_binary_quality_equals_scikit_learn_per_version_and_window(quality):
    rows = by_metric(quality.read("quality_mortgage"))
    joined = quality.read("scored_mortgage").merge(quality.read("outcomes_mortgage"), on="application_id", how="left")
    manifest = quality.workspace.registry.card("mortgage_deny", 1).raw
    for week, group in joined.groupby(joined.scored_at.dt.to_period("W-SUN").dt.start_time):
        labelled = group.dropna(subset=["denied"])
        y, p = labelled.denied.astype(bool).to_numpy(), labelled.deny_probability.to_numpy()
        want = {
            "auc": metrics.roc_auc_score(y, p),
            "brier": metrics.brier_score_loss(y, p),
            "log_loss": metrics.log_loss(y, np.column_stack([1 - p, p])),
            "accuracy": metrics.accuracy_score(y, p >= 0.5),
            "precision": metrics.precision_score(y, p >= 0.5),
            "recall": metrics.recall_score(y, p >= 0.5),
        }
        for metric, value in want.items():
            row = rows[(1, week, metric)]
            assert row.value == pytest.approx(value, rel=1e-9, abs=1e-12), (week, metric)
            assert row.rows_scored == len(group) and row.labels_arrived == len(labelled)
            assert row.label_coverage == pytest.approx(len(labelled) / len(group))
            assert row.holdout_value == pytest.approx(manifest["metrics"][metric]), metric
    assert {w for (_, w, _) in rows} == {pd.Timestamp("2026-11-02"), pd.Timestamp("2026-11-09")}


def test_quality_of_a_text_class_sorting_first_is_the_positive_class_s_whatever_the_outcome_spelling(quality):
    """credit_risk's positive class is 'bad' (the first in sorted order): with the outcome as text, as a BOOLEAN
    (is it bad?) and as 0/1, model_quality equals scikit-learn's metrics with pos_label='bad' on the same rows."""
    scored = quality.read("scored_credit")
    want = None
    for spelling in ("text", "boolean", "number"):
        joined = scored.merge(quality.read(f"outcomes_credit_{spelling}"), on="application_id")
        # 0 and 1 map as the keys False and True (equal in a dict)
        truth = joined.risk.map({"bad": True, "good": False, True: True, False: False}).to_numpy(bool)
        p = joined.p_bad.to_numpy()
        predicted = p >= 0.5
        (tn, fp), (fn, tp) = metrics.confusion_matrix(truth, predicted)
        want = {
            "auc": metrics.roc_auc_score(truth, p),
            "brier": metrics.brier_score_loss(truth, p),
            "log_loss": metrics.log_loss(truth, np.column_stack([1 - p, p])),
            "accuracy": metrics.accuracy_score(truth, predicted),
            "precision": metrics.precision_score(truth, predicted, pos_label=True),
            "recall": metrics.recall_score(truth, predicted),
            "f1": metrics.f1_score(truth, predicted),
            "true_positives": tp,
            "false_positives": fp,
            "false_negatives": fn,
            "true_negatives": tn,
        }
        rows = {r.metric: r for r in quality.read(f"quality_credit_{spelling}").itertuples()}
        for metric, value in want.items():
            assert rows[metric].value == pytest.approx(value, rel=1e-9, abs=1e-12), (spelling, metric)
            assert rows[metric].labels_arrived == len(joined), spelling
        holdout = quality.workspace.registry.card("credit_risk", 1).metrics
        assert rows["precision"].holdout_value == pytest.approx(holdout["precision"]) and rows["auc"].better == "higher"
        assert rows["true_positives"].better is None or pd.isna(rows["true_positives"].better)
    # P(bad) is what scores the rows: its AUC against 'bad' is far above one half
    assert want["auc"] > 0.7


def test_outcomes_the_model_cannot_read_stop_the_model_in_one_line(quality):
    for spelling, found in (("maybe", "holds 'maybe'"), ("two", "holds '2'")):
        result = quality.results[f"quality_credit_{spelling}"]
        assert result["status"] == "error", result
        assert f"Model credit_risk v1: outcome 'risk' {found}" in result["message"], result["message"]
        assert "the outcome is one of the classes 'bad', 'good' (positive class 'bad')" in result["message"]


def test_no_gate_passes_on_a_metric_it_could_not_compute(quality):
    nodes = json.loads((quality.target / "manifest.json").read_text())["nodes"]

    def failures(model: str) -> pd.DataFrame:
        (test,) = [r for name, r in quality.results.items() if r["unique_id"].startswith("test.") and model in name]
        assert test["status"] == "pass", test  # the inverted gates pass only when they fire
        return quality.read(nodes[test["unique_id"]]["relation_name"])

    one_class = failures("quality_credit_one_class")
    assert list(one_class.level) == ["error"] and one_class.detail[0] == (
        f"window 2026-11-02: auc could not be computed on {quality.read('outcomes_credit_one_class').shape[0]} "
        "labelled rows (every label is of one class)"
    )
    assert set(failures("quality_credit_boolean").metric) == {"auc", "precision"}  # judged, and worse than allowed
    comparison = failures("comparison_credit_one_class")
    assert list(comparison.level) == ["error"] and "auc could not be computed on " in comparison.detail[0]


def test_a_text_class_challenger_compares_on_boolean_outcomes(quality):
    comparison = {r.metric: r for r in quality.read("comparison_credit_boolean").itertuples()}
    features = quality.read("scoring_inputs").sort_values("application_id")
    labelled = features.merge(quality.read("outcomes_credit_boolean"), on="application_id")
    in_labelled = features.application_id.isin(labelled.application_id).to_numpy()
    truth = labelled.risk.astype(bool).to_numpy()
    for side, ref in (("champion", "credit_risk@1"), ("challenger", "credit_risk@2")):
        p = quality.workspace.sklearn_scores(ref, features)["score"][in_labelled]
        assert getattr(comparison["auc"], f"{side}_value") == pytest.approx(metrics.roc_auc_score(truth, p), abs=1e-6)
        assert getattr(comparison["brier"], f"{side}_value") == pytest.approx(
            metrics.brier_score_loss(truth, p), abs=1e-6
        )
    assert comparison["auc"].labelled_rows == len(labelled)


def test_quality_leaves_out_the_rows_the_model_was_trained_on(quality):
    """The scored relation holds every application, three in four of which trained version 1: with the rows'
    input hashes, model_quality counts those (training_rows) and measures the others, as scikit-learn does on
    the same unseen rows; without them it cannot tell (training_rows NULL) and says so in the log."""
    trained = set(quality.workspace.registry.training_rows("mortgage_deny", 1))
    card = quality.workspace.registry.card("mortgage_deny", 1)
    assert len(trained) == card.manifest.training_rows["distinct"] and card.manifest.training_rows["rows"] == 1785
    scored = quality.read("scored_with_hashes").merge(
        quality.read("outcomes_mortgage"), on="application_id", how="left"
    )
    seen = scored.input_hash.str[:16].isin(trained)
    assert 1700 < seen.sum() < len(scored)
    rows = {r.metric: r for r in quality.read("quality_unseen").itertuples()}
    unseen = scored[~seen]
    labelled = unseen.dropna(subset=["denied"])
    y, p = labelled.denied.astype(bool).to_numpy(), labelled.deny_probability.to_numpy()
    assert rows["training_rows"].value == seen.sum()
    assert rows["auc"].value == pytest.approx(metrics.roc_auc_score(y, p), rel=1e-9)
    assert rows["brier"].value == pytest.approx(metrics.brier_score_loss(y, p), rel=1e-9)
    assert rows["auc"].rows_scored == len(unseen) and rows["auc"].labels_arrived == len(labelled)
    without = {r.metric: r for r in quality.read("quality_mortgage").itertuples() if r.model_version == 1}
    assert pd.isna(without["training_rows"].value)  # no input_hash column: unknown, not zero
    assert "cannot tell the rows the model was trained on from new ones (no column input_hash" in quality.run.stdout


def test_regression_and_count_quality_equal_scikit_learn(quality):
    prices = quality.read("scored_prices").merge(quality.read("outcomes_prices"), on="diamond_id")
    rows = {r.metric: r for r in quality.read("quality_prices").itertuples()}
    y, p = prices.price.to_numpy(float), prices.predicted_price.to_numpy()
    want = {
        "rmse": np.sqrt(metrics.mean_squared_error(y, p)),
        "mae": metrics.mean_absolute_error(y, p),
        "mape": metrics.mean_absolute_percentage_error(y, p),
        "mean_bias": float(np.mean(p - y)),
    }
    for metric, value in want.items():
        assert rows[metric].value == pytest.approx(value, rel=1e-9), metric
    assert "mean_deviance" not in rows  # a squared-error model has no deviance of its own
    visits = quality.read("scored_visits").merge(quality.read("outcomes_visits"), on="application_id")
    deviance = quality.read("quality_visits").set_index("metric").loc["mean_deviance"]
    assert deviance.value == pytest.approx(
        metrics.mean_poisson_deviance(visits.visits.to_numpy(float), visits.expected_visits.to_numpy()), rel=1e-9
    )
    holdout = quality.workspace.registry.card("visits", 1).manifest.metrics["mean_deviance"]
    assert deviance.holdout_value == pytest.approx(holdout)


def test_the_quality_gate_passes_fails_and_waits_for_labels(quality):
    tests = {name: r for name, r in quality.results.items() if r["unique_id"].startswith("test.")}
    # the inverted cases pass only when they fire: an error below the holdout, a warning for too few labels,
    # and the challenger's gate: a margin it meets, and a negative margin no challenger can meet
    assert sorted(r["status"] for r in tests.values()) == ["pass"] * 8, quality.run.stdout[-3000:]
    nodes = json.loads((quality.target / "manifest.json").read_text())["nodes"]
    stored = {name: quality.read(nodes[r["unique_id"]]["relation_name"]) for name, r in tests.items()}
    quality_gates = [frame for name, frame in stored.items() if "quality_above_quality_mortgage" in name]
    assert sorted(tuple(sorted(set(frame.level))) for frame in quality_gates) == [(), ("error",), ("warn",)]
    waiting = next(frame for frame in quality_gates if set(frame.level) == {"warn"})
    assert waiting.detail.str.startswith("window 2026-11-09: not enough labels: ").all()
    failing = next(frame for frame in quality_gates if set(frame.level) == {"error"})
    assert failing.detail.str.contains("on the holdout").all() and set(failing.metric) == {"auc"}
    challenger_gates = [
        frame for name, frame in stored.items() if "challenger_not_worse_comparison_" in name and "credit" not in name
    ]
    assert sorted(len(frame) for frame in challenger_gates) == [0, 1]
    (refused,) = [frame for frame in challenger_gates if len(frame)]
    assert refused.metric[0] == "brier"
    assert refused.detail[0].startswith("challenger mortgage_deny@candidate v2: brier: challenger "), refused.detail[0]


def test_champion_and_challenger_compare_on_the_same_rows(quality):
    from scipy.stats import spearmanr

    comparison = {r.metric: r for r in quality.read("comparison").itertuples()}
    features = quality.read("scoring_inputs").sort_values("application_id")
    champion = quality.workspace.sklearn_scores("mortgage_deny", features)["score"]
    challenger = quality.workspace.sklearn_scores("mortgage_deny@2", features)["score"]
    assert comparison["agreement"].value == pytest.approx(np.mean((champion >= 0.5) == (challenger >= 0.5)))
    assert comparison["mean_abs_delta"].value == pytest.approx(np.mean(np.abs(challenger - champion)), abs=1e-6)
    assert comparison["rank_correlation"].value == pytest.approx(spearmanr(champion, challenger).statistic, abs=1e-4)
    edges = np.linspace(min(champion.min(), challenger.min()), max(champion.max(), challenger.max()), 11)
    expected_share = np.maximum(np.histogram(champion, edges)[0] / len(champion), 1e-4)
    actual_share = np.maximum(np.histogram(challenger, edges)[0] / len(challenger), 1e-4)
    assert comparison["score_psi"].value == pytest.approx(
        np.sum((actual_share - expected_share) * np.log(actual_share / expected_share)), abs=1e-3
    )
    labelled = features.merge(quality.read("outcomes_mortgage"), on="application_id")
    y = labelled.denied.astype(bool).to_numpy()
    for side, scores in (("champion", champion), ("challenger", challenger)):
        p = scores[features.application_id.isin(labelled.application_id).to_numpy()]
        assert getattr(comparison["auc"], f"{side}_value") == pytest.approx(metrics.roc_auc_score(y, p), abs=1e-6)
        assert getattr(comparison["brier"], f"{side}_value") == pytest.approx(metrics.brier_score_loss(y, p), abs=1e-6)
    assert (comparison["auc"].champion_version, comparison["auc"].challenger_version) == (1, 2)


def test_quality_history_keeps_every_build(quality):
    invocation = json.loads((quality.target / "run_results.json").read_text())["metadata"]["invocation_id"]
    history = quality.read("quality_history")
    history = history[history.invocation_id == invocation]
    built = [
        "mortgage",
        "prices",
        "visits",
        "credit_text",
        "credit_boolean",
        "credit_number",
        "credit_one_class",
        "unseen",
    ]
    assert set(history.quality_relation) == {f"quality_{name}" for name in built}
    assert len(history) == sum(len(quality.read(f"quality_{name}")) for name in built)


def test_a_gray_release_routes_the_same_keys_on_both_engines(quality):
    rows = quality.read("scored_in_rollout").merge(quality.read("scoring_inputs"), on="application_id")
    in_rollout = rows.application_id.map(bucket) < BUCKETS // 10
    assert abs(in_rollout.mean() - 0.10) < 0.02
    assert (rows.model_version == np.where(in_rollout, 2, 1)).all()
    champion = quality.workspace.sklearn_scores("mortgage_deny@1", rows)["score"]
    challenger = quality.workspace.sklearn_scores("mortgage_deny@2", rows)["score"]
    np.testing.assert_allclose(rows.deny_probability, np.where(in_rollout, challenger, champion), atol=1e-6)


def test_scoring_runs_count_each_version_of_a_gray_release(quality):
    """With 10% of keys on version 2, scoring_runs has one row per version with that version's rows in and out and
    the fingerprint of its own input rows; the versions of one relation add up to its rows."""
    from scorehouse.fingerprint import fingerprint

    invocation = json.loads((quality.target / "run_results.json").read_text())["metadata"]["invocation_id"]
    runs = quality.read("scoring_runs")
    runs = runs[runs.invocation_id == invocation]
    rollout = runs[runs.scored_relation == "scored_in_rollout"].set_index("model_version")
    scored, inputs = quality.read("scored_in_rollout"), quality.read("scoring_inputs")
    routed = np.where(inputs.application_id.map(bucket) < BUCKETS // 10, 2, 1)
    assert sorted(rollout.index) == [1, 2] and set(rollout.input_relation) == {"scoring_inputs"}
    for version in (1, 2):
        mine = inputs[routed == version]
        assert (
            rollout.rows_out[version]
            == (scored.model_version == version).sum()
            == rollout.rows_in[version]
            == len(mine)
        )
        card = quality.workspace.registry.card("mortgage_deny", version)
        assert (
            rollout.input_fingerprint[version]
            == fingerprint(mine.astype(object).where(mine.notna(), None).to_dict("records"), card.features)[1]
        )
    assert rollout.rows_out.sum() == len(scored) == len(inputs)
    unknown = runs[runs.scored_relation == "scores_only_in_rollout"].set_index("model_version")
    assert list(unknown.rows_in.sort_index()) == list(rollout.rows_in.sort_index())
    assert unknown.rows_out.isna().all()  # neither the key nor the version to count by: unknown, not wrong


MISCONFIGURED = """version: 2
models:
  - name: quality_mortgage
    data_tests:
      - scorehouse.expect_model_quality_above: {arguments: {allowed_drop: {auc: '0.05'}}}
      - scorehouse.expect_model_quality_above: {arguments: {allowed_drop: {gini: 0.07}}}
  - name: comparison
    data_tests:
      - scorehouse.expect_challenger_not_worse: {arguments: {metric: gini}}
      - scorehouse.expect_challenger_not_worse: {arguments: {margin: "0.1); drop table x; --"}}
"""


def test_a_misconfigured_gate_fails_alone_with_one_line_saying_what_is_wrong(quality_project):
    from helpers import DBT, ROOT

    workspace, root = quality_project
    project = root / "misconfigured"
    shutil.copytree(root / PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    (project / "models" / "quality.yml").write_text(MISCONFIGURED)
    install_package(project)
    run = subprocess.run(
        [
            DBT,
            "build",
            "--select",
            "+quality_mortgage",
            "+comparison",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **workspace.env},
        timeout=900,
    )
    results = run_results(project / "target", run.stdout)
    assert run.returncode == 1
    assert {name: r["status"] for name, r in results.items() if not name.startswith("scorehouse_")}.items() >= {
        "quality_mortgage": "success",
        "comparison": "success",
        "outcomes_mortgage": "success",
    }.items()
    errors = sorted(r["message"].splitlines()[1].strip() for r in results.values() if r["status"] == "error")
    assert errors == [
        "expect_challenger_not_worse: margin must be a number, found '0.1); drop table x; --'",
        "expect_challenger_not_worse: metric must be one of auc, log_loss, brier, rmse, mae, found 'gini'",
        "expect_model_quality_above on quality_mortgage: no metric gini in it; it has accuracy, auc, brier, f1, "
        "false_negatives, false_positives, log_loss, precision, recall, training_rows, true_negatives, true_positives",
        "expect_model_quality_above: allowed_drop of auc must be a number, found '0.05'",
    ], run.stdout[-3000:]
    assert "Traceback" not in run.stdout


MONITORED = "scorehouse_monitor_cases"
# prod's version 2 scored the even keys with inverted scores (AUC near 1 - 0.8), version 1 the odd ones
MONITORED_SCORES = """select application_id,
       case when application_id % 2 = 0 then 1 - deny_probability else deny_probability end as deny_probability,
       case when application_id % 2 = 0 then 2 else 1 end as model_version,
       timestamp '2026-11-10 10:00' as scored_at
from {{ input('mart_mortgage_risk') }}"""
MONITORED_GATE = """version: 2
models:
  - name: quality_mortgage
    data_tests:
      - scorehouse.expect_model_quality_above: {arguments: {allowed_drop: {auc: 0.1}, min_labels: 100}}
"""


def monitored_project(root: Path) -> Path:
    """A project whose quality gate fails for version 2 of mortgage_deny and passes for version 1."""
    project = root / MONITORED
    for sub in ("models", "macros"):
        (project / sub).mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        f"name: {MONITORED}\nversion: '0.1.0'\nconfig-version: 2\n"
        "profile: scorehouse\n"
        f"models: {{{MONITORED}: {{+materialized: table}}}}\n"
    )
    (project / "macros" / "input.sql").write_text(INPUT_MACRO)
    models = {
        "scored_mortgage": MONITORED_SCORES,
        "outcomes_mortgage": OUTCOMES.replace(" where application_id % 10 < 7", ""),
        "quality_mortgage": QUALITY.format(
            scored="scored_mortgage",
            outcomes="outcomes_mortgage",
            model="mortgage_deny",
            key="application_id",
            score="deny_probability",
            outcome="denied",
        ),
    }
    for name, sql in models.items():
        (project / "models" / f"{name}.sql").write_text(sql)
    (project / "models" / "quality.yml").write_text(MONITORED_GATE)
    install_package(project)
    return project


def move_aliases(workspace) -> None:
    """Versions 2 and 3 (copies of 1); prod to 2, a 10% rollout of 3, a rollback, prod to 2 again."""
    candidate = workspace.candidates["mortgage_deny"]
    for _ in range(2):
        workspace.registry.register(candidate.manifest, candidate.files)
    registry = workspace.registry
    registry.promote("mortgage_deny", 2, reason="first try")
    registry.rollout("mortgage_deny", 3, 10)
    registry.rollback("mortgage_deny")
    registry.promote("mortgage_deny", 2, reason="second try")


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def test_monitor_rolls_prod_back_when_it_fails_its_gate_and_the_version_it_replaced_does_not(built, tmp_path, engine):
    workspace = built.copy(tmp_path / "ws")
    move_aliases(workspace)
    project = monitored_project(tmp_path)
    window = "2026-11-09 00:00:00"
    if engine == "duckdb":
        run, results = build_package(project, MONITORED, workspace, tmp_path / "out")
        target = tmp_path / "out" / "target"
        assert [r["status"] for name, r in results.items() if "quality_above" in name] == ["fail"]
        report = workspace.cli("monitor", "--target-path", str(target))
        assert report.returncode == 1 and "Traceback" not in report.stderr, report.stderr
        assert f"mortgage_deny v2: window {window[:10]}: auc " in report.stdout, report.stdout
        assert "mortgage_deny: prod would roll back from version 2 to 1 (run with --rollback-on-error" in report.stdout
        assert workspace.registry.aliases("mortgage_deny")["prod"] == 2  # a report changes nothing
        done = workspace.cli("monitor", "--target-path", str(target), "--rollback-on-error")
        assert done.returncode == 3, done.stdout
        assert "mortgage_deny: prod rolled back from version 2 to 1" in done.stdout, done.stdout
        assert (
            "mortgage_deny: the relations version 2 scored still hold its scores: re-score and re-publish them "
            "with `dbt build`"
        ) in done.stdout  # its scores here come from SQL, not from predict()
    else:
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            pytest.skip("Spark needs Java 17")
        inputs = tmp_path / "inputs"
        inputs.mkdir()
        for table in ("features_mortgage", "mart_mortgage_risk"):
            workspace.query(f"select * from {table}").to_parquet(inputs / f"{table}.parquet")
        run = run_dbt_on_spark(
            workspace,
            tmp_path / "spark",
            "--project-dir",
            str(project),
            "--data-dir",
            str(inputs),
            "--rollback-on-error",
        )
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
        assert f"scorehouse monitor: mortgage_deny v2: window {window[:10]}: auc " in run.stderr, run.stderr[-3000:]
        assert "scorehouse monitor: mortgage_deny: prod rolled back from version 2 to 1" in run.stderr
    assert workspace.registry.aliases("mortgage_deny")["prod"] == 1
    events = workspace.registry.history("mortgage_deny")
    assert [(e["action"], e["from"], e["to"]) for e in events] == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("rollout", None, 3),
        ("rollback", 2, 1),
        ("promote", 1, 2),
        ("rollout_end", 3, None),
        ("automatic_rollback", 2, 1),
    ]
    assert events[-1]["reason"].startswith("automatic: scorehouse_expect_model_quality_above_quality_mortgage")
    if engine == "duckdb":  # prod is version 1 now, which passes: the gate's failure no longer concerns prod
        again = workspace.cli("monitor", "--target-path", str(target), "--rollback-on-error")
        assert again.returncode == 1
        assert "mortgage_deny: prod kept at version 1: version(s) 2 failed, prod is version 1" in again.stdout
        assert len(workspace.registry.history("mortgage_deny")) == len(events)
