"""Train a spec's scikit-learn pipeline, export it to ONNX, check parity, and register it."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import platform
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import ParityError, ScorehouseError, SpecError
from ..events import event
from ..explain import contributions
from ..fingerprint import row_hash_prefixes
from ..manifest import MANIFEST_FORMAT, Version
from ..model import LoadedModel
from ..names import listed, shown
from ..profile import training_profile
from ..registry import EXPLAIN_FILE, MODEL_FILE, SAMPLE_FILE, TRAINING_ROWS_FILE, Registry
from ..schema import CATEGORICAL, MISSING_CATEGORY, NUMERIC, WIDE_CATEGORIES, Feature, model_inputs, sql_type_name
from ..sql import DUCKDB, single_select, table_name
from ..staged import sql_parity
from ..structure import Structure, to_json
from .estimators import (
    DEFAULT_PARAMS,
    EXTRA_TARGET_OPSET,
    EXTRAS,
    SCALED_KINDS,
    encodes_labels,
    estimator_class,
    library,
    missing_log_link,
    register_converters,
    tweedie_power,
)
from .importers import (
    TREE_KINDS,
    TooLarge,
    explanations_outdated,
    linear_explanation,
    model_margin,
    skipped_reason,
    tree_explanation,
)
from .onnx_graph import coded_categories, faster_graph, string_labels, with_log_link
from .spec import ModelSpec, _class_label
from .thresholds import check_thresholds, exact_thresholds

if TYPE_CHECKING:
    import onnx

PROBABILITY_TOLERANCE = 1e-5  # max |onnxruntime - scikit-learn| on holdout probabilities
# Regressors: ONNX computes in float32, so the error scales with the target's magnitude:
# |difference| <= VALUE_RTOL * max(1, mean |value| on the holdout).
VALUE_RTOL = 1e-5
SAMPLE_ROWS = 20
GLOB_CHARACTER = re.compile(r"([*?[])")
Progress = Callable[[str], AbstractContextManager]  # progress(label) wraps one long step
ADDITIVITY_TOLERANCE = 1e-6  # |baseline + contributions - margin| on the holdout, for explanations to be recorded
ADDITIVITY_ROWS = 1000  # holdout rows the additivity check runs on
FLOAT32_SUM_RTOL = 4e-6  # relative rounding allowed where the margin is a float32 sum of the trees (XGBoost)


def no_progress(label: str) -> AbstractContextManager:
    return contextlib.nullcontext()


LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "duckdb", "pyarrow")


@dataclass(slots=True)
class Candidate:
    """A trained model that passed parity, not yet registered."""

    manifest: dict[str, Any]
    onnx_bytes: bytes
    sample: dict[str, Any]
    pipeline: Any  # the fitted scikit-learn pipeline: in memory only, never written anywhere
    explanation: Structure | None = None  # what explains each row's score (explain.json), where recorded
    training_rows: list[str] = dataclasses.field(default_factory=list)  # row hashes of the fit rows (16 hex digits)

    @property
    def files(self) -> dict[str, bytes]:
        """The artifacts to register: ONNX and JSON only."""
        files = {MODEL_FILE: self.onnx_bytes, SAMPLE_FILE: json.dumps(self.sample, indent=1).encode()}
        if self.explanation is not None:
            files[EXPLAIN_FILE] = json.dumps(to_json(self.explanation), indent=1).encode()
        files[TRAINING_ROWS_FILE] = json.dumps({"hashes": self.training_rows}).encode()
        return files


def read_source(spec: ModelSpec, warehouse: str | Path | None = None) -> pa.Table:
    """Read the spec's features and target in a stable row order, on a connection that cannot touch files.

    A warehouse table or query is read on a read-only connection opened with external access off; a
    file (one the spec may read: source_file) is loaded first, then external access is switched off (it
    cannot be switched back on) before the spec's own SQL runs. That SQL must parse, with DuckDB's
    parser, as one SELECT.
    """
    import duckdb

    from .. import config

    source = spec.source
    if source.path:
        file = source_file(spec)
        if not file.is_file():
            raise SpecError(f"Model {spec.name}: source file {file} does not exist")
        con = duckdb.connect()
        literal = GLOB_CHARACTER.sub(r"[\1]", str(file))  # DuckDB expands * ? [ in a file name: read this one file
        try:
            rows = (
                con.read_parquet(literal) if file.suffix == ".parquet" else con.read_csv(literal, na_values=["", "NA"])
            )
            rows.create("scorehouse_source")
        except duckdb.Error as exc:
            con.close()
            raise SpecError(f"Model {spec.name}: cannot read source file {file}: {str(exc).splitlines()[0]}") from None
        con.execute("set enable_external_access = false")
        relation, described = "scorehouse_source", str(file)
    else:
        path = config.warehouse_path(warehouse)
        if not path.exists():
            raise SpecError(
                f"Model {spec.name}: warehouse {path.resolve()} does not exist (source {source.table or 'query'})"
            )
        con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
        relation = table_name(source.table) if source.table else f"({source.query}) as scorehouse_source"
        described = source.table or "query"
    columns = ", ".join(
        DUCKDB.identifier(c) for c in [*spec.features, spec.target, *([spec.weight] if spec.weight else [])]
    )
    where = f" where {source.where}" if source.where else ""
    try:
        shape = single_select(con, f"describe select * from {relation}", f"Model {spec.name}: source")
        found = {r[0]: r[1] for r in con.sql(shape).fetchall()}
        missing = [c for c in [*spec.features, spec.target, *([spec.weight] if spec.weight else [])] if c not in found]
        if missing:
            raise SpecError(
                f"Model {spec.name}: source {described} lacks column(s) {listed(missing)}; it has: {listed(found)}"
            )
        query = single_select(
            con, f"select {columns} from {relation}{where} order by all", f"Model {spec.name}: source"
        )
        return con.sql(query).to_arrow_table()
    except duckdb.Error as exc:
        raise SpecError(f"Model {spec.name}: cannot read source {described}: {str(exc).splitlines()[0]}") from None
    except ScorehouseError as exc:
        raise SpecError(str(exc)) from None
    finally:
        con.close()


def source_file(spec: ModelSpec) -> Path:
    """The spec's source file, symlinks resolved, refused unless it lies in a folder the spec may read."""
    from .. import config

    if not spec.source.path:
        raise SpecError(f"Model {spec.name}: its source names no file")
    file = (spec.base_dir / spec.source.path).resolve()
    roots, settings = config.spec_source_roots(spec.base_dir)
    if not any(file.is_relative_to(root) for root in roots):
        raise SpecError(
            f"Model {spec.name}: source file {shown(spec.source.path, 200)} resolves to "
            f"{shown(file, 200)}, outside the folders a spec may read files from "
            f"({', '.join(shown(root, 200) for root in roots)}); move the file into the project, "
            f"or add its folder to source_roots in {settings}"
        )
    return file


