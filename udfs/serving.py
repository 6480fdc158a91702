"""The serving file BI tools read, replaced whole after each build (dbt_project/macros/publish.sql)."""

from __future__ import annotations

import glob
import os

from .errors import ScorehouseError
from .registry import fsync_dir

PUBLISH_FORMAT = "scorehouse_serving"  # what the publish_marts hook asks the dbt plugin to store


def publish_file(staged: str, target: str) -> str:
    """Make `staged`, a complete and detached DuckDB file, the serving file in one rename; return its path.

    `staged` must be `<target>.<build id>.tmp`, as the hook names it: nothing else is ever moved.
    Readers that opened the previous file keep reading it; new connections see the new one. Staged
    files left by builds killed before this point are removed (a warehouse has one writer at a time).
    """
    staged, target = os.path.abspath(staged), os.path.abspath(target)
    prefix = target + "."
    if not (staged.startswith(prefix) and staged.endswith(".tmp") and "/" not in staged[len(prefix):]):
        raise ScorehouseError(f"Refusing to publish {staged}: a staged serving file is named {target}.<build id>.tmp")
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, target)
    fsync_dir(os.path.dirname(target))
    for leftover in glob.glob(glob.escape(target) + ".*.tmp"):
        os.remove(leftover)
    return target
