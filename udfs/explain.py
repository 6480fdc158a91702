"""Why a row got its score: each feature's contribution to the model's margin, and the baseline.

The margin is what the model adds up before its link: log-odds of the positive class for a binary
classifier, the prediction for a linear regressor, the log of the prediction for a Poisson, Gamma or
Tweedie model. baseline + the sum of every feature's contribution = the row's margin.

Linear models are explained exactly: a numeric feature contributes coef × (its imputed, standardised
value − that column's training mean); a categorical feature the sum of its one-hot columns' coef ×
(indicator − training share), so an unseen or NULL category contributes −Σ coef × share.

Tree ensembles (gradient boosting, hist gradient boosting, random forest) are explained by
path-dependent TreeSHAP over the trees' structure and each node's cover (its training rows), recorded at
registration because the ONNX graph does not keep them; one-hot columns are summed back to their
feature. A random forest classifier is explained in probability (it averages its trees' probabilities),
not log-odds. The parameters are read from the fitted pipeline and stored as the version's explain.json
(hashed, and signed with the version); nothing is pickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ScorehouseError
from .estimators import SCALED_KINDS
from .schema import MISSING_CATEGORY, float32_values, text_values

MAX_TOP_K = 1000
LINKS = {"binary": "logit", "regression": "identity"}
LOG_LINK_KINDS = frozenset({"poisson_regression", "gamma_regression", "tweedie_regression"})
TREE_KINDS = frozenset({"gradient_boosting", "hist_gradient_boosting", "random_forest"})
TABLE_DEPTH = 6  # paths with at most this many distinct columns get their Shapley weights tabulated
MAX_LEAVES = 20_000  # ensembles with more leaves in all are not explained (explain.json and TreeSHAP grow with them)
CONTRIBUTION = pa.struct([("feature", pa.string()), ("value", pa.string()), ("contribution", pa.float64())])
EXPLANATION = pa.struct([("baseline", pa.float64()), ("margin", pa.float64()),
                         ("contributions", pa.list_(CONTRIBUTION))])


def linear_explanation(pipeline, kind: str, task: str, numeric: Sequence[str], categorical: Sequence[str],
                       x_train, classes: Sequence[str], positive: str | None, weights=None) -> dict[str, Any]:
    """explain.json for a linear pipeline built by scorehouse train (impute → scale numbers, one-hot text)."""
    transformer, estimator = pipeline.named_steps["features"], pipeline[-1]
    coef = np.asarray(estimator.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(estimator.intercept_, dtype=np.float64).reshape(-1)[0])
    if task == "binary" and positive == classes[0]:  # the log-odds of the positive class
        coef, intercept = -coef, -intercept
    means = np.average(np.asarray(transformer.transform(x_train), dtype=np.float64), axis=0, weights=weights)
    imputer, scaler, encoder = _fitted_steps(pipeline)
    result: dict[str, Any] = {"kind": "linear", "link": "log" if kind in LOG_LINK_KINDS else LINKS[task],
                              "intercept": intercept, "numeric": [], "categorical": []}
    position = 0
    if numeric:
        for i, name in enumerate(numeric):
            result["numeric"].append({
                "feature": name, "median": float(imputer.statistics_[i]),
                "center": float(scaler.mean_[i]) if scaler is not None else 0.0,
                "scale": float(scaler.scale_[i]) if scaler is not None else 1.0,
                "coef": float(coef[position]), "mean": float(means[position])})
            position += 1
    if categorical:
        for name, categories in zip(categorical, encoder.categories_):
            width = len(categories)
            result["categorical"].append({
                "feature": name, "categories": [str(c) for c in categories],
                "coef": coef[position:position + width].tolist(), "mean": means[position:position + width].tolist()})
            position += width
    result["baseline"] = intercept + float(coef @ means)
    return result


def contributions(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array]) -> tuple[list[str], np.ndarray]:
    """(feature names, an n × features matrix of their contributions)."""
    if explanation["kind"] == "trees":
        return tree_contributions(explanation, columns)
    names, blocks = [], []
    for entry in explanation["numeric"]:
        values = _numbers(columns[entry["feature"]])
        standardised = (np.where(np.isnan(values), entry["median"], values) - entry["center"]) / entry["scale"]
        names.append(entry["feature"])
        blocks.append(entry["coef"] * (standardised - entry["mean"]))
    for entry in explanation["categorical"]:
        index = {c: i for i, c in enumerate(entry["categories"])}
        coef, mean = np.asarray(entry["coef"]), np.asarray(entry["mean"])
        hit = np.asarray([index.get(MISSING_CATEGORY if v is None else v, -1)
                          for v in text_values(columns[entry["feature"]]).to_pylist()])
        names.append(entry["feature"])
        blocks.append(np.where(hit >= 0, coef[np.maximum(hit, 0)], 0.0) - float(coef @ mean))
    return names, np.column_stack(blocks) if blocks else np.zeros((0, 0))


def explain_rows(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array], top_k: int) -> pa.Array:
    """Per row {baseline, margin, contributions: the top_k features by |contribution|, largest first}."""
    if not 1 <= int(top_k) <= MAX_TOP_K:
        raise ScorehouseError(f"explain(): top_k must be between 1 and {MAX_TOP_K}, found {top_k}")
    names, matrix = contributions(explanation, columns)
    texts = _value_texts(explanation, names, columns)
    rows = matrix.shape[0]
    k = min(int(top_k), len(names))
    order = np.argsort(-np.abs(np.nan_to_num(matrix, nan=np.inf)), axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(matrix, order, axis=1)
    flat = order.reshape(-1)
    feature = pa.array(np.asarray(names, dtype=object)[flat] if rows else [], pa.string())
    text = pa.array([texts[j][i] for i, row in enumerate(order) for j in row], pa.string())
    items = pa.StructArray.from_arrays([feature, text, pa.array(picked.reshape(-1), pa.float64())],
                                       fields=list(CONTRIBUTION))
    listed = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1) * k, pa.int32()), items)
    baseline = np.full(rows, explanation["baseline"])
    return pa.StructArray.from_arrays([pa.array(baseline), pa.array(baseline + matrix.sum(axis=1)), listed],
                                      fields=list(EXPLANATION))


def not_explained(model: str, manifest: Mapping[str, Any]) -> str:
    """Why a version has no explanations, in one line."""
    record = manifest.get("explanation")
    if record is None:
        return (f"Model {model} has no explanations: it was registered before they were recorded; "
                "retrain it to get them")
    return f"Model {model} has no explanations: {record['skipped']}"


def skipped_reason(kind: str, task: str, fitted_by_scorehouse: bool) -> str | None:
    """Why a model gets no explain.json at registration, or None when it gets one."""
    if not fitted_by_scorehouse:
        return "a pipeline fitted elsewhere is not explained (only models trained by `scorehouse train` are)"
    if task == "multiclass":
        return "multiclass models are not explained yet"
    if kind not in SCALED_KINDS | TREE_KINDS:
        return f"{kind} models are not explained yet (linear models and scikit-learn's tree ensembles are)"
    return None


def _numbers(column: pa.Array) -> np.ndarray:
    """A numeric feature as the model is fed it (float32), in float64 for the arithmetic; NULL as NaN."""
    return float32_values(column).astype(np.float64)


def _value_texts(explanation: Mapping[str, Any], names: Sequence[str], columns: Mapping[str, pa.Array]) -> list[list]:
    """Each feature's values as text, as explain() lists them: numbers to 7 digits, categories as read."""
    numeric = ({e["feature"] for e in explanation["numeric"]} if explanation["kind"] == "linear"
               else {c["feature"] for c in explanation["columns"] if "median" in c})
    return [[None if np.isnan(v) else f"{v:.7g}" for v in _numbers(columns[name])] if name in numeric
            else text_values(columns[name]).to_pylist() for name in names]


