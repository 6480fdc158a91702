"""A model's feature schema and the one conversion from columns to model inputs.

Training and every engine go through `model_inputs`, so what scikit-learn was fitted on and what
onnxruntime scores are prepared the same way: numeric features as float32 with NULL as NaN (the
pipeline imputes them), categorical features as strings with NULL as the empty string (a category
of its own when seen in training, ignored by the one-hot encoder otherwise). A stored graph takes
those strings as int64 codes, their positions among the encoder's categories (onnx_graph).

Types, the same on every path (training, the ONNX and SQL paths, the guards, DuckDB and Spark):
  numeric      any integer, DECIMAL, FLOAT or DOUBLE (as float32: a BIGINT above 2^24 rounds)
  categorical  VARCHAR (or ENUM)
  and a feature trained on a BOOLEAN column takes BOOLEAN: as 1/0 if numeric, as the categories
  'true' and 'false' if categorical (a feature trained on text is not fed BOOLEAN: its categories
  would all be unseen).
Anything else (DATE, TIMESTAMP, a number as a category, a LIST) is refused: at training, naming the
column and how to turn it into one of these in the model that builds the features.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FeatureError

NUMERIC = "numeric"
CATEGORICAL = "categorical"
# More distinct values than this make a categorical feature wide: one-hot gives each value a column, and
# training slows with them (a 4,741-value column made a 10,000-row fit take minutes). `init --from` leaves
# such a column out of a starter spec; training warns.
WIDE_CATEGORIES = 100
SQL_TYPES = {NUMERIC: "DOUBLE", CATEGORICAL: "VARCHAR"}
MISSING_CATEGORY = ""  # what a NULL category becomes; skl2onnx's string imputer needs a string sentinel

# SQL types (DuckDB and Spark spellings) each kind of feature accepts without a cast, as regular
# expressions that Python, DuckDB (RE2) and Spark (Java) read alike: predict()'s SQL checks
# `typeof(column)` against the same patterns as the ONNX path checks Arrow types.
TYPE_PATTERNS = {
    NUMERIC: r"(?i)(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
    r'FLOAT|REAL|DOUBLE|DECIMAL(\(.*\))?|NUMERIC(\(.*\))?|BYTE|SHORT|LONG|"?NULL"?|VOID)',
    CATEGORICAL: r'(?is)(VARCHAR|STRING|TEXT|ENUM\(.*\)|"?NULL"?|VOID)',
}
BOOLEAN_PATTERN = r"(BOOLEAN|BOOL)"  # added to a kind's pattern, whose leading flags make it case-blind


def is_boolean_type(sql_type: str) -> bool:
    return bool(re.fullmatch(BOOLEAN_PATTERN, sql_type.strip(), re.IGNORECASE))


@dataclass(frozen=True, slots=True)
class Feature:
    """One named model input."""

    name: str
    kind: str  # NUMERIC or CATEGORICAL
    categories: tuple[str, ...] = ()  # categories seen in training (categorical only)
    # The type the typed predict_<model>() takes: BOOLEAN where training read a BOOLEAN column,
    # else the kind's (DOUBLE, VARCHAR). Every path accepts the types in TYPE_PATTERNS either way.
    declared_type: str | None = None

    @property
    def sql_type(self) -> str:
        return self.declared_type or SQL_TYPES[self.kind]

    def to_dict(self) -> dict:
        data: dict[str, object] = {"name": self.name, "kind": self.kind, "sql_type": self.sql_type}
        if self.kind == CATEGORICAL:
            data["categories"] = list(self.categories)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> Feature:
        declared = data.get("sql_type")
        return cls(
            data["name"],
            data["kind"],
            tuple(data.get("categories") or ()),
            declared if declared != SQL_TYPES[data["kind"]] else None,
        )

    @classmethod
    def of_column(cls, name: str, kind: str, arrow_type: pa.DataType) -> Feature:
        """The feature a training column makes (BOOLEAN columns keep their type for the typed function)."""
        return cls(name, kind, declared_type="BOOLEAN" if pa.types.is_boolean(arrow_type) else None)

    @property
    def type_pattern(self) -> str:
        """The SQL types this feature takes, as a regular expression (see TYPE_PATTERNS)."""
        pattern = TYPE_PATTERNS[self.kind]
        return f"{pattern}|{BOOLEAN_PATTERN}" if self.declared_type == "BOOLEAN" else pattern

    def accepts_sql_type(self, sql_type: str) -> bool:
        return bool(_compiled(self.type_pattern).fullmatch(sql_type.strip()))


def sql_type_name(arrow_type: pa.DataType) -> str:
    """Name an Arrow type as SQL does, so every engine's errors read alike."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMP WITH TIME ZONE" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return f"{sql_type_name(arrow_type.value_type)}[]"
    if pa.types.is_struct(arrow_type):
        return "STRUCT(" + ", ".join(f"{f.name} {sql_type_name(f.type)}" for f in arrow_type) + ")"
    names = {
        "int8": "TINYINT",
        "int16": "SMALLINT",
        "int32": "INTEGER",
        "int64": "BIGINT",
        "uint8": "UTINYINT",
        "uint16": "USMALLINT",
        "uint32": "UINTEGER",
        "uint64": "UBIGINT",
        "halffloat": "FLOAT",
        "float": "FLOAT",
        "double": "DOUBLE",
        "bool": "BOOLEAN",
        "null": "NULL",
        "string": "VARCHAR",
        "large_string": "VARCHAR",
        "string_view": "VARCHAR",
    }
    return names.get(str(arrow_type), str(arrow_type).upper())