def training_features(spec: ModelSpec, schema: pa.Schema) -> list[Feature]:
    """The spec's features with their training columns' types, refusing a type scoring would refuse."""
    features = [
        Feature.of_column(name, kind, schema.field(name).type)
        for kind, names in ((NUMERIC, spec.numeric), (CATEGORICAL, spec.categorical))
        for name in names
    ]
    for feature in features:
        found = sql_type_name(schema.field(feature.name).type)
        if not feature.accepts_sql_type(found):
            fix = (
                f"turn it into a number in the model that builds the features (a date: "
                f"date_diff('day', {feature.name}, current_date)), or list it as categorical"
                if feature.kind == NUMERIC
                else f"cast it to text in the model that builds the features (cast({feature.name} as varchar) "
                f"as {feature.name}) and score it as text too"
            )
            raise SpecError(
                f"Model {spec.name}: {feature.kind} feature '{feature.name}' has type {found}, which "
                f"predict() does not take for a {feature.kind} feature; {fix}"
            )
    return features


def build_pipeline(spec: ModelSpec):
    """Return the unfitted scikit-learn Pipeline for a spec."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kind = spec.estimator.kind
    try:
        estimator = estimator_class(spec.task, kind, spec.name)(
            **{**DEFAULT_PARAMS.get(kind, {}), **spec.estimator.params}
        )
    except TypeError as exc:
        raise SpecError(f"Model {spec.name}: bad parameters for {kind}: {exc}") from None
    steps = []
    if spec.numeric:
        numeric = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
        if kind in SCALED_KINDS:
            numeric.append(("scale", StandardScaler()))
        steps.append(("numeric", Pipeline(numeric), spec.numeric))
    if spec.categorical:
        steps.append(("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), spec.categorical))
    return Pipeline([("features", ColumnTransformer(steps)), ("estimator", estimator)])


@dataclass
class TrainingData:
    """A training table as the model sees it (model_inputs), the fit rows and the rows parity and metrics use."""

    table: pa.Table  # the rows read, with a target
    features: list[Feature]
    classes: list[str]  # classifiers: the classes, as strings, sorted
    positive: str | None  # binary: the positive class
    x_train: Any  # pandas frames of model inputs
    x_test: Any
    y_train: np.ndarray
    y_test: np.ndarray
    w_train: np.ndarray | None  # sample weights, where the spec names a weight column
    w_test: np.ndarray | None


def prepare(spec: ModelSpec, table: pa.Table, holdout: pa.Table | None = None, split: bool = True) -> TrainingData:
    """Turn a spec's table into model inputs and targets, checked, and split off the holdout.

    With `holdout` (rows the model was not fitted on) nothing is split; with split=False the table is
    both (a fitted model handed over with the rows it was fitted on).
    """
    table = _with_target(spec, table)
    features = training_features(spec, table.schema)
    x, y, w = _inputs(spec, features, table)
    classifier = spec.task != "regression"
    classes = sorted(set(y.tolist())) if classifier else []
    if classifier and len(classes) < 2:
        raise SpecError(f"Model {spec.name}: target '{spec.target}' has a single class {classes}")
    if spec.task == "binary" and len(classes) != 2:
        raise SpecError(f"Model {spec.name}: a binary task needs 2 classes, target '{spec.target}' has {classes}")
    positive = spec.positive_class or (classes[-1] if spec.task == "binary" else None)
    if positive is not None and positive not in classes:
        raise SpecError(f"Model {spec.name}: positive_class '{positive}' is not a class; classes: {classes}")
    if holdout is not None:
        x_test, y_test, w_test = _inputs(spec, features, _with_target(spec, holdout))
        x_train, y_train, w_train = x, y, w
    elif not split:
        x_train = x_test = x
        y_train = y_test = y
        w_train = w_test = w
    else:
        from sklearn.model_selection import train_test_split

        try:
            x_train, x_test, y_train, y_test, w_train, w_test = train_test_split(
                x,
                y,
                w,
                test_size=spec.split.test_size,
                random_state=spec.split.seed,
                stratify=y if classifier else None,
            )
        except ValueError as exc:  # e.g. a class with one row cannot be stratified
            raise SpecError(f"Model {spec.name}: cannot draw the holdout (split {spec.split}): {exc}") from None
    weighted = bool(spec.weight)
    return TrainingData(
        table,
        features,
        classes,
        positive,
        x_train,
        x_test,
        y_train,
        y_test,
        w_train if weighted else None,
        w_test if weighted else None,
    )


def _with_target(spec: ModelSpec, table: pa.Table) -> pa.Table:
    table = table.filter(table.column(spec.target).is_valid())
    if table.num_rows < 10:
        raise SpecError(f"Model {spec.name}: only {table.num_rows} rows with a non-NULL target '{spec.target}'")
    return table


def _inputs(spec: ModelSpec, features: list[Feature], table: pa.Table) -> tuple[Any, np.ndarray, np.ndarray]:
    import pandas as pd

    inputs = model_inputs(spec.name, features, {f.name: table.column(f.name) for f in features})
    for feature in features:
        infinite = np.isinf(inputs[feature.name].reshape(-1)) if feature.kind == NUMERIC else None
        if infinite is not None and infinite.any():
            example = table.column(feature.name).take(pa.array(np.flatnonzero(infinite)[:1]))[0].as_py()
            raise SpecError(
                f"Model {spec.name}: numeric feature '{feature.name}' holds {int(infinite.sum())} value(s) "
                f"that are infinite or beyond float32's range (±3.4e38), e.g. {example!r}, which the model "
                "reads as ±inf; scikit-learn cannot train on them: clip or drop them in the model that "
                "builds the features"
            )
    frame = pd.DataFrame({name: values.reshape(-1) for name, values in inputs.items()})
    return frame, _target_values(spec, table.column(spec.target)), _weights(spec, table)


def train(spec: ModelSpec, table: pa.Table, progress: Progress = no_progress) -> Candidate:
    """Fit, export and parity-check a spec's pipeline on `table`; raise ParityError on mismatch.

    `progress(label)` wraps each long step (a context manager: the CLI shows the time passing in a terminal);
    each step's seconds are recorded in the manifest as `registration_seconds`.
    """
    data = prepare(spec, table)
    for feature in spec.categorical:
        count = data.x_train[feature].nunique()
        if count > WIDE_CATEGORIES:
            event(
                "wide_categories",
                f"{spec.name}: categorical feature '{shown(feature)}' has {count:,} distinct values in training, "
                f"more than {WIDE_CATEGORIES}: each is a column of its own, and the fit slows with them",
                logging.WARNING,
                model=spec.name,
                feature=feature,
                values=count,
            )
    pipeline = build_pipeline(spec)
    seconds: dict[str, float] = {}
    step = timed_steps(progress, seconds)
    with step(
        "fit", f"{spec.name}: fitting {spec.estimator.kind} on {len(data.x_train)} rows ({len(data.x_test)} held out)"
    ):
        try:
            labels = np.searchsorted(data.classes, data.y_train) if encodes_labels(pipeline[-1]) else data.y_train
            pipeline.fit(
                data.x_train, labels, **({"estimator__sample_weight": data.w_train} if data.w_train is not None else {})
            )
        except (ValueError, TypeError) as exc:  # scikit-learn's parameter and data checks
            raise SpecError(
                f"Model {spec.name}: scikit-learn cannot fit {spec.estimator.kind}: {' '.join(str(exc).split())}"
            ) from None
    return package(spec, data, pipeline, step, seconds)


def package(
    spec: ModelSpec,
    data: TrainingData,
    pipeline,
    step,
    seconds: dict,
    evaluated_on: str = "holdout",
    explained: bool = True,
) -> Candidate:
    """A fitted pipeline as a candidate version: exported, parity-checked, explained, its SQL checked, measured,
    profiled."""
    features, classes, positive, x_train, x_test = data.features, data.classes, data.positive, data.x_train, data.x_test
    names = [f.name for f in features]
    with step("export", f"{spec.name}: exporting to ONNX"):
        exported, onnx_outputs, adjusted = export_onnx(spec, pipeline, classes)
        stored, codes = coded_categories(faster_graph(exported))
        onnx_bytes = stored.SerializeToString()

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": spec.name,
        "task": spec.task,
        "description": spec.description,
        "target": spec.target,
        "features": [_with_categories(f, pipeline, x_train).to_dict() for f in features],
        "classes": classes,
        "positive_class": positive,
        "onnx_outputs": onnx_outputs,
        "onnx_category_codes": codes,
        "estimator": {
            "kind": spec.estimator.kind,
            "class": type(pipeline[-1]).__name__,
            "params": spec.estimator.params,
        },
        "spec": spec.to_dict(),
        "spec_sha256": spec.sha256(),
        "training_data": {
            "source": spec.source.table or spec.source.path or spec.source.query or "a data frame",
            "weight": spec.weight,
            "rows": data.table.num_rows,
            "train_rows": len(x_train),
            "holdout_rows": len(x_test),
            "evaluated_on": evaluated_on,
            "fingerprint": fingerprint(data.table),
        },
        "libraries": {**{lib: package_version(lib) for lib in LIBRARIES}, "python": platform.python_version()},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    model = LoadedModel(manifest, onnx_bytes)
    expected = sklearn_outputs(pipeline, x_test, spec.task, classes, positive)
    feeds = model.inputs({name: pa.array(x_test[name].to_numpy()) for name in names})
    with step("parity", f"{spec.name}: checking onnxruntime against scikit-learn on {len(x_test)} {evaluated_on} rows"):
        manifest["parity"] = check_parity(model, feeds, expected)
        splits = check_thresholds(stored, pipeline[-1], spec.name, _column_names(pipeline))
        if splits is not None:
            manifest["parity"].update(thresholds_adjusted=adjusted, **splits)
    event(
        "parity",
        f"{spec.name}: parity on {len(x_test)} {evaluated_on} rows, max |difference| "
        f"{manifest['parity']['max_abs_diff']:.2e} (tolerance {manifest['parity']['tolerance']:.3g})"
        + (
            f"; {splits['splits_checked']} tree splits checked on the float32 values beside their thresholds, "
            f"{adjusted} thresholds set to the float32 that splits as the library does"
            if splits
            else ""
        ),
        model=spec.name,
        parity=manifest["parity"],
    )
    explanation: Structure | None = None
    # unsupported: the kind or task is not explained by this release (a later one may: explanations_outdated)
    manifest["explanation"] = {
        "skipped": skipped_reason(spec.estimator.kind, spec.task, explained),
        "unsupported": skipped_reason(spec.estimator.kind, spec.task, True) is not None,
    }
    if manifest["explanation"]["skipped"] is None:
        with step("explain", f"{spec.name}: recording what explains each score"):
            try:
                if spec.estimator.kind in TREE_KINDS:
                    explanation = tree_explanation(
                        pipeline,
                        spec.estimator.kind,
                        spec.task,
                        spec.numeric,
                        spec.categorical,
                        x_test,
                        classes,
                        positive,
                    )
                else:
                    explanation = linear_explanation(
                        pipeline,
                        spec.estimator.kind,
                        spec.task,
                        spec.numeric,
                        spec.categorical,
                        x_train,
                        classes,
                        positive,
                        data.w_train,
                    )
                checked = x_test.head(ADDITIVITY_ROWS)
                _, matrix = contributions(explanation, {name: pa.array(checked[name]) for name in names})
                margin = model_margin(pipeline, checked, explanation.link, spec.task, classes, positive)
                gap = np.abs(explanation.baseline + matrix.sum(axis=1) - margin)
                # XGBoost adds its trees up in float32: its margin is exact to that rounding only
                tolerance = ADDITIVITY_TOLERANCE + (
                    FLOAT32_SUM_RTOL * np.abs(margin) if library(pipeline[-1]) == "xgboost" else 0.0
                )
                diff = float(gap.max(initial=0.0))
                problem = (
                    f"baseline + contributions differ from the margin by {diff:.3g} on the holdout"
                    if (gap > tolerance).any()
                    else None
                )
            except TooLarge as exc:
                problem = str(exc)
            except Exception as exc:  # noqa: BLE001 - explanations are an extra: the version registers without them
                problem = f"could not be recorded ({type(exc).__name__}: {exc})"
        if problem:
            event("explain_skipped", f"{spec.name}: no explanations: {problem}", logging.WARNING, model=spec.name)
            explanation, manifest["explanation"] = None, {"skipped": problem, "unsupported": False}
        else:
            assert explanation is not None, "recorded above, or problem says why not"
            manifest["explanation"] = {
                "kind": explanation.kind,
                "link": explanation.link,
                "additivity_max_abs_diff": diff,
            }
    if explanation is not None and "score" in expected:
        with step("sql", f"{spec.name}: checking its SQL against the library on {len(x_test)} {evaluated_on} rows"):
            manifest["sql"] = sql_parity(
                explanation,
                features,
                {name: x_test[name] for name in names},
                expected["score"],
                manifest["parity"]["tolerance"],
            )
        record = manifest["sql"]
        event(
            "sql",
            f"{spec.name}: SQL written from its explanation: "
            + (
                record.get("skipped")
                or f"max |difference| {record['max_abs_diff']:.2e} on {record['rows']} {evaluated_on} rows"
                + ("" if record["ok"] else ", beyond the tolerance: it scores through onnxruntime")
            ),
            logging.INFO if record.get("ok", True) else logging.WARNING,
            model=spec.name,
            sql=record,
        )
    with step("profile", f"{spec.name}: metrics and training profile"):
        manifest["metrics"] = holdout_metrics(
            spec.task, data.y_test, expected, classes, tweedie_power(pipeline[-1]), data.w_test, positive
        )
        manifest["profile"] = training_profile(x_train, features, expected, spec.task, data.w_train, data.w_test)
        # which rows trained it, as their input hashes say them, so that quality in production leaves them out
        trained_on = row_hash_prefixes(features, data.table.take(pa.array(np.asarray(x_train.index, dtype=np.int64))))
        manifest["training_rows"] = {"rows": len(x_train), "distinct": len(trained_on)}
    manifest["tweedie_power"] = tweedie_power(pipeline[-1])  # the loss's deviance, for quality in production
    manifest["registration_seconds"] = seconds

    sample_rows = x_test.head(SAMPLE_ROWS)
    sample = {
        "rows": [{k: _json_value(v) for k, v in row.items()} for row in sample_rows.to_dict("records")],
        "expected": {k: v[:SAMPLE_ROWS].tolist() for k, v in expected.items() if k != "probabilities"},
    }
    return Candidate(manifest, onnx_bytes, sample, pipeline, explanation, trained_on)


def timed_steps(progress: Progress, seconds: dict[str, float]):
    """step(key, label): a context manager that shows `label` through `progress` and records its seconds."""
    return functools.partial(_timed_step, progress, seconds)


@contextlib.contextmanager
def _timed_step(progress: Progress, seconds: dict[str, float], key: str, label: str) -> Iterator[None]:
    start = time.perf_counter()
    with progress(label):
        yield
    seconds[key] = round(time.perf_counter() - start, 3)
    event("training_step", f"{label}: {seconds[key]} s", logging.DEBUG, step=key, seconds=seconds[key])


def train_and_register(
    spec: ModelSpec, registry: Registry, warehouse=None, progress: Progress = no_progress
) -> tuple[int, bool]:
    """Train and register `spec`; return (version, created). Same spec and data reuse the version."""
    table = read_source(spec, warehouse)
    data_fingerprint = fingerprint(table)

    def same(manifest: dict[str, Any]) -> bool:
        version = Version.read(manifest)
        return (
            version.spec_sha256 == spec.sha256()
            and version.training.fingerprint == data_fingerprint
            and not explanations_outdated(version)
        )

    existing = registry.find(spec.name, same)
    if existing is None:
        candidate = train(spec, table, progress)
        # checked again under the model's lock: a concurrent identical training may have registered it meanwhile
        version, created = registry.register_new(candidate.manifest, candidate.files, same_as=same)
    else:
        version, created = existing, False
    if created:
        event(
            "registered",
            f"{spec.name}: registered version {version} in {registry.root}",
            model=spec.name,
            version=version,
            created=True,
        )
    else:
        event(
            "registered",
            f"{spec.name}: spec and training data unchanged; version {version} is up to date",
            model=spec.name,
            version=version,
            created=False,
        )
    return version, created


def sklearn_outputs(pipeline, frame, task: str, classes: list[str], positive: str | None) -> dict[str, np.ndarray]:
    """Return scikit-learn's answers in the registry's output roles."""
    if task == "regression":
        return {"score": np.asarray(pipeline.predict(frame), dtype=np.float64)}
    proba = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
    names = class_names(pipeline.classes_, classes)
    proba = proba[:, [names.index(c) for c in classes]]
    outputs = {
        "probabilities": proba,
        "label": np.asarray(class_names(pipeline.predict(frame), classes), dtype=object).astype(str),
    }
    if task == "binary":
        assert positive is not None, "a binary model has a positive class"
        outputs["score"] = proba[:, classes.index(positive)]
    return outputs


def check_parity(model: LoadedModel, feeds: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> dict[str, Any]:
    """Compare onnxruntime with scikit-learn; return the parity record or raise ParityError."""
    raw = model.run(feeds)
    if model.task == "regression":
        got, want = raw["value"].reshape(-1).astype(np.float64), expected["score"]
        tolerance = VALUE_RTOL * max(1.0, float(np.abs(want).mean()))
        compared = "value"
    else:
        got, want = raw["probabilities"].astype(np.float64), expected["probabilities"]
        tolerance = PROBABILITY_TOLERANCE
        compared = "probabilities"
    diff = np.abs(got - want)
    record: dict[str, Any] = {
        "compared": compared,
        "rows": int(len(want)),
        "max_abs_diff": float(diff.max(initial=0.0)),
        "tolerance": tolerance,
    }
    if record["max_abs_diff"] > tolerance:
        worst = int(np.unravel_index(np.argmax(diff), diff.shape)[0])
        raise ParityError(
            f"Model {model.name}: onnxruntime and scikit-learn disagree on the holdout "
            f"(max |difference| {record['max_abs_diff']:.3g} > tolerance {tolerance:.3g}, "
            f"worst at holdout row {worst}); "
            "not registered. The graph computes in float32 and scikit-learn in float64: splits within float32 "
            "rounding of the inputs, or an estimator option the ONNX converter does not carry, make them differ"
        )
    if model.task != "regression":
        labels = raw["label"].reshape(-1).astype(str)
        record["label_mismatches"] = int((labels != expected["label"]).sum())
        # with the probabilities equal, a label may differ only where the top two are within the tolerance
        top = np.sort(want, axis=1)
        wrong = int(((labels != expected["label"]) & ((top[:, -1] - top[:, -2]) > 2 * tolerance)).sum())
        if wrong:
            raise ParityError(
                f"Model {model.name}: onnxruntime labels {wrong} holdout rows unlike scikit-learn "
                "although the probabilities agree; not registered"
            )
    return record


def holdout_metrics(
    task: str,
    y_true: np.ndarray,
    predicted: dict[str, np.ndarray],
    classes: list[str],
    power: float | None = None,
    weights: np.ndarray | None = None,
    positive: str | None = None,
) -> dict[str, float]:
    """Holdout metrics (weighted by `weights` where the spec names a weight column); for a count or positive
    target (a Tweedie `power`: 1 Poisson, 2 Gamma) its mean deviance too. A binary classifier's rates and counts
    (precision, recall, f1, true_positives, ... at 0.5) are those of its `positive` class."""
    from sklearn import metrics

    w = {"sample_weight": weights}
    if task == "regression":
        value = predicted["score"]
        result = {
            "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, value, **w))),
            "mae": float(metrics.mean_absolute_error(y_true, value, **w)),
            "r2": float(metrics.r2_score(y_true, value, **w)),
            "mape": float(metrics.mean_absolute_percentage_error(y_true, value, **w)),
            "mean_bias": float(np.average(value - y_true, weights=weights)),
        }
        if power is not None:
            result["mean_deviance"] = float(metrics.mean_tweedie_deviance(y_true, value, power=power, **w))
        return result
    proba = predicted["probabilities"]
    # a float32 graph's probabilities (XGBoost's) sum to one within float32 rounding: as probabilities, they do
    proba = proba / proba.sum(axis=1, keepdims=True)
    result = {
        "accuracy": float(metrics.accuracy_score(y_true, predicted["label"], **w)),
        "log_loss": float(metrics.log_loss(y_true, proba, labels=classes, **w)),
    }
    if task == "binary":
        positive = positive if positive is not None else classes[-1]
        is_positive, score = y_true == positive, proba[:, classes.index(positive)]
        predicted_positive = score >= 0.5  # the demo marts' default threshold
        result["auc"] = float(metrics.roc_auc_score(is_positive, score, **w))
        result["brier"] = float(metrics.brier_score_loss(is_positive, score, **w))
        result["precision"] = float(metrics.precision_score(is_positive, predicted_positive, zero_division=0, **w))
        result["recall"] = float(metrics.recall_score(is_positive, predicted_positive, zero_division=0, **w))
        result["f1"] = float(metrics.f1_score(is_positive, predicted_positive, zero_division=0, **w))
        (tn, fp), (fn, tp) = metrics.confusion_matrix(is_positive, predicted_positive, labels=[False, True], **w)
        result.update(
            true_positives=float(tp), false_positives=float(fp), false_negatives=float(fn), true_negatives=float(tn)
        )
    else:
        result["auc_ovr"] = float(metrics.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes, **w))
    return result


def fingerprint(table: pa.Table) -> str:
    """Return a sha256 of the exact training rows as read (column names, types and values)."""
    import pandas as pd

    digest = hashlib.sha256(str(table.schema).encode())
    digest.update(pd.util.hash_pandas_object(table.to_pandas(), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def export_onnx(
    spec: ModelSpec, pipeline, classes: list[str] | None = None
) -> tuple[onnx.ModelProto, dict[str, str], int]:
    """The pipeline as skl2onnx exports it, its outputs by role, and how many of its trees' thresholds were
    set to the float32 that splits as the library does (scorehouse.registration.thresholds)."""
    import onnx
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial_types = [(f, FloatTensorType([None, 1])) for f in spec.numeric]
    initial_types += [(f, StringTensorType([None, 1])) for f in spec.categorical]
    estimator = pipeline[-1]
    options = {id(estimator): {"zipmap": False}} if spec.task != "regression" else None
    opset = None
    if library(estimator) in EXTRAS:
        register_converters(library(estimator))
        opset = EXTRA_TARGET_OPSET
    try:
        onx = to_onnx(pipeline, initial_types=initial_types, options=options, target_opset=opset)
    except Exception as exc:  # noqa: BLE001 - skl2onnx raises many kinds for what it cannot convert
        raise SpecError(
            f"Model {spec.name}: {_failing_step(pipeline, exc)} cannot be exported to ONNX: "
            f"{' '.join(str(exc).split())[:300]}"
        ) from None
    onx, adjusted = exact_thresholds(onx, estimator, spec.name)
    names = [o.name for o in onx.graph.output]
    roles = {"value": names[0]} if spec.task == "regression" else {"label": names[0], "probabilities": names[1]}
    if missing_log_link(estimator):
        onx = with_log_link(onx, roles["value"])
    if spec.task != "regression" and _output_type(onx, roles["label"]) == onnx.TensorProto.INT64:
        onx = string_labels(onx, lambda values: class_names(values, classes))
    return onx, roles, adjusted


def _column_names(pipeline) -> list[str] | None:
    """The names of the columns a fitted pipeline's steps hand its estimator, where they give them."""
    if len(pipeline.steps) < 2:
        return None
    try:
        return [str(name) for name in pipeline[:-1].get_feature_names_out()]
    except (AttributeError, ValueError, TypeError):
        return None


