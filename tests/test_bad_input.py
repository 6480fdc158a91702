"""The bad-input table of docs/pages/sql.md, row for row, on DuckDB's predict() (generic and typed paths).

Each case changes one real mortgage row. A scored case must equal scikit-learn's answer for the row
it stands for; an error case must name the model, the feature, what was expected and what was found.
"""

import json
import re
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import scorehouse.duckdb as engine
from scorehouse.errors import ModelNotFound
from scorehouse.registry import ModelRef
from scorehouse.sql import dialect

from helpers import MORTGAGE_FEATURES as FEATURES

LONG = "x" * 1_000_000
# A column name made to close a string literal in guard SQL and write this file; it must stay a name.
INJECTED = Path(tempfile.gettempdir()) / "scorehouse_injected_by_a_column_name.csv"
ODD_COLUMN = f"x' || 1); copy (select 42) to '{INJECTED}'; select ('"

# case -> (SQL for the changed fields, the row scikit-learn scores in its place)
SCORED = {
    "NULL in a numeric feature": ({"lvr": "CAST(NULL AS DOUBLE)"}, {"lvr": None}),
    "NaN in a numeric feature": ({"lvr": "CAST('NaN' AS DOUBLE)"}, {"lvr": None}),
    "+inf in a numeric feature": ({"dir": "CAST('Infinity' AS DOUBLE)"}, {"dir": 1e30}),
    "-inf in a numeric feature": ({"dir": "CAST('-Infinity' AS DOUBLE)"}, {"dir": -1e30}),
    "a finite value beyond float32's range": (
        {"dir": "CAST(1e308 AS DOUBLE)", "hir": "CAST(-1e308 AS DOUBLE)"},
        {"dir": 1e30, "hir": -1e30},
    ),
    "integer column holding NULL": (
        {"ccs": "CAST(NULL AS INTEGER)", "mcs": "CAST(2 AS INTEGER)"},
        {"ccs": None, "mcs": 2.0},
    ),
    "BIGINT above 2^24": ({"ccs": "CAST(16777217 AS BIGINT)"}, {"ccs": 16777216.0}),
    "NULL in a categorical feature": ({"pbcr": "CAST(NULL AS STRING)"}, {"pbcr": None}),
    "empty-string category": ({"pbcr": "''"}, {"pbcr": None}),
    "unseen category": ({"self": "'maybe'"}, {"self": "maybe"}),
    "non-ASCII category": ({"self": "'sí 是'"}, {"self": "sí 是"}),
    "very long string (1 MB)": ({"self": f"'{LONG}'"}, {"self": LONG}),
    "extra columns": ({"extra_1": "42", "extra_2": "'x'"}, {}),
    "extra columns named to break out of SQL": ({ODD_COLUMN: "1", "owner's note": "'x'"}, {}),
    "a single row": ({}, {}),
}
ERRORS = {
    "string where a number is expected": (
        {"lvr": "'0.8'"},
        "Model mortgage_deny (version 1): feature 'lvr' has type VARCHAR, expected DOUBLE",
    ),
    "number where a string is expected": (
        {"pbcr": "1"},
        "Model mortgage_deny (version 1): feature 'pbcr' has type INTEGER, expected VARCHAR",
    ),
    "missing feature": ({"lvr": None}, "Model mortgage_deny (version 1): feature 'lvr' is missing from the input"),
}


@pytest.fixture(scope="module")
def base(trained):
    return first_row(trained)


def first_row(workspace) -> dict:
    return (
        workspace.query("select * from features_mortgage order by application_id limit 1").iloc[0][FEATURES].to_dict()
    )


def row_sql(base: dict, changes: dict, engine: str = "duckdb") -> str:
    """The struct literal of `base` with `changes` (field -> SQL, None drops it), for DuckDB or Spark SQL."""
    return dialect(engine).struct(row_fields(base, changes).items())


