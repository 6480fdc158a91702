"""Split thresholds in the exported graph that send every float32 input the way the tree's library does.

The trees are fed float32 values, at training and at scoring. Each library compares them with its own
thresholds: scikit-learn's decision trees (random forest, gradient boosting) float32(x) <= t with t a
float64, HistGradientBoosting and LightGBM float64(x) <= t, XGBoost float32 x < t with t a float32.
ONNX's TreeEnsemble compares the float32 x with a float32 node value in the node's mode. skl2onnx
rounds a decision tree's t down to a float32 (exact); it rounds HistGradientBoosting's to the nearest
float32, as onnxmltools does LightGBM's, so a float32 input between t and its rounding went the other
way in onnxruntime (a 100-tree LightGBM on the mortgage rows: 401 of 500,000 resampled rows scored off
by up to 0.002, 140,543 of 500,000 rows at its thresholds by up to 0.67; tests/test_thresholds.py).
XGBoost's BRANCH_LT on its own float32 is exact.

`exact_thresholds` walks each exported tree and the library's (importers.split_trees) from the root in
parallel, the true branch being the library's left, and writes into each split the float32 that
splits float32 inputs as t does: the largest float32 the library sends left, for BRANCH_LEQ, and the
float32 after it for BRANCH_LT. A graph whose trees do not match the library's node for node (tree
count, shape, feature, a value beyond one float32 step of t) is refused, never guessed at.

`check_thresholds` checks the stored graph split by split: the two float32 values beside t (the
largest the library sends left and the next one) must go the same way in the graph. Both sides
split at a single point of the float32 line, so agreeing there is agreeing on every float32 input.
NaN never reaches the trees (the pipeline imputes it); LightGBM's zero_as_missing, which sends
|x| <= 1e-35 to a split's missing side, has no ONNX form, and a model whose zeros it moves is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from ..errors import ParityError, ScorehouseError
from ..structure import Tree
from .estimators import library
from .importers import split_trees
from .onnx_graph import ML_DOMAIN, node_attributes

TREE_OPERATORS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor"})
LIBRARY_NAMES = {"sklearn": "scikit-learn", "xgboost": "XGBoost", "lightgbm": "LightGBM"}
LIGHTGBM_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold: |x| <= it is zero
_DTYPES = {"mode": str, "threshold": np.float64}
_TOWARD = {"down": np.float32(-np.inf), "up": np.float32(np.inf)}


@dataclass(frozen=True)
class Splits:
    """The splits of a graph's tree ensemble matched to its library's: each one's position in the node
    attributes, its tree and node ids, its feature (a column of the estimator's input), its mode and
    the library's threshold (a row goes left where its float32 value <= it)."""

    position: np.ndarray
    tree: np.ndarray
    node: np.ndarray
    feature: np.ndarray
    mode: np.ndarray
    threshold: np.ndarray

    def exact(self) -> np.ndarray:
        """The float32 node values that split float32 inputs as the library does, in each split's mode."""
        last_left = at_or_below(self.threshold)
        return np.where(self.mode == "BRANCH_LEQ", last_left, _step(last_left, "up"))


def at_or_below(threshold: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold (float32's largest finite for a larger one)."""
    with np.errstate(over="ignore"):
        nearest = np.asarray(threshold, dtype=np.float64).astype(np.float32)
    return np.where(nearest.astype(np.float64) > threshold, _step(nearest, "down"), nearest).astype(np.float32)


def _step(values: np.ndarray, direction: str) -> np.ndarray:
    return np.nextafter(values.astype(np.float32), _TOWARD[direction])


def exact_thresholds(model: onnx.ModelProto, estimator: Any, name: str) -> tuple[onnx.ModelProto, int]:
    """`model` with every split of its tree ensemble on the float32 that splits as `estimator` does, and
    how many node values changed. A model without a tree ensemble of a known library is returned as is."""
    trees = _library_trees(estimator, name)
    node = _ensemble(model, name) if trees is not None else None
    if trees is None or node is None:
        return model, 0
    splits = match_splits(node, trees, name, estimator)
    values = np.asarray(node_attributes(node)["nodes_values"], dtype=np.float32)
    exact = splits.exact()
    changed = int((values[splits.position] != exact).sum())
    if not changed:
        return model, 0
    values[splits.position] = exact
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    target = next(n for n in rewritten.graph.node if _is_trees(n))
    kept = [a for a in target.attribute if a.name != "nodes_values"]
    del target.attribute[:]
    target.attribute.extend([*kept, helper.make_attribute("nodes_values", values.tolist())])
    onnx.checker.check_model(rewritten)
    return rewritten, changed


def check_thresholds(
    model: onnx.ModelProto, estimator: Any, name: str, columns: list[str] | None = None
) -> dict[str, int] | None:
    """Check every split of the graph's trees on the float32 values beside the library's threshold:
    {'splits_checked': n}, None for a model without trees, or a ParityError naming the worst split.
    `columns` names the estimator's input columns, for the message."""
    trees = _library_trees(estimator, name)
    node = _ensemble(model, name) if trees is not None else None
    if trees is None or node is None:
        return None
    splits = match_splits(node, trees, name, estimator)
    values = np.asarray(node_attributes(node)["nodes_values"], dtype=np.float32)[splits.position]
    last_left = at_or_below(splits.threshold)
    first_right = _step(last_left, "up")
    leq = splits.mode == "BRANCH_LEQ"
    # the library sends last_left left and first_right right; the graph must too
    wrong = np.where(
        leq, ~(last_left <= values) | (first_right <= values), ~(last_left < values) | (first_right < values)
    )
    zeros = zeros_as_missing(estimator)
    if zeros:
        raise ParityError(
            f"Model {name}: {zeros} of {len(wrong)} LightGBM splits send zeros to their missing-value "
            "side (zero_as_missing), where the ONNX graph's threshold sends them the other way; not "
            "registered. Fit it with zero_as_missing: false"
        )
    if wrong.any():
        gap = np.abs(values.astype(np.float64) - splits.exact().astype(np.float64))
        worst = int(np.flatnonzero(wrong)[np.argmax(gap[wrong])])
        feature = int(splits.feature[worst])
        described = repr(columns[feature]) if columns and feature < len(columns) else f"column {feature}"
        raise ParityError(
            f"Model {name}: {int(wrong.sum())} of {len(wrong)} tree splits send float32 values beside their "
            f"threshold the other way in the ONNX graph than {_owner(estimator)} does (worst: tree "
            f"{splits.tree[worst]} node {splits.node[worst]}, {described}: the library goes left for x <= "
            f"{float(splits.threshold[worst])!r}, the graph for x {'<=' if leq[worst] else '<'} "
            f"{float(values[worst])!r}); "
            "not registered"
        )
    return {"splits_checked": len(wrong)}


def match_splits(node: onnx.NodeProto, trees: list[Tree], name: str, estimator: Any) -> Splits:
    """Walk the graph's trees (in tree id order) and the library's (in its own order) from their roots in
    parallel; refuse, naming the tree and node, where they differ."""
    attrs = node_attributes(node)
    tree_ids, node_ids = np.asarray(attrs["nodes_treeids"]), np.asarray(attrs["nodes_nodeids"])
    modes = np.asarray([m.decode() for m in attrs["nodes_modes"]])
    features, values = np.asarray(attrs["nodes_featureids"]), np.asarray(attrs["nodes_values"], dtype=np.float32)
    true_ids, false_ids = np.asarray(attrs["nodes_truenodeids"]), np.asarray(attrs["nodes_falsenodeids"])
    owner = _owner(estimator)
    graph_trees = np.unique(tree_ids)

    def refuse(tree: int, node_id: int | None, what: str) -> ParityError:
        at = f"tree {tree}" + (f" node {node_id}" if node_id is not None else "")
        return ParityError(
            f"Model {name}: the ONNX graph's {at} does not match {owner}'s trees ({what}); "
            "its thresholds cannot be checked, not registered"
        )

    if len(graph_trees) != len(trees):
        raise refuse(
            int(graph_trees[0]) if len(graph_trees) else 0,
            None,
            f"the graph has {len(graph_trees)} trees, {owner} {len(trees)}",
        )
    found: dict[str, list] = {key: [] for key in ("position", "tree", "node", "feature", "mode", "threshold")}
    for tree_id, tree in zip(graph_trees.tolist(), trees):
        members = np.flatnonzero(tree_ids == tree_id)
        at = dict(zip(node_ids[members].tolist(), members.tolist()))
        branches = members[modes[members] != "LEAF"]
        roots = set(at) - set(true_ids[branches].tolist()) - set(false_ids[branches].tolist())
        if len(roots) != 1:
            raise refuse(tree_id, None, f"{len(roots)} root nodes")
        left, right = tree.left, tree.right
        pending = [(roots.pop(), 0)]
        while pending:
            node_id, mine = pending.pop()
            if node_id not in at:
                raise refuse(tree_id, node_id, "a child that is not a node")
            position = at[node_id]
            mode, is_leaf = modes[position], left[mine] < 0
            if (mode == "LEAF") != is_leaf:
                raise refuse(tree_id, node_id, f"{mode} where {owner} has a {'leaf' if is_leaf else 'split'}")
            if is_leaf:
                continue
            threshold = float(tree.threshold[mine])
            if mode not in ("BRANCH_LEQ", "BRANCH_LT"):
                raise refuse(tree_id, node_id, f"mode {mode}")
            if features[position] != tree.column[mine]:
                raise refuse(tree_id, node_id, f"feature {features[position]}, {owner}'s {tree.column[mine]}")
            below = at_or_below(np.asarray([threshold]))
            if not _step(below, "down")[0] <= values[position] <= _step(_step(below, "up"), "up")[0]:
                raise refuse(tree_id, node_id, f"value {float(values[position])!r}, {owner}'s threshold {threshold!r}")
            for key, item in (
                ("position", position),
                ("tree", tree_id),
                ("node", node_id),
                ("feature", int(features[position])),
                ("mode", mode),
                ("threshold", threshold),
            ):
                found[key].append(item)
            pending += [(int(false_ids[position]), right[mine]), (int(true_ids[position]), left[mine])]
    return Splits(**{key: np.asarray(items, dtype=_DTYPES.get(key, np.int64)) for key, items in found.items()})


def _ensemble(model: onnx.ModelProto, name: str) -> onnx.NodeProto | None:
    """The graph's one tree ensemble, None where it has none."""
    nodes = [n for n in model.graph.node if _is_trees(n)]
    if len(nodes) > 1:
        raise ParityError(
            f"Model {name}: the ONNX graph has {len(nodes)} tree ensembles, its thresholds are "
            "checked in one; not registered"
        )
    if nodes and "nodes_values" not in node_attributes(nodes[0]):
        raise ParityError(
            f"Model {name}: the ONNX graph's trees keep their thresholds in "
            "nodes_values_as_tensor, which is not checked; not registered"
        )
    return nodes[0] if nodes else None


def _library_trees(estimator: Any, name: str) -> list[Tree] | None:
    try:
        return split_trees(estimator)
    except ScorehouseError as exc:  # a split kind the trees are not read with (LightGBM's categorical ==)
        raise ParityError(f"Model {name}: its trees' thresholds cannot be checked: {exc}; not registered") from None


def _owner(estimator: Any) -> str:
    return LIBRARY_NAMES.get(library(estimator), library(estimator))


def _is_trees(node: onnx.NodeProto) -> bool:
    return node.op_type in TREE_OPERATORS and node.domain == ML_DOMAIN


def zeros_as_missing(estimator: Any) -> int:
    """How many of LightGBM's splits send zeros, |x| <= 1e-35, to their missing-value side (zero_as_missing)
    where their threshold sends them the other way: no ONNX split can do that."""
    if library(estimator) != "lightgbm":
        return 0
    misrouted = 0
    pending = [tree["tree_structure"] for tree in estimator.booster_.dump_model()["tree_info"]]
    while pending:
        node = pending.pop()
        if "leaf_value" in node:
            continue
        threshold = float(node["threshold"])
        kept = threshold >= LIGHTGBM_ZERO if node["default_left"] else threshold < -LIGHTGBM_ZERO
        misrouted += node["missing_type"] == "Zero" and not kept
        pending += [node["left_child"], node["right_child"]]
    return misrouted
