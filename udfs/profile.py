"""Training profiles and drift metrics: the Python twin of the dbt guard tests' SQL.

A profile is recorded per model version at training time, on the rows the model was fitted on:
numeric features get count, null rate, mean, std, min, max and decile bins (interior edges, with the
training share in each bin); categorical features get their category shares (categories under 1%
grouped as `__other__`) and null rate; the model's output on the holdout is profiled the same way.

The metrics below are defined once here and once in SQL (dbt_project/macros/guards); tests check
that both give the same numbers on the same data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ScorehouseError
from .model import ModelCard

BINS = 10
RARE_SHARE = 0.01  # categories rarer than this in training are grouped as OTHER
OTHER = "__other__"
UNSEEN = "__unseen__"
OUTPUT = "__output__"  # the profile entry of the model's own output
EPSILON = 1e-4  # PSI: empty bins count as this share, so one empty bin does not make PSI infinite

# metric -> (warn above, error above); the dbt tests declare the same defaults (a test checks it).
DEFAULT_THRESHOLDS: dict[str, tuple[float, float]] = {
    "psi": (0.1, 0.25),
    "js_distance": (0.1, 0.1),
    "unseen_share": (0.01, 0.05),
    "null_rate_increase": (0.02, 0.05),
    "out_of_range_share": (0.01, 0.05),
    "output_psi": (0.1, 0.25),
}


def numeric_profile(values: np.ndarray, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Profile numeric values (NaN is NULL); with `weights`, every share, rate, mean and decile is weighted."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    present = ~np.isnan(values)
    total = weights.sum()
    profile = {
        "kind": "numeric",
        "count": int(len(values)),
        "null_rate": float(1 - weights[present].sum() / total) if total else 0.0,
    }
    if not present.any() or not weights[present].sum():
        return {**profile, "mean": None, "std": None, "min": None, "max": None, "edges": [], "shares": [1.0]}
    x, w = values[present], weights[present]
    mean = float(np.average(x, weights=w))
    edges = between_values(np.unique(weighted_quantiles(x, w, np.arange(1, BINS) / BINS)), x)
    return {
        **profile,
        "mean": mean,
        "std": float(np.sqrt(np.average((x - mean) ** 2, weights=w))),
        "min": float(x.min()),
        "max": float(x.max()),
        "edges": [float(e) for e in edges],
        "shares": bin_shares(x, edges, w).tolist(),
    }


def between_values(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each edge moved to the midpoint between the training values either side of it: the same bins for the
    training rows, and none for a value scored on another path (SQL in double, onnxruntime in float32)
    that lies within half a gap of the training value. A quantile of repeated values (a model with few
    trees has few distinct scores) is one of them, and an edge at a value sends its copies one 1e-16 off
    to the other bin: PSI 4 for scores equal to the library's within 1e-7."""
    distinct = np.unique(values)
    above = np.searchsorted(distinct, edges, side="right")  # distinct[above - 1] <= edge < distinct[above]
    inside = (above > 0) & (above < len(distinct))
    moved = edges.copy()
    moved[inside] = (distinct[above[inside] - 1] + distinct[above[inside]]) / 2
    return np.unique(moved)


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles of `values` under `weights`; equal weights give numpy's default (linear) quantiles."""
    if np.all(weights == weights[0]):
        return np.quantile(values, q)
    order = np.argsort(values)
    x, w = values[order], weights[order]
    cumulative = (np.cumsum(w) - 0.5 * w) / w.sum()
    return np.interp(q, cumulative, x)


def categorical_profile(values: Sequence[str | None], weights: np.ndarray | None = None) -> dict[str, Any]:
    """Profile category values (None or the empty string is NULL), shares weighted by `weights`."""
    weights = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    counts: dict[str, float] = {}  # weighted: not a Counter, whose counts are whole
    null_weight = 0.0
    for value, weight in zip(values, weights):
        if value is None or value == "":
            null_weight += float(weight)
        else:
            counts[value] = counts.get(value, 0.0) + float(weight)
    present = sum(counts.values())
    total = present or 1
    buckets: dict[str, str] = {c: (c if n / total >= RARE_SHARE else OTHER) for c, n in sorted(counts.items())}
    shares: dict[str, float] = {}
    for category, n in counts.items():
        shares[buckets[category]] = shares.get(buckets[category], 0.0) + n / total
    everything = present + null_weight
    return {
        "kind": "categorical",
        "count": len(values),
        "null_rate": float(null_weight / everything) if everything else 0.0,
        "buckets": buckets,
        "shares": dict(sorted(shares.items())),
    }


