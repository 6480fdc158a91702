"""The one SQL writer of a model: predict()'s expression and the table form's steps, written from its structure.

The structure (scorehouse.structure, stored as explain.json) holds the model as it computes: the numbers
imputed with their median, one indicator per category, every tree's splits and leaves (or a linear model's
coefficients), the constant the trees add to and the link. Its margin is checked against the model's own on
the holdout when the version registers. From it, a query in three steps:

    inputs      each feature once per row: a number as DOUBLE with NaN and NULL imputed, a category as
                its text with NULL as the model reads it ('')
    conditions  each distinct split once per row, as a boolean column
    score       the link of (the constant + the trees' nested CASEs over those booleans), where trees that
                split alike share one CASE: boosting's first splits repeat (the demo GBT's 100 trees have 23
                distinct roots), and each shared split is then tested once per row, not once per tree

A linear model needs no steps: one product per number (its scaling folded in), one CASE per category.

predict() (on the current row) is the same margin as one expression, each feature read and each split tested
where it is used (score_expression): for linear models and small ensembles (up to EXPRESSION_NODES nodes),
where one expression is faster than onnxruntime; larger ones score through onnxruntime (expression_reason).

A tree compares the float32 the model is fed, `float32(x) <= t`; the query tests the same thing on the
DOUBLE, `x <= b` or `x < b`, with b the midpoint between the float32 at or below t and the next one
(the boundary float32 rounding goes by, ties to even), so that no row is rounded to float32 at all. A
linear model's numbers are read as DOUBLE too, each folded into one product with its scaling: they differ
from the float32 the model is fed by at most 6e-8 of their value, far inside the parity tolerance (a value
beyond float32's range, infinite for the model, is as large a number here).

The SQL is written from numbers (checked finite) and names (quoted by the engine's Dialect) when a process
first scores the version; none of it is stored, so nothing stored is run. At registration, sql_parity checks
both forms against the library's scores on the holdout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ScorehouseError
from .schema import MISSING_CATEGORY
from .sql import Dialect
from .structure import Linear, Number, Structure, Tree, Trees

HELPER = "__scorehouse_"  # the prefix of the helper columns the steps add (and the final SELECT drops)
# The table form's default (method 'auto') for an ensemble, from `python -m bench.steps` (bench/RESULTS.md):
# per million rows the steps take about 0.25 s per 1,000 tree nodes (0.16 to 0.33), the typed ONNX function
# about 0.26 s plus 1.4 s per 1,000 splits a row passes through (splits_per_row); so the steps are faster
# while nodes stay under about 1,000 + 5.6 x splits per row: shallow trees (the demo GBT's 100 trees of
# depth 3, 2.0x), not deep ones (100 of depth 6, 0.44x). And planning the steps costs about 22 us a node in
# every query, whatever its rows (0.28 s for 11,562 nodes): past MAX_NODES (0.06 s) a small table would wait
# on the plan, so larger ensembles score row by row even where a million rows would go faster in steps.
MAX_NODES = 3_000
NODES_FREE, NODES_PER_SPLIT = 1_000, 5
# predict()'s default (method 'auto'): one expression for a linear model and for trees up to this many nodes.
# The expression repeats each split's test in every tree (the steps share them), so it grows with the nodes:
# `python -m bench` measures it against onnxruntime and against orbital's SQL (bench/RESULTS.md).
EXPRESSION_NODES = 300
LINKS = {"logit": "(1 / (1 + exp(-({}))))", "identity": "({})", "log": "exp({})", "probability": "({})"}


class Unsupported(ScorehouseError):
    """An explanation the table form's SQL does not cover (the table form then scores row by row)."""


def splits_per_row(explanation: Structure) -> float:
    """How many splits a row passes through the trees, on average over the training rows (each split's
    cover over its tree's root's; a tree without cover counts its depth): what onnxruntime's cost grows
    with, where the SQL's grows with nodes."""
    total = 0.0
    for tree in explanation.trees if isinstance(explanation, Trees) else ():
        cover, left, right = tree.cover, tree.left, tree.right
        if cover[0] > 0:
            total += sum(c for c, child in zip(cover, left) if child >= 0) / cover[0]
        else:
            total += _depth(left, right)
    return total


def _depth(left: Sequence[int], right: Sequence[int]) -> int:
    """The most splits on a path from the root to a leaf."""
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, depth = stack.pop()
        if left[node] < 0:
            deepest = max(deepest, depth)
        else:
            stack += [(left[node], depth + 1), (right[node], depth + 1)]
    return deepest