def describe_features(features: list[Feature]) -> str:
    """Return 'a DOUBLE, b VARCHAR': the expected features as a person reads them."""
    return ", ".join(f"{f.name} {f.sql_type}" for f in features)


def column_problems(features: list[Feature], found: Mapping[str, str]) -> list[dict[str, str]]:
    """List what keeps `found` columns (name -> SQL type) from feeding the features: missing or mistyped."""
    problems = []
    for f in features:
        if f.name not in found:
            problems.append({"feature": f.name, "problem": "missing", "expected": f.sql_type, "found": "(absent)"})
        elif not f.accepts_sql_type(found[f.name]):
            problems.append({"feature": f.name, "problem": "type", "expected": f.sql_type, "found": str(found[f.name])})
    return problems


def check_columns(model_label: str, features: list[Feature], found: Mapping[str, str]) -> None:
    """Fail unless every feature is among `found` (name -> SQL type) with a type it accepts."""
    problems = column_problems(features, found)
    missing = [p["feature"] for p in problems if p["problem"] == "missing"]
    if missing:
        names = ", ".join(f"'{m}'" for m in missing)
        spare = [c for c in found if c not in {f.name for f in features}]
        guesses = {m: difflib.get_close_matches(m, spare, n=1) for m in missing}
        hint = "; ".join(f"did you mean '{g[0]}' for '{m}'?" for m, g in guesses.items() if g)
        raise FeatureError(
            f"Model {model_label}: feature{'s' if len(missing) > 1 else ''} {names} "
            f"{'are' if len(missing) > 1 else 'is'} missing from the input; "
            f"expected features: {describe_features(features)}; found columns: {', '.join(found) or '(none)'}"
            + (f"; {hint}" if hint else "")
        )
    for p in problems:
        before, after = type_error_parts(model_label, next(f for f in features if f.name == p["feature"]))
        raise FeatureError(before + p["found"] + after)


def type_error_parts(model_label: str, feature: Feature) -> tuple[str, str]:
    """The text before and after the found type in the error for a mistyped feature (every path says it so)."""
    return (
        f"Model {model_label}: feature '{feature.name}' has type ",
        f", expected {feature.sql_type} ({feature.kind})",
    )


def model_inputs(
    model_label: str,
    features: list[Feature],
    columns: Mapping[str, pa.Array | pa.ChunkedArray],
    codes: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, np.ndarray]:
    """Convert named Arrow columns into the (n, 1) arrays the ONNX graph takes, one per feature.

    Categorical features are strings (what scikit-learn and skl2onnx's graph take), or int64 codes
    for those in `codes` (a graph rewritten by `onnx_graph.coded_categories`).
    """
    check_columns(model_label, features, {k: sql_type_name(v.type) for k, v in columns.items()})
    feeds = {}
    for f in features:
        if f.kind == NUMERIC:
            feeds[f.name] = float32_values(columns[f.name]).reshape(-1, 1)
        else:
            text = category_text(columns[f.name])
            if codes and f.name in codes:
                feeds[f.name] = category_codes(text, tuple(codes[f.name])).reshape(-1, 1)
            else:
                feeds[f.name] = category_objects(text, f.categories).reshape(-1, 1)
    return feeds


def float32_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric feature as the model is fed it: float32, NULL as NaN. Unsafe on purpose: a BIGINT above
    2^24 rounds, and a value beyond float32's range becomes ±inf, as in SQL."""
    values = pc.cast(_plain(column), pa.float32(), safe=False).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32)


def text_values(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A categorical feature as the model reads it: text (a BOOLEAN is 'true' or 'false'), NULL kept."""
    column = _plain(column)
    return column if column.type == pa.string() else pc.cast(column, pa.string())


def category_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A categorical feature's text with NULL as the model reads it (MISSING_CATEGORY)."""
    text = text_values(column)
    return pc.fill_null(text, MISSING_CATEGORY) if text.null_count else text


def _plain(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array, a dictionary decoded."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def category_codes(text: pa.Array, categories: tuple[str, ...]) -> np.ndarray:
    """Each value's position among `categories` as int64, -1 for any other value."""
    value_set, _ = _known_categories(categories)
    index = pc.index_in(text, value_set=value_set)
    return (pc.fill_null(index, -1) if index.null_count else index).to_numpy().astype(np.int64)


def category_objects(text: pa.Array, known: tuple[str, ...] = ()) -> np.ndarray:
    """The strings as the object array onnxruntime takes: one Python string per distinct value, not per row.

    Where every value is a known (training) category, they are looked up among those; otherwise
    through a dictionary of the values themselves.
    """
    if known:
        value_set, objects = _known_categories(known)
        index = pc.index_in(text, value_set=value_set)
        if not index.null_count:
            return objects[index.to_numpy()]
    encoded = pc.dictionary_encode(text)
    return np.asarray(encoded.dictionary.to_pylist(), dtype=object)[encoded.indices.to_numpy()]


@functools.lru_cache(maxsize=16)
def _compiled(pattern: str) -> re.Pattern:
    return re.compile(pattern)


@functools.lru_cache(maxsize=256)
def _known_categories(known: tuple[str, ...]) -> tuple[pa.Array, np.ndarray]:
    """A feature's training categories as an Arrow value set and an object array (built once, not per batch)."""
    return pa.array(known, pa.string()), np.array(known, dtype=object)
