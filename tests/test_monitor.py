"""The monitor's judgement of the version prod replaced, on a real quality relation in DuckDB."""

import duckdb

from udfs.monitor import Breach, _no_better
from udfs.sql import DUCKDB


def quality_relation(rows):
    con = duckdb.connect()
    con.execute("create table quality (model_name varchar, model_version integer, window_start timestamp, "
                "metric varchar, value double, better varchar)")
    con.executemany("insert into quality values (?, ?, ?, ?, ?, ?)", rows)

    def query(sql):
        cursor = con.execute(sql)
        return [dict(zip([c[0] for c in cursor.description], row)) for row in cursor.fetchall()]

    return query


def breach(metric, value, window="2026-11-09 00:00:00"):
    return Breach("gate", '"quality"', "m", 2, window, metric, value, "detail")


def test_the_replaced_version_must_do_better_where_it_was_measured_on_the_same_window():
    query = quality_relation([("m", 1, "2026-11-09", "auc", 0.70, "higher"), ("m", 1, "2026-11-09", "rmse", 3.0, "lower"),
                              ("m", 1, "2026-11-09", "mean_bias", -0.5, "nearer_zero"),
                              ("m", 1, "2026-11-02", "brier", 0.9, "lower")])
    assert _no_better(1, [breach("auc", 0.60)], query, DUCKDB) is None
    assert _no_better(1, [breach("auc", 0.75)], query, DUCKDB) == (
        "version 1 did no better on window 2026-11-09 00:00:00: auc 0.7 against 0.75")
    assert _no_better(1, [breach("rmse", 4.0)], query, DUCKDB) is None
    assert _no_better(1, [breach("rmse", 2.0)], query, DUCKDB).startswith("version 1 did no better")
    assert _no_better(1, [breach("mean_bias", 0.4)], query, DUCKDB).startswith("version 1 did no better")
    assert _no_better(1, [breach("mean_bias", 0.6)], query, DUCKDB) is None
    # measured on another window only, or not at all: no evidence against it
    assert _no_better(1, [breach("brier", 0.1)], query, DUCKDB) is None
    assert _no_better(3, [breach("auc", 0.99)], query, DUCKDB) is None