def row_by_row_reason(explanation: Structure | None) -> str | None:
    """Why the table form scores a version row by row by default (method 'auto'), or None: it takes the steps."""
    if explanation is None:
        return "no explanations"
    count = explanation.nodes
    if count > MAX_NODES:
        return f"{count:,} tree nodes, more than {MAX_NODES:,}"
    splits = splits_per_row(explanation)
    if count > NODES_FREE + NODES_PER_SPLIT * splits:
        return (
            f"{count:,} tree nodes for {splits:,.0f} splits per row, more than {NODES_FREE:,} + "
            f"{NODES_PER_SPLIT} a split: trees this deep score faster with onnxruntime"
        )
    return None


def scored_query(
    explanation: Structure,
    sql: Dialect,
    source: str,
    column: str,
    guard: Callable[[str, str], str],
    extra: Sequence[tuple[str, str]] = (),
    kept: Sequence[str] | None = None,
    star: str | None = None,
) -> str:
    """SELECT the columns of `source` (a relation's SQL) plus the model's score as `column` and `extra`'s
    (expression, name) pairs. `guard(feature, expression)` wraps each read of a feature (the engine's type check).
    `kept` lists the source's columns: Spark needs them (it has no SELECT * EXCLUDE); DuckDB may omit them, or
    give `star`, the SQL of the columns to return (the DuckDB table form's row struct, spread)."""
    if explanation.link not in LINKS:
        raise Unsupported(f"its link {explanation.link!r} is not one the table form's SQL writes")
    if kept is None and star is None and sql.lists_columns:
        raise Unsupported(f"{sql.name} needs the relation's columns listed")
    steps, margin = (
        ([], _linear_margin(explanation, sql, guard))
        if isinstance(explanation, Linear)
        else _tree_steps(explanation, sql, guard)
    )
    ctes: list[str]
    helpers: list[str]
    ctes, relation, helpers = [], source, []
    for columns in filter(None, steps):
        name = f"{HELPER}step{len(ctes)}"
        ctes.append(f"{name} AS ({_select('*', columns, relation, sql)})")
        relation, helpers = name, helpers + [sql.identifier(helper) for _, helper in columns]
    if kept is not None:
        star = ", ".join(sql.identifier(name) for name in kept)
    elif star is None:
        star = f"* EXCLUDE ({', '.join(helpers)})" if helpers else "*"
    query = _select(star, [(LINKS[explanation.link].format(margin), column), *extra], relation, sql)
    return f"WITH {', '.join(ctes)} {query}" if ctes else query


def _select(star: str, columns: Sequence[tuple[str, str]], source: str, sql: Dialect) -> str:
    listed = "".join(f", {expression} AS {sql.identifier(name)}" for expression, name in columns)
    return f"SELECT {star}{listed} FROM {source}"


def _tree_steps(
    explanation: Trees,
    sql: Dialect,
    guard: Callable[[str, str], str],
    inline: bool = False,
    prefix: str = "",
) -> tuple[list[list[tuple[str, str]]], str]:
    """([the inputs step's columns, the conditions step's columns], the margin over them); `inline`: no steps,
    the margin reading each feature and testing each split where it is used (columns read as `prefix`<name>)."""
    helpers: dict[str, str] = {}  # feature -> its helper column
    inputs: list[tuple[str, str]] = []  # the inputs step's (expression, helper column)

    def read(feature: str, expression: str) -> str:
        if inline:
            return f"({expression})"
        if feature not in helpers:
            helpers[feature] = f"{HELPER}x{len(helpers)}"
            inputs.append((expression, helpers[feature]))
        return sql.identifier(helpers[feature])

    # per explain.json column: threshold -> the SQL test `column <= threshold` (in float32) is
    tests: list[Callable[..., str]] = []
    for entry in explanation.columns:
        if isinstance(entry, Number):
            value = read(entry.feature, _number(entry.feature, entry.median, sql, guard, prefix))
            tests.append(lambda t, value=value: _at_most(value, t))
        else:
            text, category = read(entry.feature, _text(entry.feature, sql, guard, prefix)), entry.category
            tests.append(lambda t, text=text, category=category: _indicator_at_most(text, category, t, sql))
    conditions: dict[str, str] = {}  # SQL test -> its helper column

    def condition(test: str) -> str:
        if test in ("TRUE", "FALSE"):
            return test
        if inline:
            return f"({test})"
        if test not in conditions:
            conditions[test] = f"{HELPER}c{len(conditions)}"
        return sql.identifier(conditions[test])

    def summed(nodes: Sequence[tuple[Tree, int]]) -> list[str]:
        """The terms that add up these subtrees: the leaves' values in one constant, the rest grouped by their
        split, so that trees splitting alike (boosting's first splits repeat) share one CASE."""
        groups: dict[str, list[tuple[Tree, int]]]
        constant, groups = 0.0, {}
        for tree, node in nodes:
            if tree.left[node] < 0:
                constant += tree.value[node]
            else:
                test = condition(tests[tree.column[node]](tree.threshold[node]))
                groups.setdefault(test, []).append((tree, node))
        terms = [_literal(constant)] if constant or not groups else []
        for test, group in groups.items():
            left = " + ".join(summed([(tree, tree.left[node]) for tree, node in group]))
            right = " + ".join(summed([(tree, tree.right[node]) for tree, node in group]))
            terms.append(
                left
                if test == "TRUE"
                else right
                if test == "FALSE"
                else f"CASE WHEN {test} THEN {left} ELSE {right} END"
            )
        return terms

    margin = " + ".join([_literal(explanation.init), *summed([(tree, 0) for tree in explanation.trees])])
    return [inputs, [(test, name) for test, name in conditions.items()]], margin