def _fitted_steps(pipeline) -> tuple[Any, Any, Any]:
    """(the numeric imputer, the numeric scaler, the one-hot encoder) of a pipeline scorehouse built; None where absent."""
    steps = {name: step for name, step, _ in pipeline.named_steps["features"].transformers_}
    numeric = steps.get("numeric")
    return (numeric.named_steps["impute"] if numeric is not None else None,
            numeric.named_steps.get("scale") if numeric is not None else None, steps.get("categorical"))


def sklearn_margin(pipeline, frame, explanation: Mapping[str, Any], task: str, classes: Sequence[str],
                   positive: str | None) -> np.ndarray:
    """scikit-learn's own margin for the rows of `frame` (what baseline + contributions must equal)."""
    if task == "binary" and explanation["link"] == "probability":
        return np.asarray(pipeline.predict_proba(frame), dtype=np.float64)[:, list(classes).index(positive)]
    if task == "binary":
        margin = np.asarray(pipeline.decision_function(frame), dtype=np.float64)
        return -margin if positive == classes[0] else margin
    prediction = np.asarray(pipeline.predict(frame), dtype=np.float64)
    return np.log(prediction) if explanation["link"] == "log" else prediction


class TooLarge(ScorehouseError):
    """An ensemble too large to explain: the version registers without explanations, saying so."""


