"""The table form: score('<ref>', '<table>') and score_<model>('<table>') in DuckDB SQL (dbt's
scorehouse.score is checked on the bad-input table in tests/test_bad_input.py, on DuckDB and Spark)."""

import re

import pytest

import scorehouse.duckdb as engine


@pytest.mark.parametrize("model", ["mortgage_deny", "mortgage_logit"])  # the ONNX function, the SQL expression
def test_the_table_form_equals_predict_row_for_row(small_copy, model):
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path, read_only=True)
    expected = con.sql(
        f"select f.*, predict('{model}', f) as prediction, 1 as model_version "
        "from features_mortgage f order by application_id"
    ).fetchall()
    for form in (
        f"score('{model}', 'features_mortgage')",
        f"score_{model}('features_mortgage')",
        f"score('{model}@1', 'features_mortgage')",
    ):
        got = con.sql(f"select * from {form} order by application_id").fetchall()
        assert len(got) == 2381 and [row[:-2] for row in got] == [row[:-2] for row in expected], form
        assert [row[-1] for row in got] == [1] * 2381
        assert [row[-2] for row in got] == pytest.approx([row[-2] for row in expected], abs=1e-6), form
    for ref in (model, f"{model}@1"):  # any reference takes the steps (scorehouse.staged), not predict() row by row
        query = con.execute(f"select scorehouse_table_query('{ref}', 'features_mortgage')").fetchone()[0]
        assert "query_table('features_mortgage')" in query and not re.search(r"\bpredict(_\w+)?\(", query), query[:300]
    columns = [d[0] for d in con.sql(f"select * from score_{model}('features_mortgage') limit 0").description]
    assert columns[-2:] == ["prediction", "model_version"] and columns[0] == "application_id"
    con.close()


def test_the_table_form_takes_a_table_name_never_sql(small_copy):
    for table, message in (
        ("no_such_table", "Table with name no_such_table does not exist"),
        ("read_csv('/etc/passwd')", "Table with name read_csv('/etc/passwd') does not exist"),
    ):
        result = small_copy.cli("sql", f"select * from score('mortgage_deny', '{table.replace(chr(39), chr(39) * 2)}')")
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    result = small_copy.cli("sql", "select * from score('mortgage_dny', 'features_mortgage')")
    assert result.returncode == 1 and "Model 'mortgage_dny' not found" in result.stderr


def _edge_rows(con, explanation: dict, base: str) -> None:
    """A table `edges`: one real row per numeric split, the feature set to the split's float32 boundary and
    the doubles either side of it, the float32s either side of the threshold, NULL, NaN, ±inf and ±1e308; and
    rows with a NULL, empty and unseen category."""
    import numpy as np

    from scorehouse.sql import DUCKDB

    entries = explanation.get("columns") or explanation["numeric"] + explanation["categorical"]
    numeric = sorted({e["feature"] for e in entries if "median" in e})
    categorical = sorted({e["feature"] for e in entries} - set(numeric))
    values: list[tuple[str, str]] = []
    for tree in explanation.get("trees", []):
        for column, threshold, left in zip(tree["column"], tree["threshold"], tree["left"]):
            entry = explanation["columns"][column]
            if left < 0 or "median" not in entry:
                continue
            low = np.float32(threshold)
            low = np.nextafter(low, np.float32(-np.inf)) if float(low) > threshold else low
            high = np.nextafter(low, np.float32(np.inf))
            middle = (float(low) + float(high)) / 2
            for value in (float(low), float(high), middle, np.nextafter(middle, -np.inf), np.nextafter(middle, np.inf)):
                values.append((entry["feature"], repr(float(value))))
    for feature in numeric:
        values += [(feature, v) for v in ("NULL", "'NaN'", "'inf'", "'-inf'", "1e308", "-1e308")]
    for feature in categorical:
        values += [(feature, v) for v in ("NULL", "''", "'never seen'")]
    con.execute(f"create temp table edges as select * from {base} limit 0")
    for number, (feature, value) in enumerate(values):
        con.execute(
            "insert into edges select * replace "
            f"(cast({value} as {'double' if feature in numeric else 'varchar'})"
            f" as {DUCKDB.identifier(feature)}) from {base} order by 1 limit 1 offset {number % 50}"
        )


