"""Why a row got its score: each feature's contribution to the model's margin, and the baseline.

The margin is what the model adds up before its link: log-odds of the positive class for a binary
classifier, the prediction for a linear regressor, the log of the prediction for a Poisson, Gamma or
Tweedie model. baseline + the sum of every feature's contribution = the row's margin.

Linear models are explained exactly: a numeric feature contributes coef × (its imputed, standardised
value − that column's training mean); a categorical feature the sum of its one-hot columns' coef ×
(indicator − training share), so an unseen or NULL category contributes −Σ coef × share.

Tree ensembles (scikit-learn's gradient boosting, hist gradient boosting and random forest, XGBoost,
LightGBM) are explained by path-dependent TreeSHAP over the trees' structure and each node's cover (its
training rows; XGBoost's: their hessian), recorded at registration because the ONNX graph does not keep
them; one-hot columns are summed back to their feature. A random forest classifier is explained in
probability (it averages its trees' probabilities), not log-odds. The parameters are read from the fitted
pipeline and stored as the version's explain.json (hashed, and signed with the version); nothing is pickled.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from math import factorial
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ScorehouseError
from .estimators import EXTRAS, SCALED_KINDS, library, tweedie_power
from .manifest import Version
from .schema import category_codes, category_text, float32_values, text_values

MAX_TOP_K = 1000
NOT_YET = "not explained yet"  # how a skip says the kind or task is not explained, as opposed to a failed check
LINKS = {"binary": "logit", "regression": "identity"}
LOG_LINK_KINDS = frozenset({"poisson_regression", "gamma_regression", "tweedie_regression"})
TREE_KINDS = frozenset({"gradient_boosting", "hist_gradient_boosting", "random_forest", "xgboost", "lightgbm"})
TABLE_DEPTH = 6  # paths with at most this many distinct columns get their Shapley weights tabulated
UNIT_CONDITIONS = 8  # conditions of a tabulated unit (a small tree's splits, a path's columns): outcomes fit a byte
TABLE_BUDGET = 4_000_000  # numbers kept in the units' tables per explanation (32 MB); beyond, path by path
KERNEL_BLOCK = 1 << 22  # conditions tested at once (rows × units × 8): bounds the kernel's memory
MAX_LEAVES = 20_000  # ensembles with more leaves in all are not explained (explain.json and TreeSHAP grow with them)
CONTRIBUTION = pa.struct([("feature", pa.string()), ("value", pa.string()), ("contribution", pa.float64())])
EXPLANATION = pa.struct(
    [("baseline", pa.float64()), ("margin", pa.float64()), ("contributions", pa.list_(CONTRIBUTION))]
)


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
) -> dict[str, Any]:
    """explain.json for a linear pipeline built by scorehouse train (impute → scale numbers, one-hot text)."""
    transformer, estimator = pipeline.named_steps["features"], pipeline[-1]
    coef = np.asarray(estimator.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(estimator.intercept_, dtype=np.float64).reshape(-1)[0])
    if task == "binary" and positive == classes[0]:  # the log-odds of the positive class
        coef, intercept = -coef, -intercept
    means = np.average(np.asarray(transformer.transform(x_train), dtype=np.float64), axis=0, weights=weights)
    imputer, scaler, encoder = _fitted_steps(pipeline)
    result: dict[str, Any] = {
        "kind": "linear",
        "link": "log" if kind in LOG_LINK_KINDS else LINKS[task],
        "intercept": intercept,
        "numeric": [],
        "categorical": [],
    }
    position = 0
    if numeric:
        for i, name in enumerate(numeric):
            result["numeric"].append(
                {
                    "feature": name,
                    "median": float(imputer.statistics_[i]),
                    "center": float(scaler.mean_[i]) if scaler is not None else 0.0,
                    "scale": float(scaler.scale_[i]) if scaler is not None else 1.0,
                    "coef": float(coef[position]),
                    "mean": float(means[position]),
                }
            )
            position += 1
    if categorical:
        for name, categories in zip(categorical, encoder.categories_):
            width = len(categories)
            result["categorical"].append(
                {
                    "feature": name,
                    "categories": [str(c) for c in categories],
                    "coef": coef[position : position + width].tolist(),
                    "mean": means[position : position + width].tolist(),
                }
            )
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
        coef, mean = np.asarray(entry["coef"]), np.asarray(entry["mean"])
        hit = _codes(columns[entry["feature"]], entry["categories"])
        names.append(entry["feature"])
        blocks.append(np.where(hit >= 0, coef[np.maximum(hit, 0)], 0.0) - float(coef @ mean))
    return names, np.column_stack(blocks) if blocks else np.zeros((0, 0))


def explain_rows(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array], top_k: int) -> pa.Array:
    """Per row {baseline, margin, contributions: the top_k features by |contribution|, largest first}."""
    if top_k is None or not 1 <= int(top_k) <= MAX_TOP_K:
        raise ScorehouseError(f"explain(): top_k must be between 1 and {MAX_TOP_K}, found {top_k}")
    names, matrix = contributions(explanation, columns)
    rows = matrix.shape[0]
    k = min(int(top_k), len(names))
    order = np.argsort(-np.abs(np.nan_to_num(matrix, nan=np.inf)), axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(matrix, order, axis=1)
    feature = pa.array(np.asarray(names, dtype=object)[order.reshape(-1)] if rows else [], pa.string())
    text = _listed_values(explanation, names, columns, order)
    items = pa.StructArray.from_arrays(
        [feature, text, pa.array(picked.reshape(-1), pa.float64())], fields=list(CONTRIBUTION)
    )
    listed = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1) * k, pa.int32()), items)
    baseline = np.full(rows, explanation["baseline"])
    return pa.StructArray.from_arrays(
        [pa.array(baseline), pa.array(baseline + matrix.sum(axis=1)), listed], fields=list(EXPLANATION)
    )


def not_explained(model: str, record: Mapping[str, Any] | None) -> str:
    """Why a version has no explanations (its manifest's explanation record), in one line."""
    if record is None:
        return f"Model {model} has no explanations: it was registered before they were recorded; retrain it to get them"
    return f"Model {model} has no explanations: {record['skipped']}"


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


def _numbers(column: pa.Array) -> np.ndarray:
    """A numeric feature as the model is fed it (float32), in float64 for the arithmetic; NULL as NaN."""
    return float32_values(column).astype(np.float64)


def _listed_values(
    explanation: Mapping[str, Any], names: Sequence[str], columns: Mapping[str, pa.Array], order: np.ndarray
) -> pa.Array:
    """The values explain() lists (row i, feature order[i, j]) as text: numbers to 7 digits, categories as read."""
    numeric = (
        {e["feature"] for e in explanation["numeric"]}
        if explanation["kind"] == "linear"
        else {c["feature"] for c in explanation["columns"] if "median" in c}
    )
    listed = order.reshape(-1)
    rows = np.repeat(np.arange(order.shape[0]), order.shape[1])
    text = np.full(len(listed), None, dtype=object)
    for feature in np.unique(listed):
        at = np.flatnonzero(listed == feature)
        column = columns[names[feature]]
        if names[feature] in numeric:  # each distinct number formatted once
            unique, inverse = np.unique(_numbers(column)[rows[at]], return_inverse=True)
            formatted = np.asarray([None if np.isnan(v) else f"{v:.7g}" for v in unique], dtype=object)
            text[at] = formatted[inverse.reshape(-1)]
        else:
            text[at] = text_values(column).take(pa.array(rows[at])).to_numpy(zero_copy_only=False)
    return pa.array(text, pa.string())


def _codes(column: pa.Array, categories: Sequence[str]) -> np.ndarray:
    """Each row's position among a feature's training categories (NULL read as the model reads it), -1 if unseen."""
    return category_codes(category_text(column), tuple(categories))


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


def model_margin(
    pipeline, frame, explanation: Mapping[str, Any], task: str, classes: Sequence[str], positive: str | None
) -> np.ndarray:
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
    if task == "binary" and explanation["link"] == "probability":
        assert positive is not None, "a binary model has a positive class"
        return np.asarray(pipeline.predict_proba(frame), dtype=np.float64)[:, list(classes).index(positive)]
    if task == "binary":
        margin = np.asarray(pipeline.decision_function(frame), dtype=np.float64)
        return -margin if positive == classes[0] else margin
    prediction = np.asarray(pipeline.predict(frame), dtype=np.float64)
    return np.log(prediction) if explanation["link"] == "log" else prediction


class TooLarge(ScorehouseError):
    """An ensemble too large to explain: the version registers without explanations, saying so."""


def tree_explanation(
    pipeline,
    kind: str,
    task: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    x_holdout,
    classes: Sequence[str],
    positive: str | None,
) -> dict[str, Any]:
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
    leaves = sum(sum(1 for child in tree["left"] if child < 0) for tree in trees)
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
    result: dict[str, Any] = {"kind": "trees", "link": link, "columns": columns, "trees": trees, "init": 0.0}
    matrix = _tree_inputs(result, {name: pa.array(x_holdout[name]) for name in [*numeric, *categorical]})
    reached = sum(np.asarray(tree["value"])[_leaf_of(tree, matrix)] for tree in trees)  # each row's leaves, summed
    margin = model_margin(pipeline, x_holdout, result, task, classes, positive)
    result["init"] = float(np.median(margin - reached)) if len(margin) else 0.0
    result["baseline"] = result["init"] + sum(_expected_value(tree) for tree in trees)
    return result


def tree_contributions(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array]) -> tuple[list[str], np.ndarray]:
    """TreeSHAP (path-dependent) per feature: each column's share summed back to its feature."""
    kernel = _kernel(explanation)
    matrix = _tree_inputs(explanation, columns)
    summed = kernel.tabulated(matrix)
    if kernel.paths:
        phi = np.zeros_like(matrix)
        for path in kernel.paths:
            phi[:, path.columns] += path.phi(_inside(matrix[:, path.columns], path.lower, path.upper) @ path.powers)
        summed += phi @ kernel.owner
    return kernel.names, summed


