"""The table form: score('<ref>', '<table>') and score_<model>('<table>') in DuckDB SQL (dbt's
scorehouse.score is checked on the bad-input table in tests/test_bad_input.py, on DuckDB and Spark)."""

import pytest

import udfs.duckdb as engine


@pytest.mark.parametrize("model", ["mortgage_deny", "mortgage_logit"])  # the ONNX function, the compiled SQL
def test_the_table_form_equals_predict_row_for_row(small_copy, model):
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    expected = con.sql(f"select f.*, predict('{model}', f) as prediction, 1 as model_version "
                       "from features_mortgage f order by application_id").fetchall()
    for form in (f"score('{model}', 'features_mortgage')", f"score_{model}('features_mortgage')",
                 f"score('{model}@1', 'features_mortgage')"):
        got = con.sql(f"select * from {form} order by application_id").fetchall()
        assert len(got) == 2381 and [row[:-2] for row in got] == [row[:-2] for row in expected], form
        assert [row[-1] for row in got] == [1] * 2381
        assert [row[-2] for row in got] == pytest.approx([row[-2] for row in expected], abs=1e-6), form
    columns = [d[0] for d in con.sql(f"select * from score_{model}('features_mortgage') limit 0").description]
    assert columns[-2:] == ["prediction", "model_version"] and columns[0] == "application_id"
    con.close()


def test_the_table_form_takes_a_table_name_never_sql(small_copy):
    for table, message in (("no_such_table", "Table with name no_such_table does not exist"),
                           ("read_csv('/etc/passwd')", "Table with name read_csv('/etc/passwd') does not exist")):
        result = small_copy.cli("sql", f"select * from score('mortgage_deny', '{table.replace(chr(39), chr(39) * 2)}')")
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    result = small_copy.cli("sql", "select * from score('mortgage_dny', 'features_mortgage')")
    assert result.returncode == 1 and "Model 'mortgage_dny' not found" in result.stderr
