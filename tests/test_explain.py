"""explain(): per row the baseline, the margin and each feature's contribution, exact for linear models —
additive on every row, equal to the shap package's LinearExplainer, NULL and unseen categories included."""

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import scorehouse.duckdb as engine
from scorehouse.registration.importers import model_margin
from scorehouse.registration.training import FLOAT32_SUM_RTOL
from scorehouse.scoring import Session
from scorehouse.sql import DUCKDB
from scorehouse.writer import SqlWriter

FEATURES = ["dir", "hir", "lvr", "ccs", "mcs", "uria", "pbcr", "dmi", "self", "single", "condominium"]


@pytest.fixture
def explained(small_copy):
    """The fast tier's logistic regression, every application explained with all 11 features."""
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    rows = (
        con.sql("select f.*, explain('mortgage_logit', f, 11) as e from features_mortgage f order by application_id")
        .to_arrow_table()
        .to_pylist()
    )
    con.close()
    return small_copy, rows


def contribution_frame(rows) -> pd.DataFrame:
    return pd.DataFrame([{c["feature"]: c["contribution"] for c in r["e"]["contributions"]} for r in rows])[FEATURES]


def test_baseline_plus_contributions_is_the_margin_on_every_row(explained):
    workspace, rows = explained
    candidate = workspace.candidates["mortgage_logit"]
    frame = pd.DataFrame(rows)[FEATURES]
    contributions = contribution_frame(rows)
    baseline = np.array([r["e"]["baseline"] for r in rows])
    margin = np.array([r["e"]["margin"] for r in rows])
    np.testing.assert_allclose(baseline + contributions.sum(axis=1), margin, atol=1e-9, rtol=0)
    x = frame.astype({f: "float32" for f in FEATURES[:6]}).fillna({c: "" for c in FEATURES[6:]})
    expected = model_margin(
        candidate.pipeline,
        x,
        "logit",
        "binary",
        candidate.manifest["classes"],
        candidate.manifest["positive_class"],
    )
    np.testing.assert_allclose(margin, expected, atol=1e-6, rtol=0)
    assert len(rows) == 2381 and workspace.registry.card("mortgage_logit", 1).manifest.explanation["kind"] == "linear"
    # the probability the model scores is the margin through its link
    con = engine.connect(workspace.warehouse, registry=workspace.registry_path, read_only=True)
    scores = con.sql(
        "select predict('mortgage_logit', f) as p from features_mortgage f order by application_id"
    ).fetchnumpy()["p"]
    con.close()
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), scores, atol=1e-6)


def test_contributions_equal_shap_linear_explainer_per_original_feature(explained):
    shap = pytest.importorskip("shap")
    workspace, rows = explained
    pipeline = workspace.candidates["mortgage_logit"].pipeline
    transformer, model = pipeline.named_steps["features"], pipeline[-1]
    frame = pd.DataFrame(rows)[FEATURES]
    x = frame.astype({f: "float32" for f in FEATURES[:6]}).fillna({c: "" for c in FEATURES[6:]})
    train_means = np.asarray(transformer.transform(workspace_training_rows(workspace)), dtype=np.float64).mean(axis=0)
    explainer = shap.LinearExplainer(
        (model.coef_.reshape(-1), float(model.intercept_[0])),
        shap.maskers.Independent(train_means.reshape(1, -1), max_samples=1),
    )
    values = explainer.shap_values(np.asarray(transformer.transform(x), dtype=np.float64))
    columns = [name.split("__", 1)[1] for name in transformer.get_feature_names_out()]
    per_feature = (
        pd.DataFrame(values, columns=columns)
        .T.groupby(lambda column: next(f for f in FEATURES if column == f or column.startswith(f + "_")))
        .sum()
        .T[FEATURES]
    )
    np.testing.assert_allclose(contribution_frame(rows).to_numpy(), per_feature.to_numpy(), atol=1e-6, rtol=0)
    assert abs(explainer.expected_value - rows[0]["e"]["baseline"]) < 1e-6


def workspace_training_rows(workspace) -> pd.DataFrame:
    """The rows the fast tier's models were fitted on, as the model saw them."""
    from scorehouse.registration.spec import Estimator, load_spec
    from scorehouse.registration.training import prepare, read_source

    from helpers import SPECS

    spec = load_spec(SPECS["mortgage_deny"])
    spec.name, spec.estimator = "mortgage_logit", Estimator("logistic_regression", {"max_iter": 1000})
    return prepare(spec, read_source(spec, workspace.warehouse)).x_train


