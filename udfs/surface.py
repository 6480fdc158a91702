"""Every SQL function, macro and view scorehouse creates, declared once.

The DuckDB and Spark adapters create what is declared for their engine (the writer helpers' implementations
live here; the scoring functions' in the adapters), a test checks that each engine has exactly these names,
the security test reads its list from here, and `scorehouse functions` and the docs' reference table
(docs/pages/sql.md) are written from it. `{model}` in a name stands for each model of the registry (its prod version).

Audience: `analysts` call it in SQL (documented); `dbt` is called by the package's macros and hooks, with
the SQL it writes (not for hand-written SQL); `internal` is a building block of another function.
None of them reads or writes a file: models come from the registry, through its checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .explain import EXPLANATION
from .model import OUTPUT_SQL_TYPES
from .sql import DUCKDB

DUCKDB_ONLY, SPARK_ONLY = ("duckdb",), ("spark",)
BOTH = ("duckdb", "spark")
ANALYSTS, DBT, INTERNAL = "analysts", "dbt", "internal"


@dataclass(frozen=True)
class SqlFunction:
    """One SQL-visible name: how it is called, what it returns, where it exists, who calls it."""

    name: str
    call: str  # the arguments as a user writes them
    returns: str
    kind: str  # 'function', 'table function' (FROM name(...)) or 'view'
    engines: tuple[str, ...]
    audience: str
    summary: str
    # the writer helpers: implementation(a SqlWriter of the engine, *varchar arguments) and the DuckDB argument types
    implementation: Callable[..., Any] | None = None
    argument_types: tuple[str, ...] = ()

    def names(self, models: Iterable[str]) -> list[str]:
        """The name, or one per model where it holds `{model}`."""
        return [self.name.format(model=m) for m in models] if "{model}" in self.name else [self.name]


def _writer(name: str, call: str, returns: str, implementation: Callable[..., Any], summary: str) -> SqlFunction:
    """A writer helper: text arguments (top_k an integer), an engine-neutral implementation."""
    types = tuple("INTEGER" if argument == "top_k" else "VARCHAR" for argument in call.split(", "))
    return SqlFunction(name, call, returns, "function", BOTH, DBT, summary, implementation, types)


EXPLANATION_TYPE = DUCKDB.arrow_type(EXPLANATION).replace('"', "")  # as the reference lists it
SCORE, LABEL, PROBABILITIES = (OUTPUT_SQL_TYPES[o] for o in ("score", "label", "probabilities"))
FUNCTIONS: tuple[SqlFunction, ...] = (
    # what analysts type
    SqlFunction(
        "predict",
        "'<ref>', row",
        SCORE,
        "function",
        BOTH,
        ANALYSTS,
        "the model's score (a binary model's probability of its positive class; a regressor's value); "
        "features bound by name",
    ),
    SqlFunction("predict_label", "'<ref>', row", LABEL, "function", BOTH, ANALYSTS, "a classifier's label"),
    SqlFunction(
        "predict_proba",
        "'<ref>', row",
        PROBABILITIES,
        "function",
        BOTH,
        ANALYSTS,
        "a classifier's probabilities, class -> probability",
    ),
    SqlFunction(
        "explain",
        "'<ref>', row[, top_k]",
        EXPLANATION_TYPE,
        "function",
        BOTH,
        ANALYSTS,
        "the score's reasons: each feature's contribution (TreeSHAP or linear terms)",
    ),
    SqlFunction(
        "score",
        "'<ref>', '<table>'",
        "the table's rows with prediction and model_version",
        "table function",
        DUCKDB_ONLY,
        ANALYSTS,
        "a whole table scored, in steps where the model allows",
    ),
    SqlFunction(
        "predict_{model}",
        "struct_pack(features...)",
        f"{SCORE}, or a multiclass model's label ({LABEL})",
        "function",
        BOTH,
        ANALYSTS,
        "the prod version's default output, typed (what dbt's predict() calls)",
    ),
    SqlFunction(
        "explain_{model}",
        "struct_pack(features...)[, top_k]",
        "as explain()",
        "function",
        BOTH,
        ANALYSTS,
        "explain() for the prod version, typed",
    ),
    SqlFunction(
        "score_{model}",
        "'<table>'",
        "as score()",
        "table function",
        DUCKDB_ONLY,
        ANALYSTS,
        "score() for the prod version",
    ),
    SqlFunction(
        "scorehouse_features",
        "'<ref>'",
        "one row per feature",
        "table function",
        DUCKDB_ONLY,
        ANALYSTS,
        "the training profile's feature statistics (on Spark a view with a model_ref column)",
    ),
    SqlFunction(
        "scorehouse_bins",
        "'<ref>'",
        "one row per bin or category",
        "table function",
        DUCKDB_ONLY,
        ANALYSTS,
        "the training profile's bins and category shares (on Spark a view)",
    ),
    SqlFunction(
        "scorehouse_metrics",
        "'<ref>'",
        "one row per holdout metric",
        "table function",
        DUCKDB_ONLY,
        ANALYSTS,
        "the holdout metrics of the version (on Spark a view)",
    ),
    SqlFunction(
        "scorehouse_features",
        "",
        "model_ref and one row per feature",
        "view",
        SPARK_ONLY,
        ANALYSTS,
        "the training profiles' feature statistics, of every reference",
    ),
    SqlFunction(
        "scorehouse_bins",
        "",
        "model_ref and one row per bin or category",
        "view",
        SPARK_ONLY,
        ANALYSTS,
        "the training profiles' bins and category shares, of every reference",
    ),
    SqlFunction(
        "scorehouse_metrics",
        "",
        "model_ref and one row per holdout metric",
        "view",
        SPARK_ONLY,
        ANALYSTS,
        "the holdout metrics of every reference",
    ),
    SqlFunction(
        "scorehouse_training_rows",
        "'<ref>'",
        "row_hash",
        "table function",
        DUCKDB_ONLY,
        DBT,
        "the first 16 hex digits of the input hashes of the rows that trained the version",
    ),
    SqlFunction(
        "scorehouse_training_rows",
        "",
        "model_name, model_version, row_hash",
        "view",
        SPARK_ONLY,
        DBT,
        "the rows that trained each version, by input hash",
    ),
    # what dbt's macros call: they write SQL, answer questions about a reference
    SqlFunction(
        "scorehouse_model_version",
        "'<ref>'",
        "INTEGER",
        "function",
        BOTH,
        ANALYSTS,
        "the version a reference scores with now",
        lambda w, ref: w.session.resolve(ref)[1],
        ("VARCHAR",),
    ),
    _writer(
        "scorehouse_resolves",
        "ref",
        "BOOLEAN",
        lambda w, ref: w.session.resolves(ref),
        "whether a reference points at a version that loads",
    ),
    _writer(
        "scorehouse_predict_sql",
        "ref, relation, output, method, key",
        "VARCHAR",
        lambda w, ref, relation, output, method, key: w.sql_call(ref, relation, output, method or None, key or None),
        "the SQL expression of predict() on a relation's row",
    ),
    _writer(
        "scorehouse_score_sql",
        "ref, source, output, method, key, column, kept",
        "VARCHAR",
        lambda w, ref, source, output, method, key, column, kept: (
            w.table_sql(ref, source, output, method or None, key or None, column, json.loads(kept) if kept else None)
            or ""
        ),
        "the query of the table form over a relation in steps, or '' where it scores row by row",
    ),
    _writer(
        "scorehouse_table_input_error",
        "ref, columns, column, added",
        "VARCHAR",
        lambda w, ref, columns, column, added: w.session.table_input_error(
            ref, json.loads(columns), column, json.loads(added) if added else ()
        ),
        "why a relation cannot be scored by score(), or ''",
    ),
    _writer(
        "scorehouse_version_sql",
        "ref, relation, key",
        "VARCHAR",
        lambda w, ref, relation, key: w.version_sql(ref, relation, key or None),
        "the SQL expression of the version that scores each row (a gray release routes by key)",
    ),
    _writer(
        "scorehouse_scoring_note",
        "ref, output, method, key, form",
        "VARCHAR",
        lambda w, ref, output, method, key, form: w.call_note(
            ref, output, method or None, key or None, form or "predict"
        ),
        "the versions, artifacts and method of a predict() or score() call, for the scoring_runs hook",
    ),
    _writer(
        "scorehouse_input_hash_sql",
        "ref, relation",
        "VARCHAR",
        lambda w, ref, relation: w.input_hash_sql(ref, relation),
        "the SQL expression of a row's input hash",
    ),
    _writer(
        "scorehouse_fingerprint_sql",
        "ref, source",
        "VARCHAR",
        lambda w, ref, source: w.fingerprint_sql(ref, source),
        "the SELECT of an input's fingerprint (rows, order-free hash, schema hash) over a relation",
    ),
    _writer(
        "scorehouse_explain_sql",
        "ref, relation, top_k, key",
        "VARCHAR",
        lambda w, ref, relation, top_k, key: w.explain_sql(ref, relation, top_k, key or None),
        "the SQL expression of explain() on a relation's row",
    ),
    _writer(
        "scorehouse_schema_problems",
        "ref, columns",
        "VARCHAR",
        lambda w, ref, columns: json.dumps(w.session.schema_problems(ref, json.loads(columns))),
        "the features a relation lacks or mistypes, as JSON (the schema guard)",
    ),
    _writer(
        "scorehouse_outcome_sql",
        "ref, relation, column",
        "VARCHAR",
        lambda w, ref, relation, column: w.outcome_sql(ref, relation, column),
        "the SQL expression reading an outcome as the version's positive class (model_quality)",
    ),
    _writer(
        "scorehouse_training_rows_recorded",
        "ref",
        "BOOLEAN",
        lambda w, ref: w.session.records_training_rows(ref),
        "whether the version recorded the rows it trained on",
    ),
    # building blocks of the functions above (DuckDB: macros call them; Spark: UDFs of the same name)
    SqlFunction(
        "scorehouse_predict",
        "ref, row values, row type",
        SCORE,
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "predict() on the row's values as text",
    ),
    SqlFunction(
        "scorehouse_predict_label",
        "ref, row values, row type",
        LABEL,
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "predict_label() on the row's values as text",
    ),
    SqlFunction(
        "scorehouse_predict_proba",
        "ref, row values, row type",
        PROBABILITIES,
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "predict_proba() on the row's values as text",
    ),
    SqlFunction(
        "scorehouse_explain",
        "ref, row values, row type, top_k",
        "as explain()",
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "explain() on the row's values as text",
    ),
    SqlFunction(
        "scorehouse_onnx_{model}",
        "struct_pack(features...)",
        "as predict_{model}",
        "function",
        BOTH,
        INTERNAL,
        "the prod version through onnxruntime (where predict_{model} is its SQL expression)",
    ),
    SqlFunction(
        "scorehouse_explain_{model}",
        "struct_pack(features...), top_k",
        "as explain()",
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "explain_{model}()'s typed function",
    ),
    SqlFunction(
        "scorehouse_check_input",
        "ref, row type",
        "BOOLEAN",
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "stops a query whose row lacks or mistypes a feature, in one line",
    ),
    SqlFunction(
        "scorehouse_table_query", "ref, table", "VARCHAR", "function", DUCKDB_ONLY, INTERNAL, "the query score() runs"
    ),
    SqlFunction(
        "scorehouse_check_table",
        "ref, row type",
        "BOOLEAN",
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "stops score() on a table that lacks or mistypes a feature, in one line",
    ),
    SqlFunction(
        "scorehouse_profile_json",
        "ref, relation",
        "VARCHAR",
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "the rows of scorehouse_features/bins/metrics as JSON",
    ),
    SqlFunction(
        "scorehouse_training_rows_json",
        "ref",
        "VARCHAR",
        "function",
        DUCKDB_ONLY,
        INTERNAL,
        "the rows of scorehouse_training_rows as JSON",
    ),
)
_ENGINE_NAMES = {"duckdb": "DuckDB", "spark": "Spark"}
WRITERS = tuple(f for f in FUNCTIONS if f.implementation is not None)


def declared(engine: str, models: Iterable[str] = ()) -> dict[str, SqlFunction]:
    """Every name scorehouse creates on `engine` (with `{model}` for each of `models`), and its declaration."""
    models = list(models)
    return {name: f for f in FUNCTIONS if engine in f.engines for name in f.names(models)}


def reference_table(audiences: tuple[str, ...] = (ANALYSTS, DBT)) -> str:
    """The Markdown reference table of the functions for `audiences` (docs/pages/sql.md's, `scorehouse functions`)."""
    lines = ["| name | arguments | returns | kind | engines | what |", "|---|---|---|---|---|---|"]
    seen: dict[str, list[str]] = {}
    rows: list[SqlFunction] = []
    for f in FUNCTIONS:
        if f.audience not in audiences:
            continue
        if f.name in seen:  # the same name on another engine (a table macro on DuckDB, a view on Spark)
            seen[f.name].append(f"{f.kind} ({_ENGINE_NAMES[f.engines[0]]})")
            continue
        seen[f.name] = [f"{f.kind} ({_ENGINE_NAMES[f.engines[0]]})" if len(f.engines) == 1 else f.kind]
        rows.append(f)
    for f in rows:
        merged = len(seen[f.name]) > 1
        engines = "DuckDB, Spark" if f.engines == BOTH or merged else _ENGINE_NAMES[f.engines[0]]
        kind = ", ".join(seen[f.name]) if merged else f.kind
        cell = lambda text: text.replace("|", "\\|")  # noqa: E731
        lines.append(f"| `{f.name}` | `{cell(f.call)}` | {cell(f.returns)} | {kind} | {engines} | {cell(f.summary)} |")
    return "\n".join(lines)
