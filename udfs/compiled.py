"""The compiled-SQL path: a registered ONNX graph translated into one SQL expression per output and engine.

At registration, orbital translates the ONNX graph skl2onnx exported (before onnx_graph's rewrites,
whose Sigmoid orbital lacks) into a query per engine dialect; its chain of CTEs is folded here into
one expression per output that reads the features of the current row as "__scorehouse_row"."<feature>".
Numeric features enter as FLOAT with NaN read as NULL (the ONNX graph sees float32 and imputes NaN),
categories as text with NULL read as '' (as `schema.model_inputs` feeds onnxruntime). The expressions
are checked against scikit-learn on the holdout in DuckDB and timed against the ONNX UDF before they
are stored (compiled.json, hashed like every artifact); at scoring time they are plain SQL text: no
Python runs.

Registration is bounded: trees beyond MAX_TREE_NODES are not translated (their SQL would run slower
than onnxruntime, and orbital's translation grows without limit), and the translation runs in a
child process with a time and memory budget; what was skipped and why is in the manifest.

Stored SQL is data, not code: before any engine runs it, `prepared` parses it (sqlglot) and accepts
only one expression built from arithmetic, comparisons, CASE, casts to number or text, a few math
functions, literals and the model's own feature columns; the SQL that runs is regenerated from that
checked tree. A compiled.json that holds anything else (a statement, a table function, a subquery,
another column) is refused with the model's name.

A graph orbital cannot translate (a multiclass linear model; HistGradientBoosting trees that send
missing values left) registers without compiled SQL.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from .errors import IntegrityError, ScorehouseError
from .schema import NUMERIC, Feature
from .spec import COMPILE_MODES
from .sql import dialect

ROW = "__scorehouse_row"
ENGINES = ("duckdb", "spark")  # each also the name of its sqlglot dialect
SPEED_ROWS = 100_000  # rows timed per path at registration to decide which one scores by default
SPEED_MARGIN = 0.9  # the SQL must be 10% faster to be chosen: a tie is noise, and the UDF is the reference
# Spark compiles a projection into one Java method, and one over 64 KB falls back to interpreted evaluation
# (a 100-tree GBT, 115 KB of SQL, ran 4x slower than the ONNX UDF): longer expressions stay on the UDF there.
SPARK_MAX_CHARS = 32_000
# Trees are translated up to this many nodes (times the classes of a multiclass classifier, which orbital
# writes out once per class) with `compile: always`. The demo GBT has 1,500 and its SQL measured slower
# than onnxruntime; a 50-tree depth-6 forest (6,350) ran 4.5x slower as SQL, and a 30-class forest's
# translation never finished. `compile: auto`, the default, tries linear models and trees up to
# AUTO_TREE_NODES, where the SQL can win; registration stays a matter of seconds.
MAX_TREE_NODES = 4_000
AUTO_TREE_NODES = 300
COMPILE_SECONDS = 120  # the translation's time budget, in its own process
COMPILE_MEMORY = 3 << 30  # and its address-space budget, bytes
# A stored expression longer than this is refused before it is parsed: the largest registration writes
# (a 4,000-node multiclass GBT) is about 230,000 characters; checking 500,000 of a GBT's SQL takes about
# 4 s and 0.3 GB, once per process that scores the model.
MAX_EXPRESSION_CHARS = 500_000
# Nor one nested deeper than this (parentheses and CASEs; the models of the tests nest at most 18): sqlglot's
# parser recurses about 50 Python frames per level, so it parses with a limit raised for MAX_NESTING levels.
MAX_NESTING = 64
FRAMES_PER_LEVEL = 60
_NESTING_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`(?:[^`]|``)*`|--|/\*|[()]|\b(?:CASE|END)\b",
                             re.IGNORECASE)
_parsing = threading.Lock()  # the recursion limit is the process's: one raised parse at a time
TRANSLATION_REFUSED = 3  # the child's exit status when orbital says why it cannot translate a graph


def compile_for_registry(manifest: Mapping[str, Any], onnx_bytes: bytes, holdout: Mapping[str, np.ndarray],
                         expected: Mapping[str, np.ndarray], exported: bytes | None = None, mode: str = "auto",
                         ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Compile, check against scikit-learn on the holdout, time against the ONNX UDF: (compiled or None, record).

    mode 'auto' tries linear models and trees up to AUTO_TREE_NODES (where SQL can win), 'always' trees
    up to MAX_TREE_NODES, 'never' nothing. `exported` is the graph to translate where it differs from
    the stored one (see onnx_graph).
    """
    if mode not in COMPILE_MODES:
        raise ScorehouseError(f"compile: '{mode}' is not one of {list(COMPILE_MODES)}")
    if mode == "never":
        return None, {"skipped": "compile: never"}
    graph = exported or onnx_bytes
    size = tree_nodes(manifest, graph)
    too_big = oversized(size, AUTO_TREE_NODES if mode == "auto" else MAX_TREE_NODES, mode)
    if too_big:
        return None, {"skipped": too_big}
    try:
        # a linear graph translates in moments; trees go to a child process with a time and memory budget
        compiled = compile_bounded(manifest, graph) if size[0] else compile_model(manifest, graph)
    except ScorehouseError as exc:
        return None, {"skipped": str(exc)}
    except Exception as exc:  # noqa: BLE001 - orbital raises whatever its translators raise on ops it lacks
        return None, {"skipped": f"orbital cannot translate this graph: {type(exc).__name__}: {exc}"}
    try:
        parity = check_compiled(compiled, manifest, holdout, expected, manifest["parity"]["tolerance"])
    except IntegrityError as exc:  # the SQL is longer or deeper than a stored expression may be
        return None, {"skipped": str(exc)}
    if not parity["ok"]:
        return None, {"skipped": "the SQL disagrees with scikit-learn on the holdout", "parity": parity}
    timing = time_paths(compiled, manifest, onnx_bytes, holdout)
    faster = timing["sql_seconds"] < SPEED_MARGIN * timing["onnx_seconds"]
    fits_spark = max(map(len, compiled["expressions"]["spark"].values())) <= SPARK_MAX_CHARS
    record = {"outputs": sorted(compiled["expressions"]["duckdb"]), "parity": parity, "duckdb_timing": timing,
              "preferred": {"duckdb": faster, "spark": faster and fits_spark}}
    return compiled, record


