"""The monitor's judgement of the version prod replaced, on a real quality relation in DuckDB."""

import duckdb

from scorehouse.monitor import Breach, _no_better
from scorehouse.sql import DUCKDB


def quality_relation(rows):
    con = duckdb.connect()
    con.execute(
        "create table quality (model_name varchar, model_version integer, window_start timestamp, "
        "metric varchar, value double, better varchar)"
    )
    con.executemany("insert into quality values (?, ?, ?, ?, ?, ?)", rows)

    def query(sql):
        cursor = con.execute(sql)
        return [dict(zip([c[0] for c in cursor.description], row)) for row in cursor.fetchall()]

    return query


def breach(metric, value, window="2026-11-09 00:00:00"):
    return Breach("gate", '"quality"', "m", 2, window, metric, value, "detail", True)


def test_the_replaced_version_must_do_better_where_it_was_measured_on_the_same_window():
    query = quality_relation(
        [
            ("m", 1, "2026-11-09", "auc", 0.70, "higher"),
            ("m", 1, "2026-11-09", "rmse", 3.0, "lower"),
            ("m", 1, "2026-11-09", "mean_bias", -0.5, "nearer_zero"),
            ("m", 1, "2026-11-02", "brier", 0.9, "lower"),
        ]
    )
    assert _no_better(1, [breach("auc", 0.60)], query, DUCKDB) is None
    assert _no_better(1, [breach("auc", 0.75)], query, DUCKDB) == (
        "version 1 did no better on window 2026-11-09 00:00:00: auc 0.7 against 0.75"
    )
    assert _no_better(1, [breach("rmse", 4.0)], query, DUCKDB) is None
    assert _no_better(1, [breach("rmse", 2.0)], query, DUCKDB).startswith("version 1 did no better")
    assert _no_better(1, [breach("mean_bias", 0.4)], query, DUCKDB).startswith("version 1 did no better")
    assert _no_better(1, [breach("mean_bias", 0.6)], query, DUCKDB) is None
    # measured on another window only, or not at all: no evidence against it
    assert _no_better(1, [breach("brier", 0.1)], query, DUCKDB) is None
    assert _no_better(3, [breach("auc", 0.99)], query, DUCKDB) is None


def test_an_automatic_rollback_names_the_relations_to_rescore_and_republish(small_copy):
    """The build's gate failed for prod's version 2 and version 1 did better: prod goes back to 1, and the monitor
    names the marts version 2 scored in that build (from scoring_runs) and the build that re-scores them."""
    import json

    from helpers import failed_quality_gate

    candidate = small_copy.candidates["mortgage_deny"]
    small_copy.registry.register(candidate.manifest, candidate.files)
    small_copy.registry.promote("mortgage_deny", 2)
    target = failed_quality_gate(small_copy)
    with duckdb.connect(str(small_copy.warehouse)) as con:
        con.execute(
            "create table quality as select 'mortgage_deny' as model_name, 1 as model_version, "
            "timestamp '2026-11-09' as window_start, 'auc' as metric, 0.79 as value, 'higher' as better"
        )
        con.execute(
            "create table scoring_runs as select * from (values ('build-6', 'mart_old', 2), "
            "('build-7', 'mart_risk', 2), ('build-7', 'mart_review', 2), ('build-7', 'mart_other', 1)) "
            "as v(invocation_id, scored_relation, model_version), (select 'mortgage_deny' as model_name)"
        )
    done = small_copy.cli("monitor", "--target-path", str(target), "--rollback-on-error")
    assert done.returncode == 3 and small_copy.registry.aliases("mortgage_deny")["prod"] == 1, done.stderr
    assert done.stdout.splitlines()[-2:] == [
        "mortgage_deny: prod rolled back from version 2 to 1",
        "mortgage_deny: mart_review, mart_risk still hold version 2's scores (and the serving file its publication): "
        "re-score and re-publish them with `dbt build --select mart_review+ mart_risk+`",
    ]
    # a dbt invocation without gates is named, so a user sees which one was read
    (target / "run_results.json").write_text(
        json.dumps(
            {
                "metadata": {"invocation_id": "run-8", "generated_at": "2026-12-02T11:00:00Z"},
                "args": {"which": "run", "invocation_command": "dbt run --select mart_risk --project-dir x"},
                "results": [],
            }
        )
    )
    assert small_copy.cli("monitor", "--target-path", str(target)).stdout.strip() == (
        f"no quality gate (expect_model_quality_above) ran in `dbt run --select mart_risk` (invocation run-8, "
        f"2026-12-02T11:00:00Z) in {target / 'run_results.json'}: the gates run in `dbt build` or `dbt test`"
    )