class _Path:
    """A root-to-leaf path: its distinct columns, the interval each must fall in (lower NaN: none), their
    zero fractions (the share of training rows the path keeps through that column's splits), the leaf's
    value and the splits it takes (node, goes left)."""

    __slots__ = ("columns", "lower", "upper", "zero", "value", "powers", "table", "steps")

    def __init__(self, conditions: dict[int, list[float]], value: float, steps: list[tuple[int, bool]]):
        self.columns = np.asarray(list(conditions), dtype=np.int64)
        lower = np.asarray([c[0] for c in conditions.values()])
        self.lower = np.where(np.isneginf(lower), np.nan, lower)  # so that -inf itself is inside
        self.upper = np.asarray([c[1] for c in conditions.values()])
        self.zero = np.asarray([c[2] for c in conditions.values()])
        self.value, self.steps = value, steps
        depth = len(self.columns)
        self.powers = 1 << np.arange(depth)
        self.table = None  # value × Shapley weights for every in/out combination, for short paths
        if depth <= TABLE_DEPTH:
            bits = ((np.arange(1 << depth)[:, None] >> np.arange(depth)) & 1).astype(np.float64)
            self.table = value * _shapley(bits, self.zero)

    def phi(self, masks: np.ndarray) -> np.ndarray:
        """The contributions to the path's columns of rows whose columns are inside the path's intervals
        as the bits of `masks` say."""
        if self.table is not None:
            return self.table[masks]
        unique, inverse = np.unique(masks, return_inverse=True)
        bits = ((unique[:, None] >> np.arange(len(self.columns))) & 1).astype(np.float64)
        return self.value * _shapley(bits, self.zero)[inverse.reshape(-1)]


