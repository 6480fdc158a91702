"""predict() in DuckDB through scorehouse.duckdb: fast and generic paths, model references, errors."""

import duckdb
import pyarrow as pa
import pytest
from numpy.testing import assert_allclose

import scorehouse.duckdb as engine
from scorehouse import registry as registry_module
from scorehouse.errors import FeatureError

FEATURES = "dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, self, single, condominium"


@pytest.fixture(scope="module")
def features(trained):
    return trained.query("select * from features_mortgage order by application_id")


def scores(con, sql):
    return con.sql(sql).to_arrow_table().column(0).to_numpy(zero_copy_only=False)


def test_fast_and_generic_paths_equal_scikit_learn(con, trained, features):
    expected = trained.sklearn_scores("mortgage_deny", features)["score"]
    fast = scores(
        con, f"select predict_mortgage_deny(struct_pack({FEATURES})) from features_mortgage order by application_id"
    )
    whole_row = scores(con, "select predict('mortgage_deny', t) from features_mortgage t order by application_id")
    assert_allclose(fast, expected, atol=1e-5, rtol=0)
    assert_allclose(whole_row, expected, atol=1e-5, rtol=0)


def test_features_bind_by_name_not_position(con):
    forward = scores(
        con, f"select predict_mortgage_deny(struct_pack({FEATURES})) from features_mortgage order by application_id"
    )
    reordered = ", ".join(reversed(FEATURES.split(", ")))
    backward = scores(
        con, f"select predict_mortgage_deny(struct_pack({reordered})) from features_mortgage order by application_id"
    )
    pairs = ", ".join(f"{c!r}: {c}" for c in reversed(FEATURES.split(", ")))
    generic = scores(
        con, f"select predict('mortgage_deny', {{{pairs}}}) from features_mortgage order by application_id"
    )
    assert_allclose(backward, forward, rtol=0, atol=0)
    assert_allclose(generic, forward, rtol=0, atol=0)


def test_model_references(con, workspace, features):
    from scorehouse.registration.spec import Split

    workspace.train("mortgage_deny", promote=False, split=Split(test_size=0.3, seed=7))
    workspace.registry.promote("mortgage_deny", 2, alias="candidate")
    conn = engine.connect(workspace.warehouse, workspace.registry_path, read_only=True)
    try:
        sql = (
            "select predict('mortgage_deny', t), predict('mortgage_deny@prod', t), predict('mortgage_deny@1', t), "
            "predict('mortgage_deny@candidate', t), predict('mortgage_deny@2', t), "
            "scorehouse_model_version('mortgage_deny'), scorehouse_model_version('mortgage_deny@candidate') "
            "from features_mortgage t order by application_id"
        )
        table = conn.sql(sql).to_arrow_table()
    finally:
        conn.close()
    cols = [table.column(i).to_numpy(zero_copy_only=False) for i in range(table.num_columns)]
    v1 = workspace.sklearn_scores("mortgage_deny@1", features)["score"]
    v2 = workspace.sklearn_scores("mortgage_deny@2", features)["score"]
    for col in cols[:3]:
        assert_allclose(col, v1, atol=1e-5, rtol=0)
    for col in cols[3:5]:
        assert_allclose(col, v2, atol=1e-5, rtol=0)
    assert set(cols[5]) == {1} and set(cols[6]) == {2}


def test_label_and_probabilities(con, trained, features):
    table = con.sql(
        "select predict_label('mortgage_deny', t) as label, predict_proba('mortgage_deny', t) as p "
        "from features_mortgage t order by application_id"
    ).to_arrow_table()
    expected = trained.sklearn_scores("mortgage_deny", features)
    assert table.column("label").to_pylist() == expected["label"].tolist()
    probabilities = table.column("p").to_pylist()
    assert_allclose([dict(p)["true"] for p in probabilities], expected["score"], atol=1e-5)
    assert_allclose([dict(p)["false"] for p in probabilities], 1 - expected["score"], atol=1e-5)


def test_regressor_through_the_fast_path(con, trained):
    frame = trained.query("select * from features_diamonds order by diamond_id limit 3000")
    got = scores(
        con,
        "select predict_diamond_price(struct_pack(carat, depth_pct, table_pct, length_mm, width_mm, "
        "height_mm, cut, color, clarity)) from features_diamonds order by diamond_id limit 3000",
    )
    tolerance = trained.candidates["diamond_price"].manifest["parity"]["tolerance"]
    assert_allclose(got, trained.sklearn_scores("diamond_price", frame)["score"], atol=tolerance, rtol=0)