def _output_type(model, name: str) -> int:
    """The element type of a graph output (onnx.TensorProto's numbering)."""
    return next(o.type.tensor_type.elem_type for o in model.graph.output if o.name == name)


def _failing_step(pipeline, exc: Exception) -> str:
    """Name the pipeline step an export error is about: 'step 'name' (Class)', else the whole pipeline."""
    text = str(exc)
    steps = [(name, step) for name, step in getattr(pipeline, "steps", [])]
    for name, step in list(steps):
        steps += [
            (f"{name}/{inner}", t) for inner, t, _ in getattr(step, "transformers_", []) if not isinstance(t, str)
        ]
        steps += [(f"{name}/{inner}", t) for inner, t in getattr(step, "steps", [])]
    named = [(name, step) for name, step in steps if type(step).__name__ in text]
    if named:
        name, step = named[-1]
        return f"step '{name}' ({type(step).__name__})"
    return f"the pipeline ({type(pipeline).__name__})"


def class_names(values, classes: list[str] | None) -> list[str]:
    """Class labels as the registry names them: an estimator fitted on positions (XGBoost) gives classes[i]."""
    values = list(values)
    names = [_class_label(v.item() if isinstance(v, np.generic) else v) for v in values]
    if classes is None or all(n in classes for n in names):
        return names
    if all(isinstance(v, (int, np.integer)) and 0 <= v < len(classes) for v in values):
        return [classes[int(v)] for v in values]  # fitted on positions in the sorted classes (XGBoost)
    return names


