"""Register a pipeline fitted elsewhere (a notebook), through the same path as `scorehouse train`.

    from scorehouse.registration.fitted import register_fitted

    version = register_fitted(pipeline, frame, target="is_denied", task="binary", name="mortgage_deny",
                              registry="registry", holdout=test_frame, alias="candidate")

`pipeline` is a fitted scikit-learn Pipeline (or estimator) that takes a data frame of named columns;
XGBoost and LightGBM models inside one work too. `frame` holds the rows it was fitted on and the
target; its other columns are the features, numbers (and BOOLEAN, as 0/1) numeric, text categorical
(or the pipeline's `feature_names_in_`, where it has them). The pipeline is exported to ONNX (a step
that cannot be is named), checked against itself on `holdout` (rows it was not fitted on; else on
`frame`), measured, profiled and registered. Nothing is pickled: the fitted
object stays in memory and only ONNX and JSON reach the registry.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa

from ..errors import ParityError, SpecError
from ..events import event
from ..manifest import artifact_sha256, training_fingerprint
from ..names import check_model_name, listed
from ..registry import Registry
from .spec import TASKS, Estimator, ModelSpec, Source, _class_label
from .training import Progress, no_progress, package, prepare, timed_steps


def register_fitted(
    pipeline: Any,
    frame: Any,
    *,
    target: str,
    task: str,
    name: str,
    registry: Registry | str | None = None,
    holdout: Any = None,
    positive_class: Any = None,
    description: str = "",
    weight: str | None = None,
    alias: str | None = None,
    progress: Progress = no_progress,
) -> int:
    """Register a fitted pipeline; return its version (an identical earlier registration is reused)."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    check_model_name(name)
    if task not in TASKS:
        raise SpecError(f"Model {name}: task '{task}' is not one of {list(TASKS)}")
    try:
        check_is_fitted(pipeline)
    except NotFittedError:
        raise SpecError(f"Model {name}: the pipeline is not fitted; fit it on `frame` first") from None
    if not hasattr(pipeline, "steps"):  # a bare estimator: the last (and only) step of a pipeline
        from sklearn.pipeline import Pipeline

        pipeline = Pipeline([("estimator", pipeline)])
    table, holdout_table = _arrow(frame, name), (None if holdout is None else _arrow(holdout, name))
    numeric, categorical = _features(pipeline, table, target, weight, name)
    spec = ModelSpec(
        name=name,
        task=task,
        target=target,
        source=Source(),
        estimator=Estimator(kind="fitted", params={"class": _describe(pipeline)}),
        numeric=numeric,
        categorical=categorical,
        description=description,
        positive_class=None if positive_class is None else _class_label(positive_class),
        weight=weight,
    )
    data = prepare(spec, table, holdout_table, split=False)
    seconds: dict[str, float] = {}
    step = timed_steps(progress, seconds)
    try:
        candidate = package(
            spec,
            data,
            pipeline,
            step,
            seconds,
            evaluated_on="holdout" if holdout is not None else "training frame",
            explained=False,
        )
    except ParityError as exc:
        raise ParityError(
            f"{exc}. A pipeline fitted on float64 numbers can split between two float32 values: "
            "fit it on the frame with its numeric columns cast to float32, "
            "as scorehouse train does"
        ) from None
    registry = registry if isinstance(registry, Registry) else Registry(registry)
    onnx_sha = hashlib.sha256(candidate.onnx_bytes).hexdigest()
    fingerprint = training_fingerprint(candidate.manifest)

    def same(manifest: dict) -> bool:  # the same graph, registered from the same rows
        return artifact_sha256(manifest, "model.onnx") == onnx_sha and training_fingerprint(manifest) == fingerprint

    version, created = registry.register_new(candidate.manifest, candidate.files, same_as=same)
    event(
        "registered",
        f"{name}: {'registered' if created else 'already registered as'} version {version} in {registry.root}",
        model=name,
        version=version,
        created=created,
    )
    if alias:
        registry.promote(name, version, alias)
    return version


def _arrow(frame: Any, name: str) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (TypeError, ValueError, AttributeError) as exc:
        raise SpecError(f"Model {name}: the frame must be a pandas DataFrame or an Arrow table ({exc})") from None


def _features(pipeline: Any, table: pa.Table, target: str, weight: str | None, name: str) -> tuple[list, list]:
    """The feature columns by kind: the pipeline's feature_names_in_, else every column but the target and weight."""
    columns = [str(c) for c in getattr(pipeline, "feature_names_in_", [])] or [
        c for c in table.column_names if c not in (target, weight)
    ]
    missing = [c for c in [*columns, target] if c not in table.column_names]
    if missing:
        raise SpecError(
            f"Model {name}: the frame lacks column(s) {listed(missing)}; it has: {listed(table.column_names)}"
        )
    numeric, categorical = [], []
    for column in columns:
        kind = table.schema.field(column).type
        if (
            pa.types.is_integer(kind)
            or pa.types.is_floating(kind)
            or pa.types.is_decimal(kind)
            or pa.types.is_boolean(kind)
        ):
            numeric.append(column)
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
            categorical.append(column)
        else:
            raise SpecError(
                f"Model {name}: column '{column}' has type {kind}; a fitted pipeline's features are "
                "numbers, BOOLEAN or text"
            )
    return numeric, categorical


def _describe(pipeline: Any) -> str:
    steps = getattr(pipeline, "steps", None)
    return " > ".join(type(step).__name__ for _, step in steps) if steps else type(pipeline).__name__
