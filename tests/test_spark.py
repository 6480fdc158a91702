"""Spark: the same predict(), dbt project and guards on Spark local[2] and a real standalone cluster."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from scorehouse.sql import SPARK
from scorehouse.writer import SqlWriter

from helpers import ROOT, install_package, read_parquet_table, run_dbt_on_spark, run_results

pytest.importorskip("pyspark", reason="the spark extra is not installed: pip install -e '.[spark]'")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java 17; none found on PATH or in JAVA_HOME", allow_module_level=True)

pytestmark = pytest.mark.spark
SPARK_HOME = Path(__import__("pyspark").__file__).parent
MARTS = {
    "mortgage_deny": ("features_mortgage", "mart_mortgage_risk", "application_id", "deny_probability"),
    "diamond_price": ("features_diamonds", "mart_diamond_prices", "diamond_id", "predicted_price"),
}


@pytest.fixture(scope="module")
def spark(spark_session, built):
    """The run's local Spark with the built demo's registry registered and its feature tables as views."""
    import scorehouse.spark

    scorehouse.spark.register(spark_session, built.registry_path)
    for table, _, _, _ in MARTS.values():
        spark_session.createDataFrame(built.query(f"select * from {table}")).createOrReplaceTempView(table)
    return spark_session


@pytest.mark.parametrize("model", sorted(MARTS))
def test_spark_scores_equal_duckdb_and_scikit_learn(spark, built, model):
    import scorehouse.spark
    from scorehouse.scoring import Session

    table, mart, key, column = MARTS[model]
    typed = scorehouse.spark.predict_sql(Session(built.registry), model, "t")
    got = (
        spark.sql(
            f"select {key}, {typed} as typed, predict('{model}', struct(*)) as generic, "
            f"scorehouse_model_version('{model}') as version from {table} as t"
        )
        .toPandas()
        .sort_values(key)
    )
    duck = built.query(f"select {key}, {column} from {mart} order by {key}")
    assert len(got) == len(duck) and got[key].tolist() == duck[key].tolist()
    assert_allclose(got["typed"], duck[column], atol=1e-6, rtol=0)
    assert_allclose(got["generic"], duck[column], atol=1e-6, rtol=0)
    features = built.query(f"select * from {table} order by {key}")
    tolerance = 1e-5 if model == "mortgage_deny" else built.candidates[model].manifest["parity"]["tolerance"]
    assert_allclose(got["typed"], built.sklearn_scores(model, features)["score"], atol=tolerance, rtol=0)
    assert set(got["version"]) == {1}


def test_predict_sql_equals_the_library_and_duckdb_on_spark(spark, estimator_models):
    """predict()'s one SQL expression, written per engine from explain.json, for every explained case."""
    import scorehouse.duckdb
    import scorehouse.spark
    from scorehouse import staged
    from scorehouse.errors import ScorehouseError
    from scorehouse.scoring import Session
    from scorehouse.sql import SPARK

    from helpers import sklearn_answers
    from test_sql_writer import EXPLAINED

    registry, models = estimator_models
    scorer = Session(registry)
    written = []
    for name in EXPLAINED:  # method 'sql' writes any size Spark runs compiled, and says why not beyond
        reason = staged.expression_reason(models[name][0].explanation, SPARK, forced=True)
        if reason is None:
            written.append(name)
        else:
            assert reason.startswith("its expression has ") and "more than spark runs as compiled code" in reason
            with pytest.raises(ScorehouseError, match="has no SQL expression for 'score': its expression has"):
                scorehouse.spark.predict_sql(scorer, name, "r", "score", "sql")
    assert "c_binary_logistic" in written, written
    # tree ensembles outgrow Java's 64 KB method limit; skip the code generation Spark would try and drop
    spark.conf.set("spark.sql.codegen.factoryMode", "NO_CODEGEN")
    spark.conf.set("spark.sql.codegen.wholeStage", "false")
    try:
        for name in written:
            candidate, rows = models[name]
            spark.createDataFrame(rows).createOrReplaceTempView("sql_rows")
            on_spark = (
                spark.sql(
                    f"select {scorehouse.spark.predict_sql(scorer, name, 'r', 'score', 'sql')} as v from sql_rows as r"
                )
                .toPandas()["v"]
                .to_numpy()
            )
            with scorehouse.duckdb.connect(":memory:", registry) as con:
                con.register("sql_rows", rows)
                on_duckdb = con.sql(
                    f"select {scorehouse.duckdb.predict_sql(scorer, name, 'r', 'score', 'sql')} as v from sql_rows as r"
                ).fetchnumpy()["v"]
            want = sklearn_answers(candidate, rows)
            assert_allclose(on_spark, on_duckdb, atol=1e-9, rtol=0, err_msg=name)
            assert_allclose(
                on_spark, want["score"], atol=candidate.manifest["parity"]["tolerance"], rtol=0, err_msg=name
            )
    finally:
        spark.conf.unset("spark.sql.codegen.factoryMode")
        spark.conf.unset("spark.sql.codegen.wholeStage")


def test_every_estimator_kind_and_loss_scores_on_spark_as_its_library_does(spark, estimator_models):
    """Every case of helpers.ESTIMATOR_CASES (XGBoost, LightGBM, count and positive targets included) through
    Spark's predict(), on a session registered with their registry."""
    import scorehouse.spark

    from helpers import sklearn_answers

    registry, models = estimator_models
    session = spark.newSession()
    scorehouse.spark.register(session, registry)
    for name, (candidate, rows) in models.items():
        output = "label" if candidate.manifest["task"] == "multiclass" else "score"
        function = "predict_label" if output == "label" else "predict"
        session.createDataFrame(rows).createOrReplaceTempView("case_rows")
        got = session.sql(f"select {function}('{name}', struct(*)) as v from case_rows").toPandas()["v"]
        want = sklearn_answers(candidate, rows)
        if output == "label":
            assert got.tolist() == want["label"].tolist(), name
        else:
            assert_allclose(
                got.to_numpy(), want["score"], atol=candidate.manifest["parity"]["tolerance"], rtol=0, err_msg=name
            )