def _linear_margin(explanation: Linear, sql: Dialect, guard: Callable[[str, str], str], prefix: str = "") -> str:
    """intercept + Σ coef/scale × x (the centring folded into the constant) + one CASE per categorical feature."""
    constant, terms = explanation.intercept, []
    for number in explanation.numeric:
        weight = number.coef / number.scale
        constant -= weight * number.center
        terms.append(f"{_number(number.feature, number.median, sql, guard, prefix)} * {_literal(weight)}")
    for entry in explanation.categorical:  # NULL tested apart: a coalesce would be evaluated in every WHEN
        text = guard(entry.feature, f"CAST({prefix}{sql.identifier(entry.feature)} AS {sql.text_type})")
        cases = [
            f"WHEN {text} = {sql.literal(category)} THEN {_literal(coef)}"
            for category, coef in zip(entry.categories, entry.coef)
            if coef and category != MISSING_CATEGORY
        ]
        missing = dict(zip(entry.categories, entry.coef)).get(MISSING_CATEGORY)
        if missing:
            cases.append(f"WHEN {text} IS NULL OR {text} = {sql.literal(MISSING_CATEGORY)} THEN {_literal(missing)}")
        terms.append(f"(CASE {' '.join(cases)} ELSE 0e0 END)" if cases else "0e0")
    return " + ".join([_literal(constant), *terms])


def _number(feature: str, median: float, sql: Dialect, guard: Callable[[str, str], str], prefix: str = "") -> str:
    """A numeric feature as DOUBLE, NaN and NULL read as the median (both engines order NaN above +inf, and a
    NULL test is not true: one comparison, measured 12% faster than coalesce(nullif(x, NaN), median))."""
    value = guard(feature, f"CAST({prefix}{sql.identifier(feature)} AS DOUBLE)")
    return f"CASE WHEN {value} <= CAST('inf' AS DOUBLE) THEN {value} ELSE {_literal(median)} END"


def _text(feature: str, sql: Dialect, guard: Callable[[str, str], str], prefix: str = "") -> str:
    """A categorical feature's text, NULL read as the model reads it."""
    return (
        f"coalesce({guard(feature, f'CAST({prefix}{sql.identifier(feature)} AS {sql.text_type})')}, "
        f"{sql.literal(MISSING_CATEGORY)})"
    )


def _at_most(value: str, threshold: float) -> str:
    """`float32(value) <= threshold` as a test on the DOUBLE value: below the boundary float32 rounding goes by."""
    low = np.float32(threshold)
    if float(low) > threshold:
        low = np.nextafter(low, np.float32(-np.inf))
    high = np.nextafter(low, np.float32(np.inf))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise Unsupported(f"a split at {threshold!r} lies beyond float32's range")
    boundary = (float(low) + float(high)) / 2  # exact: a float32 midpoint needs 25 bits
    ties_down = int(np.asarray(low).view(np.uint32)) & 1 == 0  # the midpoint rounds to the even one
    return f"{value} {'<=' if ties_down else '<'} {_literal(boundary)}"


