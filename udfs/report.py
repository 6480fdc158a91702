"""A self-contained HTML drift report, no script: first the verdict (the features past a threshold, linked to
their sections), then per feature, failing ones first, the training and current distributions side by side,
the NULL share as its own bar, the unseen values by name, and each of its metrics over past builds
(drift_history) with its thresholds; the model's output, training against current; quality over past builds
(quality_history) where it exists."""

from __future__ import annotations

import html
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScorehouseError
from .profile import (
    DEFAULT_THRESHOLDS,
    OTHER,
    UNSEEN,
    bin_shares,
    category_shares,
    feature_metrics,
    level,
    measured_value,
)
from .scoring import Session
from .sql import DUCKDB, table_name

TRAINING, CURRENT = "#4c78a8", "#f58518"
HISTORY, WARN_LINE, ERROR_LINE = "#6f42c1", "#d68910", "#c0392b"
VERSION_COLOURS = ["#2a9d8f", "#e76f51", "#264653", "#e9c46a", "#8ab17d"]
UNSEEN_SHOWN = 5  # the most frequent unseen values named per feature
DRIVER_ROWS = 10_000  # rows explained for "what drives the scores" (the first of the relation)
LEVEL_COLOURS = {"error": "#c0392b", "warn": "#d68910", None: "#1e8449"}
SEVERITY = {"error": 2, "warn": 1, None: 0}
SI_SUFFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
LABEL_FONT = 10  # px, the bin labels under a bar chart
# a character's advance in em, on the wide side of common sans-serif fonts (DejaVu Sans: digits 0.64, '.' 0.32)
NARROW, WIDE = frozenset(".,:;!|'il "), frozenset("mwMW@")
LINE_HEIGHT = 1.3 * LABEL_FONT
CATEGORY_CHARS = 32  # longer category names are shortened under the bars (the full name is the bar's title)


def compact_number(value: float, digits: int = 3) -> str:
    """Write `value` in `digits` significant digits, thousands and above with an SI suffix: 1.4k, 2.08M."""
    rounded = float(f"{value:.{digits}g}")
    if not math.isfinite(rounded) or abs(rounded) >= 1e15:
        return f"{rounded:.{digits}g}"
    for scale, suffix in SI_SUFFIXES:
        if abs(rounded) >= scale:
            return f"{rounded / scale:.{digits}g}{suffix}"
    return f"{rounded:.{digits}g}"


def bin_labels(edges: list[float]) -> list[str]:
    """Labels of the bins between `edges` (≤ a, a–b, > b), with as few digits as keep every edge distinct."""
    if not edges:
        return ["all"]
    for digits in range(3, 18):
        names = [compact_number(edge, digits) for edge in edges]
        if len(set(names)) == len(names):
            break
    return [f"≤ {names[0]}"] + [f"{a}–{b}" for a, b in zip(names, names[1:])] + [f"> {names[-1]}"]


def label_width(text: str) -> float:
    """An upper estimate of the width of `text` in pixels at LABEL_FONT, to lay labels out without measuring."""
    return LABEL_FONT * sum(0.35 if c in NARROW else 1.0 if c in WIDE else 0.7 for c in text)


def feature_anchor(name: str) -> str:
    """The id of a feature's section: its name, characters other than letters, digits, - and _ as .hex."""
    return "feature-" + "".join(c if c.isascii() and (c.isalnum() or c in "-_") else f".{ord(c):x}." for c in name)


