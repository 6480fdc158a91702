"""OpenMetrics gauges from the warehouse, for Prometheus: `scorehouse metrics`.

Read from the tables the dbt package's hooks append to, the latest build of each:
  scorehouse_drift_value / scorehouse_drift_level   drift_history: each guarded input's feature and metric
                                                     (level 0 ok, 1 warn, 2 error) and its error threshold
  scorehouse_quality_value / _holdout / scorehouse_label_coverage
                                                     quality_history: each version's latest window
  scorehouse_rows_scored / scorehouse_scoring_seconds
                                                     scoring_runs: each scored relation of the last build
  scorehouse_last_publication_timestamp_seconds     the serving file's scorehouse_publication, per mart
  scorehouse_last_build_timestamp_seconds           the newest row of drift_history or scoring_runs
  scorehouse_model_alias                            the registry now: 1 per model, alias and the version it
                                                     points at, so that alerts follow an alias (prod), not a
                                                     version a rollback has left
A table that does not exist yet gives no series. Alert rules to start from: udfs/prometheus/alerts.yml.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .events import event

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
LEVELS = {None: 0, "": 0, "warn": 1, "error": 2}
RULES = Path(__file__).with_name("prometheus") / "alerts.yml"

# The rows of the latest build in each history table (quality: each version's latest window in it).
LATEST_DRIFT = "from drift_history where invocation_id = (select max_by(invocation_id, recorded_at) from drift_history)"
LATEST_QUALITY = (
    "from quality_history q where invocation_id = (select max_by(invocation_id, recorded_at) "
    "from quality_history) and window_start = (select max(window_start) from quality_history w "
    "where w.invocation_id = q.invocation_id and w.model_name = q.model_name "
    "and w.model_version = q.model_version)"
)


def latest_runs(relation: str = "scoring_runs") -> str:
    """The FROM clause of the latest build's rows in a scoring_runs table (`relation`, quoted where it must be)."""
    return f"from {relation} where invocation_id = (select max_by(invocation_id, finished_at) from {relation})"


LATEST_RUNS = latest_runs()
# name -> (help, query returning the labels and a `value` column); each query reads the latest build only
GAUGES: dict[str, tuple[str, str]] = {
    "scorehouse_drift_value": (
        "Current value of a drift metric of a guarded input feature, latest build",
        "select model_ref as model, input_relation as input, feature, metric, current_value as value " + LATEST_DRIFT,
    ),
    "scorehouse_drift_error_above": (
        "Error threshold of a drift metric",
        "select model_ref as model, input_relation as input, feature, metric, error_above as value " + LATEST_DRIFT,
    ),
    "scorehouse_drift_level": (
        "Level of a drift metric: 0 ok, 1 warn, 2 error",
        "select model_ref as model, input_relation as input, feature, metric, "
        "case level when 'error' then 2 when 'warn' then 1 else 0 end as value " + LATEST_DRIFT,
    ),
    "scorehouse_quality_value": (
        "A quality metric of a model version on its latest window with outcomes",
        "select model_name as model, cast(model_version as varchar) as version, metric, better, value "
        + LATEST_QUALITY,
    ),
    "scorehouse_quality_holdout": (
        "The holdout value of the same metric, from the version's manifest",
        "select model_name as model, cast(model_version as varchar) as version, metric, better, holdout_value as value "
        + LATEST_QUALITY,
    ),
    "scorehouse_label_coverage": (
        "Share of the scored rows whose outcome has arrived, latest window",
        "select distinct model_name as model, cast(model_version as varchar) as version, label_coverage as value "
        + LATEST_QUALITY,
    ),
    "scorehouse_rows_scored": (
        "Rows a relation scored with a model version in the latest build",
        "select model_name as model, cast(model_version as varchar) as version, scored_relation as relation, "
        "rows_out as value " + LATEST_RUNS,
    ),
    "scorehouse_scoring_seconds": (
        "Seconds the relation took to build in the latest build",
        "select model_name as model, cast(model_version as varchar) as version, scored_relation as relation, "
        "epoch(finished_at) - epoch(started_at) as value " + LATEST_RUNS,
    ),
}
SERVING_GAUGE = (
    "scorehouse_last_publication_timestamp_seconds",
    "When each mart was last published to the serving file (Unix time)",
    "select mart, epoch(published_at) as value from scorehouse_publication",
)


