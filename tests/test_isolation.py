"""Wrong types, extreme values, races, unbounded work and broken files: one clear line, the same answer on
every path, and one broken model breaking only itself."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml

import scorehouse.duckdb as engine
from scorehouse.errors import SpecError
from scorehouse.registration.spec import load_spec, parse_spec
from scorehouse.scoring import Session

from helpers import PROJECT, ROOT, SPECS

FEATURES = "dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, self, single, condominium"


def one_line_error(result, *expected):
    """A CLI failure as a user reads it: exit 1, `error: ...` on one line, no traceback."""
    assert result.returncode == 1, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in errors[0], (text, errors[0])
    return errors[0]


def new_spec(tmp_path, **changes):
    """The demo spec with `changes` merged in (estimator params too), written to a file."""
    spec = yaml.safe_load(SPECS["mortgage_deny"].read_text())
    params = changes.pop("params", {})
    spec.update(changes)
    spec["estimator"]["params"].update(params)
    path = tmp_path / f"{spec['name']}.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


# ---- 7. predict()'s SQL refuses exactly what the ONNX path refuses -----------------------------------------
@pytest.mark.parametrize(
    "column, sql, found",
    [
        ("lvr", "cast(lvr as varchar)", "VARCHAR"),
        ("pbcr", "cast(1 as integer)", "INTEGER"),
        ("dir", "current_date", "DATE"),
        ("dir", "dir > 0.3", "BOOLEAN"),  # a feature trained on numbers is not fed BOOLEAN
        ("pbcr", "[pbcr]", "VARCHAR[]"),
        ("self", "{'v': self}", "STRUCT(v VARCHAR)"),
    ],
)
def test_predict_sql_refuses_the_types_onnx_refuses_with_the_same_message(small, column, sql, found):
    scorer = Session(small.registry_path)
    relation = f"(select * replace ({sql} as {column}) from features_mortgage)"
    with engine.connect(small.warehouse, small.registry_path, read_only=True) as con:
        messages = []
        for method in ("sql", "onnx"):
            expression = engine.predict_sql(scorer, "mortgage_logit", "f", "score", method)
            with pytest.raises(Exception) as error:
                con.sql(f"select {expression} from {relation} as f").fetchall()
            messages.append(engine.friendly_error(error.value, small.registry))
        generic = pytest.raises(
            duckdb.Error, con.sql(f"select predict('mortgage_logit', f) from {relation} as f").fetchall
        )
    kind = "numeric" if column in ("lvr", "dir") else "categorical"
    expected = (
        f"Model mortgage_logit (version 1): feature '{column}' has type {found}, "
        f"expected {'DOUBLE' if kind == 'numeric' else 'VARCHAR'} ({kind})"
    )
    assert messages == [expected, expected]
    assert engine.friendly_error(generic.value, small.registry) == expected


def test_the_type_check_costs_nothing_per_row(small):
    """DuckDB folds the check into a constant while planning: the plan holds the model's SQL, no check."""
    expression = engine.predict_sql(Session(small.registry_path), "mortgage_logit", "f", "score", "sql")
    with engine.connect(small.warehouse, small.registry_path, read_only=True) as con:
        plan = con.sql(f"explain select {expression} from features_mortgage as f").fetchall()[0][1]
    assert "scorehouse_check_input" in expression and "scorehouse_check_input" not in plan


# ---- 8. a value beyond float32 scores as +-inf on every path ------------------------------------------------
def test_values_beyond_float32_score_as_infinity_on_every_path(small):
    scorer = Session(small.registry_path)
    with engine.connect(small.warehouse, small.registry_path, read_only=True) as con:
        for model in ("mortgage_deny", "mortgage_logit"):
            paths = {method: engine.predict_sql(scorer, model, "f", "score", method) for method in ("sql", "onnx")}
            paths["generic"] = f"predict('{model}', f)"
            for huge, inf in (
                ("1e308", "'Infinity'"),
                ("-1e308", "'-Infinity'"),
                ("3.4028235677973366e38", "'Infinity'"),
            ):
                got = {
                    name: con.sql(
                        f"select {sql} as p from (select * replace (cast({value} as double) as dir) "
                        "from features_mortgage order by application_id limit 50) as f"
                    ).fetchnumpy()["p"]
                    for name, sql in paths.items()
                    for value in [huge]
                }
                want = con.sql(
                    f"select {paths['onnx']} as p from (select * replace (cast({inf} as double) as dir) "
                    "from features_mortgage order by application_id limit 50) as f"
                ).fetchnumpy()["p"]
                for name, values in got.items():
                    np.testing.assert_allclose(values, want, atol=1e-6, rtol=0, err_msg=f"{model} {name} {huge}")