def test_null_and_unseen_values_are_explained_and_top_k_orders_by_size(small_copy):
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    row = con.sql(
        "select explain('mortgage_logit', f, 3) as e, explain('mortgage_logit', f) as d "
        "from (select * replace (null as lvr, 'martian' as self) from features_mortgage "
        "where application_id = 17) f"
    ).fetchall()[0]
    explanation = con.sql(
        "select explain('mortgage_logit', f, 11) as e from (select * replace (null as lvr, "
        "'martian' as self) from features_mortgage where application_id = 17) f"
    ).fetchall()[0][0]
    full = {c["feature"]: c for c in explanation["contributions"]}
    assert full["lvr"]["value"] is None and full["self"]["value"] == "martian"
    structure = Session(small_copy.registry).explanation("mortgage_logit")
    self_entry = next(e for e in structure.categorical if e.feature == "self")
    assert full["self"]["contribution"] == pytest.approx(-np.dot(self_entry.coef, self_entry.mean), abs=1e-12)
    top = row[0]["contributions"]
    assert len(top) == 3 and len(row[1]["contributions"]) == 3  # top_k defaults to 3
    sizes = sorted((abs(c["contribution"]) for c in explanation["contributions"]), reverse=True)
    assert [abs(c["contribution"]) for c in top] == pytest.approx(sizes[:3])
    for top_k, message in ((0, "top_k must be between 1 and 1000, found 0"), (1001, "found 1001")):
        with pytest.raises(duckdb.Error, match=message):
            con.sql(f"select explain('mortgage_logit', f, {top_k}) from features_mortgage f").fetchall()
    nothing = con.sql(
        "select explain('mortgage_logit', case when false then f end, 3) from features_mortgage f limit 1"
    )
    assert nothing.fetchall() == [(None,)]  # a NULL row explains as NULL, as it scores NULL
    con.close()


def register_unexplained(workspace) -> str:
    """A pipeline handed over fitted (register_fitted): registered without explanations."""
    from scorehouse.registration.fitted import register_fitted

    frame = workspace.query("select * from features_mortgage")
    register_fitted(
        workspace.candidates["mortgage_logit"].pipeline,
        frame,
        target="is_denied",
        task="binary",
        name="handed_over",
        registry=workspace.registry_path,
        positive_class=True,
        alias="prod",
    )
    return "handed_over"


def test_a_version_without_explanations_is_refused_in_one_line(small_copy):
    name = register_unexplained(small_copy)
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    with pytest.raises(duckdb.Error) as failed:
        con.sql(f"select explain('{name}', f) from features_mortgage f").fetchall()
    con.close()
    assert (
        "Model handed_over (version 1) has no explanations: a pipeline fitted elsewhere is not explained "
        "(only models trained by `scorehouse train` are)" in str(failed.value)
    )


TREE_CASES = {
    "demo": None,  # the demo's own GBT, as its spec trains it
    "gradient_boosting": {"n_estimators": 30, "max_depth": 3, "random_state": 0},
    "random_forest": {"n_estimators": 10, "max_depth": 6, "random_state": 0},
    "xgboost": {"n_estimators": 30, "max_depth": 4, "random_state": 0},
}


@pytest.mark.parametrize("kind", sorted(TREE_CASES))
def test_tree_contributions_add_up_and_equal_shap_tree_explainer(small_copy, kind):
    """Path-dependent TreeSHAP from the recorded trees and covers, against shap's TreeExplainer on every row."""
    shap = pytest.importorskip("shap")
    from scorehouse.registration.spec import Estimator

    overrides = {"estimator": Estimator(kind, TREE_CASES[kind])} if TREE_CASES[kind] else {}
    version = small_copy.train("mortgage_deny", promote=False, **overrides)
    ref = f"mortgage_deny@{version}"
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    rows = (
        con.sql(f"select f.*, explain('{ref}', f, 11) as e from features_mortgage f order by application_id")
        .to_arrow_table()
        .to_pylist()
    )
    con.close()
    candidate = small_copy.candidates[ref]
    pipeline, manifest = candidate.pipeline, candidate.manifest
    frame = pd.DataFrame(rows)[FEATURES]
    x = frame.astype({f: "float32" for f in FEATURES[:6]}).fillna({c: "" for c in FEATURES[6:]})
    ours = contribution_frame(rows)
    baseline = np.array([r["e"]["baseline"] for r in rows])
    margin = np.array([r["e"]["margin"] for r in rows])
    np.testing.assert_allclose(baseline + ours.sum(axis=1), margin, atol=1e-9, rtol=0)
    link = "probability" if kind == "random_forest" else "logit"
    rtol = FLOAT32_SUM_RTOL if kind == "xgboost" else 0  # XGBoost's own margin is a float32 sum
    np.testing.assert_allclose(
        margin,
        model_margin(pipeline, x, link, "binary", manifest["classes"], manifest["positive_class"]),
        atol=1e-6,
        rtol=rtol,
    )
    transformer = pipeline.named_steps["features"]
    matrix = np.asarray(transformer.transform(x), dtype=np.float32).astype(np.float64)
    explainer = shap.TreeExplainer(pipeline[-1], feature_perturbation="tree_path_dependent")
    values = explainer.shap_values(matrix, check_additivity=False)
    if kind == "random_forest":  # probability of the positive class (True, the second class)
        values = values[..., 1] if np.ndim(values) == 3 else values[1]
    columns = [name.split("__", 1)[1] for name in transformer.get_feature_names_out()]
    theirs = (
        pd.DataFrame(values, columns=columns)
        .T.groupby(lambda column: next(f for f in FEATURES if column == f or column.startswith(f + "_")))
        .sum()
        .T[FEATURES]
    )
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), atol=1e-6, rtol=0)


