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
pipeline at registration (scorehouse.registration.importers) and stored as the version's explain.json
(hashed, and signed with the version); this module computes with its typed form (scorehouse.structure) only,
and nothing is pickled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from math import factorial
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ScorehouseError
from .schema import NUMERIC, category_codes, category_text, float32_values, text_values
from .structure import Indicator, Number, Structure, Tree, Trees

MAX_TOP_K = 1000
LINKS = {"binary": "logit", "regression": "identity"}
TABLE_DEPTH = 6  # paths with at most this many distinct columns get their Shapley weights tabulated
UNIT_CONDITIONS = 8  # conditions of a tabulated unit (a small tree's splits, a path's columns): outcomes fit a byte
TABLE_BUDGET = 4_000_000  # numbers kept in the units' tables per explanation (32 MB); beyond, path by path
KERNEL_BLOCK = 1 << 22  # conditions tested at once (rows × units × 8): bounds the kernel's memory
CONTRIBUTION = pa.struct([("feature", pa.string()), ("value", pa.string()), ("contribution", pa.float64())])
EXPLANATION = pa.struct(
    [("baseline", pa.float64()), ("margin", pa.float64()), ("contributions", pa.list_(CONTRIBUTION))]
)


def contributions(explanation: Structure, columns: Mapping[str, pa.Array]) -> tuple[list[str], np.ndarray]:
    """(feature names, an n × features matrix of their contributions)."""
    if isinstance(explanation, Trees):
        return tree_contributions(explanation, columns)
    names, blocks = [], []
    for number in explanation.numeric:
        values = _numbers(columns[number.feature])
        standardised = (np.where(np.isnan(values), number.median, values) - number.center) / number.scale
        names.append(number.feature)
        blocks.append(number.coef * (standardised - number.mean))
    for entry in explanation.categorical:
        coef, mean = np.asarray(entry.coef), np.asarray(entry.mean)
        hit = _codes(columns[entry.feature], entry.categories)
        names.append(entry.feature)
        blocks.append(np.where(hit >= 0, coef[np.maximum(hit, 0)], 0.0) - float(coef @ mean))
    return names, np.column_stack(blocks) if blocks else np.zeros((0, 0))


def explain_rows(explanation: Structure, columns: Mapping[str, pa.Array], top_k: int) -> pa.Array:
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
    baseline = np.full(rows, explanation.baseline)
    return pa.StructArray.from_arrays(
        [pa.array(baseline), pa.array(baseline + matrix.sum(axis=1)), listed], fields=list(EXPLANATION)
    )


def not_explained(model: str, record: Mapping[str, Any] | None) -> str:
    """Why a version has no explanations (its manifest's explanation record), in one line."""
    if record is None:
        return f"Model {model} has no explanations: it was registered before they were recorded; retrain it to get them"
    return f"Model {model} has no explanations: {record['skipped']}"


def _numbers(column: pa.Array) -> np.ndarray:
    """A numeric feature as the model is fed it (float32), in float64 for the arithmetic; NULL as NaN."""
    return float32_values(column).astype(np.float64)


def _listed_values(
    explanation: Structure, names: Sequence[str], columns: Mapping[str, pa.Array], order: np.ndarray
) -> pa.Array:
    """The values explain() lists (row i, feature order[i, j]) as text: numbers to 7 digits, categories as read."""
    numeric = {feature for feature, kind in explanation.reads() if kind == NUMERIC}
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


def tree_contributions(explanation: Trees, columns: Mapping[str, pa.Array]) -> tuple[list[str], np.ndarray]:
    """TreeSHAP (path-dependent) per feature: each column's share summed back to its feature."""
    kernel = _kernel(explanation)
    matrix = tree_inputs(explanation, columns)
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

    def __init__(self, explanation: Trees):
        width = len(explanation.columns)
        self.names = list(dict.fromkeys(c.feature for c in explanation.columns))
        self.owner = np.zeros((width, len(self.names)))  # column → its feature
        self.owner[np.arange(width), [self.names.index(c.feature) for c in explanation.columns]] = 1.0
        self.paths: list[_Path] = []
        conditions, offsets, tables = [], [], []
        used = 0  # numbers in the tables so far
        for tree in explanation.trees:
            left, column, threshold = np.asarray(tree.left), np.asarray(tree.column), np.asarray(tree.threshold)
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


_KERNELS: dict[int, tuple[Trees, _Kernel]] = {}
KERNELS_KEPT = 8  # explanations whose kernels a process keeps (each at most TABLE_BUDGET numbers)


def _kernel(explanation: Trees) -> _Kernel:
    """The explanation's kernel (built once per explanation: kept with it, the last few)."""
    key = id(explanation)
    if key in _KERNELS and _KERNELS[key][0] is explanation:
        return _KERNELS[key][1]
    kernel = _Kernel(explanation)
    while len(_KERNELS) >= KERNELS_KEPT:
        _KERNELS.pop(next(iter(_KERNELS)))
    _KERNELS[key] = (explanation, kernel)
    return kernel


def _tree_paths(tree: Tree) -> list[_Path]:
    """A tree's root-to-leaf paths."""
    left, right, column, threshold, value, cover = (np.asarray(getattr(tree, k)) for k in Tree.FIELDS)
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


def tree_inputs(explanation: Trees, columns: Mapping[str, pa.Array]) -> np.ndarray:
    """The matrix the trees split on, as float32 values (as scikit-learn compares them)."""
    categories: dict[str, list[str]] = {}  # each categorical feature's categories, in column order
    for column in explanation.columns:
        if isinstance(column, Indicator):
            categories.setdefault(column.feature, []).append(column.category)
    codes = {feature: _codes(columns[feature], known) for feature, known in categories.items()}
    blocks, position = [], dict.fromkeys(categories, 0)
    for column in explanation.columns:
        if isinstance(column, Number):
            values = _numbers(columns[column.feature])
            blocks.append(np.where(np.isnan(values), column.median, values))
        else:
            blocks.append(codes[column.feature] == position[column.feature])
            position[column.feature] += 1
    return np.column_stack(blocks).astype(np.float32).astype(np.float64)