def bin_shares(
    values: np.ndarray, edges: Sequence[float] | np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Share of non-NULL values per bin: bin i holds edges[i-1] < v <= edges[i], open at both ends."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    present = ~np.isnan(values)
    values, weights = values[present], weights[present]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left"),
        weights=weights,
        minlength=len(edges) + 1,
    )
    return counts / max(weights.sum(), 1e-300) if len(values) else counts


def psi(baseline: Sequence[float] | np.ndarray, current: Sequence[float] | np.ndarray) -> float:
    """Population stability index; shares under EPSILON count as EPSILON."""
    b = np.maximum(np.asarray(baseline, dtype=np.float64), EPSILON)
    c = np.maximum(np.asarray(current, dtype=np.float64), EPSILON)
    return float(np.sum((c - b) * np.log(c / b)))


def category_shares(values: Sequence[str | None], profile: Mapping[str, Any]) -> dict[str, float]:
    """Shares of non-NULL current values per training bucket, unseen categories as UNSEEN."""
    present = [v for v in values if v not in (None, "")]
    counts = Counter(profile["buckets"].get(v, UNSEEN) for v in present)
    total = len(present) or 1
    return {bucket: n / total for bucket, n in counts.items()}


def js_distance(baseline: Mapping[str, float], current: Mapping[str, float]) -> float:
    """Jensen-Shannon distance (base 2, so between 0 and 1) of two share maps."""
    total = 0.0
    for key in set(baseline) | set(current):
        p, q = baseline.get(key, 0.0), current.get(key, 0.0)
        m = (p + q) / 2
        if p > 0:
            total += 0.5 * p * math.log2(p / m)
        if q > 0:
            total += 0.5 * q * math.log2(q / m)
    return math.sqrt(max(total, 0.0))


def feature_metrics(profile: Mapping[str, Any], values: Sequence) -> dict[str, tuple[float, float]]:
    """Return {metric: (baseline, current)} for one feature's current values."""
    if profile["kind"] == "numeric":
        # through float32, as the model sees them and as the training profile was taken
        numbers = (
            np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
            .astype(np.float32)
            .astype(np.float64)
        )
        present = numbers[~np.isnan(numbers)]
        null_rate = 1 - len(present) / len(numbers) if len(numbers) else 0.0
        result = {"null_rate_increase": (profile["null_rate"], null_rate)}
        if profile["edges"] or profile["min"] is not None:
            result["psi"] = (0.0, psi(profile["shares"], bin_shares(present, profile["edges"])))
            outside = (
                np.sum((present < profile["min"]) | (present > profile["max"])) if profile["min"] is not None else 0
            )
            result["out_of_range_share"] = (0.0, float(outside / len(present)) if len(present) else 0.0)
        return result
    texts = [v for v in values if v not in (None, "")]
    null_rate = 1 - len(texts) / len(values) if len(values) else 0.0
    shares = category_shares(texts, profile)
    return {
        "null_rate_increase": (profile["null_rate"], null_rate),
        "js_distance": (0.0, js_distance(profile["shares"], shares)),
        "unseen_share": (0.0, shares.get(UNSEEN, 0.0)),
    }


def measured_value(metric: str, baseline: float, current: float) -> float:
    """Return the value a metric's thresholds apply to: the increase for null-rate metrics, else the current value."""
    return current - baseline if metric == "null_rate_increase" else current


def level(
    metric: str, baseline: float, current: float, thresholds: Mapping[str, tuple[float, float]] | None = None
) -> str | None:
    """Return 'error', 'warn' or None for a metric value (null-rate metrics compare the increase)."""
    warn, error = (thresholds or DEFAULT_THRESHOLDS)[metric]
    value = measured_value(metric, baseline, current)
    if value > error:
        return "error"
    if value > warn:
        return "warn"
    return None