@pytest.mark.parametrize("model", ["mortgage_deny", "mortgage_logit"])  # trees, a linear model
def test_the_table_form_in_steps_gives_the_models_answer_on_every_edge(small_copy, model):
    """score_<model> runs in steps (scorehouse.staged) and equals the ONNX function on split boundaries, NULL, NaN,
    ±inf, values beyond float32 and unseen or NULL categories."""
    import json

    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path)
    steps = con.execute(f"select scorehouse_score_sql('{model}', 't', 'default', '', '', 'prediction', '')").fetchone()[
        0
    ]
    assert "__scorehouse_step" in steps or model == "mortgage_logit" and "CASE" in steps
    explanation = json.loads((small_copy.registry_path / model / "versions" / "1" / "explain.json").read_text())
    _edge_rows(con, explanation, "features_mortgage")
    numeric_features = ["dir", "hir", "lvr", "ccs", "mcs", "uria"]
    got = con.sql(
        f"select prediction, scorehouse_onnx_{model}(struct_pack(dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, "
        f"self, single, condominium)) from score_{model}('edges')"
    ).fetchall()
    assert len(got) >= 6 * len(numeric_features) + 3 * 5
    wrong = [(ours, onnx) for ours, onnx in got if abs(ours - onnx) > 1e-6]
    assert not wrong, f"{len(wrong)} of {len(got)} rows differ, e.g. {wrong[:3]}"
    con.close()


def test_the_table_form_falls_back_to_row_by_row_where_asked_or_routed(small_copy, caplog):
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path)
    with caplog.at_level("DEBUG", logger="scorehouse"):
        assert con.execute(
            "select scorehouse_score_sql('mortgage_deny', 't', 'default', 'onnx', '', 'p', '')"
        ).fetchone() == ("",)
        assert con.execute(
            "select scorehouse_score_sql('mortgage_deny', 't', 'label', '', '', 'p', '')"
        ).fetchone() == ("",)
    said = [r.getMessage() for r in caplog.records if getattr(r, "scorehouse_event", None) == "table_form"]
    assert said[-2:] == [
        "mortgage_deny (mortgage_deny version 1) table form on duckdb: row by row: onnx asked for",
        "mortgage_deny (mortgage_deny version 1) table form on duckdb: row by row: its label output",
    ]
    con.close()


def _complete_trees(count: int, depth: int, cover: bool = True):
    """The structure of `count` complete binary trees of `depth` splits, each row passing through `depth`."""
    from scorehouse.structure import Number, Tree, Trees

    size = 2 ** (depth + 1) - 1
    left = tuple(2 * i + 1 if 2 * i + 1 < size else -1 for i in range(size))
    right = tuple(2 * i + 2 if 2 * i + 2 < size else -1 for i in range(size))
    covers = tuple(2.0 ** (depth - (i + 1).bit_length() + 1) if cover else 0.0 for i in range(size))
    tree = Tree(left, right, (0,) * size, (0.5,) * size, (0.0,) * size, covers)
    return Trees(link="logit", columns=(Number("x", 0.0),), trees=(tree,) * count, init=0.0, baseline=0.0)


def test_the_table_form_takes_the_steps_for_shallow_trees_up_to_max_nodes():
    """staged.row_by_row_reason: the steps cost grows with nodes, onnxruntime's with the splits a row passes."""
    from scorehouse import staged
    from scorehouse.structure import Linear

    shallow = _complete_trees(100, 3)  # the demo GBT's shape: 1,500 nodes, 300 splits per row
    assert (shallow.nodes, staged.splits_per_row(shallow)) == (1500, 300)
    assert staged.row_by_row_reason(shallow) is None
    assert staged.splits_per_row(_complete_trees(100, 3, cover=False)) == 300  # no cover: each tree's depth
    assert staged.row_by_row_reason(_complete_trees(10, 6)) is None  # 1,270 nodes, 60 splits: still the steps
    deep = staged.row_by_row_reason(_complete_trees(20, 6))  # 2,540 nodes for 120 splits
    assert deep == (
        "2,540 tree nodes for 120 splits per row, more than 1,000 + 5 a split: "
        "trees this deep score faster with onnxruntime"
    )
    assert staged.row_by_row_reason(_complete_trees(250, 3)) == "3,750 tree nodes, more than 3,000"
    assert staged.row_by_row_reason(Linear("logit", 0.0, (), (), 0.0)) is None
    assert staged.row_by_row_reason(None) == "no explanations"


