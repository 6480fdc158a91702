"""Run a dbt project on Spark: start (or join) a SparkSession, register predict() and the profile
views on it, then `dbt build` through dbt-spark's session method, in this process.

    spark-submit spark_jobs/dbt_build.py [--registry DIR] [--master local[2]] [--project-dir DIR] [-- extra dbt args]
    python spark_jobs/dbt_build.py ...            (the same, with pyspark's own spark-submit)

The project defaults to the demo (dbt_project/demo); relative paths are taken from the project folder,
as the dbt-duckdb plugin takes them (the registry: --registry, else $SCOREHOUSE_REGISTRY, else the
project's scorehouse.yml, else <project>/registry). Scored marts are written as Parquet tables under
--warehouse-dir (default <project>/warehouse/spark).
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
    parser.add_argument("--data-dir", help="folder of the demo's raw CSV files (the dbt var data_dir; default "
                                           "<project>/data), made absolute for Spark")
    parser.add_argument("--command", default="build", help="the dbt command (default: build)")
    parser.add_argument("dbt_args", nargs="*", help="more arguments for dbt, after --")
    args = parser.parse_args(argv)

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # executors must run this interpreter
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    from dbt.cli.main import dbtRunner
    from pyspark.sql import SparkSession

    import udfs.spark
    from udfs.config import registry_path

    project = Path(args.project_dir).resolve()
    warehouse = Path(args.warehouse_dir or project / "warehouse" / "spark").resolve()
    warehouse.mkdir(parents=True, exist_ok=True)
    # A Derby metastore beside the tables keeps the catalog from one build to the next.
    spark = (SparkSession.builder.appName("scorehouse dbt").master(args.master)
             .config("spark.sql.warehouse.dir", str(warehouse))
             .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                     f"jdbc:derby:;databaseName={warehouse / 'metastore_db'};create=true")
             .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .enableHiveSupport()
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    udfs.spark.register(spark, registry_path(args.registry, base=project, start=project))
    data_dir = Path(args.data_dir or project / "data").resolve()
    result = dbtRunner().invoke([args.command, "--project-dir", str(project),
                                 "--profiles-dir", str(ROOT), "--target", "spark",
                                 "--vars", json.dumps({"data_dir": str(data_dir)}), *args.dbt_args])
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
