"""One benchmark arm in a process of its own, so its peak memory is its own: prints one JSON line.

    python -m bench.arm ARM --warehouse W --registry R --model M --table T [--spec S] [--repeat 1] [--threads N]

The timed part is the scoring of table T (setup such as connecting, fetching rows for the in-memory
limit, or fitting the scikit-learn pipeline for the pandas round trip is not timed). Peak RSS is the
process's high-water mark, setup included.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

ARMS = (
    "limit",
    "duckdb_onnx",
    "duckdb_generic",
    "duckdb_compiled",
    "duckdb_predict",
    "duckdb_table",
    "duckdb_steps",
    "orbital",
    "pandas",
    "cold_start",
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.arm")
    parser.add_argument("arm", choices=ARMS)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--registry", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--spec", help="the model's spec file (the pandas and orbital arms fit the pipeline again)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, help="DuckDB's threads (and onnxruntime's for the limit); default: all cores"
    )
    args = parser.parse_args(argv)
    try:
        run = SETUP[args.arm](args)
    except Unsupported as exc:
        print(json.dumps({"arm": args.arm, "unsupported": str(exc)}))
        return 0
    seconds = float("inf")
    for _ in range(1 if args.arm == "cold_start" else args.repeat):  # a second start would not be cold
        begin = time.perf_counter()
        run()
        seconds = min(seconds, time.perf_counter() - begin)
    print(json.dumps({"arm": args.arm, "seconds": seconds, "peak_rss_mb": round(peak_rss_mb(), 1)}))
    return 0


def peak_rss_mb() -> float:
    """This process's resident high-water mark (VmHWM: getrusage keeps the parent's from before exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Unsupported(Exception):
    """This arm cannot run for this model (say why in the results instead of a number)."""


def _connect(args):
    import scorehouse.duckdb

    con = scorehouse.duckdb.connect(args.warehouse, args.registry, read_only=True)
    if args.threads:
        con.execute(f"set threads = {int(args.threads)}")
    return con


def _features(args) -> list[str]:
    from scorehouse.registry import Registry

    registry = Registry(args.registry)
    return [f.name for f in registry.card(*registry.resolve(args.model)).features]


def _sql_arm(method: str | None):
    def setup(args):
        import scorehouse.duckdb
        from scorehouse.errors import ScorehouseError
        from scorehouse.scoring import Session

        con = _connect(args)
        try:
            expression = scorehouse.duckdb.predict_sql(Session(args.registry), args.model, "t", "score", method or "")
        except ScorehouseError as exc:
            raise Unsupported(str(exc)) from None
        return _warm(con, f"select sum({expression}) from {{}} as t", args.table)

    return setup


def _limit(args):
    import onnxruntime as ort

    from scorehouse.registry import Registry

    registry = Registry(args.registry)
    model = registry.load(*registry.resolve(args.model))
    with _connect(args) as con:
        table = con.sql(f"select * from {args.table}").to_arrow_table()
    feeds = model.inputs({n: table.column(n) for n in table.column_names})
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(model.onnx_bytes, options, providers=["CPUExecutionProvider"])
    names = model.output_names(model.roles_for(model.default_output))
    return lambda: session.run(names, feeds)


def _generic(args):
    return _warm(_connect(args), f"select sum(predict('{args.model}', t)) from {{}} as t", args.table)


def _table(args):
    """The table form as an analyst types it: score_<model>('<table>') (in steps where the model allows)."""
    from scorehouse.sql import DUCKDB

    con = _connect(args)
    query = f"select sum(prediction) from score_{args.model}({DUCKDB.literal(args.table)})"
    return lambda: con.execute(query).fetchall()


def _steps(args):
    """The table form in steps whatever the model's size (method 'sql'): what staged.MAX_NODES weighs."""
    con = _connect(args)
    query = con.execute(
        "select scorehouse_score_sql(?, ?, 'score', 'sql', '', 'prediction', '')", [args.model, args.table]
    ).fetchone()[0]
    if not query:
        raise Unsupported("no steps for this model (no explanations, or a split the steps do not cover)")
    return lambda: con.execute(f"select sum(prediction) from ({query})").fetchall()