def _weights(spec: ModelSpec, table: pa.Table) -> np.ndarray:
    """The spec's sample weights (ones without a weight column); NULL, negative or all-zero weights are refused."""
    if not spec.weight:
        return np.ones(table.num_rows)
    column = table.column(spec.weight)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type)):
        raise SpecError(
            f"Model {spec.name}: weight column '{spec.weight}' has type {sql_type_name(column.type)}; "
            "weights are numbers"
        )
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    nulls, negative = int(column.null_count), int((values < 0).sum())
    if nulls or negative or not np.isfinite(values).all() or values.sum() <= 0:
        raise SpecError(
            f"Model {spec.name}: weight column '{spec.weight}' must hold finite numbers >= 0 with a "
            f"positive sum; found {nulls} NULL and {negative} negative of {len(values)} rows"
        )
    return values


def _target_values(spec: ModelSpec, column: pa.ChunkedArray) -> np.ndarray:
    if spec.task == "regression":
        if not (
            pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_decimal(column.type)
        ):
            examples = ", ".join(repr(v) for v in column.unique().to_pylist()[:3])
            raise SpecError(
                f"Model {spec.name}: a regression's target must be numeric; '{spec.target}' has type "
                f"{sql_type_name(column.type)} (values like {examples})"
            )
        return np.asarray(column.to_pylist(), dtype=np.float64)
    return np.asarray([_class_label(v) for v in column.to_pylist()], dtype=object).astype(str)


def _with_categories(feature: Feature, pipeline, rows) -> Feature:
    """The feature with the categories its one-hot encoder learned (else those of the training rows)."""
    if feature.kind != CATEGORICAL:
        return feature
    for encoder in _one_hot_encoders(pipeline):
        names = list(getattr(encoder, "feature_names_in_", []))
        if feature.name in names:
            seen = encoder.categories_[names.index(feature.name)]
            break
    else:
        seen = sorted(set(rows[feature.name]))
    return dataclasses.replace(feature, categories=tuple(str(c) for c in seen if c != MISSING_CATEGORY))


def _one_hot_encoders(estimator) -> list:
    """Every fitted OneHotEncoder inside a pipeline or column transformer, however nested."""
    from sklearn.preprocessing import OneHotEncoder

    if isinstance(estimator, OneHotEncoder):
        return [estimator]
    children = [s for _, s in getattr(estimator, "steps", [])]
    children += [t for _, t, _ in getattr(estimator, "transformers_", [])]
    return [e for child in children if not isinstance(child, str) for e in _one_hot_encoders(child)]


def _json_value(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if np.isnan(value) else float(value)
    if value == MISSING_CATEGORY:
        return None
    return value
