"""DuckDB adapter: register the registry's models as SQL functions on a connection.

    predict_<model>(STRUCT(<features>))    typed fast path for the model's `prod` version;
                                           DuckDB binds the struct's fields by name. The model's
                                           SQL written from its explanation for a linear model or
                                           small trees (SCOREHOUSE_SCORING=onnx|sql|auto), else onnxruntime
    predict('<ref>', <row or struct>)      generic: any model reference, extra fields ignored; the row
                                           travels as its values' text (a function cannot take any struct)
    predict_label / predict_proba          the predicted class / a class -> probability map
    scorehouse_model_version('<ref>')      the version a reference scores with
    scorehouse_predict_sql('<ref>', '<relation>', '<output>', '<method>', '<key>')
                                           what the dbt predict() macro compiles to
    scorehouse_version_sql('<ref>', '<relation>', '<key>')  and model_version(): the version scoring each row
    scorehouse_score_sql('<ref>', '<relation>', '<output>', '<method>', '<key>', '<column>', '<columns>')
                                           the dbt score() macro's query in steps, or '' where it scores
                                           row by row (columns: a JSON list of the relation's, or '')
    scorehouse_check_input('<ref>', typeof(<struct>))  the type check in front of predict()'s SQL
    scorehouse_table_query('<ref>', '<table>')  the query score('<ref>', '<table>') and score_<model> run
    scorehouse_table_input_error('<ref>', '<columns>', '<column>', '<added>')  why the table form cannot score a
                                           relation whose columns (JSON name -> type) these are, or ''
    scorehouse_check_table('<ref>', typeof(<row>))  the table form's check of the relation it scores
    scorehouse_training_rows('<ref>')      the rows that trained the version (input hashes, 16 hex digits)

None of these functions reads or writes a file other than the registry's own, and a reference can
name nothing outside the registry (udfs/names.py): a connection opened with
enable_external_access=false, as `scorehouse sql` opens one, cannot reach a file through them.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import threading
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .config import warehouse_path
from .errors import FeatureError, ScorehouseError
from .explain import EXPLANATION
from .model import OUTPUT_SQL_TYPES
from .names import one_line
from .profile import PROFILE_RELATIONS
from .registry import Registry
from .schema import SQL_TYPES, describe_features, is_boolean_type
from .scoring import GENERIC_FUNCTIONS, Session, first_value, flat, null_where_null, per_reference
from .sql import DUCKDB
from .surface import WRITERS
from .writer import SqlWriter

_TEXT_TYPES = {"numeric": pa.float64(), "categorical": pa.string()}  # what a generic row's values are read as
# A generic row, however it is typed, as the text of its values in field order (typeof names the fields)
ROW_VALUES = "json_extract_string(to_json({}), '$.*')"
SCORED = "__scorehouse_input"  # the alias of the table the table form scores (as dbt's scorehouse.score has it)
ROW, FEATURES = "__scorehouse_row", "__scorehouse_features"  # the table form's row struct, and the relation holding it
EXPLANATION_SQL_TYPE = DUCKDB.arrow_type(EXPLANATION)  # explain()'s {baseline, margin, contributions}
GENERIC_PREDICT = f"scorehouse_{GENERIC_FUNCTIONS['score']}"  # registered on every database: says ours are there


@dataclass
class _Registration:
    """What the functions of one database (a file, or an in-memory connection's own) serve in this process.

    DuckDB shares a process's Python functions among all its connections to one database file, while any
    is open, and a function cannot be registered twice: the functions look their Session up here. DuckDB
    does not keep their Python code alive (the connection that registered it does, until it closes, and
    another connection calling it then crashes the process): `functions` does.
    """

    scorer: Session
    functions: list = field(default_factory=list)


_registrations: dict[str, _Registration] = {}  # by database file, or ':memory:<connection id>'
_registering = threading.Lock()


def connect(
    path: str | os.PathLike | None = None, registry=None, read_only: bool = False, config: dict | None = None
) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB database (default: the project warehouse) with every predict function registered."""
    target = str(warehouse_path(path)) if path != ":memory:" else ":memory:"
    if target != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    conn = duckdb.connect(target, read_only=read_only, config=config or {})
    try:
        register(conn, registry)
    except BaseException:
        conn.close()  # a refused connection must not keep the database open
        raise
    return conn


def register(conn: duckdb.DuckDBPyConnection, registry=None, scorer: Session | None = None) -> Session:
    """Register the predict functions and macros on `conn`; return the Session they share.

    Another connection of this process to the same database file shares the functions: registering there
    with another registry, or another verification key, is refused (it would change what this one scores).
    """
    scorer = scorer or Session(registry if isinstance(registry, Registry) else Registry(registry))
    with _registering:
        registration = _registration(conn, scorer)
        _create_functions(conn, registration)
    create_macros(conn, scorer)
    return scorer


def _registration(conn: duckdb.DuckDBPyConnection, scorer: Session) -> _Registration:
    """The registration `conn`'s database serves with `scorer` from now: its own where the database has no
    functions yet (a database whose connections all closed starts afresh), else the one it shares."""
    path = conn.execute("select path from duckdb_databases() where database_name = current_database()").fetchall()
    key = path[0][0] if path and path[0][0] else f":memory:{id(conn)}"
    registration = _registrations.get(key)
    if (
        registration is None
        or not conn.execute(
            "select count(*) from duckdb_functions() where function_name = ?", [GENERIC_PREDICT]
        ).fetchall()[0][0]
    ):
        registration = _registrations[key] = _Registration(scorer)
    elif registration.scorer.registry.identity != scorer.registry.identity:
        raise ScorehouseError(
            f"DuckDB database {key}: its scorehouse functions serve {_describe(registration.scorer.registry)} to "
            f"another connection of this process, and this one asks for {_describe(scorer.registry)}; DuckDB shares "
            "them among the connections to one file: close the other connections to it first, or use another "
            "database file or ':memory:'"
        )
    registration.scorer = scorer  # the same registry and key: the newest registration's references answer
    return registration


def _describe(registry: Registry) -> str:
    key = f"public key {registry.public_key.key_id}" if registry.public_key is not None else "unsigned"
    return f"registry {registry.identity[0]} ({key})"


def _create_functions(conn: duckdb.DuckDBPyConnection, registration: _Registration) -> None:
    """Create the functions the database does not have yet, each looking up the registration's Session."""
    scorer = registration.scorer
    current = lambda: registration.scorer  # noqa: E731

    def create(name, function, parameters, return_type: str, type: str = "native") -> None:
        if _create_function(conn, name, function, parameters, return_type, type):
            registration.functions.append(function)

    varchar = duckdb.sqltype("VARCHAR")
    for card in scorer.default_cards():
        struct = duckdb.struct_type({f.name: duckdb.sqltype(f.sql_type) for f in card.features})
        for name in (f"predict_{card.name}", f"scorehouse_onnx_{card.name}"):  # the macro may shadow the first
            create(name, _typed_udf(current, card.name), [struct], OUTPUT_SQL_TYPES[card.default_output], type="arrow")
        create(
            f"scorehouse_explain_{card.name}",
            _typed_explain_udf(current, card.name),
            [struct, duckdb.sqltype("INTEGER")],
            EXPLANATION_SQL_TYPE,
            type="arrow",
        )
    row_values = duckdb.sqltype("VARCHAR[]")
    for output, function_name in GENERIC_FUNCTIONS.items():
        create(
            f"scorehouse_{function_name}",
            _generic_udf(current, output),
            [varchar, row_values, varchar],
            OUTPUT_SQL_TYPES[output],
            type="arrow",
        )
    create(
        "scorehouse_explain",
        _explain_udf(current),
        [varchar, row_values, varchar, duckdb.sqltype("INTEGER")],
        EXPLANATION_SQL_TYPE,
        type="arrow",
    )
    for writer in WRITERS:
        create(
            writer.name,
            _bound(current, writer.implementation),
            [duckdb.sqltype(a) for a in writer.argument_types],
            writer.returns,
        )
    create(
        "scorehouse_check_input", lambda ref, row_type: check_input(current(), ref, row_type), [varchar] * 2, "BOOLEAN"
    )
    create(
        "scorehouse_table_query", lambda ref, relation: table_query(current(), ref, relation), [varchar] * 2, "VARCHAR"
    )
    create(
        "scorehouse_check_table", lambda ref, row_type: check_table(current(), ref, row_type), [varchar] * 2, "BOOLEAN"
    )
    create(
        "scorehouse_profile_json",
        lambda ref, relation: json.dumps(current().profile_rows(ref, relation)),
        [varchar] * 2,
        "VARCHAR",
    )
    create("scorehouse_training_rows_json", lambda ref: json.dumps(current().training_rows(ref)), [varchar], "VARCHAR")


def _bound(current, function):
    """`function(writer, *arguments)` as DuckDB calls it: with the arguments only (DuckDB counts them)."""

    def call(*arguments):
        return function(SqlWriter(current(), DUCKDB), *arguments)

    parameters = list(inspect.signature(function).parameters.values())[1:]
    call.__signature__ = inspect.Signature(parameters)
    return call


def _create_function(conn, name, function, parameters, return_type: str, type: str = "native") -> bool:
    """Create a function unless the database has it already; return whether it was created."""
    try:
        conn.create_function(
            name,
            function,
            parameters,
            duckdb.sqltype(return_type),
            type=type,
            null_handling="special" if type == "arrow" else "default",
        )
    except duckdb.CatalogException as exc:
        if "already exists" not in str(exc):
            raise
        return False
    return True


def create_macros(conn: duckdb.DuckDBPyConnection, scorer: Session) -> None:
    """Create the macros (temporary: a cursor needs its own): generic predict, models scored in SQL, profiles.

    predict_<model> becomes the model's SQL expression where that is how the model scores (it shadows the
    ONNX function of the same name, which stays callable as scorehouse_onnx_<model>).
    scorehouse_features('<ref>') and scorehouse_bins('<ref>') are the training profile of the
    version the reference points at now, as tables for the guard tests.
    """
    for card in scorer.default_cards():
        try:
            expression = SqlWriter(scorer, DUCKDB).score_expression(card.name, card.default_output, prefix="features.")
        except ScorehouseError:
            continue  # 'sql' forced, none here: the ONNX function answers; dbt's predict() says why
        if expression is not None:  # the name is checked by scorehouse.names; the SQL written from numbers
            struct = ", ".join(f"{DUCKDB.identifier(f.name)} {f.sql_type}" for f in card.features)
            try:
                conn.execute(
                    f"create or replace temp macro predict_{card.name}(features STRUCT({struct})) as "
                    f"CASE WHEN features IS NULL THEN NULL ELSE {expression} END"
                )
            except duckdb.Error as exc:  # one model's SQL never stops the others: its ONNX function answers
                scorer.warn(
                    f"Model {card.label}: its SQL does not run on DuckDB "
                    f"({one_line(str(exc).splitlines()[0])}); predict_{card.name} scores with onnxruntime"
                )
    for function in GENERIC_FUNCTIONS.values():
        conn.execute(
            f"create or replace temp macro {function}(model, features) as "
            f"scorehouse_{function}(model, {ROW_VALUES.format('features')}, typeof(features))"
        )
    conn.execute(
        "create or replace temp macro explain(model, features, top_k := 3) as "
        f"scorehouse_explain(model, {ROW_VALUES.format('features')}, typeof(features), top_k)"
    )
    # the table form: score('<ref>', '<table>') and score_<model>('<table>'), the table's rows with the
    # prediction and its version, by the query table_query writes when a query names the table
    conn.execute(
        "create or replace temp macro score(model, relation) as table "
        "from query(scorehouse_table_query(model, relation))"
    )
    for card in scorer.default_cards():  # explain_<model> and score_<model>: typed structs, no JSON on the way
        conn.execute(
            f"create or replace temp macro explain_{card.name}(features, top_k := 3) as "
            f"scorehouse_explain_{card.name}(features, top_k)"
        )
        conn.execute(
            f"create or replace temp macro score_{card.name}(relation) as table "
            f"from query(scorehouse_table_query({DUCKDB.literal(card.name)}, relation))"
        )
    # the rows that trained the version a reference points at: their input hashes' first 16 hex digits
    conn.execute(
        "create or replace temp macro scorehouse_training_rows(model_ref) as table select unnest(from_json("
        "scorehouse_training_rows_json(model_ref), '[\"VARCHAR\"]')) as row_hash"
    )
    for relation, (_, columns) in PROFILE_RELATIONS.items():
        shape = DUCKDB.literal(json.dumps([columns]))
        conn.execute(
            f"create or replace temp macro scorehouse_{relation}(model_ref) as table select unnest(from_json("
            f"scorehouse_profile_json(model_ref, {DUCKDB.literal(relation)}), {shape}), recursive := true)"
        )


def predict_sql(
    scorer: Session, ref: str, relation: str = "", output: str = "default", method: str = "", key: str = ""
) -> str:
    """The SQL expression scoring `ref` on the current row, features bound by name (see SqlWriter.sql_call)."""
    return SqlWriter(scorer, DUCKDB).sql_call(ref, relation, output, method or None, key or None)


def table_query(scorer: Session, ref: str, relation: str) -> str:
    """The table form's query over the table named `relation`: its rows, `prediction` and `model_version`; in
    steps where the model allows (SqlWriter.table_sql), else row by row with predict(). The name goes to
    query_table as a literal: a table's name, never SQL.

    The query is bound where it runs, on the relation it scores (a temporary table, one of an open transaction,
    one shadowing another: DuckDB's query() binds it on the caller's connection). Its first step holds each input
    row whole, as one struct, beside the model's features read out of it by name (a struct cast: an absent
    feature does not stop the binder), and checks the row's type there with scorehouse_check_table, which DuckDB
    calls once while planning: a feature missing or mistyped, or a column where the table form puts its own, stops
    the query in one line before any row is read. The steps then add their own columns beside the struct, so no
    input column can share a name with them; the last one spreads the struct back into the input's columns.
    """
    card = scorer.card(ref)
    features = ", ".join(f"{DUCKDB.identifier(f.name)} {SQL_TYPES[f.kind]}" for f in card.features)
    rows = (
        f"(SELECT {SCORED} AS {ROW}, UNNEST(CAST({SCORED} AS STRUCT({features}))) "
        f"FROM query_table({DUCKDB.literal(relation)}) AS {SCORED} "
        f"WHERE scorehouse_check_table({DUCKDB.literal(ref)}, typeof({SCORED}))) AS {FEATURES}"
    )
    star = f"{ROW}.*"
    query = SqlWriter(scorer, DUCKDB).table_sql(ref, rows, "default", star=star)
    if query is None:
        if all(f.sql_type == SQL_TYPES[f.kind] for f in card.features):
            prediction = SqlWriter(scorer, DUCKDB).sql_call(ref, FEATURES, "default")
        else:  # a feature trained on a BOOLEAN: the generic function reads the number as the model does
            columns = DUCKDB.struct((f.name, f"{FEATURES}.{DUCKDB.identifier(f.name)}") for f in card.features)
            prediction = f"{GENERIC_FUNCTIONS[card.default_output]}({DUCKDB.literal(ref)}, {columns})"
        query = f"SELECT {star}, {prediction} AS prediction, {scorer.resolve(ref)[1]} AS model_version FROM {rows}"
    return query


def check_table(scorer: Session, ref: str, row_type: str) -> bool:
    """True if the table form can score rows of type `row_type` (DuckDB's STRUCT(...) text of a whole row) into
    prediction and model_version; else its one-line error (Session.table_input_error). Names are matched
    case-blind, as DuckDB binds them."""
    found = struct_fields(row_type, scorer.describe(ref))
    lower = {name.lower(): name for name in found}
    for feature in scorer.card(ref).features:
        if feature.name not in found and feature.name.lower() in lower:
            found[feature.name] = found.pop(lower[feature.name.lower()])
    problem = scorer.table_input_error(ref, found)
    if problem:
        raise FeatureError(problem)
    return True


def check_input(scorer: Session, ref: str, row_type: str) -> bool:
    """True if a row of type `row_type` (DuckDB's STRUCT(...) text) feeds the model; else the ONNX path's error."""
    scorer.check_input(ref, struct_fields(row_type, scorer.describe(ref)))
    return True


def _typed_udf(current, name: str):
    def predict(features: pa.ChunkedArray) -> pa.Array:
        return current().predict_struct(name, flat(features))

    return predict


def _typed_explain_udf(current, name: str):
    def explain(features: pa.ChunkedArray, top_ks: pa.ChunkedArray) -> pa.Array:
        return current().explain_struct(name, flat(features), first_value(top_ks))

    return explain


def _explain_udf(current):
    def explain(
        refs: pa.ChunkedArray, rows: pa.ChunkedArray, row_types: pa.ChunkedArray, top_ks: pa.ChunkedArray
    ) -> pa.Array:
        scorer = current()
        row_type, top_k = first_value(row_types) or "", first_value(top_ks)
        return per_reference(refs, rows, lambda ref, part: _explain_rows(scorer, ref, part, row_type, top_k))

    return explain


def _generic_udf(current, output: str):
    def predict(refs: pa.ChunkedArray, rows: pa.ChunkedArray, row_types: pa.ChunkedArray) -> pa.Array:
        scorer = current()
        row_type = first_value(row_types) or ""
        return per_reference(refs, rows, lambda ref, part: _score_rows(scorer, ref, part, row_type, output))

    return predict


def _score_rows(scorer: Session, ref: str, rows: pa.Array, row_type: str, output: str) -> pa.Array:
    scorer.card(ref).check_output(output)
    return null_where_null(scorer.predict(ref, _row_columns(scorer, ref, rows, row_type), output), rows)


def _explain_rows(scorer: Session, ref: str, rows: pa.Array, row_type: str, top_k: int) -> pa.Array:
    return null_where_null(scorer.explain(ref, _row_columns(scorer, ref, rows, row_type), top_k), rows)


def _row_columns(scorer: Session, ref: str, rows: pa.Array, row_type: str) -> dict[str, pa.Array]:
    """The model's features from generic rows (ROW_VALUES: each row's values as text, in the order of
    `row_type`'s fields), after the input check; other fields are ignored, a NULL row is all NULL."""
    fields = struct_fields(row_type, scorer.describe(ref))
    scorer.check_input(ref, fields)
    position = {name: index for index, name in enumerate(fields)}
    columns = {}
    for f in scorer.card(ref).features:
        text = pc.list_element(rows, position[f.name]) if len(rows) else pa.array([], pa.string())
        # numbers as the text DuckDB wrote for their column (NaN and ±Infinity included), booleans as true/false
        columns[f.name] = pc.cast(text, pa.bool_() if is_boolean_type(fields[f.name]) else _TEXT_TYPES[f.kind])
    return columns


def struct_fields(type_name: str, model: str = "predict()") -> dict[str, str]:
    """Parse DuckDB's `STRUCT(a INTEGER, "b c" VARCHAR, ...)` into {field: type}."""
    text = type_name.strip()
    if not (text.upper().startswith("STRUCT(") and text.endswith(")")):
        raise FeatureError(
            f"Model {model}: predict() takes a row or a struct of named features, found {text or 'nothing'}; "
            "e.g. predict('model', t) for a whole row of table t, or predict('model', {'lvr': lvr, ...})"
        )
    fields: dict[str, str] = {}
    for part in _split_top_level(text[len("STRUCT(") : -1]):
        part = part.strip()
        if part.startswith('"'):
            end = 1
            while (end := part.index('"', end)) + 1 < len(part) and part[end + 1] == '"':
                end += 2
            name, kind = part[1:end].replace('""', '"'), part[end + 1 :]
        else:
            name, _, kind = part.partition(" ")
        if name in fields:
            raise FeatureError(f"Model {model}: the input has two fields named '{name}'")
        fields[name] = kind.strip()
    return fields


def _split_top_level(body: str) -> list[str]:
    """Split on commas outside parentheses, double-quoted names and single-quoted text (an ENUM's labels)."""
    current: list[str]
    parts, current, depth, quote = [], [], 0, None
    for ch in body:
        if quote:  # a doubled quote closes and reopens: the same text either way
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    return [*parts, "".join(current)] if current else parts


def friendly_error(exc: Exception, registry=None) -> str:
    """Return a DuckDB error as a person should read it: the scorehouse message, not the wrapping."""
    message = str(exc)
    marker = "Python exception occurred while executing the UDF: "
    if marker in message:
        message = message.split(marker, 1)[1]
        kind, sep, rest = message.partition(": ")
        if sep and kind.isidentifier():
            message = rest
        return message
    return explain_bind_error(message, Session(registry))


def explain_bind_error(message: str, scorer: Session) -> str:
    """Rewrite DuckDB's 'no function matches predict_<model>(STRUCT(...))' into a feature-level message."""
    macro = re.search(r"Macro predict_(\w+)\(\) does not support the supplied arguments", message)
    if macro and macro.group(1) in scorer.registry.models():
        name = macro.group(1)  # a model scored in SQL: its typed macro: DuckDB does not say what it was given
        return (
            f"Model {scorer.describe(name)}: predict_{name}() takes a struct of its features "
            f"({describe_features(scorer.card(name).features)}); the struct given lacks one or has another type. "
            f"predict('{name}', <row>) names the feature"
        )
    call = re.search(r"argument types '(?:predict|scorehouse_onnx)_(\w+)\((.*)", message)
    if not call:
        return message
    name, rest = call.groups()
    if not name or name not in scorer.registry.models():
        return message
    given = rest.split(")'", 1)[0]
    try:
        scorer.check_input(name, struct_fields(given, scorer.describe(name)))
    except FeatureError as exc:
        return str(exc)
    return message