# ---- 9. concurrent trainings of one spec register one version -----------------------------------------------
def test_two_concurrent_trainings_of_one_spec_register_one_version(small_copy, tmp_path):
    # a few seconds of fitting: both check before either registers
    spec = new_spec(tmp_path, params={"n_estimators": 300})
    command = [str(Path(sys.executable).parent / "scorehouse"), "train", str(spec)]
    runs = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, **small_copy.env},
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert small_copy.registry.versions("mortgage_deny") == [1, 2]
    logs = "".join(err for _, err in outputs)
    assert logs.count("registered version 2") == 1 and logs.count("version 2 is up to date") == 1, logs


# ---- 10. mistakes that used to print a traceback -----------------------------------------------------------
def test_a_bigint_feature_above_two_to_the_24_trains_and_scores(small_copy, tmp_path):
    spec = new_spec(
        tmp_path,
        name="big_ids",
        source={"query": "select *, cast(application_id as bigint) * 16777217 as big from features_mortgage"},
        features={"numeric": ["dir", "big"], "categorical": ["pbcr"]},
        params={"n_estimators": 5},
    )
    result = small_copy.cli("train", str(spec), "--alias", "prod")
    assert result.returncode == 0, result.stderr
    scored = small_copy.cli(
        "sql",
        "select predict('big_ids', {'dir': 0.3, 'big': 9007199254740993::bigint, 'pbcr': 'no'}) as p",
        "--format",
        "json",
        check=True,
    )
    assert 0 <= json.loads(scored.stdout)[0]["p"] <= 1


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"features": {"numeric": ["it's", "sp ace"], "categorical": ["pbcr"]}}, "are not plain identifiers"),
        ({"params": {"n_estimators": -1}}, "scikit-learn cannot fit gradient_boosting: The 'n_estimators' parameter"),
        (
            {
                "task": "regression",
                "target": "pbcr",
                "positive_class": None,
                "features": {"numeric": ["dir"], "categorical": []},
                "estimator": {"kind": "ridge", "params": {}},
            },
            "a regression's target must be numeric; 'pbcr' has type VARCHAR (values like",
        ),
        ({"source": {"table": "features_mortgage; select 1"}}, "is not a table name"),
    ],
)
def test_spec_mistakes_are_one_line(small_copy, tmp_path, changes, expected):
    spec = new_spec(tmp_path, **changes)
    one_line_error(small_copy.cli("train", str(spec)), expected)


@pytest.mark.parametrize(
    "reference", ["mortgage_deny' || chr(0) || '", "mortgage_deny@' || chr(178) || '", "' || repeat('m', 5000) || '"]
)
def test_odd_references_in_sql_are_one_line(small, reference):
    one_line_error(
        small.cli("sql", f"select predict('{reference}', t) from features_mortgage t limit 1"), "is not valid"
    )


def test_a_stray_folder_in_versions_is_ignored(small_copy):
    (small_copy.registry_path / "mortgage_deny" / "versions" / "\u00b2").mkdir()
    (small_copy.registry_path / "mortgage_deny" / "versions" / "notes").mkdir()
    assert small_copy.registry.versions("mortgage_deny") == [1]
    small_copy.cli("sql", "select predict('mortgage_deny', t) from features_mortgage t limit 1", check=True)
    assert small_copy.cli("verify").returncode == 0


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", '{"../x": {"version": "1; drop", "history": [1]}}'])
def test_a_broken_alias_file_fails_only_its_aliases_and_promote_repairs_it(small_copy, content):
    """Each kind of broken file in process; the first also as a user meets it, through the CLI."""
    aliases = small_copy.registry_path / "mortgage_deny" / "aliases.json"
    aliases.write_text(content)
    with engine.connect(small_copy.warehouse, small_copy.registry_path, read_only=True) as con:
        other = con.sql(f"select predict_mortgage_logit(struct_pack({FEATURES})) from features_mortgage").fetchall()
        assert len(other) == 2381  # the other model keeps scoring
        pinned = con.sql("select predict('mortgage_deny@1', t) from features_mortgage t").fetchall()
        assert len(pinned) == 2381  # a pinned version needs no alias
        with pytest.raises(duckdb.Error) as failed:
            con.sql("select predict('mortgage_deny', t) from features_mortgage t").fetchall()
    message = engine.friendly_error(failed.value, small_copy.registry_path)
    assert f"Model mortgage_deny: {aliases} is not a valid alias file" in message
    assert "`scorehouse promote mortgage_deny VERSION` replaces it" in message
    if content == "[1, 2]":
        one_line_error(small_copy.cli("sql", "select predict('mortgage_deny', t) from features_mortgage t"), message)
        verify = small_copy.cli("verify")
        assert verify.returncode == 1 and "is not a valid alias file" in verify.stdout
        promote = small_copy.cli("promote", "mortgage_deny", "1", check=True)
        assert "warning: " in promote.stderr and "kept it as" in promote.stderr
    else:
        small_copy.registry.promote("mortgage_deny", 1)
    assert json.loads(aliases.read_text()) == {"prod": {"history": [1], "version": 1}}
    assert [p.read_text() for p in aliases.parent.glob("aliases.json.broken-*")] == [content]
    with engine.connect(small_copy.warehouse, small_copy.registry_path, read_only=True) as con:
        assert len(con.sql("select predict('mortgage_deny', t) from features_mortgage t limit 1").fetchall()) == 1