def _warm(con, query: str, table: str):
    """Run `query` once on a few rows (model load, first-call costs), then return the full run."""
    con.execute(query.format(f"(select * from {table} limit 2048)")).fetchall()
    return lambda: con.execute(query.format(table)).fetchall()


def _orbital(args):
    """orbital's own SQL for the same scikit-learn pipeline (fitted again here: same spec, same seed)."""
    import orbital
    import orbital.types as ot

    pipeline, spec, positive = _pipeline(args)
    types = {n: ot.FloatColumnType() for n in spec.numeric} | {n: ot.StringColumnType() for n in spec.categorical}
    try:
        query = orbital.export_sql(args.table, orbital.parse_pipeline(pipeline, types), dialect="duckdb")
    except Exception as exc:  # noqa: BLE001 - report what orbital cannot do instead of a number
        raise Unsupported(f"orbital: {type(exc).__name__}: {exc}") from None
    con = _connect(args)
    columns = [d[0] for d in con.execute(f"select * from ({query}) limit 0").description]
    # orbital names them after skl2onnx's outputs: e.g. output_probability.<class>, variable.target_0
    found = [c for c in columns if (c.endswith(f".{positive}") if positive else "label" not in c)]
    if len(found) != 1:
        raise RuntimeError(f"no single score column among orbital's {columns}")
    column = found[0]
    return lambda: con.execute(f'select sum("{column}") from ({query})').fetchall()


def _pandas(args):
    """Fetch the table into pandas, score with scikit-learn, write the scores back as a table."""
    import duckdb

    pipeline, spec, positive = _pipeline(args)
    scratch = args.warehouse + ".pandas.duckdb"

    def run():
        with duckdb.connect(args.warehouse, read_only=True) as con:
            frame = con.sql(f"select * from {args.table}").df()
        for name in spec.categorical:
            frame[name] = frame[name].fillna("")
        if spec.task == "regression":
            frame["score"] = pipeline.predict(frame[spec.features])
        else:
            frame["score"] = pipeline.predict_proba(frame[spec.features])[:, list(pipeline.classes_).index(positive)]
        with duckdb.connect(scratch) as out:
            out.execute("create or replace table scored as select * from frame")

    return run


def _cold_start(args):
    """A fresh connection's first predict(): connect, register, verify and load the model, score one row.

    Python's own start and imports are not counted: a warehouse session has paid them already.
    """
    import onnxruntime  # noqa: F401

    struct = ", ".join(f'"{f}" := "{f}"' for f in _features(args))

    def run():
        with _connect(args) as con:
            con.execute(f"select predict_{args.model}(struct_pack({struct})) from {args.table} limit 1").fetchall()

    return run


def _pipeline(args):
    from scorehouse.manifest import Version
    from scorehouse.registration.spec import load_spec
    from scorehouse.registration.training import read_source, train
    from scorehouse.registry import Registry

    registry = Registry(args.registry)
    manifest = registry.card(*registry.resolve(args.model)).manifest
    spec = load_spec(args.spec)
    candidate = train(spec, read_source(spec, args.warehouse))
    assert Version.read(candidate.manifest).training.fingerprint == manifest.training.fingerprint
    return candidate.pipeline, spec, manifest.positive_class


SETUP = {
    "limit": _limit,
    "duckdb_onnx": _sql_arm("onnx"),
    "duckdb_generic": _generic,
    "duckdb_compiled": _sql_arm("sql"),
    "duckdb_predict": _sql_arm(None),
    "duckdb_table": _table,
    "duckdb_steps": _steps,
    "orbital": _orbital,
    "pandas": _pandas,
    "cold_start": _cold_start,
}


if __name__ == "__main__":
    sys.exit(main())
