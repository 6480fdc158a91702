"""Where the registry and the warehouse live: CLI flag, then environment, then the project default."""

from __future__ import annotations

import os
from pathlib import Path

REGISTRY_ENV = "SCOREHOUSE_REGISTRY"
WAREHOUSE_ENV = "SCOREHOUSE_WAREHOUSE"
DEFAULT_REGISTRY = "registry"
DEFAULT_WAREHOUSE = "warehouse/scorehouse.duckdb"


def registry_path(explicit: str | os.PathLike | None = None) -> Path:
    """Return the registry directory to use."""
    return Path(explicit or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


def warehouse_path(explicit: str | os.PathLike | None = None) -> Path:
    """Return the DuckDB warehouse file to use."""
    return Path(explicit or os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE)
