"""Spark adapter: the DuckDB SQL surface, on a SparkSession.

    predict_<model>(named_struct(...))        the model's prod version
    predict('<ref>', struct(...))             any reference; features bound by name, extra fields ignored
    predict_label / predict_proba             the predicted class / a class -> probability map
    scorehouse_model_version('<ref>'), scorehouse_predict_sql(...), scorehouse_schema_problems(...),
    scorehouse_resolves('<ref>')              as in DuckDB, for the dbt macros
    temporary views scorehouse_features, scorehouse_bins   the training profiles, one row set per reference

References resolve once, on the driver, when register() runs. The models travel to the executors in
one broadcast (no shared filesystem needed); executors check their sha256 before loading them.
The UDFs are iterator-style Arrow UDFs (pyspark's arrow_udf: Arrow batches in and out, so a struct
arrives as the same StructArray DuckDB hands over, and a NULL struct scores NULL as in DuckDB); each
executor process keeps one onnxruntime session per version. Unless the session sets it,
register() raises spark.sql.execution.arrow.maxRecordsPerBatch from Spark's 10,000 to 100,000 rows:
fewer, larger batches per UDF call (measured in bench/spark.py).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Tuple  # noqa: UP035 (pyspark reads the UDF's type hints)

import pyarrow as pa

from . import events, spark_cache
from .errors import ScorehouseError
from .explain import EXPLANATION
from .model import OUTPUT_SQL_TYPES
from .profile import PROFILE_RELATIONS
from .registry import Registry
from .scoring import GENERIC_FUNCTIONS, Session, first_value, per_reference
from .sql import SPARK
from .surface import WRITERS
from .writer import SqlWriter

SPARK_TYPES = {
    "DOUBLE": "double",
    "VARCHAR": "string",
    "MAP(VARCHAR, DOUBLE)": "map<string,double>",
    "INTEGER": "int",
    "BIGINT": "bigint",
    "BOOLEAN": "boolean",
}
ARROW_BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"
ARROW_BATCH_ROWS = 100_000
EXPLANATION_TYPE = SPARK.arrow_type(EXPLANATION)  # explain()'s {baseline, margin, contributions}


def register(spark, registry=None, scorer: Session | None = None) -> Session:
    """Register the predict functions and profile views on `spark`; return the driver's Session."""
    from pyspark.sql.functions import arrow_udf

    registry = scorer.registry if scorer else registry if isinstance(registry, Registry) else Registry(registry)
    if spark.conf.get(ARROW_BATCH_CONF, None) is None:
        spark.conf.set(ARROW_BATCH_CONF, str(ARROW_BATCH_ROWS))
    scorer = Session.snapshot(registry)  # travels inside the UDFs: executors never read the registry
    shipped = {}  # every version, so pinned references work too; each verified on the driver
    for name, version in scorer.versions():
        try:
            shipped[(name, version)] = registry.export(name, version)
        except ScorehouseError as exc:  # only references to this version fail
            scorer.mark_broken(name, version, str(exc))
    scorer.loader = functools.partial(spark_cache.load, spark.sparkContext.broadcast(shipped))
    catalog = scorer.catalog

    # The ignores on arrow_udf below: pyspark's stubs list it only with a functionType, which it takes from
    # the function's type hints when none is given
    for card in scorer.default_cards():
        fn = arrow_udf(
            _fixed_udf(scorer, card.name, card.default_output),  # type: ignore[call-overload]  # as above
            SPARK_TYPES[OUTPUT_SQL_TYPES[card.default_output]],
        )
        spark.udf.register(f"predict_{card.name}", fn)
        spark.udf.register(f"scorehouse_onnx_{card.name}", fn)
        spark.udf.register(
            f"explain_{card.name}",
            arrow_udf(
                _fixed_explain_udf(scorer, card.name),  # type: ignore[call-overload]  # as above
                EXPLANATION_TYPE,
            ),
        )
    for output, function_name in GENERIC_FUNCTIONS.items():
        fn = _generic_udf(scorer, output)
        spark.udf.register(function_name, arrow_udf(fn, SPARK_TYPES[OUTPUT_SQL_TYPES[output]]))  # type: ignore[call-overload]  # as above

    spark.udf.register("explain", arrow_udf(_explain_udf(scorer), EXPLANATION_TYPE))  # type: ignore[call-overload]  # as above
    for writer in WRITERS:
        assert writer.implementation is not None  # WRITERS are the declarations with one
        spark.udf.register(
            writer.name, functools.partial(writer.implementation, SqlWriter(scorer, SPARK)), SPARK_TYPES[writer.returns]
        )
    _profile_views(spark, scorer, catalog.refs())
    _training_rows_view(spark, registry, scorer.versions())
    return scorer


