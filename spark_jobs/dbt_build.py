"""Run a dbt project on Spark: start (or join) a SparkSession, register predict() and the profile
views on it, then `dbt build` through dbt-spark's session method, in this process.

    spark-submit spark_jobs/dbt_build.py [--registry DIR] [--master local[2]] [--project-dir DIR]
                                         [--rollback-on-error] [-- extra dbt args]
    python spark_jobs/dbt_build.py ...            (the same, with pyspark's own spark-submit)

The project defaults to the demo (dbt_project/demo); relative paths are taken from the project folder,
as the dbt-duckdb plugin takes them (the registry: --registry, else $SCOREHOUSE_REGISTRY, else the
project's scorehouse.yml, else <project>/registry). Scored marts are written as Parquet tables under
--warehouse-dir (default <project>/warehouse/spark). After the build, the quality gates that errored are
reported (as `scorehouse monitor` does on DuckDB); with --rollback-on-error prod moves back where it may.
"""

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "dbt_project" / "demo"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", help="registry directory (env SCOREHOUSE_REGISTRY; default: see above)")
    parser.add_argument("--master", default=os.environ.get("SPARK_MASTER", "local[2]"))
    parser.add_argument("--project-dir", default=str(DEMO), help="the dbt project (default: the demo)")
    parser.add_argument("--warehouse-dir", help="where Spark keeps its tables (default <project>/warehouse/spark)")
    parser.add_argument(
        "--data-dir",
        help="folder of the demo's raw CSV files (the dbt var data_dir; default "
        "<project>/data), made absolute for Spark",
    )
    parser.add_argument("--command", default="build", help="the dbt command (default: build)")
    parser.add_argument(
        "--rollback-on-error",
        action="store_true",
        help="roll prod back where its version fails a quality gate and the one it replaced does not",
    )
    parser.add_argument("dbt_args", nargs="*", help="more arguments for dbt, after --")
    args = parser.parse_args(argv)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors must run this interpreter
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    from dbt.cli.main import dbtRunner
    from pyspark.sql import SparkSession

    import scorehouse.spark
    from scorehouse import events
    from scorehouse.config import registry_path

    project = Path(args.project_dir).resolve()
    warehouse = Path(args.warehouse_dir or project / "warehouse" / "spark").resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    # A Derby metastore beside the tables keeps the catalog from one build to the next.
    spark = (
        SparkSession.builder.appName("scorehouse dbt")
        .master(args.master)
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={warehouse / 'metastore_db'};create=true",
        )
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .enableHiveSupport()
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    events.configure()
    events.set_trace_id()  # until dbt's invocation_id is known: the trace of registering the functions
    registry = scorehouse.spark.register(spark, registry_path(args.registry, base=project, start=project)).registry
    data_dir = Path(args.data_dir or project / "data").resolve()
    result = dbtRunner().invoke(
        [
            args.command,
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(ROOT),
            "--target",
            "spark",
            "--vars",
            json.dumps({"data_dir": str(data_dir)}),
            *args.dbt_args,
        ]
    )
    target = target_path(project, args.dbt_args)
    try:  # the UDFs were registered before dbt chose its invocation_id: tie this job's trace id to it
        invocation = json.loads((target / "run_results.json").read_text())["metadata"]["invocation_id"]
        events.event(
            "dbt_invocation",
            f"dbt {args.command}: invocation {invocation}",
            invocation_id=invocation,
            success=result.success,
        )
    except (OSError, ValueError, KeyError):
        pass
    if args.command in ("build", "test"):
        monitor_quality(spark, registry, target, args.rollback_on_error)
    return 0 if result.success else 1


def target_path(project: Path, dbt_args: list[str]) -> Path:
    """Where dbt wrote run_results.json: --target-path, else $DBT_TARGET_PATH, else <project>/target."""
    for i, arg in enumerate(dbt_args):
        if arg == "--target-path" and i + 1 < len(dbt_args):
            return project / dbt_args[i + 1]
        if arg.startswith("--target-path="):
            return project / arg.split("=", 1)[1]
    return project / os.environ.get("DBT_TARGET_PATH", "target")


def monitor_quality(spark, registry, target: Path, rollback: bool) -> None:
    """Report the quality gates that errored in this build; with `rollback`, move prod back where it may."""
    from scorehouse.errors import ScorehouseError
    from scorehouse.monitor import monitor
    from scorehouse.sql import SPARK

    try:
        verdict = monitor(registry, target, lambda sql: [r.asDict() for r in spark.sql(sql).collect()], SPARK, rollback)
    except ScorehouseError as exc:
        print(f"scorehouse monitor: {exc}", file=sys.stderr)
        return
    if verdict.gates:
        for line in verdict.lines():
            print(f"scorehouse monitor: {line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