@pytest.mark.dbt
def test_the_dbt_macro_explains_a_model_and_refuses_one_without_explanations(small_copy, tmp_path):
    from helpers import build_package

    project = tmp_path / "explained"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: explained\nversion: '0.1.0'\nconfig-version: 2\n"
        "profile: scorehouse\nmodels: {explained: {+materialized: table}}\n"
    )
    (project / "models" / "reasons.sql").write_text(
        "select f.application_id, {{ scorehouse.explain('mortgage_logit', relation='f', top_k=2) }} as why\n"
        "from main.features_mortgage as f"
    )
    (project / "models" / "unexplained.sql").write_text(
        "select {{ scorehouse.explain('handed_over', relation='f') }} as why from main.features_mortgage as f"
    )
    register_unexplained(small_copy)
    run, results = build_package(project, "explained", small_copy, tmp_path / "out")
    assert results["reasons"]["status"] == "success" and results["unexplained"]["status"] == "error"
    assert (
        "Model handed_over (version 1) has no explanations: a pipeline fitted elsewhere is not explained"
        in results["unexplained"]["message"]
    )
    why = small_copy.query(
        "select application_id, unnest(why.contributions, recursive := true) from reasons where application_id = 17"
    )
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    direct = con.sql(
        "select explain('mortgage_logit', f, 2) as e from features_mortgage f where application_id = 17"
    ).fetchall()[0][0]
    con.close()
    assert why.feature.tolist() == [c["feature"] for c in direct["contributions"]] and len(why) == 2
    np.testing.assert_allclose(why.contribution, [c["contribution"] for c in direct["contributions"]], atol=1e-12)


def test_hist_gradient_boosting_equals_shap_on_the_demo_diamond_model(trained):
    """The demo's HistGradientBoosting regressor (one-hot text, deep trees): additive on all 53,940 diamonds,
    against shap on 2,000 of them."""
    shap = pytest.importorskip("shap")
    con = engine.connect(trained.warehouse, registry=trained.registry_path, read_only=True)
    every = con.sql(
        "select e.baseline + list_sum([c.contribution for c in e.contributions]) - e.margin as gap, "
        "e.margin - p as off from (select explain('diamond_price', f, 9) as e, "
        "predict('diamond_price', f) as p from features_diamonds f)"
    ).fetchnumpy()
    assert len(every["gap"]) == 53940 and np.abs(every["gap"]).max() <= 1e-9
    # the margin is the price the model predicts (the ONNX graph's, to its float32 tolerance)
    assert np.abs(every["off"]).max() <= trained.candidates["diamond_price"].manifest["parity"]["tolerance"]
    rows = (
        con.sql(
            "select f.*, explain('diamond_price', f, 9) as e from features_diamonds f order by diamond_id limit 2000"
        )
        .to_arrow_table()
        .to_pylist()
    )
    con.close()
    candidate = trained.candidates["diamond_price"]
    pipeline = candidate.pipeline
    features = [f["name"] for f in candidate.manifest["features"]]
    ours = pd.DataFrame([{c["feature"]: c["contribution"] for c in r["e"]["contributions"]} for r in rows])[features]
    frame = pd.DataFrame(rows)[features]
    numeric = [f["name"] for f in candidate.manifest["features"] if f["kind"] == "numeric"]
    x = frame.astype({f: "float32" for f in numeric}).fillna({c: "" for c in features if c not in numeric})
    margin = np.array([r["e"]["margin"] for r in rows])
    np.testing.assert_allclose(margin, pipeline.predict(x), rtol=1e-9, atol=1e-6)
    transformer = pipeline.named_steps["features"]
    values = shap.TreeExplainer(pipeline[-1], feature_perturbation="tree_path_dependent").shap_values(
        np.asarray(transformer.transform(x), dtype=np.float32).astype(np.float64), check_additivity=False
    )
    columns = [name.split("__", 1)[1] for name in transformer.get_feature_names_out()]
    theirs = (
        pd.DataFrame(values, columns=columns)
        .T.groupby(lambda column: next(f for f in features if column == f or column.startswith(f + "_")))
        .sum()
        .T[features]
    )
    np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), atol=1e-6, rtol=1e-7)