def predict_sql(
    scorer: Session, ref: str, relation: str = "", output: str = "default", method: str = "", key: str = ""
) -> str:
    """The Spark SQL expression scoring `ref` on the current row, features bound by name (see SqlWriter.sql_call)."""
    return SqlWriter(scorer, SPARK).sql_call(ref, relation, output, method or None, key or None)


def _fixed_udf(scorer: Session, ref: str, output: str):
    trace = events.trace_id()

    def predict(batches: Iterator[pa.Array]) -> Iterator[pa.Array]:
        with _logged(scorer, trace):
            for structs in batches:
                yield scorer.predict_struct(ref, structs, output)

    return predict


def _generic_udf(scorer: Session, output: str):
    trace = events.trace_id()

    def predict(batches: Iterator[Tuple[pa.Array, pa.Array]]) -> Iterator[pa.Array]:  # noqa: UP006
        with _logged(scorer, trace):
            for refs, structs in batches:
                yield per_reference(refs, structs, lambda ref, part: scorer.predict_struct(ref, part, output))

    return predict


def _explain_udf(scorer: Session):
    trace = events.trace_id()

    def explain(batches: Iterator[Tuple[pa.Array, pa.Array, pa.Array]]) -> Iterator[pa.Array]:  # noqa: UP006
        with _logged(scorer, trace):
            for refs, structs, top_ks in batches:
                top_k = first_value(top_ks)
                yield per_reference(
                    refs, structs, lambda ref, part, top_k=top_k: scorer.explain_struct(ref, part, top_k)
                )

    return explain


def _fixed_explain_udf(scorer: Session, ref: str):
    """explain_<model>(struct, top_k): the prod version's explanations, its features typed."""
    trace = events.trace_id()

    def explain(batches: Iterator[Tuple[pa.Array, pa.Array]]) -> Iterator[pa.Array]:  # noqa: UP006
        with _logged(scorer, trace):
            for structs, top_ks in batches:
                yield scorer.explain_struct(ref, structs, first_value(top_ks))

    return explain


@contextlib.contextmanager
def _logged(scorer: Session, trace: str) -> Iterator[None]:
    """On an executor: the driver's trace id, and a `scored` event (rows, seconds) per task and version."""
    events.configure()
    events.set_trace_id(trace)
    try:
        yield
    finally:
        scorer.log_scored()


def _profile_views(spark, scorer: Session, refs: list[str]) -> None:
    """Create the temporary views scorehouse_features and scorehouse_bins: a model_ref column + the profile."""
    for relation, (rows_of, columns) in PROFILE_RELATIONS.items():
        rows = []
        for ref in refs:
            try:
                card = scorer.card(ref)
            except ScorehouseError:
                continue  # a version that does not load has no profile rows; using it says why
            if card.manifest.profile is not None:
                rows += [{"model_ref": ref, **row} for row in rows_of(card)]
        schema = "model_ref string, " + ", ".join(
            f"{SPARK.identifier(c)} {SPARK_TYPES.get(t, t.lower())}" for c, t in columns.items()
        )
        spark.createDataFrame(
            [tuple(r[c] for c in ["model_ref", *columns]) for r in rows], schema
        ).createOrReplaceTempView(f"scorehouse_{relation}")


def _training_rows_view(spark, registry: Registry, versions: list[tuple[str, int]]) -> None:
    """The temporary view scorehouse_training_rows: model_name, model_version and the hashes of the rows that
    trained each version (a version that did not record them has none)."""
    import pandas as pd

    frames = [
        pd.DataFrame({"model_name": name, "model_version": version, "row_hash": rows})
        for name, version in versions
        if (rows := _recorded_rows(registry, name, version))
    ]
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            {
                "model_name": pd.Series(dtype=str),
                "model_version": pd.Series(dtype="int32"),
                "row_hash": pd.Series(dtype=str),
            }
        )
    )
    spark.createDataFrame(
        rows.astype({"model_version": "int32"}), "model_name string, model_version int, row_hash string"
    ).createOrReplaceTempView("scorehouse_training_rows")


def _recorded_rows(registry: Registry, name: str, version: int) -> list[str] | None:
    try:
        return registry.training_rows(name, version)
    except ScorehouseError:
        return None  # a version that does not load: using it says why


def friendly_error(exc: Exception) -> str | None:
    """The scorehouse message inside a Spark error raised by a UDF, or None if there is none."""
    import re

    found = re.findall(r"scorehouse\.(?:errors|names)\.\w+: (.*)", str(exc))
    found = found or re.findall(r"\[USER_RAISED_EXCEPTION\] (.*?) SQLSTATE", str(exc))  # the SQL path's type check
    return found[-1].strip() if found else None
