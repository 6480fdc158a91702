"""After a `dbt build`: which quality gates (expect_model_quality_above) errored, and whether to move `prod`
back to the version it replaced.

Engine-neutral: the build's target folder (run_results.json, manifest.json) says which gates failed and
where their stored failures and quality relations are; `query` runs SQL on the engine that built them
(DuckDB or Spark), every name in it quoted by that engine's Dialect. Prod is rolled back only when the
failing version is the one prod points at, prod pointed at another version before, that version still
exists, does not fail the same gate, and where it was measured on the same window did better.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ScorehouseError
from .names import DEFAULT_ALIAS
from .registry import Registry
from .sql import Dialect

QUALITY_GATE = "expect_model_quality_above"
Query = Callable[[str], list[dict[str, Any]]]


@dataclass(frozen=True)
class Breach:
    """One error row of a failed quality gate: a version worse than its holdout on a window and metric."""

    gate: str
    quality: str  # the quality relation, quoted
    model: str
    version: int
    window: str
    metric: str
    value: float | None  # None: the metric could not be computed, or had no holdout value to compare with
    detail: str
    worse: bool  # measured worse than the holdout allows (the only breach a rollback answers)


@dataclass(frozen=True)
class Decision:
    """What the monitor does about a model whose gate failed: roll prod back from `version` to `to`, or keep it."""

    model: str
    version: int | None
    to: int | None
    rollback: bool
    why: str


@dataclass(frozen=True)
class GateRun:
    """The quality gates of one dbt invocation: how many ran, the error rows of those that failed, and which
    invocation it was (as a person recognises it, and its id and schema, where its history tables are)."""

    gates: int
    breaches: list[Breach]
    described: str
    invocation_id: str | None
    schema: str | None  # the schema of the gated relations, quoted: the build's history tables are beside them


def failed_gates(target: str | Path, query: Query, dialect: Dialect) -> GateRun:
    """The quality gates of the dbt invocation that wrote `target` (see GateRun)."""
    target = Path(target)
    try:
        run = json.loads((target / "run_results.json").read_text())
        results = run["results"]
        nodes = json.loads((target / "manifest.json").read_text())["nodes"]
    except FileNotFoundError as exc:
        raise ScorehouseError(
            f"No {Path(exc.filename).name} in {target}: run `dbt build` first, or pass the build's --target-path"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ScorehouseError(f"{target} holds no readable dbt run results and manifest ({exc})") from None
    breaches, gates, schema = [], 0, None
    for result in results:
        node = nodes.get(result.get("unique_id"), {})
        if (node.get("test_metadata") or {}).get("name") != QUALITY_GATE:
            continue
        gates += 1
        if result.get("status") != "fail":
            continue
        if not node.get("config", {}).get("store_failures") or node.get("attached_node") not in nodes:
            raise ScorehouseError(
                f"Quality gate {node['name']} failed but keeps no failures to read "
                "(store_failures is off); scorehouse gates store them unless configured not to"
            )
        failures, quality = _relation(node, dialect), _relation(nodes[node["attached_node"]], dialect)
        schema = dialect.identifier(nodes[node["attached_node"]]["schema"])
        rows = query(
            f"select model_name, model_version, window_start, metric, current_value, detail, verdict "
            f"from {failures} where level = {dialect.literal('error')}"
        )
        breaches += [
            Breach(
                node["name"],
                quality,
                r["model_name"],
                int(r["model_version"]),
                str(r["window_start"]),
                r["metric"],
                None if r["current_value"] is None else float(r["current_value"]),
                r["detail"],
                r["verdict"] == "worse",
            )
            for r in rows
        ]
    return GateRun(gates, breaches, _invocation(run, target), (run.get("metadata") or {}).get("invocation_id"), schema)


def _invocation(run: dict[str, Any], target: Path) -> str:
    """'`dbt run --select x` (invocation 0769..., 2026-12-02T18:26:53Z) in target/run_results.json'."""
    metadata, args = run.get("metadata") or {}, run.get("args") or {}
    command = args.get("invocation_command") or f"dbt {args.get('which', '?')}"
    command = command.split(" --project-dir")[0].split(" --profiles-dir")[0]
    return (
        f"`{command}` (invocation {metadata.get('invocation_id', '?')}, {metadata.get('generated_at', '?')}) "
        f"in {target / 'run_results.json'}"
    )


def decide(registry: Registry, breaches: list[Breach], query: Query, dialect: Dialect) -> list[Decision]:
    """For each model with a breach: roll prod back, or keep it and say why."""
    decisions = []
    for model in sorted({b.model for b in breaches}):
        mine = [b for b in breaches if b.model == model]
        failing = sorted({b.version for b in mine})
        prod = registry.aliases(model).get(DEFAULT_ALIAS)
        previous = registry.previous(model, DEFAULT_ALIAS)
        why: str | None
        if prod not in failing:
            why = f"version(s) {', '.join(map(str, failing))} failed, prod is version {prod}"
        elif previous is None:
            why = f"prod (version {prod}) has no earlier version to roll back to"
        elif refusal := registry.rollback_refusal(model, DEFAULT_ALIAS):  # e.g. gc removed that version
            why = refusal
        elif any(b.version == previous for b in mine):
            why = f"version {previous}, which prod replaced, fails the gate too"
        elif not any(b.worse for b in mine if b.version == prod):
            why = "its gate failed on a metric it could not judge, not on a worse one; a rollback would not answer it"
        else:
            why = _no_better(previous, [b for b in mine if b.version == prod], query, dialect)
        if why:
            decisions.append(Decision(model, prod, previous, False, why))
        else:
            worst = "; ".join(f"{b.gate}: {b.detail}" for b in mine if b.version == prod)[:900]
            decisions.append(Decision(model, prod, previous, True, worst))
    return decisions


@dataclass(frozen=True)
class Verdict:
    """What the monitor found in a build: how many quality gates ran, their error rows, and per model what it did."""

    gates: int
    breaches: list[Breach]
    decisions: list[Decision]
    rolled_back: bool  # whether decisions to roll back were carried out (--rollback-on-error)
    invocation: str = "the build"  # which dbt invocation was read (failed_gates)
    rescore: dict[str, list[str]] = field(default_factory=dict)  # model -> the relations its failed version scored

    @property
    def moved(self) -> list[str]:
        """The models whose prod this run rolled back (their marts are to be scored again)."""
        return [d.model for d in self.decisions if d.rollback and self.rolled_back]

    def lines(self) -> list[str]:
        """What a person reads: one line per breach, then one per model."""
        lines = [f"{b.model} v{b.version}: {b.detail} ({b.gate})" for b in self.breaches]
        for d in self.decisions:
            if d.rollback and self.rolled_back:
                lines.append(f"{d.model}: prod rolled back from version {d.version} to {d.to}")
                scored = self.rescore.get(d.model)
                lines.append(
                    f"{d.model}: "
                    + (
                        f"{', '.join(scored)} still hold version {d.version}'s scores (and the serving file its "
                        f"publication): re-score and re-publish them with `dbt build --select "
                        f"{' '.join(name + '+' for name in scored)}`"
                        if scored
                        else f"the relations version {d.version} scored still hold its scores: re-score and re-publish "
                        "them with `dbt build`"
                    )
                )
            elif d.rollback:
                lines.append(
                    f"{d.model}: prod would roll back from version {d.version} to {d.to} "
                    "(run with --rollback-on-error to do it)"
                )
            else:
                lines.append(f"{d.model}: prod kept at version {d.version}: {d.why}")
        if not self.gates:
            return [
                f"no quality gate ({QUALITY_GATE}) ran in {self.invocation}: the gates run in `dbt build` or `dbt test`"
            ]
        return lines or [f"{self.gates} quality gate{'s' if self.gates > 1 else ''} ran, none errored"]


def monitor(registry: Registry, target: str | Path, query: Query, dialect: Dialect, rollback: bool = False) -> Verdict:
    """Read the build's quality gates, decide per model, and with `rollback` move prod back."""
    run = failed_gates(target, query, dialect)
    decisions = decide(registry, run.breaches, query, dialect)
    rescore = {}
    for d in decisions:
        if d.rollback and rollback:
            assert d.version is not None, "a rollback is decided only for a prod version that failed"
            registry.rollback(
                d.model, DEFAULT_ALIAS, reason=f"automatic: {d.why}", action="automatic_rollback", expect=d.version
            )
            rescore[d.model] = _scored_by(run, d.model, d.version, query, dialect)
    return Verdict(run.gates, run.breaches, decisions, rollback, run.described, rescore)