def test_labels_probabilities_and_pinned_versions(spark, built):
    rows = spark.sql(
        "select application_id, predict_label('mortgage_deny@1', struct(*)) as label, "
        "predict_proba('mortgage_deny@prod', struct(*)) as p from features_mortgage"
    ).toPandas()
    rows = rows.sort_values("application_id")
    expected = built.sklearn_scores(
        "mortgage_deny", built.query("select * from features_mortgage order by application_id")
    )
    assert rows["label"].tolist() == expected["label"].tolist()
    assert_allclose([dict(p)["true"] for p in rows["p"]], expected["score"], atol=1e-5)


def spark_error(spark, sql):
    import scorehouse.spark

    with pytest.raises(Exception) as info:
        spark.sql(sql).collect()
    return scorehouse.spark.friendly_error(info.value)


def test_errors_read_as_in_duckdb(spark, built):
    import scorehouse.duckdb as engine

    con = engine.connect(built.warehouse, built.registry_path, read_only=True)
    cases = {
        "unknown model": (
            "select predict('mortgage_dny', struct(*)) from features_mortgage",
            "select predict('mortgage_dny', t) from features_mortgage t",
        ),
        "missing feature": (
            "select predict('mortgage_deny', struct(* except (lvr))) from features_mortgage",
            "select predict('mortgage_deny', t) from (select * exclude (lvr) from features_mortgage) t",
        ),
        "wrong type": (
            "select predict('mortgage_deny', struct(* except (lvr), cast(lvr as string) as lvr)) "
            "from features_mortgage",
            "select predict('mortgage_deny', t) "
            "from (select * replace (cast(lvr as varchar) as lvr) from features_mortgage) t",
        ),
        "unknown alias": (
            "select predict('mortgage_deny@staging', struct(*)) from features_mortgage",
            "select predict('mortgage_deny@staging', t) from features_mortgage t",
        ),
    }
    try:
        for label, (spark_sql, duck_sql) in cases.items():
            with pytest.raises(duckdb.Error) as info:
                con.sql(duck_sql).fetchall()
            duck_message = engine.friendly_error(info.value, built.registry_path)
            spark_message = spark_error(spark, spark_sql)
            if label == "missing feature":  # Spark and DuckDB list the input columns in their own order
                duck_message, spark_message = duck_message.split("; found")[0], spark_message.split("; found")[0]
            assert spark_message == duck_message, label
    finally:
        con.close()


def test_predict_sql_refuses_what_onnx_refuses_on_spark(spark, estimator_models, tmp_path):
    """predict()'s SQL checks each column's type as the ONNX path does, with the same message."""
    import scorehouse.spark
    from scorehouse.scoring import Session

    registry, models = estimator_models
    _, rows = models["c_binary_logistic"]
    spark.createDataFrame(rows.assign(lvr=rows.lvr.astype(str))).createOrReplaceTempView("mistyped_rows")
    scorer = Session(registry)
    sql = scorehouse.spark.predict_sql(scorer, "c_binary_logistic", "r", "score", "sql")
    with pytest.raises(Exception) as info:
        spark.sql(f"select {sql} as v from mistyped_rows as r").collect()
    message = scorehouse.spark.friendly_error(info.value)
    assert message == (
        "Model c_binary_logistic (version 1): feature 'lvr' has type VARCHAR, expected DOUBLE (numeric)"
    ), str(info.value)[:2000]
    expression = scorehouse.spark.predict_sql(scorer, "c_binary_logistic", "r", "score", "sql")
    # read from files: over rows held in the plan (a LocalRelation) Spark computes the whole projection while planning
    spark.createDataFrame(rows).write.parquet(str(tmp_path / "typed_rows"))
    spark.read.parquet(str(tmp_path / "typed_rows")).createOrReplaceTempView("typed_rows")
    plan = spark.sql(f"explain select {expression} as v from typed_rows as r").first()[0]
    assert "EXP(" in plan and "FileScan" in plan  # the expression is in the plan, computed per row
    assert "typeof" not in plan and "raise_error" not in plan  # folded away on well-typed input


def test_a_broken_version_or_a_path_reference_fails_alone_on_spark(spark, built, tmp_path):
    import scorehouse.spark

    registry = tmp_path / "registry"
    shutil.copytree(built.registry_path, registry)
    onnx = registry / "diamond_price" / "versions" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1])
    session = spark.newSession()
    scorehouse.spark.register(session, registry)
    for table, _, _, _ in MARTS.values():
        session.createDataFrame(built.query(f"select * from {table}")).createOrReplaceTempView(table)
    scored = session.sql("select count(predict('mortgage_deny', struct(*))) as n from features_mortgage").first()["n"]
    assert scored == 2381
    message = spark_error(session, "select predict('diamond_price', struct(*)) from features_diamonds")
    assert message.startswith("Model diamond_price v1: model.onnx failed its sha256 check (recorded ")
    assert "is not valid" in spark_error(
        session, f"select predict('{registry}/mortgage_deny@1', struct(*)) from features_mortgage"
    )