def test_a_version_registered_before_explanations_is_trained_again_once(small_copy, tmp_path):
    """Training the same spec on the same data reuses a version, unless it predates explanations."""
    from scorehouse.registration.spec import load_spec
    from scorehouse.registration.training import train_and_register
    from scorehouse.registry import Registry

    from helpers import SPECS

    registry = Registry(tmp_path / "registry")
    candidate = small_copy.candidates["mortgage_deny"]
    old = {k: v for k, v in candidate.manifest.items() if k != "explanation"}
    registry.register(old, {k: v for k, v in candidate.files.items() if k != "explain.json"})
    spec = load_spec(SPECS["mortgage_deny"])
    assert train_and_register(spec, registry, small_copy.warehouse) == (2, True)
    assert train_and_register(spec, registry, small_copy.warehouse) == (2, False)
    assert registry.explanation("mortgage_deny", 2).kind == "trees"


def test_a_version_is_trained_again_only_where_explanations_would_now_be_recorded():
    from scorehouse.manifest import Version
    from scorehouse.registration.importers import explanations_outdated

    def manifest(kind, task, explanation):  # as a release before the `unsupported` flag stored it
        return Version.read(
            {
                "name": "m",
                "version": 1,
                "task": task,
                "features": [],
                "onnx_outputs": {},
                "classes": ["no", "yes"],
                "positive_class": "yes",
                "estimator": {"kind": kind},
                **({"explanation": explanation} if explanation else {}),
            }
        )

    old_xgboost = "xgboost models are not explained yet (linear models and scikit-learn's tree ensembles are)"
    assert explanations_outdated(manifest("gradient_boosting", "binary", None))  # before explanations
    assert explanations_outdated(manifest("xgboost", "binary", {"skipped": old_xgboost}))  # explained now
    assert not explanations_outdated(
        manifest("xgboost", "multiclass", {"skipped": "multiclass models are not explained yet"})
    )
    assert not explanations_outdated(
        manifest(
            "lightgbm", "binary", {"skipped": "baseline + contributions differ from the margin by 0.01 on the holdout"}
        )
    )  # would fail again
    assert not explanations_outdated(manifest("xgboost", "binary", {"kind": "trees", "link": "logit"}))


def test_values_beyond_float32_are_explained_as_the_model_scores_them(small_copy):
    """±1e308 is ±inf to the model: the trees send -inf left of every split, and the explanation agrees."""
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    rows = (
        con.sql(
            "select predict('mortgage_deny', f) as p, explain('mortgage_deny', f, 11) as e from "
            "(select * replace (case when application_id % 2 = 0 then -1e308 else 1e308 end as lvr, "
            "case when application_id % 3 = 0 then -1e308 else dir end as dir) "
            "from features_mortgage order by application_id limit 200) f"
        )
        .to_arrow_table()
        .to_pylist()
    )
    con.close()
    margin = np.array([r["e"]["margin"] for r in rows])
    summed = np.array([r["e"]["baseline"] + sum(c["contribution"] for c in r["e"]["contributions"]) for r in rows])
    np.testing.assert_allclose(summed, margin, atol=1e-9, rtol=0)
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), [r["p"] for r in rows], atol=1e-5, rtol=0)
    assert {c["value"] for r in rows for c in r["e"]["contributions"] if c["feature"] == "lvr"} == {"-inf", "inf"}


