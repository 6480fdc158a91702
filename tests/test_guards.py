"""The distribution guards: profiles, SQL metrics against numpy, blocking builds, false alarms, report."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

import scorehouse.duckdb as engine
from scorehouse import profile as prof
from scorehouse.registration.spec import Split

from helpers import PACKAGE, PROJECT, build_package

pytestmark = pytest.mark.dbt
GUARD_CASES = Path(__file__).parent / "dbt_guards"
BROKEN_FEATURES = {"dir", "lvr", "self"}


def load_broken_batch():
    sys.path.insert(0, str(PROJECT / "data"))
    try:
        from broken_batch import write_broken_batch
    finally:
        sys.path.pop(0)
    return write_broken_batch


def test_training_profile_is_recorded(trained):
    profile = trained.registry.card("mortgage_deny", 1).manifest.profile
    lvr = profile["features"]["lvr"]
    assert lvr["kind"] == "numeric" and lvr["count"] == 1785 and 0 <= lvr["null_rate"] < 0.01
    assert len(lvr["edges"]) == 9 and len(lvr["shares"]) == 10 and sum(lvr["shares"]) == pytest.approx(1)
    assert lvr["min"] < lvr["mean"] < lvr["max"] and lvr["std"] > 0
    pbcr = profile["features"]["pbcr"]
    assert set(pbcr["shares"]) == {"no", "yes"} and sum(pbcr["shares"].values()) == pytest.approx(1)
    assert profile["output"]["kind"] == "numeric" and sum(profile["output"]["shares"]) == pytest.approx(1)
    diamonds = trained.registry.card("diamond_price", 1).manifest.profile
    assert set(diamonds["features"]["clarity"]["shares"]) == {"I1", "IF", "SI1", "SI2", "VS1", "VS2", "VVS1", "VVS2"}


def test_profile_relations_follow_the_alias(workspace):
    workspace.train("mortgage_deny", split=Split(test_size=0.5, seed=3))
    con = engine.connect(workspace.warehouse, workspace.registry_path, read_only=True)
    try:
        rows = con.sql("select distinct model_version from scorehouse_bins('mortgage_deny')").fetchall()
        pinned = con.sql(
            "select train_count from scorehouse_features('mortgage_deny@1') where feature = 'lvr'"
        ).fetchall()
        current = con.sql(
            "select train_count from scorehouse_features('mortgage_deny') where feature = 'lvr'"
        ).fetchall()
    finally:
        con.close()
    assert rows == [(2,)] and pinned == [(1785,)] and current == [(1190,)]


def python_metrics(manifest, frame):
    """{(feature, metric): (baseline, current)} computed by scorehouse.profile with numpy."""
    result = {}
    for name, p in manifest["profile"]["features"].items():
        values = [None if pd.isna(v) else v for v in frame[name].tolist()]
        for metric, pair in prof.feature_metrics(p, values).items():
            result[(name, metric)] = pair
    return result


def sql_metrics(ws):
    history = ws.query(
        "select * from drift_history where model_ref = 'mortgage_deny' and "
        "invocation_id = (select invocation_id from drift_history order by recorded_at desc limit 1)"
    )
    return {(r.feature, r.metric): (r.baseline_value, r.current_value) for r in history.itertuples()}, history


def test_sql_metrics_equal_numpy_on_clean_and_broken_data(workspace):
    workspace.dbt("build")
    manifest = workspace.registry.card("mortgage_deny", 1).raw
    for label in ("clean", "broken"):
        if label == "broken":
            load_broken_batch()(workspace.root / "broken")
            workspace.dbt("build", data_dir=workspace.root / "broken", expect_ok=False)
        frame = workspace.query("select * from features_mortgage")
        in_sql, history = sql_metrics(workspace)
        in_python = python_metrics(manifest, frame)
        assert set(in_sql) == set(in_python), label
        for key, (baseline, current) in in_python.items():
            assert_allclose(in_sql[key], (baseline, current), rtol=1e-9, atol=1e-12, err_msg=f"{label} {key}")
        flagged = set(history.loc[history.level == "error", "feature"])
        assert flagged == (BROKEN_FEATURES if label == "broken" else set()), label


def test_broken_batch_stops_the_build_and_keeps_the_previous_mart(workspace):
    workspace.dbt("build")
    before = workspace.query("select * from mart_mortgage_risk order by application_id")
    diamonds_before = workspace.query("select scored_at from mart_diamond_prices limit 1")
    published_before = workspace.query("select * from scorehouse_publication order by mart", workspace.serving)
    load_broken_batch()(workspace.root / "broken")
    result = workspace.dbt("build", data_dir=workspace.root / "broken", expect_ok=False)
    assert result.returncode != 0
    log = result.stdout
    assert "Failure in test scorehouse_expect_model_inputs_stable_features_mortgage_mortgage_deny" in log
    named = set(re.findall(r"error: model mortgage_deny v1, feature (\w+):", log))
    assert named == BROKEN_FEATURES
    # each line says what it measured: the NULL share beside training's and the increase the thresholds apply to;
    # a distance by itself (its training value is 0 by definition, never printed as "training 0")
    assert re.search(
        r"error: model mortgage_deny v1, feature lvr: NULL share 0\.[23]\d* against 0 in training "
        r"\(an increase of 0\.[23]\d*; warn above 0\.02, error above 0\.05\)",
        log,
    ), log[-3000:]
    assert re.search(
        r"error: model mortgage_deny v1, feature dir: psi [\d.]+ "
        r"\(warn above 0\.1, error above 0\.25\)",
        log,
    )
    assert "(training 0;" not in log
    assert "SKIP relation main.mart_mortgage_risk" in log
    after = workspace.query("select * from mart_mortgage_risk order by application_id")
    pd.testing.assert_frame_equal(before, after)  # same rows, scores, versions and scored_at
    # the diamond model's inputs were clean: its mart was rebuilt
    assert (
        workspace.query("select scored_at from mart_diamond_prices limit 1").scored_at[0] > diamonds_before.scored_at[0]
    )
    # BI tools read the serving file: the mortgage mart kept its publication, the diamond mart has the new one
    published = workspace.query("select * from scorehouse_publication order by mart", workspace.serving).set_index(
        "mart"
    )
    kept = published_before.set_index("mart")
    pd.testing.assert_series_equal(published.loc["mart_mortgage_risk"], kept.loc["mart_mortgage_risk"])
    assert published.loc["mart_diamond_prices", "invocation_id"] != kept.loc["mart_diamond_prices", "invocation_id"]
    pd.testing.assert_frame_equal(
        workspace.query("select * from mart_mortgage_risk order by application_id", workspace.serving), before
    )
    workspace.dbt("build")  # the clean batch passes again
    assert workspace.query("select count(distinct invocation_id) as n from drift_history").n[0] == 3


def with_column(frame: pd.DataFrame, name: str, values) -> pd.DataFrame:
    copy = frame.copy()
    copy[name] = values
    return copy


def write_case_seeds(ws, folder: Path) -> None:
    features = ws.query("select * exclude (is_denied) from features_mortgage order by application_id")
    n = len(features)
    ids = features.application_id.to_numpy()
    cases = {
        "case_clean": features,
        "case_shifted": features.assign(lvr=features.lvr * 0.8),
        "case_flipped": features.assign(pbcr=features.pbcr.map({"yes": "no", "no": "yes"})),
        "case_unseen": with_column(features, "self", np.where(ids % 4 == 0, "unknown", features["self"])),
        "case_nulls": features.assign(lvr=np.where(ids % 10 < 3, np.nan, features.lvr)),
        "case_units": features.assign(dir=features.dir * 100),
        "case_schema": features.rename(columns={"lvr": "loan_to_value"}).assign(single=features.single == "yes"),
    }
    broken = ws.root / "broken_csv"
    load_broken_batch()(broken)
    with duckdb.connect() as con:
        cases["case_broken_batch"] = (
            con.sql(
                f"select cast(column00 as integer) as application_id, cast(nullif(dir, 'NA') as double) as dir, "
                f"cast(nullif(hir, 'NA') as double) as hir, cast(nullif(lvr, 'NA') as double) as lvr, "
                f"cast(nullif(ccs, 'NA') as double) as ccs, cast(nullif(mcs, 'NA') as double) as mcs, "
                f"cast(nullif(uria, 'NA') as double) as uria, nullif(pbcr, 'NA') as pbcr, nullif(dmi, 'NA') as dmi, "
                f"nullif(self, 'NA') as self, nullif(single, 'NA') as single, "
                f"case comdominiom when '1' then 'yes' when '0' then 'no' end as condominium "
                f"from read_csv('{broken / 'hmda_boston.csv'}', all_varchar = true)"
            )
            .to_arrow_table()
            .to_pandas()
        )
    scores = ws.query("select application_id, deny_probability from mart_mortgage_risk order by application_id")
    cases["case_scores_clean"] = scores
    cases["case_scores_drifted"] = scores.assign(deny_probability=1 - scores.deny_probability)
    for name, frame in cases.items():
        assert len(frame) == n
        frame.to_csv(folder / f"{name}.csv", index=False)


def test_each_guard_passes_clean_data_and_fails_on_its_own_drift(built, tmp_path):
    project = tmp_path / "guard_cases"
    shutil.copytree(GUARD_CASES, project)
    write_case_seeds(built, project / "seeds")
    result, results = build_package(project, "scorehouse_guard_cases", built, tmp_path)
    statuses = {name: r["status"] for name, r in results.items() if r["unique_id"].startswith("test.")}
    assert result.returncode == 0, (
        "\n".join(f"{k}: {v}" for k, v in statuses.items() if v != "pass") + result.stdout[-3000:]
    )
    declared = (GUARD_CASES / "seeds" / "_cases.yml").read_text().count("- scorehouse.expect_")
    assert len(statuses) == declared == 23 and set(statuses.values()) == {"pass"}
    kinds = {re.match(r"scorehouse_(expect_\w+?)_case", k).group(1) for k in statuses}
    assert kinds == {
        "expect_model_inputs_match_schema",
        "expect_feature_psi_below",
        "expect_category_distance_below",
        "expect_unseen_category_share_below",
        "expect_null_rate_increase_below",
        "expect_out_of_range_share_below",
        "expect_model_inputs_stable",
        "expect_output_drift_below",
    }


def test_false_alarm_rate_on_bootstrap_resamples_of_clean_data(built):
    resamples = 20
    features = built.query("select * from features_mortgage")
    rng = np.random.default_rng(2026)
    ws = built
    con = duckdb.connect(str(ws.warehouse))
    try:
        for i in range(resamples):
            boot = features.iloc[rng.integers(0, len(features), len(features))]  # noqa: F841 (read by DuckDB)
            con.execute(f"create or replace table boot_{i:02d} as select * from boot")
    finally:
        con.close()
    union = " union all ".join(
        f"select {i} as sample, l.* from ({{{{ scorehouse.stability_levels(api.Relation.create(schema='main', "
        f"identifier='boot_{i:02d}'), 'mortgage_deny') }}}}) as l"
        for i in range(resamples)
    )
    result = ws.dbt("show", "--inline", union, "--limit", "-1", "--output", "json")
    rows = json.loads(result.stdout[result.stdout.index("{") : result.stdout.rindex("}") + 1])["show"]
    frame = pd.DataFrame(rows)
    assert frame["sample"].nunique() == resamples and len(frame) == resamples * 33
    alarms = frame[frame.level == "error"].groupby("sample").size()
    rate = len(alarms) / resamples
    assert rate <= 0.05, f"error-level false alarms in {len(alarms)} of {resamples} clean resamples: {alarms.to_dict()}"
    (ws.root / "false_alarms.json").write_text(
        json.dumps(
            {
                "resamples": resamples,
                "error_rate": rate,
                "warn_rate": frame[frame.level.notna()]["sample"].nunique() / resamples,
                "max_by_metric": frame.groupby("metric").current_value.max().to_dict(),
            }
        )
    )


def test_python_and_dbt_default_thresholds_agree():
    text = (PACKAGE / "macros" / "guards" / "guard_failures.sql").read_text()
    declared = {m: (float(w), float(e)) for m, w, e in re.findall(r"'(\w+)': \[([\d.]+), ([\d.]+)\]", text)}
    declared.pop("schema")
    assert declared == {k: tuple(map(float, v)) for k, v in prof.DEFAULT_THRESHOLDS.items()}


def test_every_guard_macro_has_a_case():
    """Input guards have a seed each here; the quality gates (tests/generic/quality) are built in test_quality.py."""
    generic = PACKAGE / "tests" / "generic"
    tests = {p.stem for p in generic.rglob("expect_*.sql") if p.parent.name != "quality"}
    cases = (GUARD_CASES / "seeds" / "_cases.yml").read_text()
    assert tests == set(re.findall(r"scorehouse\.(expect_\w+)", cases))
    quality = (Path(__file__).parent / "test_quality.py").read_text()
    assert all(p.stem in quality for p in (generic / "quality").glob("expect_*.sql"))


def test_report_renders_in_a_headless_browser(workspace, tmp_path):
    """The report after a clean build and a broken batch: the failing features first, the distributions, the NULL
    bar, the unseen values by name, the output section, each metric over both builds with its thresholds (the one
    that decided the level first), quality over builds, what drives the scores (mean |contribution|), and bin
    labels that neither overlap nor leave their chart (diamond prices in thousands among them)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    from scorehouse.report import CURRENT, HISTORY, TRAINING, VERSION_COLOURS, WARN_LINE

    from test_report import assert_labels_apart, measure_labels

    workspace.dbt("build")
    load_broken_batch()(workspace.root / "broken")
    workspace.dbt("build", data_dir=workspace.root / "broken", expect_ok=False)
    out = tmp_path / "report.html"
    result = workspace.cli("report", "mortgage_deny", "--table", "features_mortgage", "--out", str(out), check=True)
    assert "thresholds crossed by dir (error), lvr (error), self (error)" in result.stderr
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    order = re.findall(r"<section class=\"feature\" id=\"feature-(\w+)\" data-level=\"(\w+)\"", dom)
    assert order == [
        ("dir", "error"),
        ("lvr", "error"),
        ("self", "error"),
        ("hir", "ok"),
        ("ccs", "ok"),
        ("mcs", "ok"),
        ("uria", "ok"),
        ("pbcr", "ok"),
        ("dmi", "ok"),
        ("single", "ok"),
        ("condominium", "ok"),
    ]
    verdict = re.search(r'<ul id="verdict">(.*?)</ul>', dom, re.S).group(1)
    assert re.findall(r'<a href="#feature-(\w+)">', verdict) == ["dir", "lvr", "self"]
    sections = dict(re.findall(r'<section class="feature" id="feature-(\w+)".*?>(.*?)</section>', dom, re.S))
    nulls = re.search(r'class="null-chart"[^>]*data-training="([\d.]+)" data-current="([\d.]+)"', sections["lvr"])
    assert float(nulls.group(1)) < 0.01 and 0.25 < float(nulls.group(2)) < 0.35  # the NULL-rate jump, as its own bar
    unseen = re.search(r"<code>unknown</code>: ([\d,]+) rows", sections["self"])
    assert unseen and 0.2 < int(unseen.group(1).replace(",", "")) / 2381 < 0.3
    charted = {
        name: re.findall(r'<figure class="history" data-metric="(\w+)" data-level="(\w+)"', section)
        for name, section in sections.items()
    }
    assert charted["lvr"][0] == ("null_rate_increase", "error") and charted["self"][0] == ("unseen_share", "error")
    assert charted["dir"][0][1] == "error" and all(len(metrics) == 3 for metrics in charted.values())
    assert all(section.count("<circle") == 6 for section in sections.values())  # 3 metrics, two builds in drift_history
    assert re.search(r'fill="#c0392b"><title>null_rate_increase 0\.[23]\d* \(error\)', sections["lvr"])
    assert 'id="output"' in dom and 'id="quality"' in dom and "<script" not in out.read_text()
    drivers = re.search(r'<section id="drivers">(.*?)</section>', dom, re.S).group(1)  # mean |contribution|
    assert drivers.count('class="driver"') == 11 and "mean |contribution|" in drivers
    assert_labels_apart(measure_labels(out.read_text(), tmp_path))
    diamonds = tmp_path / "diamonds.html"
    workspace.cli("report", "diamond_price", "--table", "features_diamonds", "--out", str(diamonds), check=True)
    measured = measure_labels(diamonds.read_text(), tmp_path)
    assert_labels_apart(measured)
    prices = [text for text, *_ in measured[-1]["labels"]]  # the output: prices, hundreds to thousands of dollars
    assert len(prices) == 10 and all(re.fullmatch(r"(≤ |> )?[\d.]+k?(–[\d.]+k?)?", text) for text in prices), prices
    assert sum(text.endswith("k") for text in prices) >= 5, prices
    png = tmp_path / "report.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={png}", "--window-size=1000,9000", out.as_uri()],
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    pixels = {colour for _, colour in Image.open(png).convert("RGB").getcolors(maxcolors=1 << 24)}
    for colour in (TRAINING, CURRENT, HISTORY, WARN_LINE, VERSION_COLOURS[0]):  # bars, history, thresholds, quality
        assert tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5)) in pixels, colour