def row_fields(base: dict, changes: dict) -> dict:
    """field -> SQL of `base` with `changes` applied (field -> SQL, None drops it)."""
    fields = {name: _literal(value) for name, value in base.items()}
    for name, sql in changes.items():
        if sql is None:
            fields.pop(name)
        else:
            fields[name] = sql
    return fields


def _literal(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "NULL"
    return f"'{value}'" if isinstance(value, str) else f"CAST({float(value)!r} AS DOUBLE)"


@pytest.mark.parametrize("case", SCORED)
def test_scored_cases_equal_scikit_learn(con, trained, base, case):
    changes, stands_for = SCORED[case]
    row = row_sql(base, changes)
    generic = con.sql(f"select predict('mortgage_deny', {row})").fetchall()[0][0]
    expected = trained.sklearn_scores("mortgage_deny", pd.DataFrame([{**base, **stands_for}]))["score"][0]
    assert generic == pytest.approx(expected, abs=1e-5)
    if set(changes) <= set(FEATURES):  # the typed function takes exactly its features
        typed = con.sql(f"select predict_mortgage_deny({row})").fetchall()[0][0]
        assert typed == pytest.approx(generic, abs=1e-12)
    # the table form, on a table holding the row: the same score, and the version
    con.execute(f"create or replace temp view bad_row as select unnest({row})")
    for table_form in ("score('mortgage_deny', 'bad_row')", "score_mortgage_deny('bad_row')"):
        [(prediction, version)] = con.sql(f"select prediction, model_version from {table_form}").fetchall()
        assert prediction == pytest.approx(generic, abs=1e-6) and version == 1, table_form


@pytest.mark.parametrize("case", ERRORS)
def test_error_cases_name_model_feature_expected_and_found(con, trained, base, case):
    changes, message = ERRORS[case]
    row = row_sql(base, changes)
    for sql in (f"select predict('mortgage_deny', {row})", f"select predict_mortgage_deny({row})"):
        with pytest.raises(duckdb.Error) as error:
            con.sql(sql).fetchall()
        friendly = engine.friendly_error(error.value, trained.registry_path)
        if "predict_mortgage_deny" in sql and case == "missing feature":
            message = message.replace(" from the input", "")  # the typed path names the struct it was given
        assert message.replace("Model mortgage_deny (version 1)", "") in friendly, (sql[:40], friendly)
        assert "mortgage_deny" in friendly
    if set(changes) <= set(FEATURES) and case != "missing feature":  # the table form in steps checks the types
        con.execute(f"create or replace temp view bad_row as select unnest({row})")
        with pytest.raises(duckdb.Error) as error:
            con.sql("select * from score_mortgage_deny('bad_row')").fetchall()
        friendly = engine.friendly_error(error.value, trained.registry_path)
        assert message.replace("Model mortgage_deny (version 1)", "") in friendly, friendly


def test_an_empty_table_gives_no_rows(con):
    assert con.sql("select predict('mortgage_deny', t) from features_mortgage t where false").fetchall() == []


def test_duplicate_column_names_are_renamed_by_duckdb_and_the_copy_is_ignored(con, trained):
    got = con.sql(
        "select predict('mortgage_deny', t) from (select *, 99.0 as lvr from features_mortgage) t "
        "order by application_id limit 3"
    ).fetchall()
    want = con.sql(
        "select predict('mortgage_deny', t) from features_mortgage t order by application_id limit 3"
    ).fetchall()
    assert got == want  # the second lvr arrives as lvr_1: an extra column
    with pytest.raises(duckdb.BinderException, match='Duplicate named argument "lvr"'):
        con.sql("select predict('mortgage_deny', struct_pack(lvr := 1.0, lvr := 2.0))").fetchall()


def test_a_reference_that_does_not_exist_lists_what_does(con, trained):
    with pytest.raises(duckdb.Error) as error:
        con.sql("select predict('mortgage_dny', t) from features_mortgage t").fetchall()
    assert engine.friendly_error(error.value, trained.registry_path).startswith(
        "Model 'mortgage_dny' not found in registry"
    )


def test_an_alias_at_a_deleted_version_says_so(workspace):
    import shutil

    shutil.rmtree(workspace.registry_path / "mortgage_deny" / "versions" / "1")
    with pytest.raises(ModelNotFound, match="alias 'prod' points at version 1, which no longer exists"):
        workspace.registry.resolve(ModelRef.parse("mortgage_deny"))
    with engine.connect(workspace.warehouse, workspace.registry_path, read_only=True) as conn:
        with pytest.raises(duckdb.Error) as error:
            conn.sql("select predict('mortgage_deny', t) from features_mortgage t").fetchall()
    assert "points at version 1, which no longer exists" in engine.friendly_error(error.value, workspace.registry_path)


def test_a_null_row_scores_null(con, base):
    row = row_sql(base, {})
    assert con.sql(
        f"select predict('mortgage_deny', case when false then {row} end), "
        f"predict_mortgage_deny(case when false then {row} end)"
    ).fetchall() == [(None, None)]


# ---- nothing lost: tables generated from the model's schema, bad values included ----------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NUMERIC_VALUES = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(float("-inf")),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32),
)
CATEGORY_VALUES = st.one_of(
    st.none(), st.sampled_from(["", "no", "yes", "maybe", "sí 是", "NO", " no"]), st.text(max_size=30)
)
ROWS = st.lists(
    st.fixed_dictionaries({**{f: NUMERIC_VALUES for f in FEATURES[:6]}, **{f: CATEGORY_VALUES for f in FEATURES[6:]}}),
    min_size=0,
    max_size=40,
)
EXAMPLES = 60


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=ROWS)
def test_every_row_in_comes_out_scored_with_its_key(con, trained, rows):
    import pyarrow as pa

    keys = list(range(1000, 1000 + len(rows)))
    table = pa.table(
        {
            "row_key": pa.array(keys, pa.int64()),
            **{f: pa.array([r[f] for r in rows], pa.float64()) for f in FEATURES[:6]},
            **{f: pa.array([r[f] for r in rows], pa.string()) for f in FEATURES[6:]},
        }
    )
    con.register("generated", table)
    out = (
        con.sql(
            "select row_key, predict('mortgage_deny', g) as generic, "
            f"predict_mortgage_deny(struct_pack({', '.join(FEATURES)})) as typed "
            "from generated as g order by row_key"
        )
        .to_arrow_table()
        .to_pydict()
    )
    assert out["row_key"] == keys  # rows out == rows in, keys preserved
    assert None not in out["generic"] and None not in out["typed"]  # only a NULL row scores NULL
    if rows:
        # scikit-learn refuses inf; ONNX sends it past every split, as ±1e30 does
        finite = [
            {k: (1e30 if v == float("inf") else -1e30 if v == float("-inf") else v) for k, v in r.items()} for r in rows
        ]
        expected = trained.sklearn_scores("mortgage_deny", pd.DataFrame(finite))["score"]
        assert max(abs(a - b) for a, b in zip(out["generic"], expected)) <= 1e-5
        assert out["typed"] == pytest.approx(out["generic"], abs=1e-12)