def tree_nodes(manifest: Mapping[str, Any], onnx_bytes: bytes) -> tuple[int, int]:
    """(tree nodes, classes orbital writes them out for): the size of the SQL the trees become."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    nodes = sum(len(attribute.ints) for node in graph.node if node.op_type.startswith("TreeEnsemble")
                for attribute in node.attribute if attribute.name == "nodes_nodeids")
    return nodes, len(manifest.get("classes") or []) if manifest["task"] == "multiclass" else 1


def oversized(size: tuple[int, int], bound: int, mode: str) -> str | None:
    """Why trees of `size` (nodes, classes) are not translated under `bound`, or None."""
    nodes, classes = size
    if nodes * classes <= bound:
        return None
    what = f"{nodes:,} nodes" + (f" x {classes} classes" if classes > 1 else "")
    if mode == "auto":
        return (f"compile: auto translates trees up to {bound:,} nodes, these have {what}: larger trees score "
                f"faster with onnxruntime (compile: always tries up to {MAX_TREE_NODES:,})")
    return f"the trees have {what}; SQL is generated up to {bound:,} (larger trees score faster with onnxruntime)"


def compile_bounded(manifest: Mapping[str, Any], onnx_bytes: bytes) -> dict[str, Any]:
    """compile_model in a child process under COMPILE_SECONDS and COMPILE_MEMORY; raise saying why it failed."""
    try:
        with tempfile.TemporaryDirectory(prefix="scorehouse-compile-") as folder:
            Path(folder, "manifest.json").write_text(json.dumps(manifest))
            Path(folder, "model.onnx").write_bytes(onnx_bytes)
            child = subprocess.run([sys.executable, "-m", "scorehouse.compiled", folder], capture_output=True,
                                   text=True, timeout=COMPILE_SECONDS, preexec_fn=_limit_memory, env=_child_env())
            result = Path(folder, "compiled.json")
            if child.returncode == 0 and result.exists():
                return json.loads(result.read_text())
    except subprocess.TimeoutExpired:
        raise ScorehouseError(f"the translation took longer than {COMPILE_SECONDS} s") from None
    except OSError as exc:
        raise ScorehouseError(f"the translation could not run: {exc.strerror or exc}") from None
    reason = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
    if child.returncode != TRANSLATION_REFUSED:  # it ran out of its budget, or crashed
        reason = (f"the translation stopped within its budget ({COMPILE_SECONDS} s, "
                  f"{COMPILE_MEMORY / 2**30:g} GiB of memory): {reason}")
    raise ScorehouseError(reason)


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (COMPILE_MEMORY, COMPILE_MEMORY))


def _child_env() -> dict[str, str]:
    """One thread for the libraries the child imports: it translates, it does not compute."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _compile_in_child(folder: str) -> int:
    """The child process: read the graph, translate it, write compiled.json, or say why not on stderr."""
    manifest = json.loads(Path(folder, "manifest.json").read_text())
    try:
        compiled = compile_model(manifest, Path(folder, "model.onnx").read_bytes())
    except ImportError as exc:
        print(f"{exc.name} is not installed (pip install orbital)", file=sys.stderr)
        return TRANSLATION_REFUSED
    except Exception as exc:  # noqa: BLE001 - orbital raises whatever its translators raise on ops it lacks
        print(f"orbital cannot translate this graph: {type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return TRANSLATION_REFUSED
    Path(folder, "compiled.json").write_text(json.dumps(compiled))
    return 0


def compile_model(manifest: Mapping[str, Any], onnx_bytes: bytes) -> dict[str, Any]:
    """{'expressions': {engine: {output: sql}}} for every output the graph gives; raises on untranslatable graphs."""
    import onnx
    import orbital
    import orbital.types as ot
    from orbital.ast import ParsedPipeline

    _teach_orbital_exp()
    features = [Feature.from_dict(f) for f in manifest["features"]]
    types = {f.name: ot.FloatColumnType() if f.kind == NUMERIC else ot.StringColumnType() for f in features}
    parsed = ParsedPipeline._from_onnx_model(onnx.load_from_string(onnx_bytes), types)
    # orbital's DuckDB SQL writes float literals as DOUBLE (0.5E0), which Spark reads as DOUBLE too
    query = orbital.export_sql("scorehouse_input", parsed, dialect="duckdb")
    expressions = {}
    for engine in ENGINES:
        folded = _fold(query, engine, {f.name: _feature_input(f, engine) for f in features})
        expressions[engine] = {output: folded[_column(folded, column)]
                               for output, column in _output_columns(manifest).items()}
    return {"format": 1, "row": ROW, "expressions": expressions}


@functools.cache
def _teach_orbital_exp() -> None:
    """Add ONNX's Exp to orbital's translators (it has none): the inverse log link of count and positive-target
    models (Poisson, Gamma, Tweedie). Registered in orbital's own table, as its other operators are."""
    import importlib

    import ibis
    from orbital.translation.translator import Translator
    from orbital.translation.variables import NumericVariablesGroup, ValueVariablesGroup, VariablesGroup

    class ExpTranslator(Translator):
        def process(self) -> None:
            data = self._variables.consume(self._inputs[0])
            if isinstance(data, VariablesGroup):
                data = NumericVariablesGroup(data)
                self.set_output(ValueVariablesGroup({name: self._optimizer.fold_operations(value.exp())
                                                     for name, value in data.items()}))
            elif isinstance(data, ibis.expr.types.NumericValue):
                self.set_output(self._optimizer.fold_operations(data.exp()))
            else:
                raise ValueError("Exp: the operand must be a numeric column or a group of them")

    # the module, not the package's function of the same name
    importlib.import_module("orbital.translate").TRANSLATORS.setdefault("Exp", ExpTranslator)


def bind(expression: str, engine: str, prefix: str) -> str:
    """Point a prepared expression at real columns: `prefix` is e.g. '"f".' (a relation) or '' (bare columns).

    `prepared` makes sure the row marker appears nowhere but in column references.
    """
    return expression.replace(dialect(engine).identifier(ROW) + ".", prefix)


class UnsafeSQL(ScorehouseError):
    """Stored SQL that is not one plain expression over the model's features."""


def _allowed_nodes() -> dict[type, str]:
    from sqlglot import exp

    return {node: node.__name__ for node in (
        exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Paren, exp.Case, exp.If, exp.Cast, exp.TryCast,
        exp.Coalesce, exp.Nullif, exp.Column, exp.Identifier, exp.DataType, exp.Literal, exp.Null, exp.Boolean,
        exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE, exp.And, exp.Or, exp.Not, exp.Is,
        exp.Exp, exp.Ln, exp.Log, exp.Sqrt, exp.Pow, exp.Abs, exp.Greatest, exp.Least)}


def _allowed_types() -> frozenset:
    from sqlglot import exp

    kinds = exp.DataType.Type
    return frozenset({kinds.FLOAT, kinds.DOUBLE, kinds.TEXT, kinds.VARCHAR, kinds.INT, kinds.BIGINT, kinds.BOOLEAN})


@functools.lru_cache(maxsize=64)
def prepared(expression: str, engine: str, features: tuple[str, ...]) -> str:
    """The SQL to run for a stored expression: parsed, checked, and regenerated from the checked tree.

    Accepts one expression of arithmetic, comparisons, CASE, casts to number or text, math functions,
    literals and the columns `features` of the row marker; raises UnsafeSQL naming anything else. On
    DuckDB a feature's cast to FLOAT becomes `Dialect.float32` (a value beyond float32's range is ±inf
    there too, as with onnxruntime, instead of a conversion error).
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise UnsafeSQL(f"is {len(expression):,} characters long (at most {MAX_EXPRESSION_CHARS:,} are read)")
    depth = nesting(expression)
    if depth > MAX_NESTING:
        raise UnsafeSQL(f"nests {depth:,} levels deep (at most {MAX_NESTING} are read)")
    with _parsing:
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, _frames() + FRAMES_PER_LEVEL * (MAX_NESTING + 2)))
        try:
            return _checked(expression, engine, features)
        except RecursionError:
            raise UnsafeSQL(f"nests too deeply to be read ({depth} levels)") from None
        finally:
            sys.setrecursionlimit(limit)


def nesting(expression: str) -> int:
    """How deep parentheses and CASEs nest in `expression` (outside quotes), in one linear pass."""
    depth = deepest = 0
    for token in _NESTING_TOKENS.finditer(expression):
        text = token.group().upper()
        if text in ("(", "CASE"):
            depth += 1
            deepest = max(deepest, depth)
        elif text in (")", "END"):
            depth -= 1
        elif text in ("--", "/*"):
            raise UnsafeSQL("holds a comment")
    return deepest


def _frames() -> int:
    """How many Python frames deep this call runs."""
    frame: FrameType | None
    frame, count = sys._getframe(), 0
    while frame is not None:
        frame, count = frame.f_back, count + 1
    return count


def _checked(expression: str, engine: str, features: tuple[str, ...]) -> str:
    import sqlglot
    from sqlglot import exp

    sql_dialect = dialect(engine)
    try:
        trees = sqlglot.parse(expression, read=engine)
    except sqlglot.errors.SqlglotError as exc:
        raise UnsafeSQL(f"does not parse: {str(exc).splitlines()[0]}") from None
    if len(trees) != 1 or trees[0] is None:
        raise UnsafeSQL(f"holds {len(trees)} statements, not one expression")
    tree, allowed, types, known = trees[0], _allowed_nodes(), _allowed_types(), set(features)
    for node in tree.walk():
        kind = type(node)
        if kind not in allowed:
            raise UnsafeSQL(f"holds {kind.__name__} ({node.sql(engine)[:60]}), which a scoring expression never needs")
        if node.comments:
            raise UnsafeSQL("holds a comment")
        if kind is exp.Identifier and not isinstance(node.parent, exp.Column):
            raise UnsafeSQL(f"names {node.name!r} outside a column reference")
        if type(node) is exp.Column and (node.table != ROW or node.name not in known
                                         or set(node.args) - {"this", "table"}):
            raise UnsafeSQL(f"reads column {node.sql(engine)[:60]}, which is not one of the model's features")
        if kind is exp.DataType and (node.this not in types or node.expressions):
            raise UnsafeSQL(f"casts to {node.sql(engine)}")
        if kind is exp.Literal and node.is_string and ROW in node.this:
            raise UnsafeSQL("holds the row marker inside a string")
    if engine == "duckdb":
        def float32(node):
            if type(node) in (exp.Cast, exp.TryCast) and isinstance(node.this, exp.Column) \
                    and node.to.this == exp.DataType.Type.FLOAT:
                return sqlglot.parse_one(sql_dialect.float32(node.this.sql(engine)), read=engine)
            return node

        tree = tree.transform(float32)
    return tree.sql(dialect=engine, identify=True)  # quoted, so bind() finds every reference to the row


def prepared_output(compiled: Mapping[str, Any] | None, engine: str, output: str, features: list[Feature],
                    label: str) -> str:
    """One stored expression, prepared; a refused one fails naming the model, the engine and why."""
    try:
        text = (compiled or {})["expressions"][engine][output]  # None: no compiled SQL (KeyError below)
    except (KeyError, TypeError):
        raise IntegrityError(f"Model {label}: compiled.json has no {output} expression for {engine}; "
                             "refusing it") from None
    if not isinstance(text, str):
        raise IntegrityError(f"Model {label}: compiled.json's {output} expression for {engine} is not text; "
                             "refusing it")
    try:
        return prepared(text, engine, tuple(sorted(f.name for f in features)))
    except UnsafeSQL as exc:
        raise IntegrityError(f"Model {label}: compiled.json is not one plain expression over the model's "
                             f"features on {engine}: it {exc}; refusing it") from None


def prepared_outputs(compiled: Mapping[str, Any], engine: str, features: list[Feature], label: str) -> dict[str, str]:
    """Every stored expression of an engine, prepared (see prepared_output)."""
    outputs = (compiled or {}).get("expressions", {}).get(engine) or {}
    if not isinstance(outputs, dict) or not outputs:
        raise IntegrityError(f"Model {label}: compiled.json has no expressions for {engine}; refusing it")
    return {output: prepared_output(compiled, engine, output, features, label) for output in outputs}


def check_compiled(compiled: Mapping[str, Any], manifest: Mapping[str, Any], feeds: Mapping[str, np.ndarray],
                   expected: Mapping[str, np.ndarray], tolerance: float) -> dict[str, Any]:
    """Run the prepared DuckDB expressions on the holdout and compare with scikit-learn's outputs; return the record."""
    import duckdb

    from .model import ModelCard

    card = ModelCard(manifest)
    table = _as_table(feeds)
    record: dict[str, Any] = {"rows": table.num_rows, "tolerance": tolerance}
    prepared_sql = prepared_outputs(compiled, "duckdb", card.features, card.label)
    prepared_outputs(compiled, "spark", card.features, card.label)  # the Spark text must pass the same checks
    with duckdb.connect() as con:
        con.register("holdout", table)
        for output, expression in prepared_sql.items():
            got = con.sql(f"select {bind(expression, 'duckdb', '')} as v from holdout").fetchnumpy()["v"]
            if output == "label":
                record["label_mismatches"] = int((np.asarray(got).astype(str) != expected["label"]).sum())
            else:
                record["max_abs_diff"] = float(np.abs(np.asarray(got, dtype=np.float64)
                                                      - expected["score"]).max(initial=0))
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
    sql = dialect("duckdb")
    picks = np.random.default_rng(0).integers(0, len(next(iter(feeds.values()))), rows)
    table = _as_table({k: v[picks] for k, v in feeds.items()})
    output = "score" if "score" in compiled["expressions"]["duckdb"] else "label"
    with duckdb.connect() as con:
        con.register("rows_view", table)
        con.execute("create table timed_rows as select * from rows_view")
        struct = duckdb.struct_type({field.name: "FLOAT" if pa.types.is_floating(field.type) else "VARCHAR"
                                     for field in table.schema})
        # type="arrow": duckdb's stub takes only a PythonUDFType there, not the documented string
        con.create_function("onnx_path",  # type: ignore[call-overload]
                            lambda rows: model.predict(dict(zip(names, rows.flatten())), output),
                            [struct], "DOUBLE" if output == "score" else "VARCHAR", type="arrow")
        arguments = sql.struct((n, sql.identifier(n)) for n in names)
        expression = prepared_outputs(compiled, "duckdb", model.features, model.label)[output]
        queries = {"onnx_seconds": f"select sum(hash(onnx_path({arguments}))) from timed_rows",
                   "sql_seconds": f"select sum(hash({bind(expression, 'duckdb', '')})) from timed_rows"}
        best = dict.fromkeys(queries, float("inf"))
        for _ in range(3):
            for key, query in queries.items():
                start = time.perf_counter()
                con.execute(query).fetchall()
                best[key] = min(best[key], time.perf_counter() - start)
    return {"rows": rows, **{k: round(v, 4) for k, v in best.items()}}


def sample_problems(model, compiled: Mapping[str, Any], sample: Mapping[str, Any]) -> list[str]:
    """Score the stored holdout sample with the compiled SQL in DuckDB; list where it differs from scikit-learn."""
    import duckdb
    import pyarrow as pa

    expressions = prepared_outputs(compiled, "duckdb", model.features, model.label)
    prepared_outputs(compiled, "spark", model.features, model.label)
    table = pa.table({f.name: pa.array([row.get(f.name) for row in sample["rows"]],
                                       pa.float64() if f.kind == NUMERIC else pa.string()) for f in model.features})
    tolerance = model.manifest.tolerance
    problems = []
    with duckdb.connect() as con:
        con.register("sample_rows", table)
        for output, expression in expressions.items():
            if output not in sample["expected"]:
                continue
            got = con.sql(f"select {bind(expression, 'duckdb', '')} as v from sample_rows").fetchnumpy()["v"]
            want = sample["expected"][output]
            if output == "label":
                wrong = int((np.asarray(got).astype(str) != np.asarray(want).astype(str)).sum())
                if wrong:
                    problems.append(f"Model {model.label}: compiled SQL gives {wrong} of {len(want)} sample labels "
                                    "unlike scikit-learn")
                continue
            diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - np.asarray(want, dtype=np.float64)),
                                initial=0.0))
            if not diff <= tolerance:
                problems.append(f"Model {model.label}: compiled SQL's sample {output} differs from scikit-learn's "
                                f"by {diff:.3g} (tolerance {tolerance:.3g})")
    return problems


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


def _feature_input(feature: Feature, engine: str) -> str:
    """The SQL feeding one feature to the graph, as onnxruntime is fed."""
    from sqlglot import exp

    column = exp.column(feature.name, table=ROW, quoted=True)
    value: exp.Expr
    if feature.kind == NUMERIC:
        value = exp.Nullif(this=exp.cast(column, "FLOAT"), expression=exp.cast(exp.Literal.string("NaN"), "FLOAT"))
    else:
        value = exp.func("COALESCE", exp.cast(column, "VARCHAR"), exp.Literal.string(""))
    return value.sql(dialect=engine)


def _fold(query: str, engine: str, inputs: Mapping[str, str]) -> dict[str, str]:
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

        text = expression.transform(mark).sql(dialect=engine)
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


if __name__ == "__main__":
    sys.exit(_compile_in_child(sys.argv[1]))