def test_every_estimator_kind_and_loss_adds_up_to_its_margin_and_equals_shap(estimator_models):
    """Each binary and regression case (scikit-learn, XGBoost, LightGBM; squared, Poisson, Gamma, Tweedie
    losses) on its 4,000 real rows: baseline + contributions = the library's own margin, and the trees'
    contributions are shap's TreeExplainer's, summed per original feature."""
    shap = pytest.importorskip("shap")
    from scorehouse.model import ModelCard
    from scorehouse.schema import model_inputs

    registry, models = estimator_models
    scorer = Session(registry)
    explained = set()
    for name, (candidate, rows) in models.items():
        manifest, pipeline = candidate.manifest, candidate.pipeline
        if manifest["task"] == "multiclass":
            assert manifest["explanation"] == {
                "skipped": "multiclass models are not explained yet",
                "unsupported": True,
            }
            continue
        card = ModelCard(manifest)
        features = [f.name for f in card.features]
        table = pa.Table.from_pandas(rows, preserve_index=False)
        result = scorer.explain(name, {f: table.column(f) for f in features}, len(features)).to_pylist()
        ours = pd.DataFrame([{c["feature"]: c["contribution"] for c in r["contributions"]} for r in result])[features]
        margin = np.array([r["margin"] for r in result])
        np.testing.assert_allclose(
            np.array([r["baseline"] for r in result]) + ours.sum(axis=1), margin, atol=1e-9, rtol=0
        )
        inputs = model_inputs(card.label, card.features, {f: table.column(f) for f in features})
        x = pd.DataFrame({f: v.reshape(-1) for f, v in inputs.items()})
        explanation = scorer.explanation(name)
        rtol = FLOAT32_SUM_RTOL if estimator_kind(manifest) == "xgboost" else 1e-9
        np.testing.assert_allclose(
            margin,
            model_margin(pipeline, x, explanation.link, card.task, card.classes, manifest["positive_class"]),
            atol=1e-6,
            rtol=rtol,
            err_msg=name,
        )
        explained.add(estimator_kind(manifest))
        if explanation.kind != "trees":
            continue
        transformer = pipeline.named_steps["features"]
        values = shap.TreeExplainer(pipeline[-1], feature_perturbation="tree_path_dependent").shap_values(
            np.asarray(transformer.transform(x), dtype=np.float32).astype(np.float64), check_additivity=False
        )
        if np.ndim(values) == 3 or isinstance(values, list):  # per class (a forest's probabilities): the positive's
            positive = list(card.classes).index(manifest["positive_class"])
            values = values[..., positive] if np.ndim(values) == 3 else values[positive]
        columns = [column.split("__", 1)[1] for column in transformer.get_feature_names_out()]
        theirs = (
            pd.DataFrame(values, columns=columns)
            .T.groupby(
                lambda column, features=features: next(f for f in features if column == f or column.startswith(f + "_"))
            )
            .sum()
            .T[features]
        )
        sign = (
            -1.0
            if manifest["task"] == "binary"
            and explanation.link == "logit"
            and manifest["positive_class"] == card.classes[0]
            else 1.0
        )
        # shap returns XGBoost's values in float32: equal to that rounding of the largest contribution
        atol = FLOAT32_SUM_RTOL * np.abs(theirs.to_numpy()).max() if estimator_kind(manifest) == "xgboost" else 1e-6
        np.testing.assert_allclose(
            ours.to_numpy(), sign * theirs.to_numpy(), atol=max(atol, 1e-6), rtol=1e-6, err_msg=name
        )
    assert explained == {
        "logistic_regression",
        "random_forest",
        "gradient_boosting",
        "hist_gradient_boosting",
        "xgboost",
        "lightgbm",
        "linear_regression",
        "ridge",
        "poisson_regression",
        "gamma_regression",
        "tweedie_regression",
    }


def estimator_kind(manifest) -> str:
    return manifest["spec"]["estimator"]["kind"]


def test_the_typed_explain_function_equals_the_generic_one(small_copy):
    """explain_<model>(struct, top_k) — what dbt's explain() calls for a prod version — takes the features
    typed, without JSON on the way, and answers as explain('<model>', row, top_k) does."""
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    typed = SqlWriter(Session(small_copy.registry), DUCKDB).explain_sql("mortgage_deny", "f", 11)
    assert typed.startswith("explain_mortgage_deny(struct_pack(")
    features = ", ".join(FEATURES)
    rows = con.sql(
        f"select explain('mortgage_deny', f, 11) as generic, {typed} as typed, "
        f"explain_mortgage_deny(struct_pack({features})) as short from features_mortgage f"
    ).fetchall()
    assert len(rows) == 2381 and all(generic == typed for generic, typed, _ in rows)
    assert all(short["contributions"] == generic["contributions"][:3] for generic, _, short in rows)  # top_k 3
    struct = ", ".join(f"{f} {'DOUBLE' if i < 6 else 'VARCHAR'}" for i, f in enumerate(FEATURES))
    assert con.sql(f"select explain_mortgage_deny(NULL::STRUCT({struct}))").fetchall() == [(None,)]
    with pytest.raises(duckdb.Error, match="top_k must be between 1 and 1000, found 0"):
        con.sql(f"select explain_mortgage_deny(struct_pack({features}), 0) from features_mortgage").fetchall()
    con.close()
