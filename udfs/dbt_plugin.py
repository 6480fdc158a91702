"""dbt-duckdb plugin: every connection dbt opens gets the registry's predict functions.

    plugins:
      - module: udfs.dbt_plugin
        config: {registry: registry}

One Scorer per dbt invocation, so every model of a build scores a reference with one version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from .duckdb import create_macros, register
from .registry import Registry
from .scoring import Scorer


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.scorer = Scorer(Registry(plugin_config.get("registry")))
        path = getattr(self.creds, "path", None)
        if path and path != ":memory:" and "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # DuckDB does not create folders

    def configure_connection(self, conn) -> None:
        register(conn, scorer=self.scorer)

    def configure_cursor(self, cursor) -> None:
        create_macros(cursor, self.scorer)  # temporary macros are per cursor; functions are shared