# ---- the same table in `dbt build`: the schema guard stops what predict() would refuse -----------------


def _slug(case: str) -> str:
    signed = case.lower().replace("+inf", "plus inf").replace("-inf", "minus inf")
    return re.sub(r"[^a-z0-9]+", "_", signed).strip("_")


def _case_model(base: dict, changes: dict, key: int) -> str:
    """A dbt model holding `base` with `changes` as one row (field -> SQL, None drops it), keyed `key`."""
    fields = {"application_id": str(key), **row_fields(base, changes)}
    return "select " + ", ".join(
        f"{sql} as {{{{ scorehouse.identifier({json.dumps(name)}) }}}}" for name, sql in fields.items()
    )


def write_bad_input_project(project: Path, base: dict, registry: Path) -> str:
    """A dbt project scoring every case of the table with predict(), each input under the schema guard.

    Also points an alias 'retired' at a version that does not exist, as deleting it would leave it.
    Returns the project's name.
    """
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: scorehouse_bad_input\nversion: '0.1.0'\nconfig-version: 2\n"
        "profile: scorehouse\n"
        "models: {scorehouse_bad_input: {+materialized: table}}\n"
    )
    cases = {**{c: changes for c, (changes, _) in SCORED.items()}, **{c: changes for c, (changes, _) in ERRORS.items()}}
    scored = {_slug(case): ("mortgage_deny", f"case_{_slug(case)}", "") for case in cases}
    scored.update(
        {
            "an_empty_table": ("mortgage_deny", "case_a_single_row", " where false"),
            "an_unknown_reference": ("mortgage_dny", "case_a_single_row", ""),
            "an_alias_at_a_deleted_version": ("mortgage_deny@retired", "case_a_single_row", ""),
        }
    )
    for key, (case, changes) in enumerate(cases.items(), start=1):
        (project / "models" / f"case_{_slug(case)}.sql").write_text(_case_model(base, changes, key))
    for slug, (ref, source, where) in scored.items():
        (project / "models" / f"scored_{slug}.sql").write_text(
            f"select c.application_id, {{{{ scorehouse.predict('{ref}', relation='c') }}}} as score "
            f"from {{{{ ref('{source}') }}}} as c{where}"
        )
    for case in cases:  # the table form, on the same cases
        (project / "models" / f"table_{_slug(case)}.sql").write_text(
            f"select s.application_id, s.prediction as score, s.model_version "
            f"from {{{{ scorehouse.score(ref('case_{_slug(case)}'), 'mortgage_deny') }}}} as s"
        )
    # the table form on inputs no guard checks: a feature missing, a column where it puts its own; column=
    unguarded = {
        "without_lvr": {"lvr": None},
        "with_prediction": {"Prediction": "0.5"},
        "with_a_helper_name": {"__scorehouse_x0": "99.0"},
    }
    for key, (name, changes) in enumerate(unguarded.items(), start=len(cases) + 1):
        (project / "models" / f"unguarded_{name}.sql").write_text(_case_model(base, changes, key))
        (project / "models" / f"table_unguarded_{name}.sql").write_text(
            f"select * from {{{{ scorehouse.score(ref('unguarded_{name}'), 'mortgage_deny') }}}} as s"
        )
    (project / "models" / "table_column_model_version.sql").write_text(
        "select * from {{ scorehouse.score(ref('case_a_single_row'), 'mortgage_deny', column='Model_Version') }} as s"
    )
    guard = (
        "    data_tests:\n      - scorehouse.expect_model_inputs_match_schema: {arguments: {model_ref: mortgage_deny}}"
    )
    (project / "models" / "_cases.yml").write_text(
        "version: 2\nmodels:\n" + "\n".join(f"  - name: case_{_slug(case)}\n{guard}" for case in cases) + "\n"
    )
    aliases = registry / "mortgage_deny" / "aliases.json"
    aliases.write_text(json.dumps({**json.loads(aliases.read_text()), "retired": {"version": 7, "history": [7]}}))
    return "scorehouse_bad_input"