def by_severity(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metrics worst first: by level, then by how close the value is to its error threshold."""
    return sorted(
        metrics,
        key=lambda m: (-SEVERITY[m["level"]], -(m["value"] / m["error_above"] if m["error_above"] else m["value"])),
    )


def feature_report(profile: dict[str, Any], values: list) -> dict[str, Any]:
    """Metrics, levels and the two distributions of one feature."""
    metrics = []
    for metric, (baseline, current) in feature_metrics(profile, values).items():
        metrics.append(
            {
                "metric": metric,
                "baseline": baseline,
                "current": current,
                "value": measured_value(metric, baseline, current),
                "warn_above": DEFAULT_THRESHOLDS[metric][0],
                "error_above": DEFAULT_THRESHOLDS[metric][1],
                "level": level(metric, baseline, current),
            }
        )
    metrics = by_severity(metrics)
    if profile["kind"] == "numeric":
        present = (
            np.asarray([v for v in values if v is not None], dtype=np.float64).astype(np.float32).astype(np.float64)
        )
        bars = list(
            zip(bin_labels(profile["edges"]), profile["shares"], bin_shares(present, profile["edges"]).tolist())
        )
    else:
        current_shares = category_shares(values, profile)
        buckets = sorted(set(profile["shares"]) | set(current_shares), key=lambda b: (b in (OTHER, UNSEEN), b))
        bars = [(b, profile["shares"].get(b, 0.0), current_shares.get(b, 0.0)) for b in buckets]
    worst = (
        "error"
        if any(m["level"] == "error" for m in metrics)
        else ("warn" if any(m["level"] for m in metrics) else None)
    )
    nulls = sum(v is None or v == "" or (isinstance(v, float) and np.isnan(v)) for v in values)
    unseen = Counter(
        v for v in values if profile["kind"] != "numeric" and v not in (None, "") and v not in profile["buckets"]
    )
    return {
        "kind": profile["kind"],
        "metrics": metrics,
        "bars": bars,
        "level": worst,
        "null_share": (profile["null_rate"], nulls / len(values) if values else 0.0),
        "unseen": unseen.most_common(UNSEEN_SHOWN),
        "unseen_values": len(unseen),
    }


def build_report(scorer: Session, ref: str, conn, relation: str) -> dict[str, Any]:
    """Measure `relation` (a table or view on `conn`) against the training profile of `ref`."""
    card = scorer.card(ref)
    profile = card.manifest.profile
    if profile is None:
        raise ScorehouseError(f"Model {scorer.describe(ref)} has no training profile; retrain it to get one")
    source = table_name(relation, what="--table")
    found = {row[0]: row[1] for row in conn.sql(f"describe select * from {source}").fetchall()}
    scorer.check_input(ref, found)
    # categories as text, as the model reads them (a BOOLEAN category is 'true' or 'false')
    columns = ", ".join(
        DUCKDB.identifier(f.name)
        if f.kind == "numeric"
        else f"cast({DUCKDB.identifier(f.name)} as varchar) as {DUCKDB.identifier(f.name)}"
        for f in card.features
    )
    table = conn.sql(f"select {columns} from {source}").to_arrow_table()
    features = {
        f.name: feature_report(profile["features"][f.name], table.column(f.name).to_pylist()) for f in card.features
    }
    output = "label" if card.task == "multiclass" else None
    scores = scorer.predict(ref, {f.name: table.column(f.name) for f in card.features}, output).to_pylist()
    drivers: list[tuple[str, Any]] | str | None = None
    try:
        from .explain import contributions

        sample = table.slice(0, DRIVER_ROWS)
        names, matrix = contributions(scorer.explanation(ref), {f.name: sample.column(f.name) for f in card.features})
        drivers = sorted(zip(names, np.abs(matrix).mean(axis=0).tolist()), key=lambda item: -item[1])
    except ScorehouseError as exc:  # a version without explanations: the report says why
        drivers = str(exc)
    return {
        "model": scorer.describe(ref),
        "relation": relation,
        "rows": table.num_rows,
        "drivers": drivers,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_rows": card.manifest.training.train_rows,
        "features": features,
        "output": feature_report(profile["output"], scores),
        "history": drift_history(conn, card.name, relation.split(".")[-1]),
        "quality": quality_history(conn, card.name),
    }


def _has_table(conn, name: str) -> bool:
    return bool(conn.sql("select count(*) from duckdb_tables() where table_name = ?", params=[name]).fetchall()[0][0])


def drift_history(conn, model: str, relation: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per feature and metric, the value its thresholds applied to at each past build, with that build's level:
    {feature: {metric: {points: [(recorded_at, value, level)], warn_above, error_above}}}, the latest thresholds."""
    if not _has_table(conn, "drift_history"):
        return {}
    rows = conn.sql(
        "select feature, metric, recorded_at, baseline_value, current_value, warn_above, error_above, "
        "level "
        "from drift_history where model_name = ? and input_relation = ? and current_value is not null "
        "order by recorded_at",
        params=[model, relation],
    ).fetchall()
    history: dict[str, dict[str, dict[str, Any]]] = {}
    for feature, metric, at, baseline, current, warn, error, build_level in rows:
        entry = history.setdefault(feature, {}).setdefault(metric, {"points": []})
        entry.update(warn_above=warn, error_above=error)
        entry["points"].append((at, measured_value(metric, baseline or 0.0, current), build_level))
    return history


def quality_history(conn, model: str) -> dict[str, Any]:
    """The main quality metric of each version (auc; rmse for regressors) at each past build, latest window."""
    if not _has_table(conn, "quality_history"):
        return {}
    rows = conn.sql(
        "select metric, model_version, recorded_at, value, holdout_value from quality_history "
        "where model_name = ? and metric in ('auc', 'rmse') qualify window_start = max(window_start) "
        "over (partition by invocation_id, model_version) order by recorded_at",
        params=[model],
    ).fetchall()
    if not rows:
        return {}
    series: dict[int, list] = {}
    for _, version, at, value, _ in rows:
        series.setdefault(version, []).append((at, value))
    return {"metric": rows[0][0], "series": series, "holdout": {v: h for _, v, _, _, h in rows}}


def value_text(metric: dict[str, Any]) -> str:
    """A metric's value as its thresholds see it; for null_rate_increase, with the two NULL rates."""
    if metric["metric"] == "null_rate_increase":
        return f"{metric['value']:+.4g} (NULL rate {metric['baseline']:.1%} in training, {metric['current']:.1%} now)"
    return f"{metric['value']:.4g}"


def render_html(report: dict[str, Any]) -> str:
    """Render a report as one HTML page with inline SVG charts (no scripts, no external files): the verdict
    first, then the features that crossed an error threshold, those that crossed a warn one, the others."""
    esc = html.escape
    features = sorted(report["features"].items(), key=lambda item: -SEVERITY[item[1]["level"]])
    output = report["output"]

    def link(name: str) -> str:
        return f"<a href='#{esc(feature_anchor(name))}'>{esc(name)}</a>"

    verdict = [
        f"<li class='{status}' style='color:{LEVEL_COLOURS[status]}'><b>{status}</b>: "
        + ", ".join(link(name) for name, f in features if f["level"] == status)
        + "</li>"
        for status in ("error", "warn")
        if any(f["level"] == status for _, f in features)
    ]
    verdict.append(
        f"<li>ok: {sum(f['level'] is None for _, f in features)} of {len(features)} features within "
        f"every threshold</li><li>model output: <a href='#output'>{output['level'] or 'ok'}</a></li>"
    )
    crossed = [(link(name), m) for name, f in features for m in f["metrics"] if m["level"]]
    crossed += [("<a href='#output'>model output</a>", m) for m in output["metrics"] if m["level"]]
    summary_rows = (
        "".join(
            f"<tr><td>{cell}</td><td style='color:{LEVEL_COLOURS[m['level']]};font-weight:bold'>{m['level']}</td>"
            f"<td>{esc(m['metric'])}</td><td>{esc(value_text(m))}</td><td>{m['warn_above']:.4g}</td>"
            f"<td>{m['error_above']:.4g}</td></tr>"
            for cell, m in crossed
        )
        or "<tr><td colspan='6'>No threshold crossed.</td></tr>"
    )
    sections = []
    for name, feature in features:
        metrics = "".join(
            f"<li style='color:{LEVEL_COLOURS[m['level']]}'>{esc(m['metric'])}: {esc(value_text(m))}; warn above "
            f"{m['warn_above']:.4g}, error above {m['error_above']:.4g}{' — ' + m['level'] if m['level'] else ''}</li>"
            for m in feature["metrics"]
        )
        status = feature["level"] or "ok"
        sections.append(
            f"<section class='feature' id='{esc(feature_anchor(name))}' data-level='{status}' "
            f"data-feature='{esc(name)}'>"
            f"<h2>{esc(name)} <small>{esc(feature['kind'])}</small> "
            f"<span class='badge' style='background:{LEVEL_COLOURS[feature['level']]}'>{status}</span></h2>"
            f"{bar_chart(feature['bars'], shorten=feature['kind'] != 'numeric')}{null_chart(feature['null_share'])}"
            f"{unseen_list(feature)}<ul>{metrics}</ul>"
            f"{history_charts(feature['metrics'], report['history'].get(name, {}))}</section>"
        )
    sections.append(
        f"<section id='output' data-level='{output['level'] or 'ok'}'><h2>Model output <small>training holdout against "
        f"current</small></h2>{bar_chart(output['bars'], shorten=output['kind'] != 'numeric')}<ul>"
        + "".join(
            f"<li style='color:{LEVEL_COLOURS[m['level']]}'>{esc(m['metric'])}: {esc(value_text(m))}</li>"
            for m in output["metrics"]
        )
        + "</ul></section>"
    )
    drivers = report["drivers"]
    if isinstance(drivers, list):
        top = max([v for _, v in drivers] + [1e-12])
        bars = "".join(
            f"<tr><td>{esc(name)}</td><td><svg width='320' height='14'><rect class='driver' width='"
            f"{300 * value / top:.1f}' height='12' fill='{HISTORY}'/></svg></td><td>{value:.4g}</td></tr>"
            for name, value in drivers
        )
        sections.append(
            f"<section id='drivers'><h2>What drives the scores <small>mean |contribution| to the "
            f"margin over the first {min(report['rows'], DRIVER_ROWS):,} rows (explain())</small></h2>"
            f"<table>{bars}</table></section>"
        )
    elif drivers:
        sections.append(f"<section id='drivers'><h2>What drives the scores</h2><p>{esc(drivers)}</p></section>")
    if report["quality"]:
        sections.append(
            f"<section id='quality'><h2>Quality over builds <small>{esc(report['quality']['metric'])}, "
            f"latest window with outcomes, per version</small></h2>{quality_chart(report['quality'])}"
            "</section>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report: {esc(report["model"])} \
on {esc(report["relation"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
.feature {{ border-top: 1px solid #ccc; margin-top: 1.5em; }} small {{ color: #777; font-weight: normal; }}
.badge {{ color: white; border-radius: 4px; padding: 1px 8px; font-size: 0.7em; vertical-align: middle; }}
.legend span {{ display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }}
.bars {{ overflow-x: auto; }} .histories {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.history {{ margin: 0; width: 300px; }} .history figcaption {{ font-size: 0.85em; }}
</style></head><body>
<h1>Drift report: {esc(report["model"])}</h1>
<p>Input <b>{esc(report["relation"])}</b>, {report["rows"]:,} rows, against the training profile
({report["training_rows"]:,} training rows). Generated {esc(report["created_at"])}.</p>
<h2>Verdict</h2>
<ul id="verdict">{"".join(verdict)}</ul>
<h2>Thresholds crossed</h2>
<table id="crossed"><tr><th>feature</th><th>level</th><th>metric</th><th>value</th><th>warn above</th>\
<th>error above</th></tr>
{summary_rows}</table>
<p class="legend"><span style="background:{TRAINING}"></span>training\
<span style="background:{CURRENT}"></span>current</p>
{"".join(sections)}
</body></html>
"""


def bar_chart(bars: list[tuple[str, float, float]], width: int = 900, height: int = 200, shorten: bool = False) -> str:
    """Grouped bars of training and current shares, as inline SVG, a label under each pair: side by side where
    they fit, else upright (the chart widening if even upright ones would touch). `shorten` cuts names longer
    than CATEGORY_CHARS (the bar's title keeps them whole); numbers are never cut."""
    labels = [
        label[: CATEGORY_CHARS - 1] + "…" if shorten and len(label) > CATEGORY_CHARS else label for label, _, _ in bars
    ]
    top = max([max(t, c) for _, t, c in bars] + [1e-9])
    slot = max((width - 40) / max(len(bars), 1), LINE_HEIGHT + 4)
    width = max(width, math.ceil(40 + slot * len(bars)))
    longest = max((label_width(label) for label in labels), default=0)
    upright = longest > slot - 6
    total = height + (longest + 12 if upright else LINE_HEIGHT + 12)
    bar = max(slot * 0.38, 1)
    parts = [
        f"<div class='bars'><svg class='chart' width='{width}' height='{total:.0f}' viewBox='0 0 {width} "
        f"{total:.0f}' role='img' data-labels='{'upright' if upright else 'side by side'}'>",
        f"<line x1='30' y1='{height}' x2='{width}' y2='{height}' stroke='#999'/>",
    ]
    for i, ((label, training, current), shown) in enumerate(zip(bars, labels)):
        centre = 35 + (i + 0.5) * slot
        for j, (share, colour) in enumerate(((training, TRAINING), (current, CURRENT))):
            h = (height - 10) * share / top
            parts.append(
                f"<rect x='{centre - bar + j * bar:.1f}' y='{height - h:.1f}' width='{bar:.1f}' "
                f"height='{h:.1f}' "
                f"fill='{colour}'><title>{html.escape(label)}: {share:.3%}</title></rect>"
            )
        if upright:
            parts.append(
                f"<text class='bin-label' x='{centre:.1f}' y='{height + 6}' font-size='{LABEL_FONT}' "
                f"text-anchor='end' dominant-baseline='central' transform='rotate(-90 {centre:.1f} "
                f"{height + 6})'>{html.escape(shown)}</text>"
            )
        else:
            parts.append(
                f"<text class='bin-label' x='{centre:.1f}' y='{height + 14}' font-size='{LABEL_FONT}' "
                f"text-anchor='middle'>{html.escape(shown)}</text>"
            )
    parts.append(f"<text x='0' y='12' font-size='10'>{top:.0%}</text></svg></div>")
    return "".join(parts)


def null_chart(shares: tuple[float, float], width: int = 300) -> str:
    """The NULL share, training and current, as two horizontal bars."""
    parts = [
        f"<svg class='null-chart' width='{width}' height='44' role='img' data-training='{shares[0]:.6f}' "
        f"data-current='{shares[1]:.6f}'><text x='0' y='12' font-size='11'>NULL</text>"
    ]
    for i, (share, colour, label) in enumerate(((shares[0], TRAINING, "training"), (shares[1], CURRENT, "current"))):
        w = max((width - 120) * share, 1 if share else 0)
        parts.append(
            f"<rect x='40' y='{4 + i * 20}' width='{w:.1f}' height='14' fill='{colour}'>"
            f"<title>{label}: {share:.2%} NULL</title></rect>"
            f"<text x='{44 + w:.1f}' y='{15 + i * 20}' font-size='11'>{share:.1%}</text>"
        )
    return "".join(parts) + "</svg>"


def unseen_list(feature: dict[str, Any]) -> str:
    """The unseen values, most frequent first, with their counts."""
    if not feature["unseen"]:
        return ""
    items = "".join(
        f"<li><code>{html.escape(str(value))}</code>: {count:,} rows</li>" for value, count in feature["unseen"]
    )
    more = feature["unseen_values"] - len(feature["unseen"])
    return (
        f"<div class='unseen'><b>Values not seen in training</b> ({feature['unseen_values']} distinct)"
        f"<ul>{items}</ul>{f'<p>and {more} more</p>' if more > 0 else ''}</div>"
    )


def line_chart(
    series: dict[str, tuple[str, list[tuple]]],
    lines: list[tuple[str, float, str]],
    css_class: str,
    width: int = 900,
    height: int = 160,
) -> str:
    """Lines over build times (one colour per series, a dot per build: a point is (time, value) or (time, value,
    level), its dot then in the level's colour) and horizontal threshold lines."""
    points = [p for _, values in series.values() for p in values]
    if not points:
        return ""
    times = sorted({p[0] for p in points})
    values = [p[1] for p in points if p[1] is not None] + [y for _, y, _ in lines if y is not None]
    low, high = min(values + [0.0]), max(values + [1e-9])
    x = {t: 50 + (width - 70) * (i / max(len(times) - 1, 1)) for i, t in enumerate(times)}

    def y(v: float) -> float:
        return height - 10 - (height - 20) * (v - low) / ((high - low) or 1)

    parts = [f"<svg class='{css_class}' width='{width}' height='{height + 20}' role='img'>"]
    for label, value, colour in lines:
        if value is not None:
            parts.append(
                f"<line x1='50' x2='{width - 20}' y1='{y(value):.1f}' y2='{y(value):.1f}' stroke='{colour}' "
                f"stroke-width='2' stroke-dasharray='6 4'><title>{html.escape(label)} {value:.4g}</title>"
                "</line>"
            )
    for name, (colour, values) in series.items():
        shown = [p for p in values if p[1] is not None]
        if len(shown) > 1:
            parts.append(
                f"<polyline fill='none' stroke='{colour}' stroke-width='3' points='"
                + " ".join(f"{x[p[0]]:.1f},{y(p[1]):.1f}" for p in shown)
                + "'/>"
            )
        for p in shown:
            fill, state = (LEVEL_COLOURS[p[2]], f" ({p[2] or 'ok'})") if len(p) > 2 else (colour, "")
            parts.append(
                f"<circle cx='{x[p[0]]:.1f}' cy='{y(p[1]):.1f}' r='5' fill='{fill}'><title>"
                f"{html.escape(name)} {p[1]:.4g}{state} at {p[0]:%Y-%m-%d %H:%M}</title></circle>"
            )
    parts.append(
        f"<text x='0' y='12' font-size='10'>{high:.3g}</text><text x='0' y='{height - 6}' font-size='10'>"
        f"{low:.3g}</text><text x='50' y='{height + 14}' font-size='10'>{times[0]:%Y-%m-%d %H:%M}</text>"
    )
    if len(times) > 1:
        parts.append(
            f"<text x='{width - 20}' y='{height + 14}' font-size='10' text-anchor='end'>"
            f"{times[-1]:%Y-%m-%d %H:%M}</text>"
        )
    return "".join(parts) + "</svg>"


def history_charts(metrics: list[dict[str, Any]], history: dict[str, dict[str, Any]]) -> str:
    """Each of a feature's metrics over past builds, worst now first, with its warn and error thresholds."""
    figures = []
    for metric in metrics:
        entry = history.get(metric["metric"])
        if not entry:
            continue
        name = metric["metric"]
        chart = line_chart(
            {name: (HISTORY, entry["points"])},
            [("warn above", entry["warn_above"], WARN_LINE), ("error above", entry["error_above"], ERROR_LINE)],
            "history",
            width=300,
            height=110,
        )
        what = " (NULL rate now − in training)" if name == "null_rate_increase" else ""
        figures.append(
            f"<figure class='history' data-metric='{html.escape(name)}' "
            f"data-level='{metric['level'] or 'ok'}'>"
            f"<figcaption style='color:{LEVEL_COLOURS[metric['level']]}'>{html.escape(name)}{what} over "
            f"{len(entry['points'])} builds{' — ' + metric['level'] if metric['level'] else ''}</figcaption>"
            f"{chart}</figure>"
        )
    return f"<div class='histories'>{''.join(figures)}</div>" if figures else ""


def quality_chart(quality: dict[str, Any]) -> str:
    series = {
        f"version {v}": (VERSION_COLOURS[i % len(VERSION_COLOURS)], points)
        for i, (v, points) in enumerate(sorted(quality["series"].items()))
    }
    lines = [
        (f"version {v} holdout", h, VERSION_COLOURS[i % len(VERSION_COLOURS)])
        for i, (v, h) in enumerate(sorted(quality["holdout"].items()))
    ]
    legend = "".join(
        f"<span style='background:{colour}'></span>{html.escape(name)}" for name, (colour, _) in series.items()
    )
    return f"<p class='legend'>{legend} (dashed: holdout)</p>{line_chart(series, lines, 'quality')}"


def write_report(scorer: Session, ref: str, conn, relation: str, out: str | Path) -> dict[str, Any]:
    report = build_report(scorer, ref, conn, relation)
    Path(out).write_text(render_html(report), encoding="utf-8")
    return report
