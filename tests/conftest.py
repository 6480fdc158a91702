"""Shared fixtures: a real warehouse built by dbt, real models trained into a temporary registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import duckdb
import pytest

from scorehouse.registration.training import train
from scorehouse.registry import Registry

from helpers import (
    DBT,
    ESTIMATOR_CASES,
    ESTIMATOR_SOURCES,
    MORTGAGE_FEATURES_SQL,
    PROJECT,
    ROOT,
    SPECS,
    Engine,
    Workspace,
)

# Fixtures that run dbt or Spark: tests using them are left out of `make test-fast`.
DBT_FIXTURES = {"trained", "built", "workspace", "con", "estimator_models", "base"}
SPARK_FIXTURES = {"spark", "spark_session", "dbt_on_spark", "demo_on_spark", "standalone_cluster"}


def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SPARK_FIXTURES or item.module.__name__ == "test_spark":
            item.add_marker(pytest.mark.spark)
        if used & DBT_FIXTURES:
            item.add_marker(pytest.mark.dbt)


@pytest.fixture(scope="session")
def small(tmp_path_factory) -> Workspace:
    """Fast tier: the mortgage features in a DuckDB file built without dbt, the demo GBT as `mortgage_deny`
    and a logistic regression as `mortgage_logit` (whose SQL expression scores by default), both promoted."""
    from scorehouse.registration.spec import Estimator

    ws = Workspace(tmp_path_factory.mktemp("small"))
    ws.warehouse.parent.mkdir(parents=True)
    with duckdb.connect(str(ws.warehouse)) as con:
        con.execute(MORTGAGE_FEATURES_SQL, [str(PROJECT / "data" / "hmda_boston.csv")])
    ws.train("mortgage_deny")
    ws.train("mortgage_deny", name="mortgage_logit", estimator=Estimator("logistic_regression", {"max_iter": 1000}))
    return ws


@pytest.fixture
def small_copy(small, tmp_path) -> Workspace:
    """A private copy of the fast tier's workspace, free to change."""
    return small.copy(tmp_path / "ws")


@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """Two ed25519 key pairs: the registry's and another one."""
    from scorehouse.signing import generate_keys

    folder = tmp_path_factory.mktemp("keys")
    private, public, key_id = generate_keys(folder)
    other_private, other_public, other_key_id = generate_keys(folder / "other")
    return {
        "private": private,
        "public": public,
        "key_id": key_id,
        "other_private": other_private,
        "other_public": other_public,
        "other_key_id": other_key_id,
    }


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Workspace:
    """Training tables built by dbt, both demo models trained and promoted to prod (not yet scored)."""
    deps = subprocess.run(
        [DBT, "deps", "--project-dir", str(PROJECT), "--profiles-dir", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )  # the demo installs the package, as a user's does
    assert deps.returncode == 0, deps.stdout
    ws = Workspace(tmp_path_factory.mktemp("trained"))
    ws.dbt("build", "--exclude", "tag:scoring", "tag:scorehouse_guard")
    for name in SPECS:
        ws.train(name)
    return ws


@pytest.fixture(scope="session")
def built(trained, tmp_path_factory) -> Workspace:
    """The whole demo project built: scored marts included."""
    ws = trained.copy(tmp_path_factory.mktemp("built") / "ws")
    ws.dbt("build")
    return ws


@pytest.fixture
def workspace(trained, tmp_path) -> Workspace:
    """A private copy of the trained workspace, free to change."""
    return trained.copy(tmp_path / "ws")


@pytest.fixture(scope="session")
def estimator_models(trained, tmp_path_factory):
    """Every estimator case trained on real rows (4,000 of its source), registered and promoted:
    (registry, {name: (candidate, rows)})."""
    from scorehouse.registration.spec import parse_spec

    registry = Registry(tmp_path_factory.mktemp("estimators") / "registry")
    models = {}
    for name, (task, kind, params, source) in ESTIMATOR_CASES.items():
        query, target, numeric, categorical = ESTIMATOR_SOURCES[source]
        with duckdb.connect(str(trained.warehouse), read_only=True) as con:
            table = con.sql(f"select * from ({query}) order by 1 limit 4000").to_arrow_table()
        spec = parse_spec(
            {
                "name": name,
                "task": task,
                "target": target,
                "source": {"query": query},
                "estimator": {"kind": kind, "params": params},
                "features": {"numeric": numeric, "categorical": categorical},
            }
        )
        candidate = train(spec, table)
        registry.promote(name, registry.register(candidate.manifest, candidate.files))
        models[name] = (candidate, table.to_pandas())
    return registry, models


@pytest.fixture
def con(trained):
    """A read-only connection to the trained warehouse with every predict function registered."""
    import scorehouse.duckdb

    conn = scorehouse.duckdb.connect(trained.warehouse, trained.registry_path, read_only=True)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def spark_session(tmp_path_factory):
    """A local Spark (2 cores) for the whole run; each module registers the registry it scores from."""
    pytest.importorskip("pyspark", reason="the spark extra is not installed: pip install -e '.[spark]'")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java 17; none found on PATH or in JAVA_HOME")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("scorehouse tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _spark_registrations(session) -> tuple[set[str], set[str]]:
    """The temporary Python functions and temporary views `session` holds."""
    functions = {f.name for f in session.catalog.listFunctions() if "UDFRegistration" in (f.className or "")}
    views = {t.name for t in session.catalog.listTables() if t.isTemporary}
    return functions, views


@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def engine(request, small) -> Engine:
    """Each engine in turn with scorehouse registered on the fast tier's registry (`small`) and its
    features_mortgage table: a test taking it states what holds on every engine."""
    if request.param == "duckdb":
        import scorehouse.duckdb
        from scorehouse.sql import DUCKDB

        con = scorehouse.duckdb.connect(str(small.warehouse), str(small.registry_path), read_only=True)
        request.addfinalizer(con.close)
        return Engine("duckdb", DUCKDB, lambda sql: con.sql(sql).fetchall(), (duckdb.Error,))
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    import scorehouse.spark
    from scorehouse.sql import SPARK

    session = request.getfixturevalue("spark_session")
    before = _spark_registrations(session)
    scorehouse.spark.register(session, small.registry_path)
    session.createDataFrame(small.query("select * from features_mortgage")).createOrReplaceTempView("features_mortgage")

    def unregister() -> None:  # the session is shared: later modules see only what they register
        functions, views = (now - then for now, then in zip(_spark_registrations(session), before))
        for name in functions:
            session.sql(f"DROP TEMPORARY FUNCTION IF EXISTS `{name}`")
        for name in views:
            session.catalog.dropTempView(name)

    request.addfinalizer(unregister)
    return Engine("spark", SPARK, lambda sql: session.sql(sql).collect(), (PySparkException, Py4JJavaError))