def test_profile_views_match_duckdb(spark, built):
    import scorehouse.duckdb as engine

    con = engine.connect(built.warehouse, built.registry_path, read_only=True)
    try:
        duck = (
            con.sql("select * from scorehouse_bins('diamond_price') order by feature, bin").to_arrow_table().to_pandas()
        )
    finally:
        con.close()
    got = spark.sql(
        "select * except (model_ref) from scorehouse_bins where model_ref = 'diamond_price' order by feature, bin"
    ).toPandas()
    pd.testing.assert_frame_equal(got.reset_index(drop=True), duck, check_dtype=False)


def test_executor_refuses_a_changed_artifact(built):
    import hashlib

    from scorehouse import spark_cache
    from scorehouse.errors import IntegrityError

    folder = built.registry_path / "mortgage_deny" / "versions" / "1"
    manifest = (folder / "manifest.json").read_bytes()
    onnx = bytearray((folder / "model.onnx").read_bytes())
    onnx[100] ^= 1

    class Shipped:
        value = {("mortgage_deny", 1): (manifest, hashlib.sha256(manifest).hexdigest(), bytes(onnx))}

    spark_cache._models.clear()
    with pytest.raises(IntegrityError, match="model.onnx failed its sha256 check on the executor"):
        spark_cache.load(Shipped, "mortgage_deny", 1)


OLDER_SCORING_RUNS = """
import sys
from pyspark.sql import SparkSession
warehouse = sys.argv[1]
spark = (SparkSession.builder.master("local[1]").config("spark.sql.warehouse.dir", warehouse)
         .config("spark.hadoop.javax.jdo.option.ConnectionURL",
                 f"jdbc:derby:;databaseName={warehouse}/metastore_db;create=true")
         .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={warehouse}")
         .config("spark.ui.enabled", "false")
         .enableHiveSupport().getOrCreate())
spark.sql("create schema if not exists scorehouse")
spark.sql("create table if not exists scorehouse.scoring_runs as select 'old-invocation' as invocation_id, "
          "'mart_of_an_older_release' as scored_relation, 7 as model_version, 'mortgage_deny' as model_name, "
          "cast(null as string) as input_relation, 'mortgage_deny' as model_ref, 'abc' as artifact_sha256, "
          "'onnx' as method, cast(5 as bigint) as rows_out, cast(5 as bigint) as rows_in, 'f' as input_fingerprint, "
          "current_timestamp() as started_at, current_timestamp() as finished_at")
"""


def write_older_scoring_runs(warehouse: Path) -> None:
    """scoring_runs in the Spark warehouse as a release before the history tables were declared could leave it:
    one row, the columns in another order, schema_hash missing."""
    warehouse.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", OLDER_SCORING_RUNS, str(warehouse)],
        check=True,
        cwd=warehouse,
        capture_output=True,
        timeout=600,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    )


@pytest.fixture(scope="module")
def demo_on_spark(built, tmp_path_factory):
    """The demo project built on Spark by spark_jobs/dbt_build.py: (Spark warehouse folder, the run, results by
    name)."""
    root = tmp_path_factory.mktemp("demo_on_spark")
    workspace = built.copy(root / "ws")
    write_older_scoring_runs(root / "spark")
    build = run_dbt_on_spark(workspace, root / "spark")
    return root / "spark", build, run_results(root / "spark" / "target", build.stdout)


@pytest.fixture(scope="module")
def dbt_on_spark(built, tmp_path_factory):
    """One dbt run on Spark of the bad-input project, which installs the scorehouse package.

    (workspace, Spark warehouse folder, the run, its results by node name, the base row of the cases)
    """
    from test_bad_input import INJECTED, first_row, write_bad_input_project

    INJECTED.unlink(missing_ok=True)
    root = tmp_path_factory.mktemp("dbt_on_spark")
    workspace, base, project = built.copy(root / "ws"), first_row(built), root / "bad_input"
    write_bad_input_project(project, base, workspace.registry_path)
    install_package(project)
    build = run_dbt_on_spark(workspace, root / "spark", "--project-dir", str(project))
    return workspace, root / "spark", build, run_results(root / "spark" / "target", build.stdout), base


def test_dbt_project_on_spark_matches_duckdb(built, demo_on_spark):
    warehouse, build, results = demo_on_spark
    demo = {name: r["status"] for name, r in results.items() if r["unique_id"].split(".")[0] in ("model", "test")}
    assert len(demo) == 32 and set(demo.values()) <= {"success", "pass"}, (demo, build.stdout[-4000:])
    for _, mart, key, column in MARTS.values():
        on_spark = read_parquet_table(warehouse, "scorehouse", mart).sort_values(key)
        on_duckdb = built.query(f"select * from {mart} order by {key}")
        assert len(on_spark) == len(on_duckdb)
        assert_allclose(on_spark[column].to_numpy(), on_duckdb[column].to_numpy(), atol=1e-6, rtol=0)
        assert set(on_spark["model_version"]) == {1}
    # the guards measured the same inputs the same way on both engines
    spark_history = read_parquet_table(warehouse, "scorehouse", "drift_history")
    demo_inputs = "input_relation in ('features_mortgage', 'features_diamonds')"  # other projects' builds share it
    duck_history = built.query(
        f"select * from drift_history where {demo_inputs} and invocation_id = (select "
        f"invocation_id from drift_history where {demo_inputs} "
        "order by recorded_at desc limit 1)"
    )
    merged = spark_history.merge(duck_history, on=["model_ref", "feature", "metric"], suffixes=("_spark", "_duckdb"))
    assert len(merged) == len(duck_history) == len(spark_history) > 0
    assert_allclose(merged.current_value_spark, merged.current_value_duckdb, rtol=1e-9, atol=1e-12)
    assert merged.level_spark.isna().all() and merged.level_duckdb.isna().all()
    # and the quality of the scores once the decisions arrived
    quality = read_parquet_table(warehouse, "scorehouse", "quality_mortgage").merge(
        built.query("select * from quality_mortgage"), on=["model_version", "metric"], suffixes=("_spark", "_duckdb")
    )
    assert len(quality) == 12 and set(quality.better_spark.dropna()) == {"higher", "lower"}  # counts: none
    assert quality.set_index("metric").value_spark["training_rows"] > 0  # the mart holds the training rows too
    assert_allclose(quality.value_spark, quality.value_duckdb, rtol=1e-9)
    # each row's input hash, and each scored input's fingerprint, are the same on both engines
    for _, mart, key, _ in MARTS.values():
        hashes = read_parquet_table(warehouse, "scorehouse", mart)[[key, "input_hash"]].merge(
            built.query(f"select {key}, input_hash from {mart}"), on=key
        )
        assert len(hashes) > 0 and (hashes.input_hash_x == hashes.input_hash_y).all()
    spark_runs = read_parquet_table(warehouse, "scorehouse", "scoring_runs").set_index("scored_relation")
    # the older layout's row is kept, schema_hash (added by the build) NULL in it; this build's values land by name
    older = spark_runs.loc["mart_of_an_older_release"]
    assert (older.model_version, older.rows_in, older.method) == (7, 5, "onnx") and pd.isna(older.schema_hash)
    duck_runs = built.query(
        "select * from scoring_runs where invocation_id = (select max_by(invocation_id, finished_at) from scoring_runs)"
    ).set_index("scored_relation")
    for column in (
        "model_version",
        "artifact_sha256",
        "method",
        "rows_in",
        "rows_out",
        "input_fingerprint",
        "schema_hash",
    ):
        assert (
            spark_runs.loc[["mart_mortgage_risk", "mart_diamond_prices"], column].tolist()
            == duck_runs.loc[["mart_mortgage_risk", "mart_diamond_prices"], column].tolist()
        ), column


