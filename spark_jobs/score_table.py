"""Score a table or a Parquet dataset with a registry model on Spark, and write the result.

    spark-submit spark_jobs/score_table.py --model mortgage_deny --input data/features.parquet \\
        --output data/scored.parquet [--registry registry] [--partition-by col] [--key application_id]

Input and output are Parquet paths (anything with a '/' or ending in .parquet) or table names.
Every input column is kept; the model's features are bound by name; the job adds <score column>,
model_name and model_version. A path output is written beside itself and renamed into place, so a
reader sees the old or the new output, never a half-written one; with --partition-by only the
partitions present in the input are replaced. Rows out are counted and must equal rows in.
"""

import argparse
import logging
import os
import sys
import uuid


def is_path(name: str) -> bool:
    return "/" in name or name.endswith(".parquet")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model reference: name, name@alias or name@version")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--registry", help="registry directory (env SCOREHOUSE_REGISTRY; default ./registry)")
    parser.add_argument("--score-column", default="score")
    parser.add_argument("--output-kind", default="default", choices=["default", "score", "label", "probabilities"])
    parser.add_argument("--partition-by", action="append", default=[], help="overwrite only these partitions")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import scorehouse.spark
    from scorehouse import events
    from scorehouse.errors import ScorehouseError
    from scorehouse.sql import SPARK

    events.configure()
    events.set_trace_id()
    spark = SparkSession.builder.appName(f"scorehouse score {args.model}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    try:
        scorer = scorehouse.spark.register(spark, args.registry)
        name, version = scorer.resolve(args.model)
        source = spark.read.parquet(args.input) if is_path(args.input) else spark.table(args.input)
        rows_in = source.count()
        events.event(
            "scoring_job",
            f"scoring {rows_in} rows of {args.input} with {name} version {version}",
            model=name,
            version=version,
            input=args.input,
            rows_in=rows_in,
        )
        source.createOrReplaceTempView("scorehouse_input")
        expression = scorehouse.spark.predict_sql(scorer, args.model, "scorehouse_input", args.output_kind)
        column = SPARK.identifier(args.score_column)
        scored = (
            spark.sql(f"select scorehouse_input.*, {expression} as {column} from scorehouse_input")
            .withColumn("model_name", F.lit(name))
            .withColumn("model_version", F.lit(version))
        )
        rows_out = write(spark, scored, args.output, args.partition_by)
        if rows_out != rows_in:
            raise ScorehouseError(f"{rows_in} rows in but {rows_out} rows written to {args.output}")
        events.event(
            "scored_job",
            f"wrote {rows_out} rows to {args.output} (model {name} version {version})",
            model=name,
            version=version,
            output=args.output,
            rows_in=rows_in,
            rows_out=rows_out,
        )
        return 0
    except ScorehouseError as exc:
        events.event("failed", str(exc), logging.ERROR, model=args.model)
        return 1
    except Exception as exc:  # a failure inside a UDF arrives wrapped by Spark: show our message
        message = scorehouse.spark.friendly_error(exc)
        if message is None:
            raise
        events.event("failed", message, logging.ERROR, model=args.model)
        return 1
    finally:
        spark.stop()


def write(spark, frame, output: str, partition_by: list[str]) -> int:
    """Write `frame`, replacing the output (or its partitions) atomically; return the rows written."""
    if not is_path(output):
        if partition_by:
            spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
            frame.write.mode("overwrite").insertInto(output) if spark.catalog.tableExists(
                output
            ) else frame.write.partitionBy(*partition_by).saveAsTable(output)
        else:
            frame.write.mode("overwrite").saveAsTable(output)
        return spark.table(output).count()
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    target = jvm.org.apache.hadoop.fs.Path(output)
    fs = target.getFileSystem(conf)
    staging = jvm.org.apache.hadoop.fs.Path(f"{output.rstrip('/')}.staging-{uuid.uuid4().hex}")
    frame.write.partitionBy(*partition_by).parquet(staging.toString())
    written = spark.read.parquet(staging.toString()).count()
    if partition_by and fs.exists(target):
        # replace only the partitions this run wrote, each by a rename
        for status in fs.listStatus(staging):
            if status.isDirectory():
                destination = jvm.org.apache.hadoop.fs.Path(target, status.getPath().getName())
                backup = jvm.org.apache.hadoop.fs.Path(f"{destination.toString()}.old-{uuid.uuid4().hex}")
                if fs.exists(destination):
                    fs.rename(destination, backup)
                fs.rename(status.getPath(), destination)
                fs.delete(backup, True)
        fs.delete(staging, True)
    else:
        backup = jvm.org.apache.hadoop.fs.Path(f"{output.rstrip('/')}.old-{uuid.uuid4().hex}")
        if fs.exists(target):
            fs.rename(target, backup)
        fs.rename(staging, target)
        fs.delete(backup, True)
    return written


if __name__ == "__main__":
    sys.exit(main())