def _scored_by(run: GateRun, model: str, version: int, query: Query, dialect: Dialect) -> list[str]:
    """The relations `version` of `model` scored in the invocation, from its scoring_runs; [] where unknown."""
    if not (run.invocation_id and run.schema):
        return []
    try:
        rows = query(
            f"select distinct scored_relation from {run.schema}.{dialect.identifier('scoring_runs')} "
            f"where invocation_id = {dialect.literal(run.invocation_id)} and model_name = "
            f"{dialect.literal(model)} and model_version = {int(version)} order by scored_relation"
        )
    except Exception:  # noqa: BLE001 - no scoring_runs (its hook off): the line names no relation
        return []
    return [r["scored_relation"] for r in rows]


def _no_better(previous: int, breaches: list[Breach], query: Query, dialect: Dialect) -> str | None:
    """Why the previous version is no better where it was measured on the same windows (None: it is, or
    it was not measured there)."""
    for b in breaches:
        if not b.worse:
            continue
        assert b.value is not None, "a 'worse' verdict compares a measured value (expect_model_quality_above)"
        rows = query(
            f"select value, better from {b.quality} where model_name = {dialect.literal(b.model)} "
            f"and model_version = {int(previous)} and metric = {dialect.literal(b.metric)} "
            f"and cast(window_start as {dialect.text_type}) = {dialect.literal(b.window)}"
        )
        if not rows or rows[0]["value"] is None:
            continue
        theirs, better = float(rows[0]["value"]), rows[0]["better"]
        if (
            (better == "higher" and theirs <= b.value)
            or (better == "lower" and theirs >= b.value)
            or (better == "nearer_zero" and abs(theirs) >= abs(b.value))
        ):
            return (
                f"version {previous} did no better on window {b.window}: {b.metric} {theirs:.4g} against {b.value:.4g}"
            )
    return None


def _relation(node: dict[str, Any], dialect: Dialect) -> str:
    """The node's relation, schema and name quoted (the build's own connection has the same catalog)."""
    return ".".join(dialect.identifier(part) for part in (node["schema"], node.get("alias") or node["name"]))