def _indicator_at_most(text: str, category: str, threshold: float, sql: Dialect) -> str:
    """`(text = category ? 1 : 0) <= threshold` as a test on the text."""
    if threshold >= 1:
        return "TRUE"
    if threshold < 0:
        return "FALSE"
    return f"{text} <> {sql.literal(category)}"


def _literal(number: float) -> str:
    """A DOUBLE literal holding exactly `number` (DuckDB reads 0.5 as a DECIMAL, 0.5e0 as a DOUBLE)."""
    number = float(number)
    if not math.isfinite(number):
        raise Unsupported(f"its explanation holds {number!r}")
    text = repr(number)
    return text if "e" in text else text + "e0"


def _unguarded(feature: str, value: str) -> str:
    """A read of a feature as it is (the caller checks the input's types in front of the whole expression)."""
    return value


def score_expression(explanation: Structure, sql: Dialect, prefix: str = "") -> str:
    """predict()'s score as one SQL expression over the columns `prefix`<feature> of the current row (no steps)."""
    if explanation.link not in LINKS:
        raise Unsupported(f"its link {explanation.link!r} is not one scorehouse writes in SQL")
    margin = (
        _linear_margin(explanation, sql, _unguarded, prefix)
        if isinstance(explanation, Linear)
        else _tree_steps(explanation, sql, _unguarded, inline=True, prefix=prefix)[1]
    )
    return LINKS[explanation.link].format(margin)


def expression_reason(explanation: Structure | None, sql: Dialect, forced: bool = False) -> str | None:
    """Why predict() scores a version through onnxruntime by default (method 'auto'), or None: one expression.
    `forced` (method 'sql'): only what the engine cannot run, whatever the speed."""
    if explanation is None:
        return "no explanations"
    count = explanation.nodes
    if count > EXPRESSION_NODES and not forced:
        return (
            f"{count:,} tree nodes, more than {EXPRESSION_NODES:,}: one expression repeats every split "
            "and scores slower than onnxruntime"
        )
    try:
        length = len(score_expression(explanation, sql))
    except Unsupported as exc:
        return str(exc)
    if sql.max_expression_chars is not None and length > sql.max_expression_chars:
        return (
            f"its expression has {length:,} characters, more than {sql.name} runs as compiled code "
            f"({sql.max_expression_chars:,})"
        )
    return None


def sql_parity(
    explanation: Structure, features: Sequence[Any], rows: Mapping[str, Any], expected: Any, tolerance: float
) -> dict[str, Any]:
    """Score `rows` (feature -> values) with both SQL forms in DuckDB against the library's `expected` scores:
    {"rows", "max_abs_diff", "ok"}, or {"skipped": why} where the SQL does not cover the version."""
    import duckdb
    import pyarrow as pa

    from .sql import DUCKDB

    table = pa.table(
        {
            f.name: pa.array(rows[f.name], pa.float64() if f.kind == "numeric" else pa.string(), from_pandas=True)
            for f in features
        }
    )
    try:
        steps = scored_query(explanation, DUCKDB, "scorehouse_rows", "v", _unguarded)
        expression = score_expression(explanation, DUCKDB)
    except Unsupported as exc:
        return {"skipped": str(exc)}
    with duckdb.connect() as con:
        con.register("scorehouse_rows", table)
        got = [
            con.sql(steps).fetchnumpy()["v"],
            con.sql(f"SELECT {expression} AS v FROM scorehouse_rows").fetchnumpy()["v"],
        ]
    want = np.asarray(expected, dtype=np.float64).reshape(-1)
    diff = max(float(np.max(np.abs(np.asarray(g, dtype=np.float64) - want), initial=0.0)) for g in got)
    return {"rows": len(want), "max_abs_diff": diff, "ok": bool(diff <= tolerance)}


def sample_problems(model, explanation: Structure, sample: Mapping[str, Any]) -> list[str]:
    """Score the stored holdout sample with the SQL written from explain.json (the table form's steps and
    predict()'s expression, in DuckDB); list where it differs from the library's recorded scores. Empty where
    the SQL does not cover the version (it then scores through onnxruntime)."""
    expected = sample["expected"].get("score")
    if expected is None:
        return []
    rows = {f.name: [row.get(f.name) for row in sample["rows"]] for f in model.features}
    parity = sql_parity(explanation, model.features, rows, expected, model.manifest.tolerance)
    if not parity.get("ok", True):
        return [
            f"Model {model.label}: the SQL written from explain.json gives sample scores that differ from the "
            f"library's by {parity['max_abs_diff']:.3g} (tolerance {model.manifest.tolerance:.3g})"
        ]
    return []