def write_input(ws, path: Path) -> pd.DataFrame:
    features = ws.query("select * from features_mortgage order by application_id")
    features["batch"] = np.where(features.application_id % 2 == 0, "even", "odd")
    features.to_parquet(path)
    return features


SHORT_JOB_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # on 2 cores, JIT and GC threads cost a short job dear
SHORT_JOB_CONF = {
    "spark.driver.extraJavaOptions": SHORT_JOB_JVM,
    "spark.executor.extraJavaOptions": SHORT_JOB_JVM,
    "spark.ui.enabled": "false",
}


def start_job(*args, master="local[2]", env=None, conf=None, **popen) -> subprocess.Popen:
    """spark-submit spark_jobs/score_table.py without waiting; `conf` entries become --conf options."""
    options = [f"--conf={key}={value}" for key, value in {**SHORT_JOB_CONF, **(conf or {})}.items()]
    return subprocess.Popen(
        [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--master",
            master,
            *options,
            str(ROOT / "spark_jobs" / "score_table.py"),
            *args,
        ],
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, **(env or {})},
        **popen,
    )


def submit(*args, timeout=600, **options) -> subprocess.CompletedProcess:
    """Run spark_jobs/score_table.py with spark-submit to its end."""
    with start_job(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options) as job:
        try:
            stdout, stderr = job.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            job.kill()
            raise
    return subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)


