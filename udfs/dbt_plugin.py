"""dbt-duckdb plugin: every connection dbt opens gets the registry's predict functions.

    plugins:
      - module: udfs.dbt_plugin
        alias: scorehouse
        config: {registry: registry}          # optional: public_key: keys/scorehouse_signing.pub.pem

One Scorer per dbt invocation, so every model of a build scores a reference with one version.

The one file operation the package's hooks need, replacing the serving file after a build, is not a
SQL function (an analyst's query could call that): the publish_marts hook reaches it through
dbt-duckdb's `adapter.store_relation`, which calls `store` below in the build's own process.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from .duckdb import create_macros, register
from .errors import ScorehouseError
from .registry import Registry
from .scoring import Scorer
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
        self.scorer = Scorer(Registry(config.registry, public_key=config.public_key))
        path = getattr(self.creds, "path", None)
        if path and path != ":memory:" and "://" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)  # DuckDB does not create folders

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