# ---- 11. bounded work --------------------------------------------------------------------------------------
def test_a_model_without_sql_scores_through_onnxruntime_and_show_says_why(small_copy, tmp_path):
    """A 30-class forest: multiclass models are not explained, so no SQL is written for them at all."""
    spec = new_spec(
        tmp_path,
        name="many_classes",
        task="multiclass",
        positive_class=None,
        source={"query": "select *, cast(application_id % 30 as varchar) as band from features_mortgage"},
        target="band",
        estimator={"kind": "random_forest", "params": {"n_estimators": 30, "random_state": 0}},
    )
    small_copy.cli("train", str(spec), check=True)
    card = small_copy.registry.card("many_classes", 1)
    assert len(card.classes) == 30 and card.manifest.sql is None
    assert "compiled.json" not in card.manifest.artifacts and "explain.json" not in card.manifest.artifacts
    shown = small_copy.cli("show", "many_classes@1", check=True).stdout
    assert (
        "predict() scores with: duckdb onnxruntime (SQL is written for the score, not the label), "
        "spark onnxruntime (SQL is written for the score, not the label)"
    ) in shown


def test_a_spec_holding_the_retired_compile_key_trains_with_a_warning_as_the_same_version(small_copy, tmp_path):
    """`compile:` (read by releases before 0.3.0) is ignored with a warning; the spec's hash is the one those
    releases computed for its default, so training it again on the same data reuses the version."""
    spec = new_spec(tmp_path, compile="auto")
    result = small_copy.cli("train", str(spec), "--json", check=True)
    assert json.loads(result.stdout) == [{"model": "mortgage_deny", "version": 1, "created": False}]
    assert "'compile' is no longer read" in result.stderr
    refused = small_copy.cli("train", str(spec), "--compile", "always")
    assert refused.returncode == 2 and "unrecognized arguments: --compile" in refused.stderr


def test_yaml_aliases_and_oversized_specs_are_refused_up_front(tmp_path):
    bomb = tmp_path / "bomb.yml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 1000
    with pytest.raises(SpecError, match="anchors and aliases are not allowed in a spec"):
        load_spec(bomb)
    big = tmp_path / "big.yml"
    big.write_text("description: " + "x" * 300_000 + "\n")
    with pytest.raises(SpecError, match="a spec is at most 262,144"):
        load_spec(big)


def test_many_features_are_checked_in_linear_time():
    features = [f"f{i}" for i in range(200_000)]
    spec = parse_spec(
        {
            "name": "wide",
            "task": "binary",
            "target": "y",
            "source": {"table": "t"},
            "estimator": "logistic_regression",
            "features": {"numeric": features},
        }
    )
    assert len(spec.features) == 200_000
    with pytest.raises(SpecError, match=r"features listed twice: \['f7'\]"):
        parse_spec(
            {
                "name": "wide",
                "task": "binary",
                "target": "y",
                "source": {"table": "t"},
                "estimator": "logistic_regression",
                "features": {"numeric": [*features, "f7"]},
            }
        )


