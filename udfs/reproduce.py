"""`scorehouse reproduce`: re-score one row of a scored relation with the version recorded for it, and say
whether its score comes out again — and if not, what differs: the version's artifact (sha256 against the
one scoring_runs recorded), the input row (input_hash against the one the mart stored), or the score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from .errors import IntegrityError, ScorehouseError
from .fingerprint import row_hash
from .registry import Registry
from .scoring import Session
from .sql import Dialect, table_name

Query = Callable[[str, list[Any]], pa.Table]


@dataclass(frozen=True)
class Reproduction:
    reproduced: bool
    lines: list[str]


def reproduce(
    registry: Registry, query: Query, sql: Dialect, relation: str, key: str, value: str, score: str | None = None
) -> Reproduction:
    """Re-score the row of `relation` whose `key` equals `value` (both checked names, the value a parameter)."""
    runs = query(
        "select * from scoring_runs where scored_relation = ? order by finished_at desc", [relation.split(".")[-1]]
    )
    if not runs.num_rows:
        raise ScorehouseError(f"scoring_runs has no row for {relation}: was it built by dbt with predict()?")
    row = _row(query, sql, table_name(relation, sql.name, "relation"), relation, key, value)
    latest = [r for r in runs.to_pylist() if r["finished_at"] == runs.column("finished_at")[0].as_py()]
    version = row.get("model_version")
    run = next((r for r in latest if r["model_version"] == version), latest[0])
    name, version = run["model_name"], int(run["model_version"])
    lines, reproduced = [], True

    scorer = Session(registry)
    card = scorer.card(f"{name}@{version}")  # read and checked once: sha256, features, tolerance
    sha = card.manifest.onnx_sha256
    if sha is None:
        raise IntegrityError(f"Model {name} v{version}: its manifest records no sha256 for model.onnx")
    if sha != run["artifact_sha256"]:
        reproduced = False
        lines.append(
            f"artifact differs: {name} version {version}'s model.onnx is sha256 {sha[:12]}… in the registry, "
            f"the build recorded {str(run['artifact_sha256'])[:12]}…"
        )
    if not run["input_relation"]:
        raise ScorehouseError(
            f"{relation} has no single input relation in scoring_runs: cannot find the row's features"
        )
    features_row = _row(query, sql, sql.identifier(run["input_relation"]), run["input_relation"], key, value)
    if "input_hash" in row:
        now = row_hash(features_row, card.features)
        if row["input_hash"] != now:
            reproduced = False
            lines.append(
                f"input differs: {run['input_relation']} row {key}={value} hashes to {now[:12]}… now, "
                f"{relation} stored {str(row['input_hash'])[:12]}…"
            )
    columns = {f.name: pa.array([features_row.get(f.name)]) for f in card.features}
    fresh = scorer.predict(f"{name}@{version}", columns).to_pylist()[0]
    candidates = [score] if score else [c for c, v in row.items() if isinstance(v, float)]
    if score and score not in row:
        raise ScorehouseError(f"{relation} has no column '{score}'; its columns: {', '.join(row)}")
    tolerance = card.manifest.tolerance
    column = next((c for c in candidates if row[c] is not None and abs(row[c] - fresh) <= tolerance), None)
    if column is None:
        reproduced = False
        shown = ", ".join(f"{c} {row[c]!r}" for c in candidates) or "no numeric column (pass --score)"
        lines.append(f"score differs: {name} version {version} gives {fresh!r}; {relation} has {shown}")
    head = (
        f"{'reproduced' if reproduced else 'not reproduced'}: {relation} {key}={value}: "
        + (f"{column} {row[column]!r} = " if column else "")
        + f"{name} version {version} (sha256 {sha[:12]}…, {run['method']}) on {run['input_relation']}"
    )
    return Reproduction(reproduced, [head, *lines])


def _row(query: Query, sql: Dialect, source: str, relation: str, key: str, value: str) -> dict[str, Any]:
    """The one row of `source` (quoted) whose `key` reads `value` as text."""
    table = query(f"select * from {source} where cast({sql.identifier(key)} as {sql.text_type}) = ?", [value])
    if table.num_rows != 1:
        raise ScorehouseError(f"{relation} has {table.num_rows} rows where {key} = {value!r}; expected one")
    return table.to_pylist()[0]
