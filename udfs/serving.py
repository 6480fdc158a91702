"""The serving file BI tools read, replaced whole after each build (dbt_project/macros/publish.sql)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from .errors import ScorehouseError
from .metrics import latest_runs
from .registry import fsync_dir
from .sql import DUCKDB

PUBLISH_FORMAT = "scorehouse_serving"  # what the publish_marts hook asks the dbt plugin to store
VERSION_COLUMNS = ("model_name", "model_version")  # what each published mart row carries
RUNS_TABLE = "scoring_runs"  # the warehouse table the record_scoring_runs hook appends to


def publish_file(staged: str, target: str) -> str:
    """Make `staged`, a complete and detached DuckDB file, the serving file in one rename; return its path.

    `staged` must be `<target>.<build id>.tmp`, as the hook names it: nothing else is ever moved.
    Readers that opened the previous file keep reading it; new connections see the new one. Staged
    files left by builds killed before this point are removed (a warehouse has one writer at a time).
    """
    staged, target = os.path.abspath(staged), os.path.abspath(target)
    prefix = target + "."
    if not (staged.startswith(prefix) and staged.endswith(".tmp") and "/" not in staged[len(prefix) :]):
        raise ScorehouseError(f"Refusing to publish {staged}: a staged serving file is named {target}.<build id>.tmp")
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, target)
    fsync_dir(os.path.dirname(target))
    for leftover in glob.glob(glob.escape(target) + ".*.tmp"):
        os.remove(leftover)
    return target


def serving_path(warehouse: str | os.PathLike) -> Path:
    """The serving file beside a warehouse: its name with _serving before .duckdb (the hook's default)."""
    warehouse = Path(warehouse)
    return warehouse.with_name(warehouse.stem + "_serving.duckdb")


def versions_in_use(warehouse: str | os.PathLike, serving: str | os.PathLike) -> dict[tuple[str, int], list[str]]:
    """(model, version) -> why it is in use: recorded by the warehouse's latest build in scoring_runs, or held
    by rows of a serving-file table with model_name and model_version (a published mart). Both files are
    opened read-only with no file access beyond them; a file or table that does not exist adds nothing."""
    import duckdb

    in_use: dict[tuple[str, int], list[str]] = {}
    for path, runs in ((Path(warehouse), True), (Path(serving), False)):
        if not path.is_file():
            continue
        try:
            with duckdb.connect(str(path), read_only=True, config={"enable_external_access": False}) as conn:
                wanted = (*VERSION_COLUMNS, "invocation_id", "finished_at") if runs else VERSION_COLUMNS
                for schema, table in _tables_with(conn, wanted):
                    if runs and table != RUNS_TABLE:
                        continue
                    relation = f"{DUCKDB.identifier(schema)}.{DUCKDB.identifier(table)}"
                    shown = table if schema == "main" else f"{schema}.{table}"
                    why = f"recorded by the latest build in {shown}" if runs else f"served by {shown}"
                    rows = latest_runs(relation) if runs else f"from {relation}"
                    found = conn.execute(
                        f"select distinct cast(model_name as varchar), try_cast(model_version as bigint) {rows}"
                    ).fetchall()
                    for model, version in found:
                        if model is not None and version is not None:
                            in_use.setdefault((model, version), []).append(why)
        except duckdb.Error as exc:
            raise ScorehouseError(
                f"Cannot read {path} to find the model versions in use "
                f"({str(exc).splitlines()[0]}); nothing was removed"
            ) from None
    return in_use


def _tables_with(conn, columns: tuple[str, ...]) -> list[tuple[str, str]]:
    """(schema, table) of every table of the connection's database that has all of `columns`."""
    names = ", ".join(DUCKDB.literal(c) for c in columns)
    return conn.execute(
        "select schema_name, table_name from duckdb_columns() where database_name = current_database() "
        f"and table_oid in (select table_oid from duckdb_tables()) and lower(column_name) in ({names}) "
        f"group by all having count(distinct lower(column_name)) = {len(columns)} order by all"
    ).fetchall()