def collect(warehouse: str | os.PathLike, serving: str | os.PathLike | None = None, registry=None) -> str:
    """The OpenMetrics text of the warehouse's (and serving file's) tables, and the registry's aliases, as of now."""
    import duckdb

    families = [] if registry is None else [_family(*ALIAS_GAUGE, alias_rows(registry))]
    with duckdb.connect(str(warehouse), read_only=True, config={"enable_external_access": False}) as conn:
        tables = {row[0] for row in conn.execute("select table_name from duckdb_tables()").fetchall()}
        for name, (help_text, query) in GAUGES.items():
            if _table_of(query) in tables:
                families.append(_family(name, help_text, _rows(conn, query)))
        latest = [
            f"select epoch(max({column})) as value from {table}"
            for table, column in (("drift_history", "recorded_at"), ("scoring_runs", "finished_at"))
            if table in tables
        ]
        if latest:
            families.append(
                _family(
                    "scorehouse_last_build_timestamp_seconds",
                    "When the newest build recorded drift or scoring (Unix time)",
                    _rows(conn, f"select max(value) as value from ({' union all '.join(latest)})"),
                )
            )
    if serving and Path(serving).exists():
        with duckdb.connect(str(serving), read_only=True, config={"enable_external_access": False}) as conn:
            if conn.execute(
                "select count(*) from duckdb_tables() where table_name = 'scorehouse_publication'"
            ).fetchall()[0][0]:
                families.append(_family(*SERVING_GAUGE[:2], _rows(conn, SERVING_GAUGE[2])))
    return "".join(families) + "# EOF\n"


ALIAS_GAUGE: tuple[str, str] = (
    "scorehouse_model_alias",
    "1 for the version each alias of a model points at now (the registry)",
)


def alias_rows(registry) -> list[dict[str, Any]]:
    """One row per model and alias: the version it points at now (a model whose alias file is broken has none)."""
    from .errors import ScorehouseError

    rows = []
    for name in registry.models():
        try:
            aliases = registry.aliases(name)
        except ScorehouseError:
            continue  # `scorehouse verify` reports it; the other models' aliases are still exported
        rows += [
            {"model": name, "alias": alias, "version": str(version), "value": 1}
            for alias, version in sorted(aliases.items())
        ]
    return rows


def write(text: str, path: str | os.PathLike) -> None:
    """Replace `path` whole (node_exporter's textfile collector must never read half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def serve(address: str, port: int, scrape: Callable[[], str]) -> ThreadingHTTPServer:
    """An HTTP server answering GET /metrics with `scrape()`; started in a thread, returned to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            try:
                body, status = scrape().encode(), 200
            except Exception as exc:  # noqa: BLE001 - a scrape that fails says why, the server keeps serving
                event("metrics_failed", f"metrics: {exc}", level=30, error=str(exc))
                body, status = f"# scrape failed: {exc}\n".encode(), 503
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
            event("metrics_scraped", "metrics: " + format % args, level=10)

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _table_of(query: str) -> str:
    """The history table a gauge's query reads (the word after its first `from`)."""
    return query.split(" from ", 1)[1].split()[0]


def _rows(conn, query: str) -> list[dict[str, Any]]:
    cursor = conn.execute(query)
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


def _family(name: str, help_text: str, rows: Iterable[dict[str, Any]]) -> str:
    lines = [f"# TYPE {name} gauge\n", f"# HELP {name} {help_text}\n"]
    for row in rows:
        value = row.pop("value")
        if value is None:
            continue
        labels = ",".join(f'{key}="{_escape(val)}"' for key, val in row.items() if val is not None)
        lines.append(f"{name}{{{labels}}} {_number(float(value))}\n" if labels else f"{name} {_number(float(value))}\n")
    return "".join(lines)


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
