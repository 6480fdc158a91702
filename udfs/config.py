"""Where the registry and the warehouse live, and which keys sign and check it: CLI flag, then environment,
then the project default."""

from __future__ import annotations

import os
from pathlib import Path

REGISTRY_ENV = "SCOREHOUSE_REGISTRY"
WAREHOUSE_ENV = "SCOREHOUSE_WAREHOUSE"
# A PEM ed25519 public key: every load refuses versions it did not sign (see udfs/signing.py).
PUBLIC_KEY_ENV = "SCOREHOUSE_PUBLIC_KEY"
# A PEM ed25519 private key: new versions are signed with it.
SIGNING_KEY_ENV = "SCOREHOUSE_SIGNING_KEY"
DEFAULT_REGISTRY = "registry"
DEFAULT_WAREHOUSE = "warehouse/scorehouse.duckdb"


def registry_path(explicit: str | os.PathLike | None = None) -> Path:
    """Return the registry directory to use."""
    return Path(explicit or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


def warehouse_path(explicit: str | os.PathLike | None = None) -> Path:
    """Return the DuckDB warehouse file to use."""
    return Path(explicit or os.environ.get(WAREHOUSE_ENV) or DEFAULT_WAREHOUSE)


def public_key_path(explicit: str | os.PathLike | None = None) -> str | None:
    """The public key file every load checks signatures against, if one is configured."""
    return str(explicit or os.environ.get(PUBLIC_KEY_ENV) or "") or None


def signing_key_path(explicit: str | os.PathLike | None = None) -> str | None:
    """The private key file new versions are signed with, if one is configured."""
    return str(explicit or os.environ.get(SIGNING_KEY_ENV) or "") or None
