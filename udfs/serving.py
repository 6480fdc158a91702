"""The serving file BI tools read, replaced whole after each build (dbt_project/macros/publish.sql)."""

from __future__ import annotations

import glob
import os

from .registry import fsync_dir


def publish_file(staged: str, target: str) -> str:
    """Make `staged`, a complete and detached DuckDB file, the serving file in one rename; return its path.

    Readers that opened the previous file keep reading it; new connections see the new one. Staged
    files left by builds killed before this point are removed (a warehouse has one writer at a time).
    """
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, target)
    fsync_dir(os.path.dirname(os.path.abspath(target)))
    for leftover in glob.glob(glob.escape(target) + ".*.tmp"):
        os.remove(leftover)
    return target
