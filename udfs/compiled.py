"""The compiled-SQL path: a registered ONNX graph translated into one SQL expression per output and engine.

At registration, orbital translates the ONNX graph skl2onnx exported (before onnx_graph's rewrites,
whose Sigmoid orbital lacks) into a query per engine dialect; its chain of CTEs is folded here into
one expression per output that reads the features of the current row as "__scorehouse_row"."<feature>".
Numeric features enter as FLOAT with NaN read as NULL (the ONNX graph sees float32 and imputes NaN),
categories as text with NULL read as '' (as `schema.model_inputs` feeds onnxruntime). The expressions
are checked against scikit-learn on the holdout in DuckDB and timed against the ONNX UDF before they
are stored (compiled.json, hashed like every artifact); at scoring time they are plain SQL text: no
Python runs.

orbital and sqlglot are needed at registration only. A graph orbital cannot translate (a multiclass
linear model; HistGradientBoosting trees that send missing values left) registers without compiled SQL.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .schema import NUMERIC, Feature

ROW = "__scorehouse_row"
DIALECTS = {"duckdb": "duckdb", "spark": "spark"}  # engine -> sqlglot dialect
SPEED_ROWS = 100_000  # rows timed per path at registration to decide which one scores by default
SPEED_MARGIN = 0.9  # the SQL must be 10% faster to be chosen: a tie is noise, and the UDF is the reference
# Spark compiles a projection into one Java method, and one over 64 KB falls back to interpreted evaluation
# (a 100-tree GBT, 115 KB of SQL, ran 4x slower than the ONNX UDF): longer expressions stay on the UDF there.
SPARK_MAX_CHARS = 32_000


def compile_for_registry(manifest: Mapping[str, Any], onnx_bytes: bytes, holdout: Mapping[str, np.ndarray],
                         expected: Mapping[str, np.ndarray], exported: bytes | None = None,
                         ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Compile, check against scikit-learn on the holdout, time against the ONNX UDF: (compiled or None, record).

    `exported` is the graph to translate where it differs from the stored one (see onnx_graph).
    """
    try:
        compiled = compile_model(manifest, exported or onnx_bytes)
    except ImportError as exc:
        return None, {"skipped": f"{exc.name} is not installed (pip install orbital)"}
    except Exception as exc:  # noqa: BLE001 - orbital raises whatever its translators raise on ops it lacks
        return None, {"skipped": f"orbital cannot translate this graph: {type(exc).__name__}: {exc}"}
    parity = check_compiled(compiled, holdout, expected, manifest["parity"]["tolerance"])
    if not parity["ok"]:
        return None, {"skipped": "the SQL disagrees with scikit-learn on the holdout", "parity": parity}
    timing = time_paths(compiled, manifest, onnx_bytes, holdout)
    faster = timing["sql_seconds"] < SPEED_MARGIN * timing["onnx_seconds"]
    fits_spark = max(map(len, compiled["expressions"]["spark"].values())) <= SPARK_MAX_CHARS
    record = {"outputs": sorted(compiled["expressions"]["duckdb"]), "parity": parity, "duckdb_timing": timing,
              "preferred": {"duckdb": faster, "spark": faster and fits_spark}}
    return compiled, record


def compile_model(manifest: Mapping[str, Any], onnx_bytes: bytes) -> dict[str, Any]:
    """{'expressions': {engine: {output: sql}}} for every output the graph gives; raises on untranslatable graphs."""
    import onnx
    import orbital
    import orbital.types as ot
    from orbital.ast import ParsedPipeline

    features = [Feature.from_dict(f) for f in manifest["features"]]
    types = {f.name: ot.FloatColumnType() if f.kind == NUMERIC else ot.StringColumnType() for f in features}
    parsed = ParsedPipeline._from_onnx_model(onnx.load_from_string(onnx_bytes), types)
    # orbital's DuckDB SQL writes float literals as DOUBLE (0.5E0), which Spark reads as DOUBLE too
    query = orbital.export_sql("scorehouse_input", parsed, dialect="duckdb")
    expressions = {}
    for engine, dialect in DIALECTS.items():
        folded = _fold(query, dialect, {f.name: _feature_input(f, dialect) for f in features})
        expressions[engine] = {output: folded[_column(folded, column)] for output, column in _output_columns(manifest).items()}
    return {"format": 1, "row": ROW, "expressions": expressions}


def bind(expression: str, engine: str, prefix: str) -> str:
    """Point a stored expression at real columns: `prefix` is e.g. 'f.', 'r.' (a struct) or '' (bare columns)."""
    quote = '"' if engine == "duckdb" else "`"
    return expression.replace(f"{quote}{ROW}{quote}.", prefix)


def check_compiled(compiled: Mapping[str, Any], feeds: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                   tolerance: float) -> dict[str, Any]:
    """Run the DuckDB expressions on the holdout and compare with scikit-learn's outputs; return the record."""
    import duckdb

    table = _as_table(feeds)
    record: dict[str, Any] = {"rows": table.num_rows, "tolerance": tolerance}
    with duckdb.connect() as con:
        con.register("holdout", table)
        for output, expression in compiled["expressions"]["duckdb"].items():
            got = con.sql(f"select {bind(expression, 'duckdb', '')} as v from holdout").fetchnumpy()["v"]
            if output == "label":
                record["label_mismatches"] = int((np.asarray(got).astype(str) != expected["label"]).sum())
            else:
                record["max_abs_diff"] = float(np.abs(np.asarray(got, dtype=np.float64) - expected["score"]).max(initial=0))
    record["ok"] = bool(record.get("max_abs_diff", 0.0) <= tolerance and not record.get("label_mismatches", 0))
    return record


