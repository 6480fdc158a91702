"""The drift report on real rows without dbt: failing features first under a linked verdict, each feature's
metrics over past builds (drift_history rows measured here with the guards' own metrics), bin labels whole
and apart (in a headless browser where Chromium is installed)."""

import html
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from scorehouse import profile as prof
from scorehouse.report import bar_chart, build_report, feature_anchor, feature_report, label_width, render_html
from scorehouse.scoring import Session
from scorehouse.sql import DUCKDB

from helpers import PROJECT

# lvr NULL in 30% of the rows (null_rate_increase: error, psi unchanged), dir in percent (psi: error),
# hir NULL in 3% (null_rate_increase: warn); rows picked by a hash of the key, the same every time
BROKEN = """
create table batch as select * replace (
    dir * 100 as dir,
    case when hash(application_id::varchar || 'lvr') % 100 < 30 then null else lvr end as lvr,
    case when hash(application_id::varchar || 'hir') % 100 < 3 then null else hir end as hir)
from source.features_mortgage
"""
DRIFT_HISTORY_COLUMNS = (
    "invocation_id",
    "recorded_at",
    "model_ref",
    "input_relation",
    "model_name",
    "model_version",
    "feature",
    "metric",
    "baseline_value",
    "current_value",
    "warn_above",
    "error_above",
    "level",
    "detail",
)
MEASURE_LABELS = """<script>
for (const svg of document.querySelectorAll('svg.chart')) {
  const box = svg.getBoundingClientRect();
  const labels = [...svg.querySelectorAll('text.bin-label')].map(t => {
    const r = t.getBoundingClientRect(); return [t.textContent, r.left, r.right, r.top, r.bottom]; });
  const out = document.createElement('pre'); out.className = 'measured';
  out.textContent = JSON.stringify({svg: [box.left, box.right, box.top, box.bottom], labels});
  document.body.append(out);
}
</script>"""


def record_build(conn, profile: dict, relation: str, at: datetime, invocation: str) -> None:
    """Append one build's drift_history rows for `relation`, measured as the guards measure them."""
    rows = []
    for feature, feature_profile in profile["profile"]["features"].items():
        column = DUCKDB.identifier(feature) + ("" if feature_profile["kind"] == "numeric" else "::varchar")
        values = [v for (v,) in conn.sql(f"select {column} from {relation}").fetchall()]
        for metric, (baseline, current) in prof.feature_metrics(feature_profile, values).items():
            warn, error = prof.DEFAULT_THRESHOLDS[metric]
            rows.append(
                (
                    invocation,
                    at,
                    "mortgage_deny",
                    "batch",
                    "mortgage_deny",
                    1,
                    feature,
                    metric,
                    baseline,
                    current,
                    warn,
                    error,
                    prof.level(metric, baseline, current),
                    None,
                )
            )
    conn.executemany(f"insert into drift_history values ({', '.join('?' * len(DRIFT_HISTORY_COLUMNS))})", rows)


@pytest.fixture
def report(small, tmp_path):
    """The report of mortgage_deny on a broken copy of its features, after a clean build and a broken one."""
    conn = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    conn.execute("attach ? as source (read_only)", [str(small.warehouse)])
    conn.execute(
        "create table drift_history (invocation_id varchar, recorded_at timestamptz, model_ref varchar, "
        "input_relation varchar, model_name varchar, model_version integer, feature varchar, metric varchar, "
        "baseline_value double, current_value double, warn_above double, error_above double, level varchar, "
        "detail varchar)"
    )
    scorer = Session(small.registry)
    manifest = scorer.card("mortgage_deny").raw
    start = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    record_build(conn, manifest, "source.features_mortgage", start, "clean")
    conn.execute(BROKEN)
    record_build(conn, manifest, "batch", start + timedelta(days=1), "broken")
    try:
        yield build_report(scorer, "mortgage_deny", conn, "batch")
    finally:
        conn.close()


def sections(page: str) -> list[tuple[str, str, str]]:
    """(level, feature, body) of each feature section, in page order."""
    return re.findall(
        r"<section class='feature' id='[^']*' data-level='(\w+)' data-feature='([^']*)'>(.*?)</section>", page, re.S
    )


