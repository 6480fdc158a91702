"""Benchmark predict() on Spark local[2] against MLflow's spark_udf, side by side in one run.

    python -m bench.spark [--rows 2000000] [--repeat 3] [--batch-size N] [--json]

For the demo GBT (100 trees) and a logistic regression on the same mortgage features, on the same
resampled rows (Parquet, cached) in one Spark session:
  predict()      predict_<model>(named_struct(...)): onnxruntime in an iterator Arrow UDF
  SQL expression predict()'s one SQL expression, written from the explanation (no Python at scoring time)
  table form     the table form's query in steps (udfs/staged.py), as dbt's scorehouse.score() writes it
  MLflow         mlflow.pyfunc.spark_udf of the same scikit-learn pipeline (predict_proba)
All write to Spark's no-op sink; best of --repeat, interleaved. Run by `python -m bench` too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.__main__ import MODELS, build_workspace, interleaved_best, markdown_table

SPARK_MODELS = ["mortgage_deny", "mortgage_logistic"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.spark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="spark.sql.execution.arrow.maxRecordsPerBatch for all (default: what register() sets)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line for python -m bench")
    args = parser.parse_args(argv)
    os.environ["PYSPARK_PYTHON"] = sys.executable

    import duckdb
    import mlflow.pyfunc
    import mlflow.sklearn
    from pyspark.sql import SparkSession

    import scorehouse.spark
    from scorehouse.registration.spec import load_spec
    from scorehouse.registration.training import read_source, train
    from scorehouse.registry import Registry
    from scorehouse.sql import SPARK
    from scorehouse.writer import SqlWriter

    sections, ratios = [], {}
    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-spark-") as tmp:
        folder = Path(tmp)
        print(f"building the workspace in {tmp} ...", file=sys.stderr, flush=True)
        env = build_workspace(folder, {m: MODELS[m] for m in SPARK_MODELS})
        registry = Registry(env["SCOREHOUSE_REGISTRY"])
        with duckdb.connect(env["SCOREHOUSE_WAREHOUSE"], read_only=True) as con:
            source = con.sql("select * from features_mortgage").to_arrow_table()
        frame = source.take(np.random.default_rng(0).integers(0, source.num_rows, args.rows)).to_pandas()
        specs = {m: load_spec(folder / f"{m}.yml") for m in SPARK_MODELS}
        for name in specs["mortgage_deny"].categorical:  # every path gets the same inputs: a NULL category is ''
            frame[name] = frame[name].fillna("")
        frame.to_parquet(folder / "rows.parquet")

        builder = (
            SparkSession.builder.master("local[2]")
            .appName("scorehouse bench")
            .config("spark.ui.enabled", "false")
            .config("spark.driver.memory", "4g")
        )
        if args.batch_size:
            builder = builder.config(scorehouse.spark.ARROW_BATCH_CONF, str(args.batch_size))
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("OFF")  # tree ensembles print codegen fallbacks at ERROR
        scorer = scorehouse.spark.register(spark, registry)
        batch_size = spark.conf.get(scorehouse.spark.ARROW_BATCH_CONF)
        rows = spark.read.parquet(str(folder / "rows.parquet")).cache()
        rows.count()
        rows.createOrReplaceTempView("bench_rows")
        for model, spec in specs.items():
            candidate = train(spec, read_source(spec, env["SCOREHOUSE_WAREHOUSE"]))
            # MLflow's own format for a scikit-learn model (its loader, not scorehouse's, unpickles it)
            mlflow.sklearn.save_model(
                candidate.pipeline,
                str(folder / f"mlflow-{model}"),
                pyfunc_predict_fn="predict_proba",
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            )
            spark.udf.register(
                f"mlflow_{model}",
                mlflow.pyfunc.spark_udf(
                    spark, str(folder / f"mlflow-{model}"), result_type="array<double>", env_manager="local"
                ),
            )
            runs = {"predict() (ONNX Arrow UDF)": scorehouse.spark.predict_sql(scorer, model, "t", "score", "onnx")}
            if SqlWriter(scorer, SPARK).scoring_choice(model, "score")[0] is not None:
                runs["SQL expression"] = scorehouse.spark.predict_sql(scorer, model, "t", "score", "sql")
            runs["MLflow spark_udf (scikit-learn)"] = f"mlflow_{model}(struct({', '.join(spec.features)}))[1]"
            queries = {path: f"select {expression} as p from bench_rows as t" for path, expression in runs.items()}
            steps = SqlWriter(scorer, SPARK).table_sql(model, "bench_rows", "default", kept=rows.columns)
            if steps:
                queries["table form in steps"] = f"select prediction as p from ({steps}) as s"
            print(f"timing {model}, {args.rows:,} rows, best of {args.repeat} ...", file=sys.stderr, flush=True)
            results = interleaved_best(
                args.repeat,
                {
                    path: (lambda q=query: spark.sql(q).write.format("noop").mode("overwrite").save())
                    for path, query in queries.items()
                },
            )
            baseline = "MLflow spark_udf (scikit-learn)"
            ratios[model] = {path: results[baseline] / seconds for path, seconds in results.items()}
            sections.append(
                f"{model} ({type(candidate.pipeline[-1]).__name__}), {args.rows:,} resampled rows, "
                f"maxRecordsPerBatch={batch_size}\n\n" + markdown_table(results, args.rows, baseline, "speed vs MLflow")
            )
        spark.stop()

    page = "\n\n".join(sections)
    print(json.dumps({"markdown": page, "ratios": ratios}) if args.json else page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
