"""dbt-duckdb plugin: every connection dbt opens gets the registry's predict functions.

    plugins:
      - module: scorehouse.dbt_plugin
        alias: scorehouse
        config: {registry: registry}          # optional: public_key: keys/scorehouse_signing.pub.pem

One Session per dbt invocation, so every model of a build scores a reference with one version.
Relative paths (the registry, the profile's DuckDB `path`, files the project's SQL reads) are taken
from the dbt project folder, so `dbt build --project-dir ...` from any folder reads and writes the
same files.

The one file operation the package's hooks need, replacing the serving file after a build, is not a
SQL function (an analyst's query could call that): the publish_marts hook reaches it through
dbt-duckdb's `adapter.store_relation`, which calls `store` below in the build's own process.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from . import config as config_paths
from . import events
from .duckdb import create_macros, register
from .errors import ScorehouseError
from .registry import Registry
from .scoring import Session
from .serving import PUBLISH_FORMAT, publish_file


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """The plugin's `config:` in profiles.yml."""

    registry: str | None = None  # the registry folder (default: $SCOREHOUSE_REGISTRY, else ./registry)
    public_key: str | None = None  # a PEM ed25519 public key: versions it did not sign are refused

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PluginConfig:
        """Read the config, refusing unknown keys (a typo would otherwise fall back to a default silently)."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ScorehouseError(f"scorehouse dbt plugin: unknown config key(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: (str(v) if v not in (None, "") else None) for k, v in data.items()})


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        config = PluginConfig.from_dict(plugin_config)
        project = project_dir()
        events.configure()
        events.set_trace_id(invocation_id())
        registry = Registry(
            config_paths.registry_path(config.registry, base=project),
            public_key=config_paths.public_key_path(config.public_key, base=project),
        )
        self.scorer = Session(registry)
        atexit.register(self.scorer.log_scored)  # rows and seconds per version, once the build is over

    def update_connection_config(self, creds, config: dict[str, Any]) -> None:
        """Relative paths are taken from the dbt project folder, not from wherever dbt runs: the warehouse
        file's, and the files the project's SQL reads (DuckDB's file_search_path, unless the profile sets it)."""
        config.setdefault("file_search_path", str(project_dir()))
        path = getattr(creds, "path", None)
        if path and path != ":memory:" and "://" not in path and not path.startswith("md:"):
            creds.path = str(project_dir() / path)
            Path(creds.path).parent.mkdir(parents=True, exist_ok=True)  # DuckDB does not create folders

    def configure_connection(self, conn) -> None:
        register(conn, scorer=self.scorer)

    def configure_cursor(self, cursor) -> None:
        create_macros(cursor, self.scorer)  # temporary macros are per cursor; functions are shared

    def store(self, target_config) -> None:
        """Publish a staged serving file (the publish_marts hook); nothing else is stored through the plugin."""
        location = target_config.location
        if location is None or location.format != PUBLISH_FORMAT:
            raise ScorehouseError(f"scorehouse dbt plugin stores only format '{PUBLISH_FORMAT}' (the serving file)")
        publish_file(location.path, target_config.config["serving_path"])


def invocation_id() -> str | None:
    """dbt's invocation_id, the trace id of every event of the build."""
    try:
        from dbt_common.invocation import get_invocation_id

        return get_invocation_id()
    except Exception:  # noqa: BLE001 - dbt-duckdb used outside the dbt CLI
        return None


def project_dir() -> Path:
    """The dbt project folder of this invocation (dbt's --project-dir, else the folder dbt found itself)."""
    try:
        from dbt.flags import get_flags

        folder = getattr(get_flags(), "PROJECT_DIR", None)
    except Exception:  # noqa: BLE001 - flags not set: dbt-duckdb used outside the dbt CLI
        folder = None
    return Path(folder or Path.cwd()).absolute()