def tree_explanation(pipeline, kind: str, task: str, numeric: Sequence[str], categorical: Sequence[str],
                     x_holdout, classes: Sequence[str], positive: str | None) -> dict[str, Any]:
    """explain.json for a tree ensemble built by scorehouse train: the columns the trees split on (numbers
    imputed with their median, one indicator per category), every tree's nodes with their covers, and the
    constant the trees add to (read off the holdout's margins)."""
    estimator = pipeline[-1]
    imputer, _, encoder = _fitted_steps(pipeline)
    columns: list[dict[str, Any]] = []
    if numeric:
        columns += [{"feature": name, "median": float(imputer.statistics_[i])} for i, name in enumerate(numeric)]
    if categorical:
        for name, categories in zip(categorical, encoder.categories_):
            columns += [{"feature": name, "category": str(c)} for c in categories]
    leaves = (sum(int(p[0].nodes["is_leaf"].sum()) for p in estimator._predictors) if kind == "hist_gradient_boosting"
              else sum(int(t.tree_.n_leaves) for t in np.asarray(estimator.estimators_).reshape(-1)))
    if leaves > MAX_LEAVES:
        raise TooLarge(f"its trees have {leaves:,} leaves in all, more than the {MAX_LEAVES:,} explained "
                       "(fewer or shallower trees are)")
    sign = -1.0 if task == "binary" and kind != "random_forest" and positive == classes[0] else 1.0
    if kind == "hist_gradient_boosting":
        link = "logit" if task == "binary" else ("log" if estimator.loss in ("poisson", "gamma") else "identity")
        trees = [_hgb_tree(predictors[0], sign) for predictors in estimator._predictors]
    elif kind == "gradient_boosting":
        link = "logit" if task == "binary" else "identity"
        trees = [_sklearn_tree(stage[0].tree_, lambda t: t.value[:, 0, 0] * estimator.learning_rate * sign)
                 for stage in estimator.estimators_]
    else:  # random forest: the mean of its trees, in probability for a classifier
        link = "probability" if task == "binary" else "identity"
        column = list(estimator.classes_).index(classes.index(positive) if isinstance(estimator.classes_[0], (int, np.integer))
                                                else positive) if task == "binary" else 0
        count = len(estimator.estimators_)
        trees = [_sklearn_tree(tree.tree_, lambda t: _fractions(t)[:, column] / count) for tree in estimator.estimators_]
    result = {"kind": "trees", "link": link, "columns": columns, "trees": trees, "init": 0.0}
    matrix = _tree_inputs(result, {name: pa.array(x_holdout[name]) for name in [*numeric, *categorical]})
    reached = sum(np.asarray(tree["value"])[_leaf_of(tree, matrix)] for tree in trees)  # each row's leaves, summed
    margin = sklearn_margin(pipeline, x_holdout, result, task, classes, positive)
    result["init"] = float(np.median(margin - reached)) if len(margin) else 0.0
    result["baseline"] = result["init"] + sum(_expected_value(tree) for tree in trees)
    return result