def time_paths(compiled: Mapping[str, Any], manifest: Mapping[str, Any], onnx_bytes: bytes,
               feeds: Mapping[str, np.ndarray], rows: int = SPEED_ROWS) -> dict[str, float]:
    """Seconds for DuckDB to score `rows` resampled holdout rows with the ONNX UDF and with the compiled SQL."""
    import duckdb
    import pyarrow as pa

    from .model import LoadedModel

    model = LoadedModel(manifest, onnx_bytes)
    names = [f["name"] for f in manifest["features"]]
    picks = np.random.default_rng(0).integers(0, len(next(iter(feeds.values()))), rows)
    table = _as_table({k: v[picks] for k, v in feeds.items()})
    output = "score" if "score" in compiled["expressions"]["duckdb"] else "label"
    with duckdb.connect() as con:
        con.register("rows_view", table)
        con.execute("create table timed_rows as select * from rows_view")
        struct = duckdb.struct_type({field.name: "FLOAT" if pa.types.is_floating(field.type) else "VARCHAR"
                                     for field in table.schema})
        con.create_function("onnx_path", lambda rows: model.predict(dict(zip(names, rows.flatten())), output),
                            [struct], "DOUBLE" if output == "score" else "VARCHAR", type="arrow")
        arguments = "{" + ", ".join(f"'{n}': \"{n}\"" for n in names) + "}"
        queries = {"onnx_seconds": f"select sum(hash(onnx_path({arguments}))) from timed_rows",
                   "sql_seconds": f"select sum(hash({bind(compiled['expressions']['duckdb'][output], 'duckdb', '')})) "
                                  "from timed_rows"}
        best = dict.fromkeys(queries, float("inf"))
        for _ in range(3):
            for key, query in queries.items():
                start = time.perf_counter()
                con.execute(query).fetchall()
                best[key] = min(best[key], time.perf_counter() - start)
    return {"rows": rows, **{k: round(v, 4) for k, v in best.items()}}


def _output_columns(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Our outputs -> the column names orbital gives them (ONNX output names, probabilities per class)."""
    roles = manifest["onnx_outputs"]
    if manifest["task"] == "regression":
        return {"score": roles["value"]}
    columns = {"label": roles["label"]}
    if manifest["task"] == "binary":
        columns["score"] = f"{roles['probabilities']}.{manifest['positive_class']}"
    return columns


def _column(folded: Mapping[str, str], name: str) -> str:
    """orbital names a regressor's single output '<output>' or '<output>.target_0'."""
    if name in folded:
        return name
    found = [c for c in folded if c.startswith(f"{name}.")]
    if len(found) != 1:
        raise KeyError(f"no single output column '{name}' among {sorted(folded)}")
    return found[0]


def _feature_input(feature: Feature, dialect: str) -> str:
    """The SQL feeding one feature to the graph, as onnxruntime is fed."""
    from sqlglot import exp

    column = exp.column(feature.name, table=ROW, quoted=True)
    if feature.kind == NUMERIC:
        value = exp.Nullif(this=exp.cast(column, "FLOAT"), expression=exp.cast(exp.Literal.string("NaN"), "FLOAT"))
    else:
        value = exp.func("COALESCE", exp.cast(column, "VARCHAR"), exp.Literal.string(""))
    return value.sql(dialect=dialect)


def _fold(query: str, dialect: str, inputs: Mapping[str, str]) -> dict[str, str]:
    """Fold orbital's `WITH t1 AS (...), t2 AS (...) SELECT ...` into one SQL expression per output column.

    Each CTE column is rendered once with placeholders for the columns it reads, then spliced in
    parenthesized (an expression tree does not carry SQL's precedence; the text does).
    """
    import re

    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(query, read="duckdb")
    with_ = tree.args.get("with_") or tree.args.get("with")  # the key's name differs across sqlglot versions
    selects = {cte.alias: cte.this for cte in with_.expressions} if with_ else {}
    placeholder = re.compile(r"__scorehouse_ref_(\d+)__")
    refs: list[tuple[str | None, str]] = []  # (cte or None for an input, column)
    folded: dict[tuple[str, str], str] = {}

    def render(expression, select) -> str:
        table = (select.args.get("from_") or select.args.get("from")).this
        alias, cte = table.alias_or_name, (table.name if table.name in selects else None)

        def mark(node):
            if isinstance(node, exp.Column) and node.table == alias:
                refs.append((cte, node.name))
                return exp.column(f"__scorehouse_ref_{len(refs) - 1}__")
            return node

        text = expression.transform(mark).sql(dialect=dialect)
        return placeholder.sub(lambda m: "(" + resolve(*refs[int(m.group(1))]) + ")", text)

    def resolve(cte: str | None, name: str) -> str:
        if cte is None:
            return inputs[name]
        if (cte, name) not in folded:
            folded[(cte, name)] = render(_columns(selects[cte])[name], selects[cte])
        return folded[(cte, name)]

    return {name: render(e, tree) for name, e in _columns(tree).items()}


def _columns(select) -> dict:
    from sqlglot import exp

    return {e.alias_or_name: (e.this if isinstance(e, exp.Alias) else e) for e in select.expressions}


def _as_table(feeds: Mapping[str, np.ndarray]):
    import pyarrow as pa

    arrays = {}
    for name, values in feeds.items():
        values = values.reshape(-1)
        arrays[name] = pa.array(values.astype(str) if values.dtype == object else values.astype(np.float32))
    return pa.table(arrays)
