"""What a model saw: a hash per input row and an order-independent fingerprint of a whole input, in SQL
that gives the same text on DuckDB and on Spark (and in Python, `row_hash`, to check it).

A row's canonical text is its features in the manifest's order, `name=value` joined by `|`, each value as
the model sees it:
  numeric      the float32 the model is fed, exactly: `<sign><m>p<e>` with value = m * 2^(e-23) and
               2^23 <= m < 2^24 (so 1.5 is `12582912p0`); `0`, `nan`, `inf`, `-inf`; NULL `N`
  categorical  md5 of the text (a BOOLEAN reads 'true' / 'false'); NULL `N`
The row hash is md5 of that text (32 hex digits). The fingerprint of an input is the sum of its rows'
first 16 hex digits, read as unsigned 64-bit integers, modulo 2^64 (16 hex digits): it does not depend on
the rows' order, and changes when any value, or the number of copies of a row, changes. The schema hash is
md5 of `name:kind` for the features in order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .schema import NUMERIC, Feature
from .sql import Dialect

MODULUS = 2**64
HELPER = "__scorehouse_f"  # the fingerprint's subquery names its columns so (one per feature, by position)


def row_hash_sql(features: Sequence[Feature], prefix: str, sql: Dialect) -> str:
    """SQL for the row hash of the current row; `prefix` is '' or a quoted relation alias and a dot."""
    pieces = []
    for feature in features:
        column = prefix + sql.identifier(feature.name)
        value = _float32_text(column, sql) if feature.kind == NUMERIC else _category_text(column, sql)
        pieces.append(f"{sql.literal(feature.name + '=')} || {value}")
    return _md5_of(pieces, sql)


def fingerprint_select(features: Sequence[Feature], sql: Dialect, source: str) -> str:
    """`select rows_in, input_fingerprint (16 hex digits), schema_hash` over the rows of `source` (the SQL after
    FROM: a relation, and a WHERE of its own where it has one). Each feature's value is read once, in a
    subquery, and its text written from that column: the same hash as row_hash_sql, 2.5x faster than
    writing each value's text from the column's expression (measured on DuckDB, 200k rows)."""
    read, pieces = [], []
    for position, feature in enumerate(features):
        column = sql.identifier(f"{HELPER}{position}")
        if feature.kind == NUMERIC:
            read.append(f"cast({sql.float32(sql.identifier(feature.name))} as double) as {column}")
            value = _float32_text_of(column, sql)
        else:
            read.append(f"{_category_text(sql.identifier(feature.name), sql)} as {column}")
            value = column
        pieces.append(f"{sql.literal(feature.name + '=')} || {value}")
    head = f"substr({_md5_of(pieces, sql)}, 1, 16)"
    total = f"sum({sql.hex_number(head, 16)})"
    hexed = sql.hex_digits(f"coalesce({total}, 0) % {MODULUS}", 16)
    schema = sql.literal(schema_hash(features))
    return (
        f"select count(*) as rows_in, {hexed} as input_fingerprint, {schema} as schema_hash "
        f"from (select {', '.join(read)} from {source}) as {sql.identifier(HELPER + 'rows')}"
    )


def _md5_of(pieces: Sequence[str], sql: Dialect) -> str:
    """SQL for md5 of a row's canonical text: its `name=value` pieces joined by `|`."""
    return f"md5({' || {} || '.format(sql.literal('|')).join(pieces)})"


def schema_hash(features: Sequence[Feature]) -> str:
    return hashlib.md5(";".join(f"{f.name}:{f.kind}" for f in features).encode()).hexdigest()


def row_hash(row: Mapping[str, Any], features: Sequence[Feature]) -> str:
    """The row hash in Python, as row_hash_sql computes it in SQL."""
    pieces = []
    for feature in features:
        value = row.get(feature.name)
        if value is None or (isinstance(value, float) and math.isnan(value) and feature.kind != NUMERIC):
            text = "N"
        elif feature.kind == NUMERIC:
            text = _float32_python(float(value))
        else:
            text = hashlib.md5(_category(value).encode()).hexdigest()
        pieces.append(f"{feature.name}={text}")
    return hashlib.md5("|".join(pieces).encode()).hexdigest()


def row_hash_prefixes(features: Sequence[Feature], rows) -> list[str]:
    """The distinct first 16 hex digits of the row hashes of `rows` (an Arrow table holding the features, as
    read from the warehouse: NULL and NaN apart), sorted: which rows trained a model, as input_hash says them."""
    import duckdb

    from .sql import DUCKDB

    with duckdb.connect() as con:
        con.register("training_rows", rows)
        found = con.sql(
            f"select distinct substr({row_hash_sql(features, '', DUCKDB)}, 1, 16) as h from training_rows order by h"
        ).fetchall()
    return [h for (h,) in found]


def fingerprint(rows: Iterable[Mapping[str, Any]], features: Sequence[Feature]) -> tuple[int, str]:
    """(rows, fingerprint) in Python, as fingerprint_select computes them."""
    count, total = 0, 0
    for row in rows:
        count += 1
        total += int(row_hash(row, features)[:16], 16)
    return count, f"{total % MODULUS:016x}"


def _float32_text(column: str, sql: Dialect) -> str:
    return _float32_text_of(f"cast({sql.float32(column)} as double)", sql)


def _float32_text_of(x: str, sql: Dialect) -> str:
    """The canonical text of `x`, a DOUBLE holding a float32 (or NULL)."""
    a = f"abs({x})"
    e0 = f"floor(log2({a}))"
    # log2 may be one off at a power of two: correct it against exact powers of two
    e = (
        f"cast(case when {a} < power(2.0, {e0}) then {e0} - 1 "
        f"when {a} >= power(2.0, {e0} + 1) then {e0} + 1 else {e0} end as int)"
    )
    m = f"cast({a} / power(2.0, {e} - 23) as bigint)"
    text = sql.text_type
    return (
        f"(case when {x} is null then 'N' when isnan({x}) then 'nan' when {x} = 0 then '0' "
        f"when {a} = cast('inf' as double) then case when {x} > 0 then 'inf' else '-inf' end "
        f"else (case when {x} < 0 then '-' else '' end) || cast({m} as {text}) || 'p' || cast({e} as {text}) end)"
    )


def _category_text(column: str, sql: Dialect) -> str:
    return f"coalesce(md5(cast({column} as {sql.text_type})), 'N')"


def _float32_python(value: float) -> str:
    with np.errstate(over="ignore"):
        x = float(np.float32(value))  # beyond float32's range: ±inf, as SQL's float32 cast
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    fraction, exponent = math.frexp(abs(x))
    return f"{'-' if x < 0 else ''}{int(fraction * 2**24)}p{exponent - 1}"


def _category(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