def test_each_hook_runs_without_configuration_and_stops_only_for_its_own_var(workspace):
    """The package's hooks run in the installing project by default; each var switches off its own hook only."""
    load_broken_batch()(workspace.root / "broken")

    def build(**variables):
        result = workspace.dbt("build", data_dir=workspace.root / "broken", variables=variables, expect_ok=False)
        invocation = json.loads((workspace.root / "target" / "run_results.json").read_text())["metadata"][
            "invocation_id"
        ]
        recorded = workspace.query(f"select count(*) as n from drift_history where invocation_id = '{invocation}'").n[0]
        published = workspace.query(
            "select distinct invocation_id from scorehouse_publication", workspace.serving
        ).invocation_id.tolist()
        return {
            "summary": "scorehouse guard FAIL" in result.stdout,
            "history": recorded > 0,
            "published": invocation in published,
        }

    assert build() == {"summary": True, "history": True, "published": True}
    assert build(scorehouse_guard_summary=False) == {"summary": False, "history": True, "published": True}
    assert build(scorehouse_drift_history=False) == {"summary": True, "history": False, "published": True}
    assert build(scorehouse_publish=False) == {"summary": True, "history": True, "published": False}


def test_bins_hold_a_few_distinct_scores_whichever_path_computed_them():
    """A model with few trees has few distinct scores, so a decile of its holdout scores is one of them. Its bin
    edges lie between the distinct values: the scores computed in double (SQL) or float32 (onnxruntime), within
    1e-7 of the library's, fall in the library's bins (an edge at a value gave PSI 4 for such scores)."""
    from scorehouse.profile import BINS, bin_shares, numeric_profile, psi, weighted_quantiles

    values = np.repeat([0.0527, 0.0843, 0.1139, 0.2271, 0.8429], [700, 500, 300, 150, 50]) * (1 + 1 / 3)
    profile = numeric_profile(values)
    quantiles = np.unique(weighted_quantiles(values, np.ones(len(values)), np.arange(1, BINS) / BINS))
    assert set(quantiles) <= set(values)  # the deciles are scores themselves
    assert profile["shares"] == bin_shares(values, quantiles).tolist()  # the same bins for the training rows
    for other_path in (
        np.nextafter(values, np.inf),
        np.nextafter(values, -np.inf),
        values.astype(np.float32).astype(np.float64),
    ):
        assert psi(profile["shares"], bin_shares(other_path, profile["edges"])) == pytest.approx(0, abs=1e-12)
    assert psi(bin_shares(values, quantiles), bin_shares(np.nextafter(values, np.inf), quantiles)) > 1