def check_bad_input_build(log: str, results: dict, scores, sklearn_scores, base: dict, type_names=None) -> None:
    """The build went as the table says. `scores(model)` reads a scored model's scores; `type_names` maps
    the SQL type names of the messages to the engine's."""
    names = type_names or {}

    def status(prefix, slug):
        return next(r["status"] for name, r in results.items() if name.startswith(prefix) and name.endswith(slug))

    for case, (_, stands_for) in SCORED.items():
        slug = _slug(case)
        assert (
            status("scorehouse_expect_model_inputs_match_schema", f"case_{slug}_mortgage_deny"),
            status("scored_", slug),
        ) == ("pass", "success"), case
        expected = sklearn_scores("mortgage_deny", pd.DataFrame([{**base, **stands_for}]))["score"][0]
        assert scores(f"scored_{slug}") == pytest.approx([expected], abs=1e-5), case
        # on DuckDB the table form scores in steps (DOUBLE arithmetic), predict() with onnxruntime (float32)
        assert status("table_", slug) == "success", case
        assert scores(f"table_{slug}") == pytest.approx(scores(f"scored_{slug}"), abs=1e-6), case
    for case, (_, message) in ERRORS.items():
        slug = _slug(case)
        assert (
            status("scorehouse_expect_model_inputs_match_schema", f"case_{slug}_mortgage_deny"),
            status("scored_", slug),
            status("table_", slug),
        ) == ("fail", "skipped", "skipped"), case
        typed = re.search(r"feature '(\w+)' has type (\w+), expected (\w+)", message)
        feature, found, expected = typed.groups() if typed else ("lvr", "(absent)", "DOUBLE")
        report = log.split(f"scorehouse guard FAIL scorehouse_expect_model_inputs_match_schema_case_{slug}")[1]
        line = f"error: model mortgage_deny v1, feature {feature}: expected {expected}, found {names.get(found, found)}"
        assert line in report.splitlines()[1], (case, report.splitlines()[1])
    assert status("scored_", "an_empty_table") == "success" and scores("scored_an_empty_table") == []
    unknown = results["scored_an_unknown_reference"]
    assert unknown["status"] == "error" and "Model 'mortgage_dny' not found in registry" in unknown["message"]
    deleted = results["scored_an_alias_at_a_deleted_version"]
    assert deleted["status"] == "error"
    assert "alias 'retired' points at version 7, which no longer exists" in deleted["message"]
    missing = results["table_unguarded_without_lvr"]
    assert missing["status"] == "error" and "Binder" not in missing["message"]
    assert "Model mortgage_deny (version 1): feature 'lvr' is missing from the input" in missing["message"]
    clash = results["table_unguarded_with_prediction"]
    assert (
        clash["status"] == "error"
        and (
            "model mortgage_deny (version 1): the input already has a column "
            "'prediction', where the table form puts the score"
        )
        in clash["message"].lower()
    )  # Spark's catalog lowers it
    helper = results["table_unguarded_with_a_helper_name"]  # never read in place of the steps' own column
    assert (
        helper["status"] == "error"
        and ("the input has a column '__scorehouse_x0'; names starting with '__scorehouse_' are the table form's own")
        in helper["message"]
    )
    named = results["table_column_model_version"]  # fails alone: every other model built
    assert named["status"] == "error" and "column must not be 'model_version'" in named["message"]
    assert not INJECTED.exists()  # the odd column stayed a name in every guard's SQL


def test_the_bad_input_table_holds_in_dbt_build(workspace, base, tmp_path):
    from helpers import build_package

    INJECTED.unlink(missing_ok=True)
    package = write_bad_input_project(tmp_path / "bad_input", base, workspace.registry_path)
    build, results = build_package(tmp_path / "bad_input", package, workspace, tmp_path)
    assert build.returncode == 1, build.stdout[-3000:]  # the error cases fail it
    check_bad_input_build(
        build.stdout,
        results,
        lambda table: workspace.query(f"select score from {table}").score.tolist(),
        workspace.sklearn_scores,
        base,
    )
    # the table form's builds are in scoring_runs as predict()'s are, scored in steps
    runs = workspace.query(
        "select scored_relation, method, model_version, rows_out from scoring_runs where scored_relation like 'table_%'"
    )
    assert len(runs) == len(SCORED) and set(runs.method) == {"steps"} and set(runs.model_version) == {1}
    assert set(runs.rows_out) == {1}