def test_failing_features_come_first_under_a_verdict_linking_them(report):
    page = render_html(report)
    order = [(feature, status) for status, feature, _ in sections(page)]
    assert order[:3] == [("dir", "error"), ("lvr", "error"), ("hir", "warn")], order
    assert {status for _, status in order[3:]} == {"ok"} and len(order) == 11
    verdict = re.search(r'<ul id="verdict">(.*?)</ul>', page, re.S).group(1)
    assert re.findall(r"<li class='(\w+)'.*?</li>", verdict) == ["error", "warn"]
    assert re.findall(r"<a href='#(feature-\w+)'>(\w+)</a>", verdict) == [
        ("feature-dir", "dir"),
        ("feature-lvr", "lvr"),
        ("feature-hir", "hir"),
    ]
    assert "8 of 11 features within every threshold" in verdict
    for anchor in ("feature-dir", "feature-lvr", "feature-hir"):
        assert page.count(f"id='{anchor}'") == 1
    crossed = re.search(r'<table id="crossed">(.*?)</table>', page, re.S).group(1)
    assert re.findall(r"<td><a href='#feature-(\w+)'>\w+</a></td><td[^>]*>(\w+)</td><td>(\w+)</td>", crossed) == [
        ("dir", "error", "psi"),
        ("dir", "error", "out_of_range_share"),
        ("lvr", "error", "null_rate_increase"),
        ("hir", "warn", "null_rate_increase"),
    ]


def test_each_feature_charts_the_metric_that_decided_its_level_first(report):
    """lvr fails on its NULL rate, not on PSI: its first chart is null_rate_increase over both builds (the increase
    the thresholds apply to, each dot with its build's level), then its other metrics."""
    bodies = {feature: body for _, feature, body in sections(render_html(report))}
    figures = re.findall(
        r"<figure class='history' data-metric='(\w+)' data-level='(\w+)'>(.*?)</figure>", bodies["lvr"], re.S
    )
    assert [(metric, status) for metric, status, _ in figures] == [
        ("null_rate_increase", "error"),
        ("psi", "ok"),
        ("out_of_range_share", "ok"),
    ]
    increase = report["features"]["lvr"]["metrics"][0]
    assert increase["metric"] == "null_rate_increase" and 0.25 < increase["value"] < 0.35
    dots = re.findall(
        r"<circle [^>]*fill='(#\w+)'><title>null_rate_increase ([-\d.e]+) \((\w+)\) at ([\d-]+)", figures[0][2]
    )
    assert [(status, day) for _, _, status, day in dots] == [("ok", "2024-05-01"), ("error", "2024-05-02")]
    assert float(dots[0][1]) == pytest.approx(0, abs=0.01)
    assert float(dots[1][1]) == pytest.approx(increase["value"], rel=1e-3)
    assert dots[1][0] == "#c0392b"  # the error build's dot in the error colour
    assert "warn above 0.02" in figures[0][2] and "error above 0.05" in figures[0][2]
    assert [m for m, _, _ in re.findall(r"data-metric='(\w+)' data-level='(\w+)'>(.*?)</figure>", bodies["dir"], re.S)][
        :2
    ] == ["psi", "out_of_range_share"]
    assert all(body.count("<figure class='history'") == 3 and body.count("<circle") == 6 for body in bodies.values())


def test_names_with_quotes_and_markup_are_escaped_and_anchored(report):
    name = "lvr 'x' \"<script>"
    report["features"][name] = report["features"].pop("lvr")
    report["history"][name] = report["history"].pop("lvr")
    page = render_html(report)
    shown = "lvr &#x27;x&#x27; &quot;&lt;script&gt;"
    assert "<script" not in page and f"data-feature='{shown}'" in page
    anchor = feature_anchor(name)
    assert anchor == "feature-lvr.20..27.x.27..20..22..3c.script.3e."
    assert feature_anchor("a.b") != feature_anchor("a.2e.b")
    assert f"id='{anchor}'" in page and page.count(f"<a href='#{anchor}'>{shown}</a>") == 2  # verdict, crossed table