def tree_contributions(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array]) -> tuple[list[str], np.ndarray]:
    """TreeSHAP (path-dependent) per column the trees split on, summed back to each feature."""
    matrix = _tree_inputs(explanation, columns)
    phi = np.zeros_like(matrix)
    for path in _paths(explanation):
        inside = (matrix[:, path.columns] > path.lower) & (matrix[:, path.columns] <= path.upper)
        masks = inside @ path.powers
        if path.table is not None:  # every combination computed once: a lookup per row
            phi[:, path.columns] += path.table[masks]
            continue
        unique, inverse = np.unique(masks, return_inverse=True)
        bits = ((unique[:, None] >> np.arange(len(path.columns))) & 1).astype(np.float64)
        phi[:, path.columns] += path.value * _shapley(bits, path.zero)[inverse.reshape(-1)]
    names = list(dict.fromkeys(c["feature"] for c in explanation["columns"]))
    owner = np.asarray([names.index(c["feature"]) for c in explanation["columns"]])
    summed = np.zeros((matrix.shape[0], len(names)))
    np.add.at(summed.T, owner, phi.T)
    return names, summed


class _Path:
    """A root-to-leaf path: its distinct columns, the interval each must fall in, their zero fractions
    (the share of training rows the path keeps through that column's splits) and the leaf's value."""

    __slots__ = ("columns", "lower", "upper", "zero", "value", "powers", "table")

    def __init__(self, conditions: dict[int, list[float]], value: float):
        self.columns = np.asarray(list(conditions), dtype=np.int64)
        self.lower = np.asarray([c[0] for c in conditions.values()])
        self.upper = np.asarray([c[1] for c in conditions.values()])
        self.zero = np.asarray([c[2] for c in conditions.values()])
        self.value = value
        depth = len(self.columns)
        self.powers = 1 << np.arange(depth)
        self.table = None  # value × Shapley weights for every in/out combination, for short paths
        if depth <= TABLE_DEPTH:
            bits = ((np.arange(1 << depth)[:, None] >> np.arange(depth)) & 1).astype(np.float64)
            self.table = value * _shapley(bits, self.zero)


_PATHS: dict[int, tuple[Mapping[str, Any], list[_Path]]] = {}
PATHS_KEPT = 16


def _paths(explanation: Mapping[str, Any]) -> list[_Path]:
    """Every tree's root-to-leaf paths (built once per explanation: kept with it, the last few)."""
    key = id(explanation)
    if key in _PATHS and _PATHS[key][0] is explanation:
        return _PATHS[key][1]
    paths = []
    for tree in explanation["trees"]:
        left, right, column, threshold, value, cover = (np.asarray(tree[k]) for k in
                                                        ("left", "right", "column", "threshold", "value", "cover"))
        stack = [(0, {})]
        while stack:
            node, conditions = stack.pop()
            if left[node] < 0:
                paths.append(_Path(conditions, float(value[node])))
                continue
            for child, goes_left in ((left[node], True), (right[node], False)):
                lower, upper, zero = conditions.get(int(column[node]), [-np.inf, np.inf, 1.0])
                bound = float(threshold[node])
                lower, upper = (lower, min(upper, bound)) if goes_left else (max(lower, bound), upper)
                share = float(cover[child]) / float(cover[node]) if cover[node] else 0.0
                stack.append((int(child), {**conditions, int(column[node]): [lower, upper, zero * share]}))
    while len(_PATHS) >= PATHS_KEPT:
        _PATHS.pop(next(iter(_PATHS)))
    _PATHS[key] = (explanation, paths)
    return paths