def test_nulls_are_imputed_and_a_null_row_scores_null(con, trained):
    result = con.sql(
        "select predict('mortgage_deny', {'dir': null, 'hir': 0.3, 'lvr': null, 'ccs': 2, 'mcs': 2, 'uria': 3.1, "
        "'pbcr': null, 'dmi': 'no', 'self': 'no', 'single': 'yes', 'condominium': null}) as imputed"
    ).fetchall()[0]
    null_rows = con.sql(
        "select predict('mortgage_deny', case when application_id % 2 = 0 then t end), "
        f"predict_mortgage_deny(case when application_id % 2 = 0 then struct_pack({FEATURES}) end) "
        "from features_mortgage t order by application_id limit 4"
    ).fetchall()
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "dir": None,
                "hir": 0.3,
                "lvr": None,
                "ccs": 2.0,
                "mcs": 2.0,
                "uria": 3.1,
                "pbcr": None,
                "dmi": "no",
                "self": "no",
                "single": "yes",
                "condominium": None,
            }
        ]
    )
    assert result[0] == pytest.approx(trained.sklearn_scores("mortgage_deny", frame)["score"][0], abs=1e-5)
    assert [r[0] is None for r in null_rows] == [r[1] is None for r in null_rows] == [True, False, True, False]


def test_unseen_category_is_scored(con, trained):
    import pandas as pd

    row = {
        "dir": 0.3,
        "hir": 0.25,
        "lvr": 0.8,
        "ccs": 2.0,
        "mcs": 2.0,
        "uria": 3.1,
        "pbcr": "maybe",
        "dmi": "no",
        "self": "no",
        "single": "yes",
        "condominium": "no",
    }
    literal = "{" + ", ".join(f"'{k}': {v!r}" for k, v in row.items()) + "}"
    got = con.sql(f"select predict('mortgage_deny', {literal})").fetchall()[0][0]
    expected = trained.sklearn_scores("mortgage_deny", pd.DataFrame([row]))["score"][0]
    assert got == pytest.approx(expected, abs=1e-5)


def test_empty_input_gives_no_rows(con):
    assert con.sql("select predict('mortgage_deny', t) from features_mortgage t where false").fetchall() == []
    assert (
        con.sql(f"select predict_mortgage_deny(struct_pack({FEATURES})) from features_mortgage where false").fetchall()
        == []
    )


def test_several_models_in_one_column(con, trained):
    table = con.sql(
        "select predict(case when application_id % 2 = 0 then 'mortgage_deny' else 'mortgage_deny@1' "
        "end, t) as p, predict('mortgage_deny', t) as q from features_mortgage t "
        "order by application_id"
    ).to_arrow_table()
    assert table.column("p").to_pylist() == table.column("q").to_pylist()


@pytest.fixture
def errors_of(con, trained):
    """Run SQL that must fail; return the message a person sees."""

    def run(sql):
        with pytest.raises(duckdb.Error) as info:
            con.sql(sql).fetchall()
        return engine.friendly_error(info.value, trained.registry_path)

    return run


def test_unknown_model_alias_and_version_list_what_exists(errors_of):
    message = errors_of("select predict('mortgage_dny', t) from features_mortgage t")
    assert "'mortgage_dny' not found" in message and "known models: diamond_price, mortgage_deny" in message
    message = errors_of("select predict('mortgage_deny@staging', t) from features_mortgage t")
    assert "no alias 'staging'" in message and "prod -> 1" in message and "versions: 1" in message
    message = errors_of("select predict('mortgage_deny@9', t) from features_mortgage t")
    assert "version 9 does not exist" in message and "versions: 1" in message


def test_missing_feature_is_named_with_the_expected_list(errors_of):
    message = errors_of(
        "select predict('mortgage_deny', t) from (select * rename (lvr as lvrr) from features_mortgage) t"
    )
    assert "feature 'lvr' is missing" in message
    assert "expected features: dir DOUBLE, hir DOUBLE, lvr DOUBLE" in message
    assert "did you mean 'lvrr'" in message


