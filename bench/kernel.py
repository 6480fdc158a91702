"""A candidate compiled tree kernel, measured against onnxruntime on the same rows: a design study for the
kernel the package does not ship yet (it needs the bench extra's numba).

    python -m bench.kernel [--rows 1000000] [--repeat 3]

Builds a private workspace (the demo GBT as mortgage_deny), resamples its real feature rows to --rows, and
times, one thread each, best of --repeat:
  onnxruntime   Session.predict: the typed UDF's work (Arrow columns in, inputs converted, onnxruntime)
  inputs        the matrix the trees split on, from the Arrow columns (scorehouse.explain.tree_inputs)
  kernel        QuickScorer over the model's structure (scorehouse.structure): per tree, one bit per leaf
                in order; each split a row fails clears the leaves of its left subtree; the exit leaf is
                the lowest bit left. Column vectors in, branch-free over blocks of rows, exact (float32
                values against the library's float64 thresholds, as the trees compare them)
and prints the kernel's largest difference from a numpy traversal of the same trees and from onnxruntime.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.__main__ import MODELS, build_workspace

ONES = (1 << 64) - 1
DEBRUIJN = 0x03F79D71B4CB0A89  # the lowest set bit's index: (bit * DEBRUIJN) >> 58 looks it up


def tables(structure):
    """(split columns, thresholds, masks, splits per tree, leaf values in order) of trees with <= 64 leaves."""
    trees = structure.trees
    width = max(sum(1 for c in t.left if c >= 0) for t in trees)
    columns, thresholds = np.zeros((len(trees), width), np.int64), np.full((len(trees), width), np.inf)
    masks, counts = np.full((len(trees), width), ONES, np.uint64), np.zeros(len(trees), np.int64)
    values = np.zeros((len(trees), 64))
    for t, tree in enumerate(trees):
        order: list[int] = []  # leaves, left to right
        under: dict[int, list[int]] = {}

        def leaves(node: int, tree=tree, order=order, under=under) -> list[int]:
            if tree.left[node] < 0:
                order.append(node)
                under[node] = [node]
            else:
                under[node] = leaves(tree.left[node]) + leaves(tree.right[node])
            return under[node]

        leaves(0)
        if len(order) > 64:
            raise SystemExit(f"tree {t} has {len(order)} leaves; the bit vectors hold 64")
        position = {leaf: i for i, leaf in enumerate(order)}
        for node in (n for n in range(len(tree.left)) if tree.left[n] >= 0):
            mask = ONES
            for leaf in under[tree.left[node]]:
                mask &= ~(1 << position[leaf])
            j = counts[t]
            columns[t, j], thresholds[t, j], masks[t, j] = tree.column[node], tree.threshold[node], mask
            counts[t] += 1
        values[t, : len(order)] = [tree.value[leaf] for leaf in order]
    lookup = np.zeros(64, np.int64)
    for i in range(64):
        lookup[(((1 << i) * DEBRUIJN) & ONES) >> 58] = i
    return columns, thresholds, masks, counts, values, lookup


def compiled():
    import numba

    @numba.njit(boundscheck=False)
    def quickscorer(x, columns, thresholds, masks, counts, values, lookup, init, block):
        n = x.shape[1]
        margin = np.empty(n)
        bits = np.empty(block, np.uint64)
        ones, debruijn, shift = np.uint64(ONES), np.uint64(DEBRUIJN), np.uint64(58)
        for start in range(0, n, block):
            size = min(n, start + block) - start
            margin[start : start + size] = init
            for t in range(columns.shape[0]):
                bits[:size] = ones
                for j in range(counts[t]):
                    column, threshold, mask = x[columns[t, j]], thresholds[t, j], masks[t, j]
                    for r in range(size):
                        bits[r] &= ones if column[start + r] <= threshold else mask
                for r in range(size):
                    low = bits[r] & (~bits[r] + np.uint64(1))
                    margin[start + r] += values[t, lookup[(low * debruijn) >> shift]]
        return margin

    return quickscorer


def traversed(structure, matrix: np.ndarray) -> np.ndarray:
    """The trees' margin by walking each tree in numpy: what the kernel must equal."""
    margin = np.full(len(matrix), structure.init)
    rows = np.arange(len(matrix))
    for tree in structure.trees:
        left, right, threshold, value = (np.asarray(a) for a in (tree.left, tree.right, tree.threshold, tree.value))
        column, node = np.maximum(np.asarray(tree.column), 0), np.zeros(len(matrix), np.int64)
        while (left[node] >= 0).any():
            goes_left = matrix[rows, column[node]] <= threshold[node]
            node = np.where(left[node] >= 0, np.where(goes_left, left[node], right[node]), node)
        margin += value[node]
    return margin


def best(repeat: int, run) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None) -> int:
    import duckdb
    import pyarrow as pa

    from scorehouse.explain import tree_inputs
    from scorehouse.scoring import Session

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scorehouse-kernel-") as folder:
        env = build_workspace(Path(folder), {"mortgage_deny": MODELS["mortgage_deny"]})
        session = Session(env["SCOREHOUSE_REGISTRY"])
        structure, card = session.explanation("mortgage_deny"), session.card("mortgage_deny")
        with duckdb.connect(env["SCOREHOUSE_WAREHOUSE"], read_only=True) as con:
            rows = con.sql("select * from features_mortgage").to_arrow_table()
        rows = rows.take(pa.array(np.random.default_rng(0).integers(0, rows.num_rows, args.rows)))
        columns = {f.name: rows.column(f.name).combine_chunks() for f in card.features}
        kernel, table = compiled(), tables(structure)
        start = time.perf_counter()
        kernel(np.zeros((len(structure.columns), 1)), *table, structure.init, 512)
        print(f"kernel compiled in {time.perf_counter() - start:.2f} s")
        onnx_seconds, onnx_scores = best(args.repeat, lambda: session.predict("mortgage_deny", columns, "score"))
        input_seconds, matrix = best(args.repeat, lambda: np.ascontiguousarray(tree_inputs(structure, columns).T))
        kernel_seconds, margin = best(args.repeat, lambda: kernel(matrix, *table, structure.init, 512))
    scores = 1 / (1 + np.exp(-np.asarray(margin)))
    exact = float(np.abs(np.asarray(margin) - traversed(structure, matrix.T)).max())
    versus = float(np.abs(scores - np.asarray(onnx_scores)).max())
    shape = f"{len(structure.trees)} trees, {structure.nodes:,} nodes"
    print(f"{args.rows:,} rows, {shape}, one thread, best of {args.repeat}")
    print(f"  onnxruntime (Session.predict)  {onnx_seconds:.3f} s")
    print(f"  inputs (tree_inputs)           {input_seconds:.3f} s")
    print(
        f"  kernel                         {kernel_seconds:.3f} s  ({onnx_seconds / kernel_seconds:.1f}x onnxruntime)"
    )
    print(f"  kernel with its inputs         {kernel_seconds + input_seconds:.3f} s")
    print(f"  max |kernel - numpy traversal| margin {exact:.2g}; max |kernel - onnxruntime| score {versus:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
