"""SQL as each engine spells it, and the checks SQL text from a file passes before it runs.

Every identifier and string literal scorehouse writes into SQL goes through one Dialect, so quoting
lives here once per engine: DuckDB doubles a quote inside a literal; Spark also reads a backslash as
an escape, so it is doubled too. SQL that arrives as text (a spec's source query or filter, a table
name given on the command line) is checked here before it is executed.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import ClassVar

import pyarrow as pa

from .errors import ScorehouseError

# schema.table or catalog.schema.table, each part a plain identifier: what a spec or a flag may name.
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,127}(\.[A-Za-z_][A-Za-z0-9_$]{0,127}){0,2}")


class Dialect(ABC):
    """How one engine quotes names and text, builds a struct, and fails a query with a message.

    One subclass per engine; the core writes SQL through these methods and never asks which engine it is."""

    name: ClassVar[str]  # the engine's name, as profiles, logs and errors say it
    quote: ClassVar[str]  # the identifier quote character
    backslash_escapes: ClassVar[bool]  # string literals read a backslash as an escape (Spark)
    text_type: ClassVar[str]  # the engine's name of the text type, for casts
    # a SELECT that adds columns to a relation's must list the relation's (no SELECT * EXCLUDE)
    lists_columns: ClassVar[bool]
    # a Python function called with constant arguments runs once while the query is planned, and is folded
    # away: a type check can be one call on the row's type rather than a test per column and row
    folds_python_calls: ClassVar[bool]
    # predict()'s one SQL expression is written up to this many characters (None: no bound), even with method
    # 'sql'; a longer one scores through onnxruntime
    max_expression_chars: ClassVar[int | None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def identifier(self, name: str) -> str:
        """A quoted identifier: any column name, quotes inside it doubled."""
        return self.quote + str(name).replace(self.quote, self.quote * 2) + self.quote

    def literal(self, value: str) -> str:
        """A string literal holding exactly `value`."""
        text = str(value)
        if self.backslash_escapes:
            text = text.replace("\\", "\\\\")
        return "'" + text.replace("'", "''") + "'"

    @abstractmethod
    def struct(self, fields: Iterable[tuple[str, str]]) -> str:
        """A struct of (field name, SQL expression) pairs, fields bound by name."""

    @abstractmethod
    def type_name(self, expression: str) -> str:
        """The SQL type name of an expression, spelled as DuckDB and Arrow-fed errors spell it (Spark's
        `string` is VARCHAR); both engines fold it to a constant when planning."""

    @abstractmethod
    def matches(self, expression: str, pattern: str) -> str:
        """Whether the whole text of `expression` matches a regular expression (RE2 and Java read it alike)."""

    @abstractmethod
    def fail(self, message: str) -> str:
        """An expression that stops the query with `message` (SQL text that evaluates to a string)."""

    @abstractmethod
    def hex_number(self, hex_text: str, digits: int) -> str:
        """Text of `digits` hex digits as the exact unsigned integer it spells."""

    @abstractmethod
    def hex_digits(self, number: str, digits: int) -> str:
        """A non-negative integer below 16**digits as that many lower-case hex digits."""

    def bucket(self, expression: str) -> str:
        """The row's gray-release bucket, 0..9999: the first 8 hex digits of md5(the key as text), mod 10,000.

        md5 is the same function on DuckDB and Spark (their hash() differ), so a key falls in the same
        bucket on both; `scorehouse.sql.bucket` computes it in Python. A NULL key has no bucket.
        """
        return f"({self.hex_number(f'substr(md5(cast({expression} as {self.text_type})), 1, 8)', 8)} % {BUCKETS})"

    @abstractmethod
    def float32(self, expression: str) -> str:
        """A number as float32, as onnxruntime is fed: a finite value beyond float32's range becomes ±inf."""

    def arrow_type(self, kind: pa.DataType) -> str:
        """The engine's spelling of an Arrow type: a SQL function's return type, declared once as Arrow's."""
        if pa.types.is_struct(kind):
            return self.struct_type([(f.name, self.arrow_type(f.type)) for f in kind])
        if pa.types.is_list(kind):
            return self.list_type(self.arrow_type(kind.value_type))
        if kind not in self.scalar_types:
            raise TypeError(f"no {self.name} spelling of the Arrow type {kind}")
        return self.scalar_types[kind]

    scalar_types: ClassVar[dict[pa.DataType, str]]

    @abstractmethod
    def struct_type(self, fields: Iterable[tuple[str, str]]) -> str:
        """A struct type of (field name, type) pairs."""

    @abstractmethod
    def list_type(self, item: str) -> str:
        """A list (array) type of `item`."""