def test_the_table_form_names_a_missing_feature_and_refuses_a_column_of_its_own(small_copy):
    """A table a new connection sees is checked before it is scored: a missing feature is named as predict()
    names it (the steps alone would fail to bind without naming the model), a `prediction` or
    `model_version` column is refused (DuckDB would rename the one added to prediction_1)."""
    import duckdb

    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path)
    con.execute("create table without_lvr as select * exclude (lvr) from features_mortgage")
    con.execute("create table scored_before as select *, 0.5 as Prediction from features_mortgage")
    for form in ("score_mortgage_deny('without_lvr')", "score('mortgage_deny@1', 'without_lvr')"):
        with pytest.raises(duckdb.Error) as error:
            con.sql(f"select avg(prediction) from {form}").fetchall()
        message = engine.friendly_error(error.value)
        assert message.startswith("Model mortgage_deny"), message
        assert "feature 'lvr' is missing from the input" in message, message
    for form in ("score_mortgage_deny('scored_before')", "score('mortgage_logit', 'scored_before')"):
        with pytest.raises(duckdb.Error) as error:
            con.sql(f"select * from {form}").fetchall()
        assert "the input already has a column 'Prediction', where the table form puts the score" in str(error.value)
    con.close()


def test_the_table_form_checks_the_relation_it_scores(small_copy):
    """Temporary tables, a table of an open transaction and a temporary table shadowing a real one are checked
    (and scored) as they are, not as a new connection would see a table of that name; a column named like the
    table form's own helper columns is refused, never read in their place (it once moved every tree score)."""
    import duckdb

    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path)
    expected = con.execute(
        "select avg(predict_mortgage_deny(struct_pack(dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, "
        "self, single, condominium))) from features_mortgage"
    ).fetchone()[0]

    def refused(table: str) -> str:
        with pytest.raises(duckdb.Error) as error:
            con.sql(f"select avg(prediction) from score_mortgage_deny('{table}')").fetchall()
        assert len(str(error.value).splitlines()) == 1, error.value
        return engine.friendly_error(error.value)

    for helper in ("__scorehouse_x0", "__scorehouse_c0", "__Scorehouse_X6", "__scorehouse_row"):
        con.execute(f'create or replace temp table helpers as select *, 99.0 as "{helper}" from features_mortgage')
        assert refused("helpers") == (
            f"Model mortgage_deny (version 1): the input has a column '{helper}'; names "
            "starting with '__scorehouse_' are the table form's own (its steps' columns): "
            "rename it first"
        )
    con.execute("create temp table scored_before as select *, 1.0 as prediction from features_mortgage")
    assert "the input already has a column 'prediction'" in refused("scored_before")
    con.execute("create temp table without_lvr as select * exclude (lvr) from features_mortgage")
    assert "feature 'lvr' is missing from the input" in refused("without_lvr")
    con.execute("begin")
    con.execute("create table pending as select *, 0.5 as model_version from features_mortgage")
    assert "the input already has a column 'model_version'" in refused("pending")
    con.execute("rollback")
    # a temporary table shadowing the real one: its own columns are checked, its own rows scored
    con.execute("create temp table features_mortgage as select * exclude (dir) from main.features_mortgage")
    assert "feature 'dir' is missing from the input" in refused("features_mortgage")
    con.execute(
        "create or replace temp table features_mortgage as "
        "select * from scorehouse.main.features_mortgage where application_id % 2 = 0"
    )
    (rows,) = con.execute("select count(*) from score_mortgage_deny('features_mortgage')").fetchone()
    assert (
        rows
        == con.execute(
            "select count(*) from scorehouse.main.features_mortgage where application_id % 2 = 0"
        ).fetchone()[0]
    )
    con.execute("drop table temp.features_mortgage")
    # names bind case-blind, as DuckDB binds them; the answer is the model's
    con.execute("create temp table shouting as select * rename (lvr as LVR, self as SELF) from features_mortgage")
    assert con.execute("select avg(prediction) from score_mortgage_deny('shouting')").fetchone()[0] == pytest.approx(
        expected
    )
    columns = [d[0] for d in con.execute("select * from score_mortgage_deny('shouting') limit 0").description]
    assert columns == (
        [d[0] for d in con.execute("select * from shouting limit 0").description] + ["prediction", "model_version"]
    )
    con.close()


