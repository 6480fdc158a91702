"""How an outcome column is read against a model: the one rule `model_quality`, `compare_models` and every
quality gate follow, on every engine.

A binary classifier's outcome becomes 1 (the positive class), 0 (the other class) or NULL (not arrived yet):
  - an outcome equal to one of the model's class labels is that class: text compared as text, a number as a
    number where the classes are numbers, a BOOLEAN as true/false where the model was trained on a BOOLEAN;
  - otherwise a BOOLEAN, or a number 0/1, says whether the row is of the positive class (true or 1: it is);
  - anything else stops the query in one line naming the model, the outcome column, its type and the
    classes: a text that is not a class, a number that is neither a class nor 0/1, a DATE, a LIST...
A regressor's outcome is a number (any other type stops the query the same way). Multiclass models are not
measured here.

The SQL tests the outcome's type with typeof(), which both engines fold into a constant when planning, so only
the branch of the column's type runs; the rule is written in Python once and reaches SQL through the engine's
Dialect (every name and class label quoted by it).
"""

from __future__ import annotations

import math

from .errors import ScorehouseError
from .model import ModelCard
from .schema import BOOLEAN_PATTERN, CATEGORICAL, NUMERIC, TYPE_PATTERNS
from .sql import Dialect

BOOLEAN_CLASSES = ["false", "true"]  # the classes of a model trained on a BOOLEAN target (spec._class_label)
SHOWN_CHARACTERS = 60  # of a refused outcome value, in the error


def outcome_sql(card: ModelCard, expression: str, column: str, sql: Dialect) -> str:
    """SQL reading `expression` (the outcome column `column`) as `card`'s model reads outcomes: 1e0 / 0e0 / NULL
    for a binary classifier, a DOUBLE for a regressor; a value or type the rule refuses stops the query."""
    found = sql.type_name(expression)
    text = f"CAST({expression} AS {sql.text_type})"

    def fail(problem: str, value: bool = False) -> str:
        """Stop the query: `Model m v1: outcome 'c' <problem>`; with `value`, the value and its type first."""
        head = f"Model {card.label}: outcome {_quoted(column)} "
        if value:
            parts = [
                sql.literal(head + "holds '"),
                f"substr({text}, 1, {SHOWN_CHARACTERS})",
                sql.literal("' ("),
                found,
                sql.literal(f"), {problem}"),
            ]
        else:
            parts = [sql.literal(head + "has type "), found, sql.literal(f"; {problem}")]
        return sql.fail(" || ".join(parts))

    numeric = sql.matches(found, TYPE_PATTERNS[NUMERIC])
    if card.task == "regression":
        return (
            f"(CASE WHEN {expression} IS NULL THEN NULL WHEN {numeric} THEN CAST({expression} AS DOUBLE) "
            f"ELSE {fail('a regressor is measured on a number')} END)"
        )
    if card.task != "binary":
        raise ScorehouseError(
            f"Model {card.label} is a {card.task} classifier: quality and comparisons measure "
            "binary classifiers and regressors"
        )
    classes, positive = card.classes, card.manifest.positive
    negative = next(c for c in classes if c != positive)
    rule = _rule(classes, positive)

    def is_positive(test: str) -> str:
        return f"CASE WHEN {test} THEN 1e0 ELSE 0e0 END"

    def one_of(pairs: list[tuple[str, str]], problem: str) -> str:
        whens = " ".join(f"WHEN {test} THEN {value}" for test, value in pairs)
        return f"CASE {whens} ELSE {fail(problem, value=True)} END"

    as_text = one_of(
        [(f"{text} = {sql.literal(positive)}", "1e0"), (f"{text} = {sql.literal(negative)}", "0e0")],
        f"which is not one of the model's classes; {rule}",
    )
    number = f"CAST({expression} AS DOUBLE)"
    if _numbers(classes):
        as_number = one_of(
            [(f"{number} = {_double(positive)}", "1e0"), (f"{number} = {_double(negative)}", "0e0")],
            f"which is not one of the model's classes; {rule}",
        )
    else:  # 0/1 (for a model trained on a BOOLEAN, 0 is false and 1 true, as a BOOLEAN would say)
        ones = "1e0" if classes != BOOLEAN_CLASSES or positive == "true" else "0e0"
        as_number = one_of(
            [(f"{number} = 1", ones), (f"{number} = 0", "1e0" if ones == "0e0" else "0e0")],
            f"which is neither 0 nor 1 nor a class of the model; {rule}",
        )
    true = sql.literal(positive if classes == BOOLEAN_CLASSES else "true")
    return (
        f"(CASE WHEN {expression} IS NULL THEN NULL "
        f"WHEN {sql.matches(found, BOOLEAN_PATTERN)} THEN {is_positive(f'{text} = {true}')} "
        f"WHEN {numeric} THEN {as_number} "
        f"WHEN {sql.matches(found, TYPE_PATTERNS[CATEGORICAL])} THEN {as_text} "
        f"ELSE {fail(rule)} END)"
    )


def _rule(classes: list[str], positive: str) -> str:
    """The outcome rule of a binary model, as its errors state it."""
    labels = ", ".join(_quoted(c) for c in classes)
    if classes == BOOLEAN_CLASSES:
        return f"the outcome is a BOOLEAN, 0/1 or the text 'true'/'false' (positive class {_quoted(positive)})"
    if _numbers(classes):
        return f"the outcome is one of the classes {labels} (positive class {_quoted(positive)}), or a BOOLEAN"
    return (
        f"the outcome is one of the classes {labels} (positive class {_quoted(positive)}), a BOOLEAN "
        f"(true: {_quoted(positive)}) or 0/1 (1: {_quoted(positive)})"
    )


def _numbers(classes: list[str]) -> bool:
    """Whether every class label is a finite number (a model trained on a numeric target)."""
    try:
        return all(math.isfinite(float(c)) for c in classes)
    except ValueError:
        return False


def _double(label: str) -> str:
    """A numeric class label as a DOUBLE literal."""
    return repr(float(label)) + ("" if "e" in repr(float(label)) else "e0")


def _quoted(text: str) -> str:
    return "'" + str(text) + "'"