# ---- 12. one broken version breaks only itself --------------------------------------------------------------
def test_a_version_that_fails_its_checks_breaks_only_its_references(small_copy):
    onnx = small_copy.registry_path / "mortgage_logit" / "versions" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with engine.connect(small_copy.warehouse, small_copy.registry_path, read_only=True) as con:
        scores = con.sql(f"select predict_mortgage_deny(struct_pack({FEATURES})) from features_mortgage").fetchall()
        assert len(scores) == 2381
    one_line_error(
        small_copy.cli("sql", "select predict('mortgage_logit', t) from features_mortgage t"),
        "Model mortgage_logit v1: model.onnx failed its sha256 check",
    )
    manifest = small_copy.registry_path / "mortgage_logit" / "versions" / "1" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"binary"', '"regression"'))
    result = small_copy.cli(
        "sql",
        "select count(*) as n, avg(predict('mortgage_deny', t)) > 0 as ok from features_mortgage t",
        "--format",
        "json",
    )
    assert result.returncode == 0 and json.loads(result.stdout) == [{"n": 2381, "ok": True}]
    assert "warning: Model mortgage_logit v1: manifest.json failed its sha256 check" in result.stderr


def test_the_serving_file_answers_while_a_version_is_broken(built, tmp_path):
    ws = built.copy(tmp_path / "ws")
    (ws.registry_path / "mortgage_deny" / "versions" / "1" / "manifest.sha256").write_text("0" * 64)
    result = ws.cli(
        "--warehouse", str(ws.serving), "sql", "select count(*) as n from mart_diamond_prices", "--format", "json"
    )
    assert result.returncode == 0 and json.loads(result.stdout) == [{"n": 53940}], result.stderr


def test_dbt_builds_the_other_marts_when_one_version_is_broken(built, tmp_path):
    ws = built.copy(tmp_path / "ws")
    before = ws.query("select max(scored_at) as t from mart_mortgage_risk").t[0]
    onnx = ws.registry_path / "diamond_price" / "versions" / "1" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-1])
    result = ws.dbt("build", "--select", "tag:scoring", expect_ok=False)
    assert result.returncode == 1
    assert "Model diamond_price v1: model.onnx failed its sha256 check" in result.stdout
    assert ws.query("select max(scored_at) as t from mart_mortgage_risk").t[0] > before


# ---- 13. what killed writers leave behind is removed by the next write --------------------------------------
def test_leftovers_of_killed_writers_are_removed_by_the_next_write(small_copy):
    model = small_copy.registry_path / "mortgage_deny"
    (model / ".staging-0123abcd").mkdir()
    (model / ".staging-0123abcd" / "model.onnx").write_bytes(b"half")
    (model / ".aliases-0123abcd.tmp").write_text("{")
    small_copy.registry.promote("mortgage_deny", 1, "candidate")
    assert sorted(p.name for p in model.iterdir()) == [".lock", "aliases.json", "audit.jsonl", "versions"]
    (model / ".staging-fedcba98").mkdir()
    version = small_copy.registry.register(
        small_copy.candidates["mortgage_deny"].manifest, small_copy.candidates["mortgage_deny"].files
    )
    assert version == 2 and not list(model.glob(".staging-*"))


# ---- 8, in dbt: a value beyond float32 does not stop the guards, the hooks or the publication ---------------
def test_a_value_beyond_float32_is_guarded_scored_recorded_and_published(built, tmp_path):
    import duckdb

    ws = built.copy(tmp_path / "ws")
    batch = tmp_path / "batch"
    batch.mkdir()
    data = PROJECT / "data"
    with duckdb.connect() as con:
        con.execute(
            f"copy (select * replace (case when column00 = '1' then '1e308' else dir end as dir) "
            f"from read_csv('{data / 'hmda_boston.csv'}', all_varchar = true, header = true) "
            f"order by cast(column00 as integer)) to '{batch / 'hmda_boston.csv'}' (header, delimiter ',')"
        )
    shutil.copy(data / "diamonds.csv", batch / "diamonds.csv")
    ws.dbt("build", data_dir=batch)
    invocation = json.loads((ws.root / "target" / "run_results.json").read_text())["metadata"]["invocation_id"]
    published = ws.query("select mart, invocation_id from scorehouse_publication", ws.serving)
    assert set(published.invocation_id) == {invocation}  # both marts were built, tested and published
    row = ws.query("select deny_probability from mart_mortgage_risk where application_id = 1").deny_probability[0]
    features = ws.query("select * from features_mortgage where application_id = 1")
    assert features.dir[0] == 1e308
    expected = ws.sklearn_scores("mortgage_deny", features.assign(dir=1e30))["score"][0]
    assert row == pytest.approx(expected, abs=1e-5)
    history = ws.query(f"select * from drift_history where invocation_id = '{invocation}' and feature = 'dir'")
    out_of_range = history.loc[history.metric == "out_of_range_share", "current_value"].iloc[0]
    assert out_of_range == pytest.approx(1 / 2381)
