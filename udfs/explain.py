"""Why a row got its score: each feature's contribution to the model's margin, and the baseline.

The margin is what the model adds up before its link: log-odds of the positive class for a binary
classifier, the prediction for a linear regressor, the log of the prediction for a Poisson, Gamma or
Tweedie model. baseline + the sum of every feature's contribution = the row's margin.

Linear models are explained exactly: a numeric feature contributes coef × (its imputed, standardised
value − that column's training mean); a categorical feature the sum of its one-hot columns' coef ×
(indicator − training share), so an unseen or NULL category contributes −Σ coef × share. The
parameters are read from the fitted pipeline at registration and stored as the version's explain.json
(hashed, and signed with the version); nothing is pickled. Tree ensembles are not explained yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ScorehouseError
from .estimators import SCALED_KINDS
from .schema import MISSING_CATEGORY

MAX_TOP_K = 1000
LINKS = {"binary": "logit", "regression": "identity"}
LOG_LINK_KINDS = frozenset({"poisson_regression", "gamma_regression", "tweedie_regression"})
CONTRIBUTION = pa.struct([("feature", pa.string()), ("value", pa.string()), ("contribution", pa.float64())])
EXPLANATION = pa.struct([("baseline", pa.float64()), ("margin", pa.float64()),
                         ("contributions", pa.list_(CONTRIBUTION))])


def linear_explanation(pipeline, kind: str, task: str, numeric: Sequence[str], categorical: Sequence[str],
                       x_train, classes: Sequence[str], positive: str | None, weights=None) -> dict[str, Any]:
    """explain.json for a linear pipeline built by scorehouse train (impute → scale numbers, one-hot text)."""
    transformer, estimator = pipeline.named_steps["features"], pipeline[-1]
    coef = np.asarray(estimator.coef_, dtype=np.float64).reshape(-1)
    intercept = float(np.asarray(estimator.intercept_, dtype=np.float64).reshape(-1)[0])
    if task == "binary" and positive == classes[0]:  # the log-odds of the positive class
        coef, intercept = -coef, -intercept
    means = np.average(np.asarray(transformer.transform(x_train), dtype=np.float64), axis=0, weights=weights)
    steps = dict((name, (step, columns)) for name, step, columns in transformer.transformers_)
    result: dict[str, Any] = {"kind": "linear", "link": "log" if kind in LOG_LINK_KINDS else LINKS[task],
                              "intercept": intercept, "numeric": [], "categorical": []}
    position = 0
    if numeric:
        imputer = steps["numeric"][0].named_steps["impute"]
        scaler = steps["numeric"][0].named_steps.get("scale")
        for i, name in enumerate(numeric):
            result["numeric"].append({
                "feature": name, "median": float(imputer.statistics_[i]),
                "center": float(scaler.mean_[i]) if scaler is not None else 0.0,
                "scale": float(scaler.scale_[i]) if scaler is not None else 1.0,
                "coef": float(coef[position]), "mean": float(means[position])})
            position += 1
    if categorical:
        encoder = steps["categorical"][0]
        for name, categories in zip(categorical, encoder.categories_):
            width = len(categories)
            result["categorical"].append({
                "feature": name, "categories": [str(c) for c in categories],
                "coef": coef[position:position + width].tolist(), "mean": means[position:position + width].tolist()})
            position += width
    result["baseline"] = intercept + float(coef @ means)
    return result


def contributions(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array]) -> tuple[list[str], np.ndarray, list]:
    """(feature names, an n × features matrix of contributions, each feature's values as text)."""
    names, blocks, texts = [], [], []
    for entry in explanation["numeric"]:
        values = _numbers(columns[entry["feature"]])
        standardised = (np.where(np.isnan(values), entry["median"], values) - entry["center"]) / entry["scale"]
        names.append(entry["feature"])
        blocks.append(entry["coef"] * (standardised - entry["mean"]))
        texts.append([None if np.isnan(v) else f"{v:.7g}" for v in values])
    for entry in explanation["categorical"]:
        raw = _texts(columns[entry["feature"]])
        index = {c: i for i, c in enumerate(entry["categories"])}
        coef, mean = np.asarray(entry["coef"]), np.asarray(entry["mean"])
        hit = np.asarray([index.get(MISSING_CATEGORY if v is None else v, -1) for v in raw])
        names.append(entry["feature"])
        blocks.append(np.where(hit >= 0, coef[np.maximum(hit, 0)], 0.0) - float(coef @ mean))
        texts.append(raw)
    return names, np.column_stack(blocks) if blocks else np.zeros((0, 0)), texts


def explain_rows(explanation: Mapping[str, Any], columns: Mapping[str, pa.Array], top_k: int) -> pa.Array:
    """Per row {baseline, margin, contributions: the top_k features by |contribution|, largest first}."""
    if not 1 <= int(top_k) <= MAX_TOP_K:
        raise ScorehouseError(f"explain(): top_k must be between 1 and {MAX_TOP_K}, found {top_k}")
    names, matrix, texts = contributions(explanation, columns)
    rows = matrix.shape[0]
    k = min(int(top_k), len(names))
    order = np.argsort(-np.abs(np.nan_to_num(matrix, nan=np.inf)), axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(matrix, order, axis=1)
    flat = order.reshape(-1)
    feature = pa.array(np.asarray(names, dtype=object)[flat] if rows else [], pa.string())
    text = pa.array([texts[j][i] for i, row in enumerate(order) for j in row], pa.string())
    items = pa.StructArray.from_arrays([feature, text, pa.array(picked.reshape(-1), pa.float64())],
                                       fields=list(CONTRIBUTION))
    listed = pa.ListArray.from_arrays(pa.array(np.arange(rows + 1) * k, pa.int32()), items)
    baseline = np.full(rows, explanation["baseline"])
    return pa.StructArray.from_arrays([pa.array(baseline), pa.array(baseline + matrix.sum(axis=1)), listed],
                                      fields=list(EXPLANATION))


def not_explained(model: str, manifest: Mapping[str, Any]) -> str:
    """Why a version has no explanations, in one line."""
    record = manifest.get("explanation")
    if record is None:
        return (f"Model {model} has no explanations: it was registered before they were recorded; "
                "retrain it to get them")
    return f"Model {model} has no explanations: {record['skipped']}"


def skipped_reason(kind: str, task: str, fitted_by_scorehouse: bool) -> str | None:
    """Why a model gets no explain.json at registration, or None when it gets one."""
    if not fitted_by_scorehouse:
        return "a pipeline fitted elsewhere is not explained (only models trained by `scorehouse train` are)"
    if task == "multiclass":
        return "multiclass models are not explained yet"
    if kind not in SCALED_KINDS:
        return f"{kind} models are not explained yet (linear models are)"
    return None


def _numbers(column: pa.Array) -> np.ndarray:
    """The values as the model is fed them: float32, NULL as NaN."""
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = pc.cast(column, pa.float32(), safe=False).to_numpy(zero_copy_only=False)
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _texts(column: pa.Array) -> list[str | None]:
    import pyarrow.compute as pc

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return (column if column.type == pa.string() else pc.cast(column, pa.string())).to_pylist()


def sklearn_margin(pipeline, frame, explanation: Mapping[str, Any], task: str, classes: Sequence[str],
                   positive: str | None) -> np.ndarray:
    """scikit-learn's own margin for the rows of `frame` (what baseline + contributions must equal)."""
    if task == "binary":
        margin = np.asarray(pipeline.decision_function(frame), dtype=np.float64)
        return -margin if positive == classes[0] else margin
    prediction = np.asarray(pipeline.predict(frame), dtype=np.float64)
    return np.log(prediction) if explanation["link"] == "log" else prediction
