"""A self-contained HTML drift report, no script: per feature the training and current distributions side
by side, the NULL share as its own bar, the unseen values by name, and the drift metric over past builds
(drift_history) with its thresholds; the model's output, training against current; quality over past builds
(quality_history) where it exists."""

from __future__ import annotations

import html
from collections import Counter
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
from .errors import ScorehouseError
from .scoring import Scorer
from .sql import DUCKDB, table_name

TRAINING, CURRENT = "#4c78a8", "#f58518"
HISTORY, WARN_LINE, ERROR_LINE = "#6f42c1", "#d68910", "#c0392b"
VERSION_COLOURS = ["#2a9d8f", "#e76f51", "#264653", "#e9c46a", "#8ab17d"]
UNSEEN_SHOWN = 5  # the most frequent unseen values named per feature
DRIVER_ROWS = 10_000  # rows explained for "what drives the scores" (the first of the relation)
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
    nulls = sum(v is None or v == "" or (isinstance(v, float) and np.isnan(v)) for v in values)
    unseen = Counter(v for v in values if profile["kind"] != "numeric" and v not in (None, "")
                     and v not in profile["buckets"])
    return {"kind": profile["kind"], "metrics": metrics, "bars": bars, "level": worst,
            "null_share": (profile["null_rate"], nulls / len(values) if values else 0.0),
            "unseen": unseen.most_common(UNSEEN_SHOWN), "unseen_values": len(unseen)}


def build_report(scorer: Scorer, ref: str, conn, relation: str) -> dict[str, Any]:
    """Measure `relation` (a table or view on `conn`) against the training profile of `ref`."""
    card = scorer.card(ref)
    profile = card.manifest.get("profile")
    if profile is None:
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
    output = "label" if card.task == "multiclass" else None
    scores = scorer.predict(ref, {f.name: table.column(f.name) for f in card.features}, output).to_pylist()
    drivers = None
    try:
        from .explain import contributions

        sample = table.slice(0, DRIVER_ROWS)
        names, matrix = contributions(scorer.explanation(ref), {f.name: sample.column(f.name) for f in card.features})
        drivers = sorted(zip(names, np.abs(matrix).mean(axis=0).tolist()), key=lambda item: -item[1])
    except ScorehouseError as exc:  # a version without explanations: the report says why
        drivers = str(exc)
    return {"model": scorer.describe(ref), "relation": relation, "rows": table.num_rows, "drivers": drivers,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "training_rows": card.manifest["training_data"]["train_rows"], "features": features,
            "output": feature_report(profile["output"], scores),
            "history": drift_history(conn, card.name, relation.split(".")[-1]),
            "quality": quality_history(conn, card.name)}


def _has_table(conn, name: str) -> bool:
    return bool(conn.sql("select count(*) from duckdb_tables() where table_name = ?", params=[name]).fetchall()[0][0])


def drift_history(conn, model: str, relation: str) -> dict[str, dict[str, Any]]:
    """Per feature, its main drift metric at each past build: {feature: {metric, points, warn_above, error_above}}."""
    if not _has_table(conn, "drift_history"):
        return {}
    rows = conn.sql("select feature, metric, recorded_at, current_value, warn_above, error_above from drift_history "
                    "where model_name = ? and input_relation = ? and metric in ('psi', 'js_distance') "
                    "order by recorded_at", params=[model, relation]).fetchall()
    history: dict[str, dict[str, Any]] = {}
    for feature, metric, at, value, warn, error in rows:
        entry = history.setdefault(feature, {"metric": metric, "points": [], "warn_above": warn, "error_above": error})
        entry["points"].append((at, value))
    return history


def quality_history(conn, model: str) -> dict[str, Any]:
    """The main quality metric of each version (auc; rmse for regressors) at each past build, latest window."""
    if not _has_table(conn, "quality_history"):
        return {}
    rows = conn.sql("select metric, model_version, recorded_at, value, holdout_value from quality_history "
                    "where model_name = ? and metric in ('auc', 'rmse') qualify window_start = max(window_start) "
                    "over (partition by invocation_id, model_version) order by recorded_at",
                    params=[model]).fetchall()
    if not rows:
        return {}
    series: dict[int, list] = {}
    for metric, version, at, value, holdout in rows:
        series.setdefault(version, []).append((at, value))
    return {"metric": rows[0][0], "series": series, "holdout": {v: h for _, v, _, _, h in rows}}


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
            f"{bar_chart(feature['bars'])}{null_chart(feature['null_share'])}{unseen_list(feature)}"
            f"<ul>{metrics}</ul>{history_chart(report['history'].get(name))}</section>")
    output = report["output"]
    sections.append(
        f"<section id='output' data-level='{output['level'] or 'ok'}'><h2>Model output <small>training holdout against "
        f"current</small></h2>{bar_chart(output['bars'])}<ul>"
        + "".join(f"<li style='color:{LEVEL_COLOURS[m['level']]}'>{esc(m['metric'])}: {m['current']:.4g}</li>"
                  for m in output["metrics"]) + "</ul></section>")
    drivers = report["drivers"]
    if isinstance(drivers, list):
        top = max([v for _, v in drivers] + [1e-12])
        bars = "".join(f"<tr><td>{esc(name)}</td><td><svg width='320' height='14'><rect class='driver' width='"
                       f"{300 * value / top:.1f}' height='12' fill='{HISTORY}'/></svg></td><td>{value:.4g}</td></tr>"
                       for name, value in drivers)
        sections.append(f"<section id='drivers'><h2>What drives the scores <small>mean |contribution| to the "
                        f"margin over the first {min(report['rows'], DRIVER_ROWS):,} rows (explain())</small></h2>"
                        f"<table>{bars}</table></section>")
    elif drivers:
        sections.append(f"<section id='drivers'><h2>What drives the scores</h2><p>{esc(drivers)}</p></section>")
    if report["quality"]:
        sections.append(f"<section id='quality'><h2>Quality over builds <small>{esc(report['quality']['metric'])}, "
                        f"latest window with outcomes, per version</small></h2>{quality_chart(report['quality'])}</section>")
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


