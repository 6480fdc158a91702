"""A model's structure as it computes its margin: the typed form of a version's explain.json.

One structure per explained version, read from the importers at registration (scorehouse.registration.
importers) and from explain.json when a process first needs it; explain() computes with it and the SQL
writer (scorehouse.staged) writes from it. Reading checks what every reader relies on, once: each field
present with its type, every number finite, every column a tree splits on recorded, every node's children
after it (so no walk loops). Data that fails names the field and what was found (Misshapen).

    Linear  intercept + Σ coef × (standardised number − mean) + Σ coef × (indicator − share), per feature
    Trees   init + the sum of the trees' leaves, over columns: numbers imputed with their median (Number),
            one indicator per category (Indicator)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ScorehouseError
from .names import shown
from .schema import CATEGORICAL, NUMERIC


class Misshapen(ScorehouseError):
    """Data that is not a structure scorehouse writes: which field, what was found."""


@dataclass(frozen=True)
class Number:
    """A tree column: a numeric feature, NaN and NULL read as its training median."""

    feature: str
    median: float


@dataclass(frozen=True)
class Indicator:
    """A tree column: 1 where a categorical feature is `category`, else 0."""

    feature: str
    category: str


Column = Number | Indicator


@dataclass(frozen=True, eq=False)
class Tree:
    """One tree as node arrays: node i splits on column[i] (a row goes left where its value <= threshold[i])
    into left[i] and right[i], or is a leaf (left[i] < 0) worth value[i]; cover[i]: the training rows it holds."""

    left: tuple[int, ...]
    right: tuple[int, ...]
    column: tuple[int, ...]
    threshold: tuple[float, ...]
    value: tuple[float, ...]
    cover: tuple[float, ...]

    FIELDS: ClassVar[tuple[str, ...]] = ("left", "right", "column", "threshold", "value", "cover")


@dataclass(frozen=True, eq=False)
class Trees:
    """A tree ensemble: `link`(init + Σ trees' leaves)."""

    link: str
    columns: tuple[Column, ...]
    trees: tuple[Tree, ...]
    init: float
    baseline: float  # the margin's mean over the training rows (Σ leaf × cover / root cover, plus init)

    kind: ClassVar[str] = "trees"

    @property
    def nodes(self) -> int:
        return sum(len(tree.left) for tree in self.trees)

    def reads(self) -> list[tuple[str, str]]:
        """(feature, kind) of every column, in order."""
        return [(c.feature, NUMERIC if isinstance(c, Number) else CATEGORICAL) for c in self.columns]


@dataclass(frozen=True)
class LinearNumber:
    """A numeric feature's term: coef × ((value, NaN and NULL as median) − center) / scale − mean)."""

    feature: str
    median: float
    center: float
    scale: float
    coef: float
    mean: float


@dataclass(frozen=True)
class LinearCategory:
    """A categorical feature's terms: per training category its coef and its share of the training rows."""

    feature: str
    categories: tuple[str, ...]
    coef: tuple[float, ...]
    mean: tuple[float, ...]


@dataclass(frozen=True, eq=False)
class Linear:
    """A linear model: `link`(intercept + its terms)."""

    link: str
    intercept: float
    numeric: tuple[LinearNumber, ...]
    categorical: tuple[LinearCategory, ...]
    baseline: float  # the margin's mean over the training rows

    kind: ClassVar[str] = "linear"
    nodes: ClassVar[int] = 0

    def reads(self) -> list[tuple[str, str]]:
        """(feature, kind) of every term, in order."""
        return [(e.feature, NUMERIC) for e in self.numeric] + [(e.feature, CATEGORICAL) for e in self.categorical]


Structure = Linear | Trees


def to_json(structure: Structure) -> dict[str, Any]:
    """The structure as explain.json stores it (parse reads it back)."""
    if isinstance(structure, Linear):
        return {
            "kind": structure.kind,
            "link": structure.link,
            "intercept": structure.intercept,
            "numeric": [vars(e).copy() for e in structure.numeric],
            "categorical": [
                {"feature": e.feature, "categories": list(e.categories), "coef": list(e.coef), "mean": list(e.mean)}
                for e in structure.categorical
            ],
            "baseline": structure.baseline,
        }
    return {
        "kind": structure.kind,
        "link": structure.link,
        "columns": [vars(c).copy() for c in structure.columns],
        "trees": [{name: list(getattr(tree, name)) for name in Tree.FIELDS} for tree in structure.trees],
        "init": structure.init,
        "baseline": structure.baseline,
    }


def parse(data: Any) -> Structure:
    """A structure from explain.json's data, checked (Misshapen names the first field that is not as written)."""
    kind = _text(data, "kind", "")
    if kind == Linear.kind:
        return Linear(
            link=_text(data, "link", ""),
            intercept=_number(data, "intercept", ""),
            numeric=tuple(
                LinearNumber(
                    feature=_text(entry, "feature", where),
                    median=_number(entry, "median", where),
                    center=_number(entry, "center", where),
                    scale=_number(entry, "scale", where, nonzero=True),
                    coef=_number(entry, "coef", where),
                    mean=_number(entry, "mean", where),
                )
                for entry, where in _entries(data, "numeric")
            ),
            categorical=tuple(_category(entry, where) for entry, where in _entries(data, "categorical")),
            baseline=_number(data, "baseline", ""),
        )
    if kind == Trees.kind:
        columns = tuple(
            Number(_text(entry, "feature", where), _number(entry, "median", where))
            if isinstance(entry, Mapping) and "median" in entry
            else Indicator(_text(entry, "feature", where), _text(entry, "category", where))
            for entry, where in _entries(data, "columns")
        )
        return Trees(
            link=_text(data, "link", ""),
            columns=columns,
            trees=tuple(_tree(entry, where, len(columns)) for entry, where in _entries(data, "trees")),
            init=_number(data, "init", ""),
            baseline=_number(data, "baseline", ""),
        )
    raise Misshapen(f"kind is {kind!r}, not 'linear' or 'trees'")


def _entries(data: Mapping[str, Any], key: str) -> list[tuple[Any, str]]:
    """A list field's items, each with where it is ('columns[3]')."""
    items = _field(data, key, "")
    if not isinstance(items, list):
        raise Misshapen(f"{key} is {type(items).__name__}, not a list")
    return [(item, f"{key}[{i}]") for i, item in enumerate(items)]


def _category(entry: Any, where: str) -> LinearCategory:
    categories = tuple(_texts(entry, "categories", where))
    coef, mean = _numbers(entry, "coef", where), _numbers(entry, "mean", where)
    if not len(coef) == len(mean) == len(categories):
        raise Misshapen(f"{where} has {len(categories)} categories, {len(coef)} coef and {len(mean)} mean")
    return LinearCategory(_text(entry, "feature", where), categories, coef, mean)


def _tree(entry: Any, where: str, width: int) -> Tree:
    """A tree's node arrays, checked: one length, children after their node, split columns among the `width`."""
    left, right, column = (_numbers(entry, key, where, whole=True) for key in ("left", "right", "column"))
    threshold = _numbers(entry, "threshold", where, finite=False)
    value, cover = _numbers(entry, "value", where), _numbers(entry, "cover", where)
    arrays = (left, right, column, threshold, value, cover)
    size = len(left)
    if size == 0 or any(len(a) != size for a in arrays):
        lengths = ", ".join(f"{name} {len(a)}" for name, a in zip(Tree.FIELDS, arrays))
        raise Misshapen(f"{where} has node arrays of lengths {lengths}, not one length above 0")
    for node in range(size):
        if left[node] < 0:
            continue
        if not (node < left[node] < size and node < right[node] < size):
            raise Misshapen(
                f"{where} node {node} has children {left[node]:g} and {right[node]:g}, not nodes after it (of {size})"
            )
        if not 0 <= column[node] < width or math.isnan(threshold[node]):
            raise Misshapen(
                f"{where} node {node} splits column {column[node]:g} at {threshold[node]!r}, "
                f"not one of the {width} columns at a number"
            )
    whole = lambda numbers: tuple(int(v) for v in numbers)  # noqa: E731
    return Tree(whole(left), whole(right), whole(column), threshold, value, cover)


def _field(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise Misshapen(f"{where or 'the file'} is {type(data).__name__}, not an object")
    if key not in data:
        raise Misshapen(f"{where} has no '{key}'" if where else f"no '{key}'")
    return data[key]


def _text(data: Any, key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str):
        raise Misshapen(f"{_at(where, key)} is {value!r}, not a string")
    return value


def _texts(data: Any, key: str, where: str) -> list[str]:
    values = _field(data, key, where)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise Misshapen(f"{_at(where, key)} is not a list of strings")
    return values


def _number(data: Any, key: str, where: str, nonzero: bool = False) -> float:
    value = _field(data, key, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Misshapen(f"{_at(where, key)} is {value!r}, not a finite number")
    if nonzero and value == 0:
        raise Misshapen(f"{_at(where, key)} is 0")
    return float(value)


def _numbers(data: Any, key: str, where: str, finite: bool = True, whole: bool = False) -> tuple[float, ...]:
    values = _field(data, key, where)
    if not isinstance(values, list):
        raise Misshapen(f"{_at(where, key)} is {type(values).__name__}, not a list")
    for i, value in enumerate(values):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (finite and not math.isfinite(value)) or (whole and value != int(value)):
            wanted = "a whole number" if whole else "a finite number" if finite else "a number"
            raise Misshapen(f"{_at(where, key)}[{i}] is {value!r}, not {wanted}")
    return tuple(float(v) for v in values)


def _at(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def reads_other_than(structure: Structure, features: Sequence[Any]) -> list[str]:
    """The columns a structure reads that are not among the model's `features` with its kind ('name (kind)'):
    the SQL written from it reads only the model's features."""
    kinds = {f.name: f.kind for f in features}
    return [f"'{shown(name)}' ({kind})" for name, kind in structure.reads() if kinds.get(name) != kind]