def _shapley(bits: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """Each path column's Shapley weight × (one − zero) for rows whose columns are inside (1) or not (0) the
    path's intervals: Σ over subsets S of the other columns of |S|!(d−|S|−1)!/d! Π_S one Π_rest zero."""
    rows, d = bits.shape
    factors = np.stack([np.broadcast_to(zero, (rows, d)), bits], axis=2)  # (zero_j + one_j t) per column
    prefix = np.zeros((rows, d + 1, d + 1))
    prefix[:, 0, 0] = 1.0
    for j in range(d):  # prefix[:, j] = Π_{k<j} (zero_k + one_k t)
        prefix[:, j + 1] = prefix[:, j] * factors[:, j, 0:1]
        prefix[:, j + 1, 1:] += prefix[:, j, :-1] * factors[:, j, 1:2]
    suffix = np.zeros((rows, d + 1, d + 1))
    suffix[:, d, 0] = 1.0
    for j in range(d - 1, -1, -1):  # suffix[:, j] = Π_{k>=j}
        suffix[:, j] = suffix[:, j + 1] * factors[:, j, 0:1]
        suffix[:, j, 1:] += suffix[:, j + 1, :-1] * factors[:, j, 1:2]
    from math import factorial

    weights = np.asarray([[factorial(a + b) * factorial(d - a - b - 1) / factorial(d) if a + b < d else 0.0
                           for b in range(d + 1)] for a in range(d + 1)])
    others = np.einsum("uja,ujb,ab->uj", prefix[:, :d], suffix[:, 1:], weights)
    return (bits - zero) * others


def _tree_inputs(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array]) -> np.ndarray:
    """The matrix the trees split on, as float32 values (as scikit-learn compares them)."""
    blocks = []
    texts: dict[str, list] = {}
    for column in explanation["columns"]:
        if "median" in column:
            values = _numbers(columns[column["feature"]])
            blocks.append(np.where(np.isnan(values), column["median"], values))
        else:
            if column["feature"] not in texts:
                texts[column["feature"]] = [MISSING_CATEGORY if v is None else v
                                            for v in text_values(columns[column["feature"]]).to_pylist()]
            blocks.append(np.asarray([v == column["category"] for v in texts[column["feature"]]], dtype=np.float64))
    return np.column_stack(blocks).astype(np.float32).astype(np.float64)


def _leaf_of(tree: Mapping[str, Any], matrix: np.ndarray) -> np.ndarray:
    left, right, column, threshold = (np.asarray(tree[k]) for k in ("left", "right", "column", "threshold"))
    node = np.zeros(matrix.shape[0], dtype=np.int64)
    for _ in range(len(left)):
        inner = left[node] >= 0
        if not inner.any():
            break
        goes_left = matrix[np.arange(len(node)), np.maximum(column[node], 0)] <= threshold[node]
        node = np.where(inner, np.where(goes_left, left[node], right[node]), node)
    return node


def _expected_value(tree: Mapping[str, Any]) -> float:
    """The tree's mean over its training rows: Σ leaf value × leaf cover / root cover."""
    left, value, cover = (np.asarray(tree[k]) for k in ("left", "value", "cover"))
    leaves = left < 0
    return float((value[leaves] * cover[leaves]).sum() / cover[0])


def _sklearn_tree(tree, values) -> dict[str, list]:
    return {"left": tree.children_left.tolist(), "right": tree.children_right.tolist(),
            "column": tree.feature.tolist(), "threshold": tree.threshold.tolist(),
            "value": np.asarray(values(tree), dtype=np.float64).tolist(), "cover": tree.weighted_n_node_samples.tolist()}


def _hgb_tree(predictor, sign: float) -> dict[str, list]:
    nodes = predictor.nodes
    leaf = nodes["is_leaf"].astype(bool)
    return {"left": np.where(leaf, -1, nodes["left"].astype(np.int64)).tolist(),
            "right": np.where(leaf, -1, nodes["right"].astype(np.int64)).tolist(),
            "column": np.where(leaf, -2, nodes["feature_idx"]).astype(int).tolist(),
            "threshold": nodes["num_threshold"].astype(np.float64).tolist(),
            "value": (nodes["value"].astype(np.float64) * sign).tolist(), "cover": nodes["count"].astype(np.float64).tolist()}


def _fractions(tree) -> np.ndarray:
    """A classification tree's class fractions per node (scikit-learn stores fractions; older versions counts)."""
    values = tree.value[:, 0, :]
    return values / np.maximum(values.sum(axis=1, keepdims=True), 1e-300)