def _inside(values: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """lower < value <= upper, where a NaN lower bound holds for every value and a NaN upper bound for none."""
    return ~(values <= lower) & (values <= upper)


class _Kernel:
    """An ensemble made ready to explain, as units of at most 8 conditions (column, lower, upper) and a
    table of the unit's contributions per feature for every outcome of them: a tree with at most 8
    splits is one unit (each split a condition), a larger tree's root-to-leaf paths are one each (each
    distinct column an interval). A row then costs a comparison per condition and a lookup per unit.
    Paths on more columns, and units past the tables' budget, are explained path by path."""

    def __init__(self, explanation: Mapping[str, Any]):
        width = len(explanation["columns"])
        self.names = list(dict.fromkeys(c["feature"] for c in explanation["columns"]))
        self.owner = np.zeros((width, len(self.names)))  # column → its feature
        self.owner[np.arange(width), [self.names.index(c["feature"]) for c in explanation["columns"]]] = 1.0
        self.paths: list[_Path] = []
        conditions, offsets, tables = [], [], []
        used = 0  # numbers in the tables so far
        for tree in explanation["trees"]:
            left, column, threshold = (np.asarray(tree[k]) for k in ("left", "column", "threshold"))
            splits, paths = np.flatnonzero(left >= 0), _tree_paths(tree)
            units: list[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], Callable[..., np.ndarray], list[_Path]]]
            if len(splits) <= UNIT_CONDITIONS:  # (conditions, its table, the paths it stands for)
                units = [
                    (
                        (column[splits], np.full(len(splits), np.nan), threshold[splits].astype(np.float64)),
                        lambda paths=paths, splits=splits, column=column: _tabulate(paths, splits, column, width),
                        paths,
                    )
                ]
            else:
                units = [
                    ((path.columns, path.lower, path.upper), lambda path=path: _path_table(path, width), [path])
                    for path in paths
                ]
            for (unit_columns, lower, upper), table, replaced in units:
                if (
                    len(unit_columns) > UNIT_CONDITIONS
                    or (1 << len(unit_columns)) * len(self.names) > TABLE_BUDGET - used
                ):
                    self.paths += replaced
                    continue
                bounds = np.full((3, UNIT_CONDITIONS), np.nan)  # an upper bound of NaN holds for no value: no bit
                bounds[0] = 0.0
                bounds[:, : len(unit_columns)] = unit_columns, lower, upper
                conditions.append(bounds)
                tables.append(table() @ self.owner)
                offsets.append(used // len(self.names))
                used += tables[-1].size
        bounds = np.concatenate(conditions, axis=1) if conditions else np.zeros((3, 0))
        self.unit_columns, self.lower, self.upper = bounds[0].astype(np.int64), bounds[1], bounds[2]
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.tables = np.concatenate(tables) if tables else np.zeros((0, len(self.names)))

    def tabulated(self, matrix: np.ndarray) -> np.ndarray:
        """The units' contributions per feature, summed."""
        from scipy import sparse  # here, not at import: a process that only scores does not load scipy

        rows, units = matrix.shape[0], len(self.offsets)
        summed = np.zeros((rows, len(self.names)))
        step = max(1, KERNEL_BLOCK // max(units * UNIT_CONDITIONS, 1))
        for start in range(0, rows if units else 0, step):
            block = matrix[start : start + step]
            held = _inside(block.take(self.unit_columns, axis=1), self.lower, self.upper)  # rows × (units × 8)
            # a unit's 8 bytes (0 or 1) as one little-endian word; the multiplication gathers bit i from byte i
            outcome = (held.view(np.dtype("<u8")) * np.uint64(0x0102040810204080)) >> np.uint64(56)
            entries = outcome.astype(np.int64) + self.offsets  # each unit's table row for each row
            count = len(block) * units
            reached = sparse.csr_matrix(
                (np.ones(count), entries.reshape(-1), np.arange(0, count + 1, units)),
                shape=(len(block), len(self.tables)),
            )
            summed[start : start + step] = reached @ self.tables
        return summed


def _path_table(path: _Path, width: int) -> np.ndarray:
    """A path's contributions per column for every combination of its columns inside or not."""
    table = np.zeros((1 << len(path.columns), width))
    table[:, path.columns] = path.phi(np.arange(len(table)))
    return table


def _tabulate(paths: Sequence[_Path], splits: np.ndarray, column: np.ndarray, width: int) -> np.ndarray:
    """A tree's contributions per column for every outcome of its splits (bit i: the i-th split goes left)."""
    position = {int(node): i for i, node in enumerate(splits)}
    outcomes = ((np.arange(1 << len(splits))[:, None] >> np.arange(len(splits))) & 1).astype(bool)
    table = np.zeros((len(outcomes), width))
    for path in paths:
        slot = {int(c): i for i, c in enumerate(path.columns)}
        inside = np.ones((len(outcomes), len(path.columns)), dtype=bool)
        for node, goes_left in path.steps:
            inside[:, slot[int(column[node])]] &= outcomes[:, position[node]] == goes_left
        table[:, path.columns] += path.phi(inside @ path.powers)
    return table


_KERNELS: dict[int, tuple[Mapping[str, Any], _Kernel]] = {}
KERNELS_KEPT = 8  # explanations whose kernels a process keeps (each at most TABLE_BUDGET numbers)


def _kernel(explanation: Mapping[str, Any]) -> _Kernel:
    """The explanation's kernel (built once per explanation: kept with it, the last few)."""
    key = id(explanation)
    if key in _KERNELS and _KERNELS[key][0] is explanation:
        return _KERNELS[key][1]
    kernel = _Kernel(explanation)
    while len(_KERNELS) >= KERNELS_KEPT:
        _KERNELS.pop(next(iter(_KERNELS)))
    _KERNELS[key] = (explanation, kernel)
    return kernel


def _tree_paths(tree: Mapping[str, Any]) -> list[_Path]:
    """A tree's root-to-leaf paths."""
    left, right, column, threshold, value, cover = (
        np.asarray(tree[k]) for k in ("left", "right", "column", "threshold", "value", "cover")
    )
    paths = []
    stack: list[tuple[int, dict, list]] = [(0, {}, [])]
    while stack:
        node, conditions, steps = stack.pop()
        if left[node] < 0:
            paths.append(_Path(conditions, float(value[node]), steps))
            continue
        for child, goes_left in ((left[node], True), (right[node], False)):
            lower, upper, zero = conditions.get(int(column[node]), [-np.inf, np.inf, 1.0])
            bound = float(threshold[node])
            lower, upper = (lower, min(upper, bound)) if goes_left else (max(lower, bound), upper)
            share = float(cover[child]) / float(cover[node]) if cover[node] else 0.0
            stack.append(
                (
                    int(child),
                    {**conditions, int(column[node]): [lower, upper, zero * share]},
                    [*steps, (node, goes_left)],
                )
            )
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
    others = ((prefix[:, :d] @ _subset_weights(d)) * suffix[:, 1:]).sum(axis=2)
    return (bits - zero) * others


@functools.lru_cache(maxsize=64)
def _subset_weights(d: int) -> np.ndarray:
    """[a, b]: the Shapley weight (a+b)!(d−a−b−1)!/d! of a subset with a columns before and b after."""
    return np.asarray(
        [
            [factorial(a + b) * factorial(d - a - b - 1) / factorial(d) if a + b < d else 0.0 for b in range(d + 1)]
            for a in range(d + 1)
        ]
    )


def _tree_inputs(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array]) -> np.ndarray:
    """The matrix the trees split on, as float32 values (as scikit-learn compares them)."""
    categories: dict[str, list[str]] = {}  # each categorical feature's categories, in column order
    for column in explanation["columns"]:
        if "category" in column:
            categories.setdefault(column["feature"], []).append(column["category"])
    codes = {feature: _codes(columns[feature], known) for feature, known in categories.items()}
    blocks, position = [], dict.fromkeys(categories, 0)
    for column in explanation["columns"]:
        if "median" in column:
            values = _numbers(columns[column["feature"]])
            blocks.append(np.where(np.isnan(values), column["median"], values))
        else:
            blocks.append(codes[column["feature"]] == position[column["feature"]])
            position[column["feature"]] += 1
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


def split_trees(estimator) -> list[dict[str, list]] | None:
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


def _sklearn_tree(tree, values) -> dict[str, list]:
    return {
        "left": tree.children_left.tolist(),
        "right": tree.children_right.tolist(),
        "column": tree.feature.tolist(),
        "threshold": tree.threshold.tolist(),
        "value": np.asarray(values(tree), dtype=np.float64).tolist(),
        "cover": tree.weighted_n_node_samples.tolist(),
    }


def _hgb_tree(predictor, sign: float) -> dict[str, list]:
    nodes = predictor.nodes
    leaf = nodes["is_leaf"].astype(bool)
    return {
        "left": np.where(leaf, -1, nodes["left"].astype(np.int64)).tolist(),
        "right": np.where(leaf, -1, nodes["right"].astype(np.int64)).tolist(),
        "column": np.where(leaf, -2, nodes["feature_idx"]).astype(int).tolist(),
        "threshold": nodes["num_threshold"].astype(np.float64).tolist(),
        "value": (nodes["value"].astype(np.float64) * sign).tolist(),
        "cover": nodes["count"].astype(np.float64).tolist(),
    }


def _xgboost_trees(booster, sign: float) -> list[dict[str, list]]:
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


def _lightgbm_trees(model: Mapping[str, Any], sign: float) -> list[dict[str, list]]:
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


def _flattened(root: Mapping[str, Any], split) -> dict[str, list]:
    """A nested tree as the node arrays explain.json keeps; split(node) is ((column, threshold, left, right)
    or None for a leaf, value, cover)."""
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
    return tree


def _fractions(tree) -> np.ndarray:
    """A classification tree's class fractions per node (scikit-learn stores fractions; older versions counts)."""
    values = tree.value[:, 0, :]
    return values / np.maximum(values.sum(axis=1, keepdims=True), 1e-300)