def null_chart(shares: tuple[float, float], width: int = 300) -> str:
    """The NULL share, training and current, as two horizontal bars."""
    parts = [f"<svg class='null-chart' width='{width}' height='44' role='img' data-training='{shares[0]:.6f}' "
             f"data-current='{shares[1]:.6f}'><text x='0' y='12' font-size='11'>NULL</text>"]
    for i, (share, colour, label) in enumerate(((shares[0], TRAINING, "training"), (shares[1], CURRENT, "current"))):
        w = max((width - 120) * share, 1 if share else 0)
        parts.append(f"<rect x='40' y='{4 + i * 20}' width='{w:.1f}' height='14' fill='{colour}'>"
                     f"<title>{label}: {share:.2%} NULL</title></rect>"
                     f"<text x='{44 + w:.1f}' y='{15 + i * 20}' font-size='11'>{share:.1%}</text>")
    return "".join(parts) + "</svg>"


def unseen_list(feature: dict[str, Any]) -> str:
    """The unseen values, most frequent first, with their counts."""
    if not feature["unseen"]:
        return ""
    items = "".join(f"<li><code>{html.escape(str(value))}</code>: {count:,} rows</li>" for value, count in feature["unseen"])
    more = feature["unseen_values"] - len(feature["unseen"])
    return (f"<div class='unseen'><b>Values not seen in training</b> ({feature['unseen_values']} distinct)"
            f"<ul>{items}</ul>{f'<p>and {more} more</p>' if more > 0 else ''}</div>")


def line_chart(series: dict[str, tuple[str, list[tuple[Any, float]]]], lines: list[tuple[str, float, str]],
               css_class: str, width: int = 900, height: int = 160) -> str:
    """Lines over build times (one colour per series, a dot per build) and horizontal threshold lines."""
    points = [p for _, values in series.values() for p in values]
    if not points:
        return ""
    times = sorted({t for t, _ in points})
    values = [v for _, v in points if v is not None] + [y for _, y, _ in lines if y is not None]
    low, high = min(values + [0.0]), max(values + [1e-9])
    x = {t: 50 + (width - 70) * (i / max(len(times) - 1, 1)) for i, t in enumerate(times)}

    def y(v: float) -> float:
        return height - 10 - (height - 20) * (v - low) / ((high - low) or 1)

    parts = [f"<svg class='{css_class}' width='{width}' height='{height + 20}' role='img'>"]
    for label, value, colour in lines:
        if value is not None:
            parts.append(f"<line x1='50' x2='{width - 20}' y1='{y(value):.1f}' y2='{y(value):.1f}' stroke='{colour}' "
                         f"stroke-width='2' stroke-dasharray='6 4'><title>{html.escape(label)} {value:.4g}</title></line>")
    for name, (colour, values) in series.items():
        coords = [(x[t], y(v)) for t, v in values if v is not None]
        if len(coords) > 1:
            parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='3' points='"
                         + " ".join(f"{a:.1f},{b:.1f}" for a, b in coords) + "'/>")
        parts += [f"<circle cx='{a:.1f}' cy='{b:.1f}' r='5' fill='{colour}'><title>{html.escape(name)}</title></circle>"
                  for a, b in coords]
    parts.append(f"<text x='0' y='12' font-size='10'>{high:.3g}</text><text x='0' y='{height - 6}' font-size='10'>"
                 f"{low:.3g}</text><text x='50' y='{height + 14}' font-size='10'>{times[0]:%Y-%m-%d %H:%M}</text>"
                 f"<text x='{width - 20}' y='{height + 14}' font-size='10' text-anchor='end'>{times[-1]:%Y-%m-%d %H:%M}"
                 f"</text></svg>")
    return "".join(parts)


def history_chart(entry: dict[str, Any] | None) -> str:
    """A feature's drift metric at each past build, with its warn and error thresholds."""
    if not entry:
        return ""
    chart = line_chart({entry["metric"]: (HISTORY, entry["points"])},
                       [("warn above", entry["warn_above"], WARN_LINE), ("error above", entry["error_above"], ERROR_LINE)],
                       "history")
    return f"<p class='history-title'>{html.escape(entry['metric'])} over {len(entry['points'])} builds</p>{chart}"


def quality_chart(quality: dict[str, Any]) -> str:
    series = {f"version {v}": (VERSION_COLOURS[i % len(VERSION_COLOURS)], points)
              for i, (v, points) in enumerate(sorted(quality["series"].items()))}
    lines = [(f"version {v} holdout", h, VERSION_COLOURS[i % len(VERSION_COLOURS)])
             for i, (v, h) in enumerate(sorted(quality["holdout"].items()))]
    legend = "".join(f"<span style='background:{colour}'></span>{html.escape(name)}" for name, (colour, _) in series.items())
    return f"<p class='legend'>{legend} (dashed: holdout)</p>{line_chart(series, lines, 'quality')}"


def write_report(scorer: Scorer, ref: str, conn, relation: str, out: str | Path) -> dict[str, Any]:
    report = build_report(scorer, ref, conn, relation)
    Path(out).write_text(render_html(report), encoding="utf-8")
    return report
