"""Every SQL text the writer produces for a registry's versions, on each engine, as JSON: run it before and
after a change to the writer (scorehouse.writer, scorehouse.staged) and diff the two files.

    python -m bench.sql_strings REGISTRY OUT.json

Per reference (each model's prod alias and each version pinned) and engine: predict()'s call (default and
with method 'sql'), the table form's query, explain()'s call, the version under a gray release's key, the
input hash, the fingerprint and the scoring note. An error is recorded as its message (e.g. a forced 'sql'
whose expression is too long for Spark). The registry is read, never written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scorehouse.errors import ScorehouseError
from scorehouse.scoring import Session
from scorehouse.sql import DIALECTS
from scorehouse.writer import SqlWriter


def record(registry: Path) -> dict[str, dict[str, str | None]]:
    session = Session(registry)
    texts: dict[str, dict[str, str | None]] = {}
    for name, version in session.versions():
        for ref in (name, f"{name}@{version}"):
            for sql in DIALECTS.values():
                texts[f"{ref} {sql.name}"] = _texts(SqlWriter(session, sql), ref)
    return texts


def _texts(writer: SqlWriter, ref: str) -> dict[str, str | None]:
    kept = ["a"] if writer.sql.lists_columns else None
    calls = {
        "predict": lambda: writer.sql_call(ref, "f", "default"),
        "predict_sql": lambda: writer.sql_call(ref, "f", "score", "sql"),
        "table": lambda: writer.table_sql(ref, "src", "default", kept=kept),
        "explain": lambda: writer.explain_sql(ref, "f", 3),
        "version": lambda: writer.version_sql(ref, "f", "k"),
        "input_hash": lambda: writer.input_hash_sql(ref, "f"),
        "fingerprint": lambda: writer.fingerprint_sql(ref, "f"),
        "note": lambda: writer.call_note(ref, "default", form="table"),
    }
    texts: dict[str, str | None] = {}
    for what, call in calls.items():
        try:
            texts[what] = call()
        except ScorehouseError as exc:
            texts[what] = f"error: {exc}"
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("registry", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    texts = record(args.registry)
    args.out.write_text(json.dumps(texts, indent=1, sort_keys=True))
    chars = sum(len(text or "") for each in texts.values() for text in each.values())
    print(f"{len(texts)} references x engines, {chars:,} characters of SQL -> {args.out}")


if __name__ == "__main__":
    main()