def test_enum_features_of_any_labels_score_as_their_text_on_every_path(small_copy):
    """ENUM labels holding '(' , a quote or a comma: the typed and generic predict(), explain(), the table form and
    the SQL expression's check read the features by name (the type's text once split them wrongly)."""
    con = engine.connect(small_copy.warehouse, registry=small_copy.registry_path)
    con.execute("create type odd as enum ('yes', 'no', 'a(b', 'it''s', 'x, y', 'q\"r')")
    con.execute(
        "create temp table enums as select * replace (cast(case when application_id % 7 = 0 then 'a(b' "
        "when application_id % 7 = 1 then 'it''s' when application_id % 7 = 2 then 'x, y' "
        "when application_id % 7 = 3 then 'q\"r' else coalesce(self, 'no') end as odd) as self) "
        "from features_mortgage"
    )
    con.execute("create temp table texts as select * replace (cast(self as varchar) as self) from enums")
    struct = "struct_pack(dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, self, single, condominium)"
    for model in ("mortgage_deny", "mortgage_logit"):  # the ONNX function; the SQL expression behind its check
        for form in (
            f"predict('{model}', t)",
            f"predict_{model}({struct})",
            f"predict('{model}@1', {struct})",
            f"explain('{model}', t, 3).margin",
        ):
            on_enums = con.sql(f"select {form} from enums t order by application_id").fetchall()
            on_text = con.sql(f"select {form} from texts t order by application_id").fetchall()
            assert on_enums == on_text, (model, form)
        tables = [
            con.execute(f"select prediction from score_{model}('{t}') order by application_id").fetchall()
            for t in ("enums", "texts")
        ]
        assert tables[0] == tables[1], model
        # what dbt's predict() compiles to: the SQL expression behind its type check
        (written,) = con.execute(f"select scorehouse_predict_sql('{model}', 't', 'default', 'sql', '')").fetchone()
        assert "scorehouse_check_input" in written
        inlined = [
            con.execute(f"select {written} from {t} t order by application_id").fetchall() for t in ("enums", "texts")
        ]
        assert inlined[0] == inlined[1], model
    con.close()


def test_score_refuses_an_input_holding_a_column_it_would_add(small):
    """dbt's score() asks scorehouse_table_input_error before it writes the query: with input_hash=true or
    explain_top_k, an input_hash or explanation column of the input (names are case-blind) is refused too."""
    import json

    con = engine.connect(small.warehouse, registry=small.registry_path, read_only=True)
    columns = dict(con.sql("select column_name, column_type from (describe features_mortgage)").fetchall())

    def problem(extra, added):
        found = {**columns, **extra}
        return con.execute(
            "select scorehouse_table_input_error('mortgage_deny', ?, 'prediction', ?)",
            [json.dumps(found), json.dumps(added)],
        ).fetchone()[0]

    assert problem({}, ["input_hash", "explanation"]) == ""
    assert problem({"Input_Hash": "VARCHAR"}, []) == ""  # not added: the input keeps its column
    assert problem({"Input_Hash": "VARCHAR"}, ["input_hash"]) == (
        "Model mortgage_deny (version 1): the input already has a column 'Input_Hash', where the table form puts "
        "the input hash; exclude or rename it first"
    )
    assert "'explanation', where the table form puts the explanation" in problem(
        {"explanation": "VARCHAR"}, ["input_hash", "explanation"]
    )
    con.close()