def diamond_prices() -> np.ndarray:
    with duckdb.connect() as con:
        return (
            con.sql("select price from read_csv(?)", params=[str(PROJECT / "data" / "diamonds.csv")])
            .fetchnumpy()["price"]
            .astype(np.float64)
        )


def number(text: str) -> float:
    return float(text[:-1]) * 1000 if text.endswith("k") else float(text)


def test_bin_labels_of_large_values_are_whole_numbers_side_by_side():
    """Diamond prices (hundreds to thousands of dollars): each label is the bin's two edges in 3 significant digits
    (1.4k, not 1.4e+03 cut to 14 characters), and each fits its slot."""
    prices = diamond_prices()
    profile = prof.numeric_profile(prices)
    feature = feature_report(profile, prices[::7].tolist())
    chart = bar_chart(feature["bars"])
    labels = re.findall(r"<text class='bin-label' x='([\d.]+)'[^>]*>([^<]*)</text>", chart)
    assert "data-labels='side by side'" in chart and len(labels) == 10
    texts = [html.unescape(text) for _, text in labels]
    assert texts[0].startswith("≤ ") and texts[-1].startswith("> ") and "e+" not in "".join(texts)
    edges = [number(texts[0][2:])] + [number(text.split("–")[1]) for text in texts[1:-1]]
    assert edges == pytest.approx(profile["edges"], rel=5e-3) and number(texts[-1][2:]) == edges[-1]
    assert any(text.endswith("k") for text in texts) and all(len(text) <= 11 for text in texts)
    centres = [float(x) for x, _ in labels]
    assert min(np.diff(centres)) > max(label_width(text) for text in texts)  # the browser test measures them


def test_many_long_category_labels_stand_upright_and_the_chart_widens():
    names = [f"category number {i} with a long name" for i in range(80)]
    chart = bar_chart([(name, 1 / 80, 1 / 80) for name in names], shorten=True)
    assert "data-labels='upright'" in chart and int(re.search(r"width='(\d+)'", chart).group(1)) > 900
    texts = re.findall(r"<text class='bin-label'[^>]*rotate\(-90[^>]*>([^<]*)</text>", chart)
    assert len(texts) == 80 and texts[0] == "category number 0 with a long n…"
    assert "<title>category number 0 with a long name: 1.250%</title>" in chart


def test_labels_do_not_overlap_in_a_headless_browser(report, tmp_path):
    """Rendered by Chromium: no two bin labels of a chart intersect and none leaves its chart, for the report's
    charts, diamond prices and 80 long category names."""
    prices = diamond_prices()
    extra = bar_chart(feature_report(prof.numeric_profile(prices), prices[::7].tolist())["bars"]) + bar_chart(
        [(f"category number {i} with a long name", 1 / 80, 1 / 80) for i in range(80)], shorten=True
    )
    page = render_html(report).replace("</body>", f"{extra}</body>")
    assert "<script" not in page
    measured = measure_labels(page, tmp_path)
    assert len(measured) == 14  # 11 features, the output, the two extra charts
    assert_labels_apart(measured)
    assert any(text.endswith("k") for chart in measured for text, *_ in chart["labels"])


def measure_labels(page: str, tmp_path: Path) -> list[dict]:
    """Each bar chart's box and its labels' rendered boxes, from Chromium (skips where it is not installed)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    probe = tmp_path / "measure.html"
    probe.write_text(page.replace("</body>", MEASURE_LABELS + "</body>"), encoding="utf-8")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    return [
        json.loads(text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
        for text in re.findall(r'<pre class="measured">(.*?)</pre>', dom, re.S)
    ]


def assert_labels_apart(measured: list[dict]) -> None:
    for chart in measured:
        left, right, top, bottom = chart["svg"]
        boxes = chart["labels"]
        for text, x0, x1, y0, y1 in boxes:
            assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, (text, (x0, x1, y0, y1), chart["svg"])
        for (text, _, r, _, _), (following, l2, _, _, _) in zip(boxes, boxes[1:]):
            assert r < l2, (text, following, r, l2)
