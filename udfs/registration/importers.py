"""Read a fitted pipeline into the model's structure (explain.json): linear terms, or every tree's nodes with
their covers, for scikit-learn's linear models and tree ensembles, XGBoost and LightGBM.

What is read here is checked at registration (baseline + contributions = the model's own margin on the
holdout, and the trees' thresholds against the exported graph) and stored as JSON data; scoring and the SQL
writer read that data and never import this module.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import ScorehouseError
from ..explain import tree_inputs
from ..manifest import Version
from ..structure import Indicator, Linear, LinearCategory, LinearNumber, Number, Tree, Trees
from .estimators import EXTRAS, SCALED_KINDS, library, tweedie_power

NOT_YET = "not explained yet"  # how a skip says the kind or task is not explained, as opposed to a failed check
LOG_LINK_KINDS = frozenset({"poisson_regression", "gamma_regression", "tweedie_regression"})
TREE_KINDS = frozenset({"gradient_boosting", "hist_gradient_boosting", "random_forest", "xgboost", "lightgbm"})
TASK_LINKS = {"binary": "logit", "regression": "identity"}  # a linear model's link (a log link: LOG_LINK_KINDS)
MAX_LEAVES = 20_000  # ensembles with more leaves in all are not explained (explain.json and TreeSHAP grow with them)


class TooLarge(ScorehouseError):
    """An ensemble too large to explain: the version registers without explanations, saying so."""


def skipped_reason(kind: str, task: str, fitted_by_scorehouse: bool) -> str | None:
    """Why a model gets no explain.json at registration, or None when it gets one."""
    if not fitted_by_scorehouse:
        return "a pipeline fitted elsewhere is not explained (only models trained by `scorehouse train` are)"
    if task == "multiclass":
        return f"multiclass models are {NOT_YET}"
    if kind not in SCALED_KINDS | TREE_KINDS:
        return f"{kind} models are {NOT_YET} (linear models and tree ensembles are)"
    return None


def explanations_outdated(version: Version) -> bool:
    """A version registered before explanations were recorded, or one whose kind was not explained then and
    is now (XGBoost, LightGBM): training its spec again on the same data registers a new version, once."""
    record = version.explanation
    if record is None:
        return True
    return bool(record.get("unsupported")) and skipped_reason(version.estimator_kind, version.task, True) is None


def linear_explanation(
    pipeline,
    kind: str,
    task: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    x_train,
    classes: Sequence[str],
    positive: str | None,
    weights=None,
) -> Linear:
    """The structure of a linear pipeline built by scorehouse train (impute → scale numbers, one-hot text)."""
    transformer, estimator = pipeline.named_steps["features"], pipeline[-1]
    coef = np.asarray(estimator.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(estimator.intercept_, dtype=np.float64).reshape(-1)[0])
    if task == "binary" and positive == classes[0]:  # the log-odds of the positive class
        coef, intercept = -coef, -intercept
    means = np.average(np.asarray(transformer.transform(x_train), dtype=np.float64), axis=0, weights=weights)
    imputer, scaler, encoder = _fitted_steps(pipeline)
    numbers: list[LinearNumber] = []
    for i, name in enumerate(numeric):
        numbers.append(
            LinearNumber(
                feature=name,
                median=float(imputer.statistics_[i]),
                center=float(scaler.mean_[i]) if scaler is not None else 0.0,
                scale=float(scaler.scale_[i]) if scaler is not None else 1.0,
                coef=float(coef[i]),
                mean=float(means[i]),
            )
        )
    position, terms = len(numbers), []
    for name, categories in zip(categorical, encoder.categories_ if categorical else ()):
        width = len(categories)
        terms.append(
            LinearCategory(
                feature=name,
                categories=tuple(str(c) for c in categories),
                coef=tuple(coef[position : position + width].tolist()),
                mean=tuple(means[position : position + width].tolist()),
            )
        )
        position += width
    return Linear(
        link="log" if kind in LOG_LINK_KINDS else TASK_LINKS[task],
        intercept=intercept,
        numeric=tuple(numbers),
        categorical=tuple(terms),
        baseline=intercept + float(coef @ means),
    )


def tree_explanation(
    pipeline,
    kind: str,
    task: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    x_holdout,
    classes: Sequence[str],
    positive: str | None,
) -> Trees:
    """The structure of a tree ensemble built by scorehouse train: the columns the trees split on (numbers
    imputed with their median, one indicator per category), every tree's nodes with their covers, and the
    constant the trees add to (read off the holdout's margins)."""
    estimator = pipeline[-1]
    imputer, _, encoder = _fitted_steps(pipeline)
    columns: list[Number | Indicator] = [Number(name, float(imputer.statistics_[i])) for i, name in enumerate(numeric)]
    for name, categories in zip(categorical, encoder.categories_ if categorical else ()):
        columns += [Indicator(name, str(c)) for c in categories]
    sign = -1.0 if task == "binary" and kind != "random_forest" and positive == classes[0] else 1.0
    if kind == "xgboost":
        trees = _xgboost_trees(estimator.get_booster(), sign)
    elif kind == "lightgbm":
        trees = _lightgbm_trees(estimator.booster_.dump_model(), sign)
    elif kind == "hist_gradient_boosting":
        trees = [_hgb_tree(predictors[0], sign) for predictors in estimator._predictors]
    elif kind == "gradient_boosting":
        trees = [
            _sklearn_tree(stage[0].tree_, lambda t: t.value[:, 0, 0] * estimator.learning_rate * sign)
            for stage in estimator.estimators_
        ]
    elif task == "binary":  # random forest: the mean of its trees, in probability for a classifier
        column = list(estimator.classes_).index(
            classes.index(positive) if isinstance(estimator.classes_[0], (int, np.integer)) else positive
        )
        count = len(estimator.estimators_)
        trees = [
            _sklearn_tree(tree.tree_, lambda t: _fractions(t)[:, column] / count) for tree in estimator.estimators_
        ]
    else:
        count = len(estimator.estimators_)
        trees = [_sklearn_tree(tree.tree_, lambda t: t.value[:, 0, 0] / count) for tree in estimator.estimators_]
    leaves = sum(sum(1 for child in tree.left if child < 0) for tree in trees)
    if leaves > MAX_LEAVES:
        raise TooLarge(
            f"its trees have {leaves:,} leaves in all, more than the {MAX_LEAVES:,} explained "
            "(fewer or shallower trees are)"
        )
    link = (
        ("probability" if kind == "random_forest" else "logit")
        if task == "binary"
        else ("log" if tweedie_power(estimator) is not None else "identity")
    )
    result = Trees(link=link, columns=tuple(columns), trees=tuple(trees), init=0.0, baseline=0.0)
    matrix = tree_inputs(result, {name: pa.array(x_holdout[name]) for name in [*numeric, *categorical]})
    reached = sum(np.asarray(tree.value)[_leaf_of(tree, matrix)] for tree in trees)  # each row's leaves, summed
    margin = model_margin(pipeline, x_holdout, link, task, classes, positive)
    init = float(np.median(margin - reached)) if len(margin) else 0.0
    return dataclasses.replace(result, init=init, baseline=init + sum(_expected_value(tree) for tree in trees))


def model_margin(pipeline, frame, link: str, task: str, classes: Sequence[str], positive: str | None) -> np.ndarray:
    """The fitted model's own margin for the rows of `frame` (what baseline + contributions must equal):
    scikit-learn's decision function or prediction, XGBoost's and LightGBM's raw score. The float32 values the
    model is fed are handed over as float64 (the same numbers), so that scikit-learn's arithmetic is exact too."""
    estimator = pipeline[-1]
    frame = frame.astype({name: np.float64 for name, kind in frame.dtypes.items() if kind == np.float32})
    if library(estimator) in EXTRAS:
        x = pipeline[:-1].transform(frame)
        raw = (
            estimator.predict(x, output_margin=True)
            if library(estimator) == "xgboost"
            else estimator.predict(x, raw_score=True)
        )
        margin = np.asarray(raw, dtype=np.float64)
        return -margin if task == "binary" and positive == classes[0] else margin
    if task == "binary" and link == "probability":
        assert positive is not None, "a binary model has a positive class"
        return np.asarray(pipeline.predict_proba(frame), dtype=np.float64)[:, list(classes).index(positive)]
    if task == "binary":
        margin = np.asarray(pipeline.decision_function(frame), dtype=np.float64)
        return -margin if positive == classes[0] else margin
    prediction = np.asarray(pipeline.predict(frame), dtype=np.float64)
    return np.log(prediction) if link == "log" else prediction


def split_trees(estimator) -> list[Tree] | None:
    """Every tree of a fitted tree model in its library's order (the order its ONNX converter numbers them),
    as node arrays left, right, column and threshold: a row goes left where the float32 value it is fed is
    <= the threshold, the library's own float64 one. None for other models (and ensembles whose converter
    writes more than one tree operator, as AdaBoost's and bagging's do)."""
    if library(estimator) == "xgboost":
        return _xgboost_trees(estimator.get_booster(), 1.0)
    if library(estimator) == "lightgbm":
        return _lightgbm_trees(estimator.booster_.dump_model(), 1.0)
    from sklearn import ensemble
    from sklearn.tree import BaseDecisionTree

    if isinstance(estimator, (ensemble.HistGradientBoostingClassifier, ensemble.HistGradientBoostingRegressor)):
        return [_hgb_tree(tree, 1.0) for trees in estimator._predictors for tree in trees]  # per iteration, class
    if isinstance(estimator, BaseDecisionTree):
        fitted = [estimator]
    elif isinstance(
        estimator,
        (
            ensemble.RandomForestClassifier,
            ensemble.RandomForestRegressor,
            ensemble.ExtraTreesClassifier,
            ensemble.ExtraTreesRegressor,
            ensemble.GradientBoostingClassifier,
            ensemble.GradientBoostingRegressor,
        ),
    ):
        fitted = list(np.ravel(estimator.estimators_))  # a forest's list, gradient boosting's stages × classes
    else:
        return None
    return [_sklearn_tree(tree.tree_, lambda t: t.value[:, 0, 0]) for tree in fitted]


def _fitted_steps(pipeline) -> tuple[Any, Any, Any]:
    """(the numeric imputer, the numeric scaler, the one-hot encoder) of a pipeline scorehouse built; None where
    absent."""
    steps = {name: step for name, step, _ in pipeline.named_steps["features"].transformers_}
    numeric = steps.get("numeric")
    return (
        numeric.named_steps["impute"] if numeric is not None else None,
        numeric.named_steps.get("scale") if numeric is not None else None,
        steps.get("categorical"),
    )


def _leaf_of(tree: Tree, matrix: np.ndarray) -> np.ndarray:
    left, right, column, threshold = (np.asarray(v) for v in (tree.left, tree.right, tree.column, tree.threshold))
    node = np.zeros(matrix.shape[0], dtype=np.int64)
    for _ in range(len(left)):
        inner = left[node] >= 0
        if not inner.any():
            break
        goes_left = matrix[np.arange(len(node)), np.maximum(column[node], 0)] <= threshold[node]
        node = np.where(inner, np.where(goes_left, left[node], right[node]), node)
    return node


def _expected_value(tree: Tree) -> float:
    """The tree's mean over its training rows: Σ leaf value × leaf cover / root cover."""
    left, value, cover = np.asarray(tree.left), np.asarray(tree.value), np.asarray(tree.cover)
    leaves = left < 0
    return float((value[leaves] * cover[leaves]).sum() / cover[0])


def _sklearn_tree(tree, values) -> Tree:
    return _tree(
        tree.children_left,
        tree.children_right,
        tree.feature,
        tree.threshold,
        np.asarray(values(tree), dtype=np.float64),
        tree.weighted_n_node_samples,
    )


def _hgb_tree(predictor, sign: float) -> Tree:
    nodes = predictor.nodes
    leaf = nodes["is_leaf"].astype(bool)
    return _tree(
        np.where(leaf, -1, nodes["left"].astype(np.int64)),
        np.where(leaf, -1, nodes["right"].astype(np.int64)),
        np.where(leaf, -2, nodes["feature_idx"]),
        nodes["num_threshold"],
        nodes["value"].astype(np.float64) * sign,
        nodes["count"],
    )


def _tree(left, right, column, threshold, value, cover) -> Tree:
    """A Tree from its node arrays (of any numeric dtype)."""
    whole = lambda a: tuple(np.asarray(a).astype(int).tolist())  # noqa: E731
    number = lambda a: tuple(np.asarray(a, dtype=np.float64).tolist())  # noqa: E731
    return Tree(whole(left), whole(right), whole(column), number(threshold), number(value), number(cover))


def _xgboost_trees(booster, sign: float) -> list[Tree]:
    """XGBoost's trees from its JSON dump; a row goes to `yes` when value < split_condition (float32), which is
    value <= the float32 just below it. Its cover is the training rows' hessian, as shap reads it."""
    names = booster.feature_names
    trees = []
    for dump in booster.get_dump(dump_format="json", with_stats=True):

        def split(node: dict) -> tuple:
            if "leaf" in node:
                return None, float(node["leaf"]) * sign, float(node["cover"])
            children = {child["nodeid"]: child for child in node["children"]}
            column = names.index(node["split"]) if names else int(node["split"][1:])
            below = float(np.nextafter(np.float32(node["split_condition"]), np.float32(-np.inf)))
            return (column, below, children[node["yes"]], children[node["no"]]), 0.0, float(node["cover"])

        trees.append(_flattened(json.loads(dump), split))
    return trees


def _lightgbm_trees(model: Mapping[str, Any], sign: float) -> list[Tree]:
    """LightGBM's trees from its model dump (numerical splits: value <= threshold goes left)."""

    def split(node: dict) -> tuple:
        if "leaf_value" in node:
            return None, float(node["leaf_value"]) * sign, float(node.get("leaf_count", 1))
        if node["decision_type"] != "<=":
            raise ScorehouseError(f"LightGBM's {node['decision_type']!r} splits are not explained")
        return (
            (int(node["split_feature"]), float(node["threshold"]), node["left_child"], node["right_child"]),
            0.0,
            float(node["internal_count"]),
        )

    return [_flattened(tree["tree_structure"], split) for tree in model["tree_info"]]


def _flattened(root: Mapping[str, Any], split) -> Tree:
    """A nested tree as node arrays; split(node) is ((column, threshold, left, right) or None for a leaf, value,
    cover)."""
    tree: dict[str, list] = {key: [] for key in ("left", "right", "column", "threshold", "value", "cover")}
    pending = [(root, -1, False)]  # (node, its parent's position, is the left child)
    while pending:
        node, parent, is_left = pending.pop()
        position = len(tree["left"])
        if parent >= 0:
            tree["left" if is_left else "right"][parent] = position
        test, value, cover = split(node)
        column, threshold = (test[0], test[1]) if test else (-2, -2.0)
        for key, item in (
            ("left", -1),
            ("right", -1),
            ("column", column),
            ("threshold", threshold),
            ("value", value),
            ("cover", cover),
        ):
            tree[key].append(item)
        if test:
            pending += [(test[3], position, False), (test[2], position, True)]
    return _tree(*(tree[key] for key in Tree.FIELDS))


def _fractions(tree) -> np.ndarray:
    """A classification tree's class fractions per node (scikit-learn stores fractions; older versions counts)."""
    values = tree.value[:, 0, :]
    return values / np.maximum(values.sum(axis=1, keepdims=True), 1e-300)