def test_wrong_type_names_feature_and_both_types(errors_of):
    generic = errors_of(
        "select predict('mortgage_deny', t) from (select * replace (lvr::varchar as lvr) from features_mortgage) t"
    )
    assert "feature 'lvr' has type VARCHAR, expected DOUBLE" in generic
    fast = errors_of(
        "select predict_mortgage_deny(struct_pack(dir, hir, lvr, ccs, mcs, uria, pbcr, "
        "dmi := dmi = 'yes', self, single, condominium)) from features_mortgage"
    )
    assert "feature 'dmi' has type BOOLEAN, expected VARCHAR" in fast


def test_predict_needs_a_row_or_struct(errors_of):
    message = errors_of("select predict('mortgage_deny', 3)")
    assert "takes a row or a struct of named features, found INTEGER" in message


def test_struct_type_parser_handles_quotes_and_nesting():
    fields = engine.struct_fields(
        'STRUCT(a INTEGER, "b, c" VARCHAR, "d""e" DECIMAL(10,2), f STRUCT(g INTEGER, h VARCHAR[]))'
    )
    assert fields == {"a": "INTEGER", "b, c": "VARCHAR", 'd"e': "DECIMAL(10,2)", "f": "STRUCT(g INTEGER, h VARCHAR[])"}
    with pytest.raises(FeatureError, match="two fields named 'a'"):
        engine.struct_fields("STRUCT(a INTEGER, a VARCHAR)")


def test_sessions_load_lazily_and_are_cached_per_process(trained):
    registry_module._loaded.clear()
    conn = engine.connect(trained.warehouse, trained.registry_path, read_only=True)
    try:
        assert registry_module._loaded == {}  # registering reads manifests only
        conn.sql("select predict('mortgage_deny', t) from features_mortgage t limit 1").fetchall()
        assert [key[2:4] for key in registry_module._loaded] == [("mortgage_deny", 1)]
        model = next(iter(registry_module._loaded.values()))
        other = engine.connect(trained.warehouse, trained.registry_path, read_only=True)
        other.sql(f"select predict_mortgage_deny(struct_pack({FEATURES})) from features_mortgage").fetchall()
        other.close()
        assert next(iter(registry_module._loaded.values())) is model and len(registry_module._loaded) == 1
    finally:
        conn.close()


def test_macros_follow_cursors_through_the_dbt_plugin(trained):
    from scorehouse.dbt_plugin import Plugin

    plugin = Plugin("scorehouse", {"registry": str(trained.registry_path)})
    conn = duckdb.connect(str(trained.warehouse), read_only=True)
    try:
        plugin.configure_connection(conn)
        cursor = conn.cursor()
        plugin.configure_cursor(cursor)
        got = cursor.sql(
            "select predict('mortgage_deny', t) from features_mortgage t order by application_id limit 3"
        ).fetchall()
        fast = cursor.sql(
            f"select predict_mortgage_deny(struct_pack({FEATURES})) from features_mortgage "
            "order by application_id limit 3"
        ).fetchall()
        assert got == fast and len(got) == 3
        cursor.close()
    finally:
        conn.close()


def test_arrow_batches_larger_than_one_vector(con, trained):
    table = con.sql(
        "select predict('mortgage_deny', t) as p, application_id from (select * from features_mortgage, range(5)) t"
    ).to_arrow_table()
    assert table.num_rows == 5 * 2381
    assert pa.compute.count(table.column("p"), mode="only_null").as_py() == 0


def test_a_scoring_process_loads_neither_the_training_stack_nor_scipy(trained):
    """predict() and explain()'s neighbours load fast: scoring (and the CLI's module) imports no scikit-learn,
    skl2onnx or scipy, nor the registration sub-package that uses them."""
    import subprocess
    import sys

    script = (
        "import sys, scorehouse.duckdb as engine, scorehouse.spark, scorehouse.spark_cache, scorehouse.dbt_plugin\n"
        "import scorehouse.cli\n"
        f"con = engine.connect({str(trained.warehouse)!r}, {str(trained.registry_path)!r}, read_only=True)\n"
        "rows = con.sql(\"select predict('mortgage_deny', t) from features_mortgage t\").fetchall()\n"
        "rows += con.sql(\"select predict('diamond_price', t) from features_diamonds t\").fetchall()\n"
        "print(len(rows), sorted(m for m in ('sklearn', 'skl2onnx', 'scipy', 'onnx', 'orbital', 'sqlglot',\n"
        "                                   'scorehouse.registration') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    scored, loaded = result.stdout.split(" ", 1)
    assert int(scored) > 1000 and loaded.strip() == "[]"
