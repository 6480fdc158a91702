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
from dataclasses import dataclass
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


def failed_gates(target: str | Path, query: Query, dialect: Dialect) -> tuple[int, list[Breach], str]:
    """How many quality gates ran in the dbt invocation that wrote `target`, the error rows of those that failed,
    and which invocation that was (its command, id and time, as a person recognises it)."""
    target = Path(target)
    try:
        run = json.loads((target / "run_results.json").read_text())
        results = run["results"]
        nodes = json.loads((target / "manifest.json").read_text())["nodes"]
    except FileNotFoundError as exc:
        raise ScorehouseError(f"No {Path(exc.filename).name} in {target}: run `dbt build` first, "
                              "or pass the build's --target-path") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ScorehouseError(f"{target} holds no readable dbt run results and manifest ({exc})") from None
    breaches, gates = [], 0
    for result in results:
        node = nodes.get(result.get("unique_id"), {})
        if (node.get("test_metadata") or {}).get("name") != QUALITY_GATE:
            continue
        gates += 1
        if result.get("status") != "fail":
            continue
        if not node.get("config", {}).get("store_failures") or node.get("attached_node") not in nodes:
            raise ScorehouseError(f"Quality gate {node['name']} failed but keeps no failures to read "
                                  "(store_failures is off); scorehouse gates store them unless configured not to")
        failures, quality = _relation(node, dialect), _relation(nodes[node["attached_node"]], dialect)
        rows = query(f"select model_name, model_version, window_start, metric, current_value, detail, verdict "
                     f"from {failures} where level = {dialect.literal('error')}")
        breaches += [Breach(node["name"], quality, r["model_name"], int(r["model_version"]), str(r["window_start"]),
                            r["metric"], None if r["current_value"] is None else float(r["current_value"]), r["detail"],
                            r["verdict"] == "worse") for r in rows]
    return gates, breaches, _invocation(run, target)


def _invocation(run: dict[str, Any], target: Path) -> str:
    """'`dbt run --select x` (invocation 0769..., 2026-12-02T18:26:53Z) in target/run_results.json'."""
    metadata, args = run.get("metadata") or {}, run.get("args") or {}
    command = args.get("invocation_command") or f"dbt {args.get('which', '?')}"
    command = command.split(" --project-dir")[0].split(" --profiles-dir")[0]
    return (f"`{command}` (invocation {metadata.get('invocation_id', '?')}, {metadata.get('generated_at', '?')}) "
            f"in {target / 'run_results.json'}")


def decide(registry: Registry, breaches: list[Breach], query: Query, dialect: Dialect) -> list[Decision]:
    """For each model with a breach: roll prod back, or keep it and say why."""
    decisions = []
    for model in sorted({b.model for b in breaches}):
        mine = [b for b in breaches if b.model == model]
        failing = sorted({b.version for b in mine})
        prod = registry.aliases(model).get(DEFAULT_ALIAS)
        previous = registry.previous(model, DEFAULT_ALIAS)
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

    def lines(self) -> list[str]:
        """What a person reads: one line per breach, then one per model."""
        lines = [f"{b.model} v{b.version}: {b.detail} ({b.gate})" for b in self.breaches]
        for d in self.decisions:
            if d.rollback and self.rolled_back:
                lines.append(f"{d.model}: prod rolled back from version {d.version} to {d.to}")
            elif d.rollback:
                lines.append(f"{d.model}: prod would roll back from version {d.version} to {d.to} "
                             "(run with --rollback-on-error to do it)")
            else:
                lines.append(f"{d.model}: prod kept at version {d.version}: {d.why}")
        if not self.gates:
            return [f"no quality gate ({QUALITY_GATE}) ran in {self.invocation}: the gates run in "
                    "`dbt build` or `dbt test`"]
        return lines or [f"{self.gates} quality gate{'s' if self.gates > 1 else ''} ran, none errored"]


def monitor(registry: Registry, target: str | Path, query: Query, dialect: Dialect, rollback: bool = False) -> Verdict:
    """Read the build's quality gates, decide per model, and with `rollback` move prod back."""
    gates, breaches, invocation = failed_gates(target, query, dialect)
    decisions = decide(registry, breaches, query, dialect)
    for d in decisions:
        if d.rollback and rollback:
            registry.rollback(d.model, DEFAULT_ALIAS, reason=f"automatic: {d.why}", action="automatic_rollback",
                              expect=d.version)
    return Verdict(gates, breaches, decisions, rollback, invocation)


def _no_better(previous: int, breaches: list[Breach], query: Query, dialect: Dialect) -> str | None:
    """Why the previous version is no better where it was measured on the same windows (None: it is, or
    it was not measured there)."""
    for b in breaches:
        if not b.worse:
            continue
        rows = query(f"select value, better from {b.quality} where model_name = {dialect.literal(b.model)} "
                     f"and model_version = {int(previous)} and metric = {dialect.literal(b.metric)} "
                     f"and cast(window_start as {dialect.text_type}) = {dialect.literal(b.window)}")
        if not rows or rows[0]["value"] is None:
            continue
        theirs, better = float(rows[0]["value"]), rows[0]["better"]
        if ((better == "higher" and theirs <= b.value) or (better == "lower" and theirs >= b.value)
                or (better == "nearer_zero" and abs(theirs) >= abs(b.value))):
            return (f"version {previous} did no better on window {b.window}: {b.metric} {theirs:.4g} "
                    f"against {b.value:.4g}")
    return None


def _relation(node: dict[str, Any], dialect: Dialect) -> str:
    """The node's relation, schema and name quoted (the build's own connection has the same catalog)."""
    return ".".join(dialect.identifier(part) for part in (node["schema"], node.get("alias") or node["name"]))