def test_score_table_job_overwrites_atomically(built, tmp_path):
    features = write_input(built, tmp_path / "features.parquet")
    out = tmp_path / "scored"
    for _ in range(2):  # a second run replaces the first output whole
        result = submit(
            "--model",
            "mortgage_deny",
            "--input",
            str(tmp_path / "features.parquet"),
            "--output",
            str(out),
            "--registry",
            str(built.registry_path),
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    output = result.stdout + result.stderr  # spark-submit passes the Python driver's stderr to its stdout
    assert f"scoring {len(features)} rows" in output and f"wrote {len(features)} rows" in output
    scored = pd.read_parquet(out).sort_values("application_id")
    mart = built.query("select deny_probability from mart_mortgage_risk order by application_id")
    assert_allclose(scored["score"], mart["deny_probability"], atol=1e-6, rtol=0)
    assert set(scored["model_version"]) == {1} and not list(tmp_path.glob("scored.*"))
    partitioned = tmp_path / "by_batch"
    for _ in range(2):
        result = submit(
            "--model",
            "mortgage_deny@1",
            "--input",
            str(tmp_path / "features.parquet"),
            "--output",
            str(partitioned),
            "--partition-by",
            "batch",
            "--registry",
            str(built.registry_path),
        )
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert sorted(p.name for p in partitioned.iterdir() if p.is_dir()) == ["batch=even", "batch=odd"]
    assert len(pd.read_parquet(partitioned)) == len(features)
    failed = submit(
        "--model",
        "mortgage_dny",
        "--input",
        str(tmp_path / "features.parquet"),
        "--output",
        str(tmp_path / "nope"),
        "--registry",
        str(built.registry_path),
    )
    assert failed.returncode == 1 and "Model 'mortgage_dny' not found" in failed.stdout + failed.stderr
    assert not (tmp_path / "nope").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def standalone_cluster(tmp_path):
    """A Spark standalone master and two workers on 127.0.0.1, stopped at the end; logs kept on failure."""
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    port, ui = free_port(), free_port()
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_WORKER_DIR": str(tmp_path / "work"),
    }
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    processes = [
        subprocess.Popen(
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
            stdout=open(logs / "master.log", "w"),
            stderr=subprocess.STDOUT,
            env=env,
        )
    ]
    master = f"spark://127.0.0.1:{port}"
    for i in range(2):
        processes.append(
            subprocess.Popen(
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    master,
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "1",
                    "--memory",
                    "1g",
                    "--webui-port",
                    str(free_port()),
                ],
                stdout=open(logs / f"worker-{i}.log", "w"),
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
    deadline = time.time() + 90
    while time.time() < deadline:
        text = (logs / "master.log").read_text()
        if text.count("Registering worker") >= 2:
            break
        time.sleep(1)
    else:
        pytest.fail(f"the standalone cluster did not start in 90 s; logs in {logs}")
    yield master, logs
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_score_table_on_a_standalone_cluster(built, tmp_path, standalone_cluster):
    master, logs = standalone_cluster
    features = write_input(built, tmp_path / "features.parquet")
    out = tmp_path / "scored"
    # the job waits for both workers' executors before its first task (else a fast job may use only one)
    result = submit(
        "--model",
        "mortgage_deny",
        "--input",
        str(tmp_path / "features.parquet"),
        "--output",
        str(out),
        "--registry",
        str(built.registry_path),
        master=master,
        env={"SPARK_LOCAL_IP": "127.0.0.1"},
        timeout=600,
        conf={
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
        },
    )
    assert result.returncode == 0, f"logs in {logs}\n" + result.stderr[-4000:]
    scored = pd.read_parquet(out).sort_values("application_id")
    mart = built.query("select deny_probability from mart_mortgage_risk order by application_id")
    assert len(scored) == len(features)
    assert_allclose(scored["score"], mart["deny_probability"], atol=1e-6, rtol=0)
    # one executor ran on each of the two workers (each leaves work/<app>/<executor id>/stderr)
    executors = list((tmp_path / "work").rglob("stderr"))
    assert len(executors) == 2, executors


def write_repeated_input(ws, folder: Path, copies: int, files: int) -> pd.DataFrame:
    """features_mortgage repeated `copies` times, keyed by a unique row_id, as `files` Parquet files."""
    features = ws.query("select * from features_mortgage")
    repeated = pd.concat([features] * copies, ignore_index=True)
    repeated.insert(0, "row_id", np.arange(len(repeated)))
    folder.mkdir()
    for i in range(files):
        repeated.iloc[i::files].to_parquet(folder / f"part-{i:02d}.parquet", index=False)
    return repeated


SCORING_TASK = re.compile(r"Starting Python task execution - task \S+ in stage \S+ \(TID (\d+)\)")
FINISHED_TASK = re.compile(r"Finished task \S+ in stage \S+ \(TID (\d+)\)")
LOST_TASK = re.compile(
    r"Lost task (?P<partition>\d+)\.(?P<attempt>\d+) in stage (?P<stage>\d+)\.\d+ "
    r"\(TID (?P<tid>\d+)\).*ExecutorLostFailure"
)


def executor_pid(executor_dir: Path) -> int | None:
    """The executor JVM a worker started in `executor_dir` (its working directory), if it is alive."""
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and Path(os.readlink(proc / "cwd")) == executor_dir.resolve()
                and b"CoarseGrainedExecutorBackend" in (proc / "cmdline").read_bytes()
            ):
                return int(proc.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


def kill_an_executor_while_it_scores(work: Path, job: subprocess.Popen, timeout: float) -> dict:
    """SIGKILL the first executor JVM under `work` seen in the middle of a scoring task; say what was killed."""
    deadline = time.time() + timeout
    while time.time() < deadline and job.poll() is None:
        for stderr in sorted(work.glob("app-*/*/stderr")):
            text = stderr.read_text(errors="replace")
            running = set(SCORING_TASK.findall(text)) - set(FINISHED_TASK.findall(text))
            pid = executor_pid(stderr.parent) if running else None
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                return {
                    "pid": pid,
                    "app": stderr.parent.parent.name,
                    "executor": stderr.parent.name,
                    "tasks": running,
                    "job_running": job.poll() is None,
                }
        time.sleep(0.2)
    return {}


def test_a_killed_executor_is_replaced_and_the_output_stays_whole(built, tmp_path, standalone_cluster):
    """SIGKILL an executor JVM mid-job: Spark reruns its tasks elsewhere and the output is whole and correct."""
    master, logs = standalone_cluster
    features = write_repeated_input(built, tmp_path / "features", copies=96, files=8)
    out, driver_log = tmp_path / "scored", logs / "driver.log"
    with open(driver_log, "w") as log:
        job = start_job(
            "--model",
            "mortgage_deny",
            "--input",
            str(tmp_path / "features"),
            "--output",
            str(out),
            "--registry",
            str(built.registry_path),
            master=master,
            env={"SPARK_LOCAL_IP": "127.0.0.1"},
            conf={"spark.sql.files.maxPartitionBytes": "1m"},  # one task per input file
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        killed = kill_an_executor_while_it_scores(tmp_path / "work", job, timeout=180)
        assert killed, f"no executor was seen scoring before the job ended (exit {job.poll()}); logs in {logs}"
        assert killed["job_running"], f"the job had ended when {killed} was killed; logs in {logs}"
        returncode = job.wait(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert returncode == 0, f"killed {killed}; logs in {logs}\n" + driver_log.read_text()[-4000:]
    scored = pd.read_parquet(out)
    assert len(scored) == len(features), f"logs in {logs}"
    assert scored["row_id"].is_unique and sorted(scored["row_id"]) == features["row_id"].tolist(), f"logs in {logs}"
    assert len(list(out.glob("part-*.parquet"))) >= 8, f"fewer than 8 scoring tasks; logs in {logs}"
    mart = built.query("select application_id, deny_probability from mart_mortgage_risk")
    expected = scored.merge(mart, on="application_id", how="left", validate="many_to_one")
    assert_allclose(expected["score"], expected["deny_probability"], atol=1e-6, rtol=0, err_msg=f"logs in {logs}")
    # the recovery, as Spark tells it: the worker saw its executor die of SIGKILL (exit 137), the master replaced
    # it with a new executor, and the driver ran the task the dead executor held again
    executor = f"{killed['app']}/{killed['executor']}"
    worker_logs = "".join(log.read_text() for log in logs.glob("worker-*.log"))
    assert f"Executor {executor} finished with state EXITED message Command exited with code 137" in worker_logs, (
        f"killed {killed}; logs in {logs}"
    )
    assert f"Removing executor {executor} because it is EXITED" in (logs / "master.log").read_text(), f"logs in {logs}"
    executors = sorted(p.name for p in (tmp_path / "work" / killed["app"]).iterdir())
    assert len(executors) >= 3, f"no replacement executor was launched: {executors}; logs in {logs}"
    lost = [m for m in LOST_TASK.finditer(driver_log.read_text()) if m["tid"] in killed["tasks"]]
    assert lost, f"the driver did not report the killed task {killed['tasks']} lost; logs in {logs}"
    partition, attempt, stage = lost[0]["partition"], int(lost[0]["attempt"]), lost[0]["stage"]
    finished = "".join(stderr.read_text() for stderr in (tmp_path / "work").glob("app-*/*/stderr"))
    retries = [int(a) for a in re.findall(rf"Finished task {partition}\.(\d+) in stage {stage}\.\d+ ", finished)]
    assert any(a > attempt for a in retries), f"{lost[0][0]!r} was never run again to the end; logs in {logs}"


def _bad_input_cases():
    from test_bad_input import ERRORS, SCORED

    return sorted(SCORED) + sorted(ERRORS)


@pytest.mark.parametrize("case", _bad_input_cases())
def test_the_bad_input_table_holds_on_spark(spark, built, case):
    import scorehouse.spark

    from test_bad_input import ERRORS, SCORED, first_row, row_sql

    base = first_row(built)
    if case in SCORED:
        changes, stands_for = SCORED[case]
        row = row_sql(base, changes, "spark")
        got = spark.sql(
            f"select predict('mortgage_deny', {row}) as generic, predict_mortgage_deny({row}) as typed"
        ).first()
        expected = built.sklearn_scores("mortgage_deny", pd.DataFrame([{**base, **stands_for}]))["score"][0]
        assert got["generic"] == pytest.approx(expected, abs=1e-5)
        assert got["typed"] == pytest.approx(got["generic"], abs=1e-12)
    else:
        changes, message = ERRORS[case]
        row = row_sql(base, changes, "spark")
        for sql in (f"select predict('mortgage_deny', {row})", f"select predict_mortgage_deny({row})"):
            with pytest.raises(Exception) as error:
                spark.sql(sql).collect()
            friendly = scorehouse.spark.friendly_error(error.value)
            assert friendly is not None and friendly.startswith(message), (sql[:40], friendly)


def test_the_bad_input_table_holds_in_dbt_build_on_spark(dbt_on_spark):
    from test_bad_input import check_bad_input_build

    workspace, warehouse, build, results, base = dbt_on_spark
    assert build.returncode == 1, build.stdout[-3000:] + build.stderr[-2000:]  # the error cases fail it

    def scores(table):
        return read_parquet_table(warehouse, "scorehouse", table)["score"].tolist()

    check_bad_input_build(
        build.stdout,
        results,
        scores,
        workspace.sklearn_scores,
        base,
        type_names={"VARCHAR": "string", "INTEGER": "int"},
    )


def test_boolean_inputs_score_on_spark_as_on_duckdb(spark, built, tmp_path):
    """A model trained on BOOLEAN columns (as categories and as numbers) scores Spark's BooleanType columns."""
    import scorehouse.duckdb
    import scorehouse.spark
    from scorehouse.registration.spec import parse_spec
    from scorehouse.registration.training import read_source, train
    from scorehouse.registry import Registry
    from scorehouse.scoring import Session

    warehouse, registry = tmp_path / "booleans.duckdb", Registry(tmp_path / "registry")
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"attach '{built.warehouse}' as built (read_only)")
        con.execute(
            "create table applications as select application_id, dir, lvr, pbcr = 'yes' as pbcr, "
            "dmi = 'yes' as dmi, self = 'yes' as self, is_denied from built.features_mortgage"
        )
    spec = parse_spec(
        {
            "name": "bools",
            "task": "binary",
            "target": "is_denied",
            "source": {"table": "applications"},
            "estimator": {"kind": "logistic_regression", "params": {"max_iter": 1000}},
            "features": {"numeric": ["dir", "lvr", "self"], "categorical": ["pbcr", "dmi"]},
        }
    )
    candidate = train(spec, read_source(spec, warehouse))
    registry.promote("bools", registry.register(candidate.manifest, candidate.files))
    with scorehouse.duckdb.connect(warehouse, registry, read_only=True) as con:
        rows = con.sql("select * from applications order by application_id").to_arrow_table()
        on_duckdb = con.sql(
            "select predict_bools(struct_pack(dir, lvr, self, pbcr, dmi)) as p from applications "
            "order by application_id"
        ).fetchnumpy()["p"]
    session = spark.newSession()
    scorehouse.spark.register(session, registry)
    session.createDataFrame(
        rows.to_pandas(),
        "application_id int, dir double, lvr double, pbcr boolean, dmi boolean, self boolean, is_denied boolean",
    ).createOrReplaceTempView("applications")
    scorer = Session(registry)
    paths = {
        "typed": "predict_bools(named_struct('dir', a.dir, 'lvr', a.lvr, 'self', a.self, 'pbcr', a.pbcr, "
        "'dmi', a.dmi))",
        "generic": "predict('bools', struct(a.*))",
        "sql": scorehouse.spark.predict_sql(scorer, "bools", "a", "score", "sql"),
    }
    got = (
        session.sql(
            f"select a.application_id, {', '.join(f'{sql} as {name}' for name, sql in paths.items())} "
            "from applications as a"
        )
        .toPandas()
        .sort_values("application_id")
    )
    for name in paths:
        assert_allclose(got[name].to_numpy(), on_duckdb, atol=1e-6, rtol=0, err_msg=name)


def test_buckets_are_the_same_on_spark_duckdb_and_python(spark):
    """100k keys, integers and text: md5's bucket on Spark equals DuckDB's and scorehouse.sql.bucket's."""
    from scorehouse.sql import BUCKETS, DUCKDB, SPARK, bucket

    text_key = "concat('loan-', k)"
    keys = spark.sql(
        f"select {SPARK.bucket('k')} as b, {SPARK.bucket(text_key)} as t "
        "from (select id as k from range(100000)) order by k"
    ).toPandas()
    with duckdb.connect() as con:
        duck = con.sql(
            f"select {DUCKDB.bucket('k')} as b, {DUCKDB.bucket(text_key)} as t from range(100000) r(k) order by k"
        ).to_df()
    assert keys.b.tolist() == duck.b.tolist() == [bucket(k) for k in range(100_000)]
    assert keys.t.tolist() == duck.t.tolist() == [bucket(f"loan-{k}") for k in range(100_000)]
    assert abs((keys.b < 5 * BUCKETS // 100).mean() - 0.05) < 0.01


def test_row_hash_and_fingerprint_are_the_same_on_spark_and_duckdb(spark):
    """The values whose text differs between engines (decimal ties, float32 subnormals and overflow, NaN,
    non-ASCII text, booleans, NULLs) hash alike; so does the fingerprint of the whole input."""
    import duckdb

    from scorehouse.fingerprint import fingerprint_select, row_hash_sql
    from scorehouse.sql import DUCKDB, SPARK

    from test_observability import EDGE_ROWS, FEATURES, edge_table

    with duckdb.connect() as con:
        edge_table(con)
        duck = [h for (h,) in con.sql(f"select {row_hash_sql(FEATURES, '', DUCKDB)} from t").fetchall()]
        duck_print = con.sql(fingerprint_select(FEATURES, DUCKDB, "t")).fetchall()[0]
    rows = [(i, *row) for i, row in enumerate(EDGE_ROWS)]  # as Python values: pandas would turn NaN into NULL
    spark.createDataFrame(rows, "i long, x double, c string, b boolean").createOrReplaceTempView("edge_rows")
    got = spark.sql(f"select i, {row_hash_sql(FEATURES, '', SPARK)} as h from edge_rows order by i").collect()
    assert [r.h for r in got] == duck and len(got) == len(EDGE_ROWS)
    assert tuple(spark.sql(fingerprint_select(FEATURES, SPARK, "edge_rows")).collect()[0]) == duck_print


def test_explain_on_spark_equals_duckdb_and_refuses_a_version_without_explanations(spark, small, tmp_path):
    """A session of its own on a copy of the fast tier's registry (its models are explained), with a pipeline
    handed over fitted (not explained)."""
    import scorehouse.duckdb
    import scorehouse.spark
    from scorehouse.scoring import Session

    from test_explain import register_unexplained

    small = small.copy(tmp_path / "ws")
    register_unexplained(small)
    session = spark.newSession()
    scorehouse.spark.register(session, small.registry_path)
    features = small.query("select * from features_mortgage order by application_id")
    session.createDataFrame(features).createOrReplaceTempView("f")
    typed = SqlWriter(Session(small.registry), SPARK).explain_sql("mortgage_logit", "f", 11)
    got = session.sql(
        f"select application_id, explain('mortgage_logit', struct(*), 11) as e, {typed} as t "
        "from f order by application_id"
    ).collect()
    con = scorehouse.duckdb.connect(small.warehouse, registry=small.registry_path, read_only=True)
    duck = [
        r[0]
        for r in con.sql(
            "select explain('mortgage_logit', f, 11) from features_mortgage f order by application_id"
        ).fetchall()
    ]
    con.close()
    assert len(got) == len(duck) == 2381
    for row, expected in zip(got, duck):
        for explanation in (row.e, row.t):
            assert explanation.baseline == pytest.approx(expected["baseline"], abs=1e-12)
            assert explanation.margin == pytest.approx(expected["margin"], abs=1e-9)
            assert [(c.feature, c.value) for c in explanation.contributions] == [
                (c["feature"], c["value"]) for c in expected["contributions"]
            ]
    gbt = session.sql("select explain('mortgage_deny', struct(*), 11) as e from f order by application_id").collect()
    con = scorehouse.duckdb.connect(small.warehouse, registry=small.registry_path, read_only=True)
    duck_gbt = [
        r[0]
        for r in con.sql(
            "select explain('mortgage_deny', f, 11) from features_mortgage f order by application_id"
        ).fetchall()
    ]
    con.close()
    assert [r.e.margin for r in gbt] == pytest.approx([d["margin"] for d in duck_gbt], abs=1e-9)
    for row in gbt:  # additivity on Spark too
        assert row.e.baseline + sum(c.contribution for c in row.e.contributions) == pytest.approx(
            row.e.margin, abs=1e-9
        )
    # a NULL number and an unseen category, through the typed and the generic function, as DuckDB explains them
    odd = features[features.application_id == 17].copy()
    odd["lvr"], odd["self"] = None, "martian"
    session.createDataFrame(odd, schema=session.table("f").schema).createOrReplaceTempView("odd")
    typed_gbt = SqlWriter(Session(small.registry), SPARK).explain_sql("mortgage_deny", "odd", 11)
    spark_odd = session.sql(f"select explain('mortgage_deny', struct(*), 11) as e, {typed_gbt} as t from odd").first()
    con = scorehouse.duckdb.connect(small.warehouse, registry=small.registry_path, read_only=True)
    duck_odd = con.sql(
        "select explain('mortgage_deny', f, 11) from (select * replace (null as lvr, 'martian' as self) "
        "from features_mortgage where application_id = 17) f"
    ).fetchall()[0][0]
    con.close()
    for explanation in (spark_odd.e, spark_odd.t):
        assert [(c.feature, c.value) for c in explanation.contributions] == [
            (c["feature"], c["value"]) for c in duck_odd["contributions"]
        ]
        assert [c.contribution for c in explanation.contributions] == pytest.approx(
            [c["contribution"] for c in duck_odd["contributions"]], abs=1e-12
        )
    assert {c.feature: c.value for c in spark_odd.e.contributions}["lvr"] is None
    for call in (
        "explain('mortgage_deny', struct(*), 0)",
        "explain_mortgage_deny(struct(dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, self, single, condominium), 1001)",
    ):
        with pytest.raises(Exception) as failed:
            session.sql(f"select {call} from f").collect()
        assert "top_k must be between 1 and 1000" in scorehouse.spark.friendly_error(failed.value)
    with pytest.raises(Exception) as failed:
        session.sql("select explain('handed_over', struct(*), 3) from f").collect()
    assert scorehouse.spark.friendly_error(failed.value).startswith("Model handed_over (version 1) has no explanations")


@pytest.mark.parametrize("model", ["mortgage_deny", "mortgage_logit"])  # trees, a linear model
def test_the_table_form_in_steps_gives_the_models_answer_on_spark(spark, small, model):
    """The table form's steps in Spark SQL (the relation's columns listed) equal the ONNX UDF on split
    boundaries, NULL, NaN, ±inf, values beyond float32 and odd categories, as in DuckDB."""
    import json

    import scorehouse.duckdb
    import scorehouse.spark
    from scorehouse.scoring import Session

    from test_table_form import _edge_rows

    session = spark.newSession()
    scorehouse.spark.register(session, small.registry_path)
    explanation = json.loads((small.registry_path / model / "versions" / "1" / "explain.json").read_text())
    con = scorehouse.duckdb.connect(small.warehouse, registry=small.registry_path, read_only=True)
    _edge_rows(con, explanation, "features_mortgage")
    edges = con.sql("select * from edges").to_arrow_table()
    con.close()
    session.createDataFrame(edges.to_pandas()).createOrReplaceTempView("edges")
    scorer = Session(small.registry)
    query = SqlWriter(scorer, SPARK).table_sql(model, "edges", "default", kept=edges.column_names)
    assert query is not None and "CASE" in query and "predict(" not in query and "predict_" not in query
    onnx = scorehouse.spark.predict_sql(scorer, model, "s", "score", "onnx")
    got = session.sql(f"select s.prediction, s.model_version, {onnx} as onnx from ({query}) as s").collect()
    assert len(got) == edges.num_rows and {row.model_version for row in got} == {1}
    wrong = [(row.prediction, row.onnx) for row in got if abs(row.prediction - row.onnx) > 1e-6]
    assert not wrong, f"{len(wrong)} of {len(got)} rows differ, e.g. {wrong[:3]}"


def test_a_signed_registry_refuses_a_moved_alias_and_a_revoked_version_on_spark(spark, small, keys, tmp_path):
    """A registry writer without the key points prod back at version 1 (an older signed version) by hand."""
    import scorehouse.spark
    from scorehouse.registry import Registry

    holder = Registry(tmp_path / "registry", public_key=keys["public"], signing_key=keys["private"])
    candidate = small.candidates["mortgage_deny"]
    for day in (1, 2, 3):
        holder.register({**candidate.manifest, "description": f"day {day}"}, candidate.files)
    holder.promote("mortgage_deny", 3)
    holder.revoke("mortgage_deny", 2, "trained on a broken export")
    aliases = holder.root / "mortgage_deny" / "aliases.json"
    state = json.loads(aliases.read_text())
    state["prod"] = {"version": 1, "history": [1]}
    aliases.write_text(json.dumps(state))

    session = spark.newSession()  # its functions are its own: the other tests' session keeps its registry
    scorehouse.spark.register(session, Registry(holder.root, public_key=keys["public"]))
    version = "select scorehouse_model_version('{}')"
    with pytest.raises(Exception, match="aliases.json changed after it was signed by the configured key"):
        session.sql(version.format("mortgage_deny")).collect()
    assert session.sql(version.format("mortgage_deny@3")).collect()[0][0] == 3
    with pytest.raises(Exception, match="version 2 was revoked on .* trained on a broken export"):
        session.sql(version.format("mortgage_deny@2")).collect()
    assert spark.sql(version.format("mortgage_deny")).collect()[0][0] == 1  # the other session: the built registry


def test_spark_creates_exactly_the_declared_names(spark, built):
    """The declared surface (udfs/surface.py) is what register() creates: temporary functions and views."""
    from scorehouse.surface import declared

    expected = declared("spark", MARTS)
    ours = ("predict", "explain", "score", "scorehouse_")  # the prefixes of every declared name (test_surface)
    functions = {
        f.name
        for f in spark.catalog.listFunctions()
        if "UDFRegistration" in (f.className or "") and f.name.startswith(ours)
    }  # other tests of the module register functions and views of their own
    views = {t.name for t in spark.catalog.listTables() if t.isTemporary and t.name.startswith(ours)}
    assert functions == {n for n, f in expected.items() if f.kind != "view"}
    assert views == {n for n, f in expected.items() if f.kind == "view"}