class DuckDBDialect(Dialect):
    name, quote, backslash_escapes, text_type = "duckdb", '"', False, "varchar"
    lists_columns, folds_python_calls = False, True
    max_expression_chars = None

    def struct(self, fields: Iterable[tuple[str, str]]) -> str:
        return "struct_pack(" + ", ".join(f"{self.identifier(n)} := {e}" for n, e in fields) + ")"

    def type_name(self, expression: str) -> str:
        return f"typeof({expression})"

    def matches(self, expression: str, pattern: str) -> str:
        return f"regexp_full_match({expression}, {self.literal(pattern)})"

    def fail(self, message: str) -> str:
        return f"error({message})"

    def hex_number(self, hex_text: str, digits: int) -> str:
        return f"cast(('0x' || {hex_text}) as ubigint)"

    def hex_digits(self, number: str, digits: int) -> str:
        return f"lower(lpad(hex(cast({number} as ubigint)), {int(digits)}, '0'))"

    def float32(self, expression: str) -> str:
        # DuckDB refuses a cast beyond float32's range ("out of range"), so such a value is made ±inf by
        # hand; try_cast binds whatever the column's type, so a type check in front of this can speak first
        double = f"try_cast({expression} as double)"
        return (
            f"coalesce(try_cast({expression} as float), case when {double} > 0 then cast('inf' as float) "
            f"when {double} < 0 then cast('-inf' as float) end)"
        )

    scalar_types = {
        pa.float64(): "DOUBLE",
        pa.float32(): "FLOAT",
        pa.string(): "VARCHAR",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.bool_(): "BOOLEAN",
    }

    def struct_type(self, fields: Iterable[tuple[str, str]]) -> str:
        return "STRUCT(" + ", ".join(f"{self.identifier(n)} {t}" for n, t in fields) + ")"

    def list_type(self, item: str) -> str:
        return f"{item}[]"


class SparkDialect(Dialect):
    name, quote, backslash_escapes, text_type = "spark", "`", True, "string"
    lists_columns, folds_python_calls = True, False
    # Spark compiles a projection into one Java method, and one over 64 KB falls back to interpreted evaluation
    # (a 100-tree GBT's 115 KB expression ran 4x slower than the ONNX UDF); far longer ones exhaust the driver's
    # heap while Spark parses them
    max_expression_chars = 32_000

    def struct(self, fields: Iterable[tuple[str, str]]) -> str:
        return "named_struct(" + ", ".join(f"{self.literal(n)}, {e}" for n, e in fields) + ")"

    def type_name(self, expression: str) -> str:
        return (
            f"case typeof({expression}) when 'string' then 'VARCHAR' when 'int' then 'INTEGER' "
            f"else upper(typeof({expression})) end"
        )

    def matches(self, expression: str, pattern: str) -> str:
        return f"({expression} rlike {self.literal('^(?:' + pattern + ')$')})"

    def fail(self, message: str) -> str:
        return f"raise_error({message})"

    def hex_number(self, hex_text: str, digits: int) -> str:
        return f"cast(conv({hex_text}, 16, 10) as {'bigint' if digits < 16 else 'decimal(20, 0)'})"

    def hex_digits(self, number: str, digits: int) -> str:
        return f"lower(lpad(conv(cast({number} as string), 10, 16), {int(digits)}, '0'))"

    def float32(self, expression: str) -> str:
        return f"cast({expression} as float)"  # Spark and Arrow round a value beyond float32's range to ±inf

    scalar_types = {
        pa.float64(): "double",
        pa.float32(): "float",
        pa.string(): "string",
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.bool_(): "boolean",
    }

    def struct_type(self, fields: Iterable[tuple[str, str]]) -> str:
        return "struct<" + ",".join(f"{self.identifier(n)}:{t}" for n, t in fields) + ">"

    def list_type(self, item: str) -> str:
        return f"array<{item}>"


BUCKETS = 10_000  # gray-release buckets: a share is routed in steps of 0.01 percent


def bucket(key: object) -> int:
    """The gray-release bucket of a key, as `Dialect.bucket` computes it in SQL (for keys whose text is the
    same in Python and SQL: integers and strings)."""
    import hashlib

    return int(hashlib.md5(str(key).encode()).hexdigest()[:8], 16) % BUCKETS


DUCKDB, SPARK = DuckDBDialect(), SparkDialect()
DIALECTS = {sql.name: sql for sql in (DUCKDB, SPARK)}


def dialect(engine: str) -> Dialect:
    try:
        return DIALECTS[engine]
    except KeyError:
        raise ScorehouseError(f"Unknown engine '{engine}'; choose one of {sorted(DIALECTS)}") from None


def table_name(text: str, engine: str = "duckdb", what: str = "table") -> str:
    """A relation name as quoted SQL: `name`, `schema.name` or `catalog.schema.name` of plain identifiers."""
    text = str(text).strip()
    if not _TABLE_NAME.fullmatch(text):
        from .names import shown

        raise ScorehouseError(
            f"{what} '{shown(text)}' is not a table name: use name, schema.name or "
            "catalog.schema.name, each of letters, digits, _ or $ (start with a letter or _)"
        )
    return ".".join(dialect(engine).identifier(part) for part in text.split("."))


def single_select(conn, sql: str, what: str):
    """DuckDB's own parse of `sql`: exactly one SELECT statement, else a one-line error naming `what`.

    Returns the parsed statement (conn.sql takes it): nothing else of the text ever runs.
    """
    import duckdb

    try:
        statements = conn.extract_statements(sql)
    except duckdb.Error as exc:
        raise ScorehouseError(f"{what} is not valid SQL: {str(exc).splitlines()[0]}") from None
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        raise ScorehouseError(
            f"{what} must be one SELECT statement, found {len(kinds)} statement(s): "
            f"{', '.join(k.lower() for k in kinds) or 'none'}"
        )
    return statements[0]
