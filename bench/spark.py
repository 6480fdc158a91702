"""Benchmark predict() on Spark local[2] against MLflow's spark_udf, side by side in one run.

    python -m bench.spark [--rows 2000000] [--repeat 3] [--batch-size N]

Same model (the demo mortgage_deny GBT spec, trained once: this run's scikit-learn pipeline goes to
MLflow, its ONNX export to the registry), same resampled rows (Parquet), same Spark session:
  scorehouse   predict_mortgage_deny(named_struct(...)): onnxruntime in an iterator Arrow UDF
  mlflow       mlflow.pyfunc.spark_udf of the scikit-learn pipeline (predict_proba)
Both read the Parquet file and write to Spark's no-op sink; best of --repeat, interleaved.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.__main__ import FEATURE_TABLES, PROJECT, build_workspace, interleaved_best, markdown_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="spark.sql.execution.arrow.maxRecordsPerBatch for both (default: what register() sets)")
    args = parser.parse_args(argv)
    os.environ["PYSPARK_PYTHON"] = sys.executable

    import duckdb
    import mlflow.pyfunc
    import mlflow.sklearn
    from pyspark.sql import SparkSession

    import udfs.spark
    from udfs.registry import Registry
    from udfs.spec import load_spec
    from udfs.training import read_source, train

    model = "mortgage_deny"
    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-spark-") as tmp:
        folder = Path(tmp)
        print(f"building the workspace in {tmp} ...", file=sys.stderr, flush=True)
        env = build_workspace(folder, model)
        spec = load_spec(PROJECT / "training" / f"{model}.yml")
        candidate = train(spec, read_source(spec, env["SCOREHOUSE_WAREHOUSE"]))
        registry = Registry(folder / "bench-registry")
        version = registry.register(candidate.manifest, candidate.files)
        registry.promote(model, version)
        # MLflow's own format for a scikit-learn model (its loader, not scorehouse's, unpickles it)
        mlflow.sklearn.save_model(candidate.pipeline, str(folder / "mlflow-model"), pyfunc_predict_fn="predict_proba",
                                  serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)

        with duckdb.connect(env["SCOREHOUSE_WAREHOUSE"], read_only=True) as con:
            source = con.sql(f"select * from {FEATURE_TABLES[model]}").to_arrow_table()
        picks = np.random.default_rng(0).integers(0, source.num_rows, args.rows)
        frame = source.take(picks).to_pandas()
        for name in spec.categorical:  # both paths get the same inputs: a NULL category is ''
            frame[name] = frame[name].fillna("")
        frame.to_parquet(folder / "rows.parquet")

        builder = (SparkSession.builder.master("local[2]").appName("scorehouse bench")
                   .config("spark.ui.enabled", "false").config("spark.driver.memory", "4g"))
        if args.batch_size:
            builder = builder.config(udfs.spark.ARROW_BATCH_CONF, str(args.batch_size))
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        scorer = udfs.spark.register(spark, registry)
        batch_size = spark.conf.get(udfs.spark.ARROW_BATCH_CONF)
        rows = spark.read.parquet(str(folder / "rows.parquet")).cache()
        rows.count()
        rows.createOrReplaceTempView("bench_rows")
        ours = udfs.spark.predict_sql(scorer, model, "bench_rows")
        theirs = mlflow.pyfunc.spark_udf(spark, str(folder / "mlflow-model"), result_type="array<double>",
                                         env_manager="local")
        spark.udf.register("mlflow_predict", theirs)
        columns = ", ".join(spec.features)
        print(f"timing {args.rows:,} rows, best of {args.repeat} ...", file=sys.stderr, flush=True)
        results = interleaved_best(args.repeat, {
            "scorehouse predict() (onnxruntime, Arrow UDF)": lambda: spark.sql(
                f"select {ours} as p from bench_rows").write.format("noop").mode("overwrite").save(),
            "MLflow spark_udf (scikit-learn predict_proba)": lambda: spark.sql(
                f"select mlflow_predict(struct({columns}))[1] as p from bench_rows")
                .write.format("noop").mode("overwrite").save(),
        })
        spark.stop()

    print(f"\n{model} (GradientBoostingClassifier, 100 trees), {args.rows:,} resampled rows, Spark local[2], "
          f"maxRecordsPerBatch={batch_size}, {os.cpu_count()} cores\n")
    print(markdown_table(results, args.rows, "MLflow spark_udf (scikit-learn predict_proba)", "speed vs MLflow"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