def training_profile(
    frame,
    features,
    outputs: Mapping[str, np.ndarray],
    task: str,
    weights: np.ndarray | None = None,
    output_weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Profile the training rows (`frame` as the model saw them, under their sample weights) and the holdout outputs."""
    result = {}
    for feature in features:
        column = frame[feature.name].to_numpy()
        result[feature.name] = (
            numeric_profile(column, weights)
            if feature.kind == "numeric"
            else categorical_profile(column.tolist(), weights)
        )
    output = (
        categorical_profile(outputs["label"].tolist(), output_weights)
        if task == "multiclass"
        else numeric_profile(outputs["score"], output_weights)
    )
    return {"features": result, "output": output}


def stats_rows(card: ModelCard) -> list[dict[str, Any]]:
    """One row per feature (and the output): the relation `scorehouse_features(ref)` in SQL."""
    profile = _profile(card)
    sql_types = {f.name: f.sql_type for f in card.features}
    rows = []
    for name, p in [*profile["features"].items(), (OUTPUT, profile["output"])]:
        rows.append(
            {
                "model_name": card.name,
                "model_version": card.version,
                "feature": name,
                "kind": p["kind"],
                "sql_type": sql_types.get(name, "DOUBLE" if p["kind"] == "numeric" else "VARCHAR"),
                "train_count": p["count"],
                "null_rate": p["null_rate"],
                "mean": p.get("mean"),
                "std": p.get("std"),
                "min": p.get("min"),
                "max": p.get("max"),
            }
        )
    return rows


def bin_rows(card: ModelCard) -> list[dict[str, Any]]:
    """One row per bin or category: the relation `scorehouse_bins(ref)` in SQL.

    Numeric bins hold lower < value <= upper (NULL bounds are open); categorical rows map each
    training category to its bucket (itself, or __other__) with the bucket's share.
    """
    profile = _profile(card)
    rows = []
    for name, p in [*profile["features"].items(), (OUTPUT, profile["output"])]:
        base = {"model_name": card.name, "model_version": card.version, "feature": name, "kind": p["kind"]}
        if p["kind"] == "numeric":
            bounds = [None, *p["edges"], None]
            for i, share in enumerate(p["shares"]):
                rows.append(
                    {
                        **base,
                        "bin": i,
                        "lower": bounds[i],
                        "upper": bounds[i + 1],
                        "category": None,
                        "bucket": None,
                        "share": share,
                    }
                )
        else:
            for i, (category, bucket) in enumerate(sorted(p["buckets"].items())):
                rows.append(
                    {
                        **base,
                        "bin": i,
                        "lower": None,
                        "upper": None,
                        "category": category,
                        "bucket": bucket,
                        "share": p["shares"][bucket],
                    }
                )
    return rows


def metric_rows(card: ModelCard) -> list[dict[str, Any]]:
    """One row per holdout metric of the version: the relation `scorehouse_metrics(ref)` in SQL, which quality
    in production is compared with (with the task, the positive class and the loss's Tweedie power)."""
    base = {
        "model_name": card.name,
        "model_version": card.version,
        "task": card.task,
        "positive_class": card.positive_class,
        "tweedie_power": card.manifest.tweedie_power,
    }
    return [{**base, "metric": metric, "value": value} for metric, value in sorted(card.metrics.items())]


def _profile(card: ModelCard) -> Mapping[str, Any]:
    if card.manifest.profile is None:
        raise ScorehouseError(f"Model {card.label} has no training profile; retrain it to get one")
    return card.manifest.profile


_COMMON = {"model_name": "VARCHAR", "model_version": "INTEGER", "feature": "VARCHAR", "kind": "VARCHAR"}
# The relations engines expose for the guard tests: name -> (rows of a manifest, column SQL types).
PROFILE_RELATIONS = {
    "features": (
        stats_rows,
        {
            **_COMMON,
            "sql_type": "VARCHAR",
            "train_count": "BIGINT",
            "null_rate": "DOUBLE",
            "mean": "DOUBLE",
            "std": "DOUBLE",
            "min": "DOUBLE",
            "max": "DOUBLE",
        },
    ),
    "bins": (
        bin_rows,
        {
            **_COMMON,
            "bin": "INTEGER",
            "lower": "DOUBLE",
            "upper": "DOUBLE",
            "category": "VARCHAR",
            "bucket": "VARCHAR",
            "share": "DOUBLE",
        },
    ),
    "metrics": (
        metric_rows,
        {
            "model_name": "VARCHAR",
            "model_version": "INTEGER",
            "task": "VARCHAR",
            "positive_class": "VARCHAR",
            "tweedie_power": "DOUBLE",
            "metric": "VARCHAR",
            "value": "DOUBLE",
        },
    ),
}
