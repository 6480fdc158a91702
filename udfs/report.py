"""A self-contained HTML drift report: training and current distributions side by side, per feature."""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .profile import (
    DEFAULT_THRESHOLDS,
    OTHER,
    UNSEEN,
    bin_shares,
    category_shares,
    feature_metrics,
    level,
)
from .scoring import Scorer
from .sql import DUCKDB, table_name

TRAINING, CURRENT = "#4c78a8", "#f58518"
LEVEL_COLOURS = {"error": "#c0392b", "warn": "#d68910", None: "#1e8449"}


def feature_report(profile: dict[str, Any], values: list) -> dict[str, Any]:
    """Metrics, levels and the two distributions of one feature."""
    metrics = []
    for metric, (baseline, current) in feature_metrics(profile, values).items():
        metrics.append({"metric": metric, "baseline": baseline, "current": current,
                        "warn_above": DEFAULT_THRESHOLDS[metric][0], "error_above": DEFAULT_THRESHOLDS[metric][1],
                        "level": level(metric, baseline, current)})
    if profile["kind"] == "numeric":
        present = np.asarray([v for v in values if v is not None], dtype=np.float64).astype(np.float32).astype(np.float64)
        edges = profile["edges"]
        labels = [f"≤ {edges[0]:.3g}" if edges else "all"] + [f"{a:.3g}–{b:.3g}" for a, b in zip(edges, edges[1:])]
        labels += [f"> {edges[-1]:.3g}"] if edges else []
        bars = list(zip(labels, profile["shares"], bin_shares(present, edges).tolist()))
    else:
        current = category_shares(values, profile)
        buckets = sorted(set(profile["shares"]) | set(current), key=lambda b: (b in (OTHER, UNSEEN), b))
        bars = [(b, profile["shares"].get(b, 0.0), current.get(b, 0.0)) for b in buckets]
    worst = "error" if any(m["level"] == "error" for m in metrics) else ("warn" if any(m["level"] for m in metrics) else None)
    return {"kind": profile["kind"], "metrics": metrics, "bars": bars, "level": worst}


def build_report(scorer: Scorer, ref: str, conn, relation: str) -> dict[str, Any]:
    """Measure `relation` (a table or view on `conn`) against the training profile of `ref`."""
    card = scorer.card(ref)
    profile = card.manifest.get("profile")
    if profile is None:
        from .errors import ScorehouseError

        raise ScorehouseError(f"Model {scorer.describe(ref)} has no training profile; retrain it to get one")
    source = table_name(relation, what="--table")
    found = {row[0]: row[1] for row in conn.sql(f"describe select * from {source}").fetchall()}
    scorer.check_input(ref, found)
    # categories as text, as the model reads them (a BOOLEAN category is 'true' or 'false')
    columns = ", ".join(DUCKDB.identifier(f.name) if f.kind == "numeric"
                        else f"cast({DUCKDB.identifier(f.name)} as varchar) as {DUCKDB.identifier(f.name)}"
                        for f in card.features)
    table = conn.sql(f"select {columns} from {source}").to_arrow_table()
    features = {f.name: feature_report(profile["features"][f.name], table.column(f.name).to_pylist())
                for f in card.features}
    return {"model": scorer.describe(ref), "relation": relation, "rows": table.num_rows,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "training_rows": card.manifest["training_data"]["train_rows"], "features": features}


def render_html(report: dict[str, Any]) -> str:
    """Render a report as one HTML page with inline SVG charts (no scripts, no external files)."""
    esc = html.escape
    crossed = [(name, m) for name, f in report["features"].items() for m in f["metrics"] if m["level"]]
    summary_rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{esc(m['metric'])}</td><td>{m['baseline']:.4g}</td><td>{m['current']:.4g}</td>"
        f"<td>{m['warn_above']:.4g} / {m['error_above']:.4g}</td>"
        f"<td style='color:{LEVEL_COLOURS[m['level']]};font-weight:bold'>{m['level']}</td></tr>"
        for name, m in crossed
    ) or "<tr><td colspan='6'>No threshold crossed.</td></tr>"
    sections = []
    for name, feature in report["features"].items():
        metrics = "".join(
            f"<li style='color:{LEVEL_COLOURS[m['level']]}'>{esc(m['metric'])}: {m['current']:.4g}"
            f" (training {m['baseline']:.4g}; warn above {m['warn_above']:.4g}, error above {m['error_above']:.4g})"
            f"{' — ' + m['level'] if m['level'] else ''}</li>" for m in feature["metrics"])
        status = feature["level"] or "ok"
        sections.append(
            f"<section class='feature' id='feature-{esc(name)}' data-level='{status}'>"
            f"<h2>{esc(name)} <small>{feature['kind']}</small> "
            f"<span class='badge' style='background:{LEVEL_COLOURS[feature['level']]}'>{status}</span></h2>"
            f"{bar_chart(feature['bars'])}<ul>{metrics}</ul></section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {esc(report['model'])} on {esc(report['relation'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
.feature {{ border-top: 1px solid #ccc; margin-top: 1.5em; }} small {{ color: #777; font-weight: normal; }}
.badge {{ color: white; border-radius: 4px; padding: 1px 8px; font-size: 0.7em; vertical-align: middle; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }}
</style></head><body>
<h1>Drift report: {esc(report['model'])}</h1>
<p>Input <b>{esc(report['relation'])}</b>, {report['rows']:,} rows, against the training profile
({report['training_rows']:,} training rows). Generated {esc(report['created_at'])}.</p>
<p class="legend"><span style="background:{TRAINING}"></span>training<span style="background:{CURRENT}"></span>current</p>
<h2>Thresholds crossed</h2>
<table id="crossed"><tr><th>feature</th><th>metric</th><th>training</th><th>current</th><th>warn / error above</th><th>level</th></tr>
{summary_rows}</table>
{''.join(sections)}
</body></html>
"""


def bar_chart(bars: list[tuple[str, float, float]], width: int = 900, height: int = 200) -> str:
    """Grouped bars of training and current shares, as inline SVG."""
    top = max([max(t, c) for _, t, c in bars] + [1e-9])
    slot = (width - 40) / max(len(bars), 1)
    bar = max(slot * 0.38, 1)
    parts = [f"<svg class='chart' width='{width}' height='{height + 40}' viewBox='0 0 {width} {height + 40}' role='img'>",
             f"<line x1='30' y1='{height}' x2='{width}' y2='{height}' stroke='#999'/>"]
    for i, (label, training, current) in enumerate(bars):
        x = 35 + i * slot
        for j, (share, colour) in enumerate(((training, TRAINING), (current, CURRENT))):
            h = (height - 10) * share / top
            parts.append(f"<rect x='{x + j * bar:.1f}' y='{height - h:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                         f"fill='{colour}'><title>{html.escape(label)}: {share:.3%}</title></rect>")
        parts.append(f"<text x='{x + bar:.1f}' y='{height + 14}' font-size='10' text-anchor='middle'>"
                     f"{html.escape(label[:14])}</text>")
    parts.append(f"<text x='0' y='12' font-size='10'>{top:.0%}</text></svg>")
    return "".join(parts)


def write_report(scorer: Scorer, ref: str, conn, relation: str, out: str | Path) -> dict[str, Any]:
    report = build_report(scorer, ref, conn, relation)
    Path(out).write_text(render_html(report), encoding="utf-8")
    return report
