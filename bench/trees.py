"""onnxruntime on a boosted-tree classifier, before and after udfs/registration/onnx_graph.py's rewrite, side by side.

    python -m bench.trees [--rows 100000] [--batch 100000] [--repeat 5]

Trains the demo GBT (mortgage_deny, 100 trees) and times, on the same resampled real rows with one
onnxruntime thread (as inside DuckDB and Spark), the probabilities of:
  the graph skl2onnx exports   one TreeEnsembleClassifier
  the stored graph             TreeEnsembleRegressor + Sigmoid, categories as int64 codes
                               (udfs/registration/onnx_graph.py)
and scikit-learn's own predict_proba, each on the prepared inputs; best of --repeat, interleaved.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.__main__ import PROJECT, build_workspace, interleaved_best, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.trees", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100_000, help="rows per onnxruntime call")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    import duckdb
    import onnxruntime as ort
    import pandas as pd

    from scorehouse.model import LoadedModel
    from scorehouse.registration.spec import load_spec
    from scorehouse.registration.training import export_onnx, read_source, train
    from scorehouse.schema import model_inputs

    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-trees-") as tmp:
        env = build_workspace(Path(tmp), {})
        spec = load_spec(PROJECT / "training" / "mortgage_deny.yml")
        candidate = train(spec, read_source(spec, env["SCOREHOUSE_WAREHOUSE"]))
        with duckdb.connect(env["SCOREHOUSE_WAREHOUSE"], read_only=True) as con:
            source = con.sql("select * from features_mortgage").to_arrow_table()
    rows = source.take(np.random.default_rng(0).integers(0, source.num_rows, args.rows))
    model = LoadedModel(candidate.manifest, candidate.onnx_bytes)
    columns = {n: rows.column(n) for n in rows.column_names}
    feeds = model_inputs(spec.name, model.features, columns)  # strings: what scikit-learn and skl2onnx's graph take
    coded = model.inputs(columns)  # what the stored graph takes
    frame = pd.DataFrame({n: v.reshape(-1) for n, v in feeds.items()})
    probabilities = candidate.manifest["onnx_outputs"]["probabilities"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1

    exported = export_onnx(spec, candidate.pipeline)[0].SerializeToString()
    before, after = (
        ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        for graph in (exported, candidate.onnx_bytes)
    )

    def scores(session, inputs):
        return lambda: [
            session.run([probabilities], {k: v[i : i + args.batch] for k, v in inputs.items()})
            for i in range(0, args.rows, args.batch)
        ]

    runs = {
        "skl2onnx's graph (TreeEnsembleClassifier)": scores(before, feeds),
        "stored graph (TreeEnsembleRegressor + Sigmoid, category codes)": scores(after, coded),
        "scikit-learn predict_proba": lambda: candidate.pipeline.predict_proba(frame),
    }
    same = np.abs(before.run([probabilities], feeds)[0] - after.run([probabilities], coded)[0]).max()
    results = interleaved_best(args.repeat, runs)
    print(
        f"mortgage_deny (GradientBoostingClassifier, 100 trees), {args.rows:,} resampled rows, "
        f"{args.batch:,} rows per call, one thread; max |difference| of the two graphs: {same:.1e}\n"
    )
    print(markdown_table(results, args.rows, "skl2onnx's graph (TreeEnsembleClassifier)", "speed vs skl2onnx's graph"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
