"""Where the registry and the warehouse live, and which keys sign and check the registry.

Each setting comes from the first of: the command-line flag (or the dbt plugin's config), the
environment variable, the nearest `scorehouse.yml` found from the current folder upward (its relative
paths are taken from its own folder; `scorehouse init` writes one beside dbt_project.yml), the default.
Relative flags and defaults are taken from `base`: the current folder for the CLI, the dbt project
folder for the dbt plugin. So a command or a build finds the same files from any folder of a project.

    # scorehouse.yml
    registry: registry
    warehouse: warehouse/scorehouse.duckdb
    public_key: keys/scorehouse_signing.pub.pem      # optional
    source_roots: [/data/exports]                     # optional: folders specs may read files from

A spec's source file must lie inside its project (the folder of the scorehouse.yml above the spec, else
the spec's own folder) or one of `source_roots` (spec_source_roots).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, overload

from .errors import ScorehouseError
from .names import shown

SETTINGS_FILE = "scorehouse.yml"
REGISTRY_ENV = "SCOREHOUSE_REGISTRY"
WAREHOUSE_ENV = "SCOREHOUSE_WAREHOUSE"
# A PEM ed25519 public key: every load refuses versions it did not sign (see udfs/signing.py).
PUBLIC_KEY_ENV = "SCOREHOUSE_PUBLIC_KEY"
# A PEM ed25519 private key: new versions are signed with it.
SIGNING_KEY_ENV = "SCOREHOUSE_SIGNING_KEY"
DEFAULT_REGISTRY = "registry"
DEFAULT_WAREHOUSE = "warehouse/scorehouse.duckdb"


@dataclass(frozen=True, slots=True)
class ProjectFile:
    """The settings of a scorehouse.yml, as absolute paths (None where the file leaves one out)."""

    registry: str | None = None  # the model registry folder
    warehouse: str | None = None  # the DuckDB warehouse file
    public_key: str | None = None  # a PEM public key every load checks signatures with
    signing_key: str | None = None  # a PEM private key new versions are signed with
    source_roots: tuple[str, ...] = ()  # folders outside the project that specs may read source files from

    @classmethod
    def find(cls, start: str | os.PathLike | None = None) -> tuple[ProjectFile, Path | None]:
        """The nearest scorehouse.yml from `start` (default: the current folder) upward, and its path."""
        folder = Path(start or Path.cwd()).absolute()
        for candidate in (folder, *folder.parents):
            path = candidate / SETTINGS_FILE
            if path.is_file():
                return cls.read(path), path
        return cls(), None

    @classmethod
    def read(cls, path: Path) -> ProjectFile:
        import yaml

        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ScorehouseError(f"Cannot read {path}: {exc}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            extra = sorted(set(data) - known) if isinstance(data, dict) else data
            raise ScorehouseError(f"{path}: unknown settings {extra}; known: {sorted(known)}")
        roots = data.pop("source_roots", None) or []
        if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
            raise ScorehouseError(
                f"{path}: source_roots must be a list of folders, e.g. [/data/exports], found {shown(roots)}"
            )
        return cls(
            **{k: str(path.parent / str(v)) for k, v in data.items() if v not in (None, "")},
            source_roots=tuple(str(path.parent / r) for r in roots),
        )


@overload
def _setting(
    explicit: Any, env: str, key: str, default: str, base: str | os.PathLike | None, start: str | os.PathLike | None
) -> str: ...


@overload
def _setting(
    explicit: Any, env: str, key: str, default: None, base: str | os.PathLike | None, start: str | os.PathLike | None
) -> str | None: ...


def _setting(
    explicit: Any,
    env: str,
    key: str,
    default: str | None,
    base: str | os.PathLike | None,
    start: str | os.PathLike | None,
) -> str | None:
    if explicit not in (None, ""):
        return str(Path(base or Path.cwd()).absolute() / str(explicit))
    if os.environ.get(env):
        return str(Path(os.environ[env]).absolute())
    found = getattr(ProjectFile.find(start or base)[0], key)
    if found:
        return found
    return None if default is None else str(Path(base or Path.cwd()).absolute() / default)


def registry_path(
    explicit: str | os.PathLike | None = None,
    base: str | os.PathLike | None = None,
    start: str | os.PathLike | None = None,
) -> Path:
    """The registry folder to use, as an absolute path."""
    return Path(_setting(explicit, REGISTRY_ENV, "registry", DEFAULT_REGISTRY, base, start))


def warehouse_path(
    explicit: str | os.PathLike | None = None,
    base: str | os.PathLike | None = None,
    start: str | os.PathLike | None = None,
) -> Path:
    """The DuckDB warehouse file to use, as an absolute path."""
    return Path(_setting(explicit, WAREHOUSE_ENV, "warehouse", DEFAULT_WAREHOUSE, base, start))


def public_key_path(explicit: str | os.PathLike | None = None, base: str | os.PathLike | None = None) -> str | None:
    """The public key file every load checks signatures against, if one is configured."""
    return _setting(explicit, PUBLIC_KEY_ENV, "public_key", None, base, None)


def signing_key_path(explicit: str | os.PathLike | None = None, base: str | os.PathLike | None = None) -> str | None:
    """The private key file new versions are signed with, if one is configured."""
    return _setting(explicit, SIGNING_KEY_ENV, "signing_key", None, base, None)


def spec_source_roots(spec_folder: str | os.PathLike) -> tuple[list[Path], Path]:
    """The folders a spec in `spec_folder` may read source files from (its project's, then the configured
    source_roots), symlinks resolved, and the scorehouse.yml that names or would name the roots."""
    settings, found = ProjectFile.find(spec_folder)
    project = found.parent if found else Path(spec_folder).absolute()
    return [project.resolve(), *(Path(p).resolve() for p in settings.source_roots)], found or project / SETTINGS_FILE
