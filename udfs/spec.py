"""Declarative training specs: one YAML file per model."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SpecError

TASKS = ("binary", "multiclass", "regression")
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# `predict_label` and `predict_proba` are generic SQL functions; a model may not shadow them.
RESERVED_NAMES = frozenset({"label", "proba", "json"})


@dataclass(slots=True)
class Source:
    """Where the training rows come from: a warehouse relation or a CSV/Parquet file."""

    table: str | None = None  # a relation in the warehouse, e.g. main.features_mortgage
    path: str | None = None  # a CSV or Parquet file, relative to the spec file
    where: str | None = None  # an optional SQL filter applied to the rows


@dataclass(slots=True)
class Split:
    """How the holdout used for parity and metrics is drawn."""

    test_size: float = 0.25
    seed: int = 0


@dataclass(slots=True)
class Estimator:
    """Which scikit-learn estimator to fit, by its registered kind, and its parameters."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ModelSpec:
    """Everything needed to train one model reproducibly."""

    name: str
    task: str
    target: str
    source: Source
    estimator: Estimator
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    split: Split = field(default_factory=Split)
    positive_class: str | None = None  # binary only; default: the last class in sorted order
    description: str = ""
    base_dir: Path = Path(".")  # the spec file's folder: relative source paths start here

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("base_dir")
        return data

    def sha256(self) -> str:
        """Return a hash of the spec's content (not of its location), to recognise a retrain."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a training spec from YAML."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"Training spec {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"Training spec {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"Training spec {path} must be a mapping, found {type(raw).__name__}")
    return parse_spec(raw, base_dir=path.parent, origin=str(path))


def parse_spec(raw: dict[str, Any], base_dir: Path = Path("."), origin: str = "spec") -> ModelSpec:
    """Build a ModelSpec from a mapping, failing with a message that names the bad key."""
    known = {"name", "task", "target", "source", "estimator", "features", "split",
             "positive_class", "description"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SpecError(f"{origin}: unknown keys {unknown}; allowed: {sorted(known)}")
    for key in ("name", "task", "target", "source", "estimator", "features"):
        if key not in raw:
            raise SpecError(f"{origin}: missing required key '{key}'")

    name = str(raw["name"])
    if not MODEL_NAME.match(name) or name in RESERVED_NAMES:
        raise SpecError(
            f"{origin}: model name '{name}' must be lower-case letters, digits and underscores, "
            f"start with a letter, and not be one of {sorted(RESERVED_NAMES)} "
            "(it becomes the SQL function predict_<name>)"
        )
    task = str(raw["task"])
    if task not in TASKS:
        raise SpecError(f"{origin}: task '{task}' is not one of {list(TASKS)}")

    source = _sub(raw["source"], Source, origin, "source")
    if bool(source.table) == bool(source.path):
        raise SpecError(f"{origin}: source needs exactly one of 'table' or 'path'")
    estimator = raw["estimator"]
    if isinstance(estimator, str):
        estimator = {"kind": estimator}
    estimator = _sub(estimator, Estimator, origin, "estimator")

    features = raw["features"] or {}
    extra = sorted(set(features) - {"numeric", "categorical"})
    if extra:
        raise SpecError(f"{origin}: features accepts 'numeric' and 'categorical', found {extra}")
    numeric = [str(f) for f in features.get("numeric") or []]
    categorical = [str(f) for f in features.get("categorical") or []]
    all_features = numeric + categorical
    if not all_features:
        raise SpecError(f"{origin}: no features listed")
    duplicated = sorted({f for f in all_features if all_features.count(f) > 1})
    if duplicated:
        raise SpecError(f"{origin}: features listed twice: {duplicated}")
    target = str(raw["target"])
    if target in all_features:
        raise SpecError(f"{origin}: the target '{target}' is also listed as a feature")

    positive = raw.get("positive_class")
    if positive is not None and task != "binary":
        raise SpecError(f"{origin}: positive_class applies to binary models only")
    return ModelSpec(
        name=name,
        task=task,
        target=target,
        source=source,
        estimator=estimator,
        numeric=numeric,
        categorical=categorical,
        split=_sub(raw.get("split") or {}, Split, origin, "split"),
        positive_class=None if positive is None else _class_label(positive),
        description=str(raw.get("description") or ""),
        base_dir=Path(base_dir),
    )


def _class_label(value: Any) -> str:
    """Return the string form a class takes in the model (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _sub(raw: Any, cls: type, origin: str, key: str):
    if not isinstance(raw, dict):
        raise SpecError(f"{origin}: '{key}' must be a mapping")
    allowed = set(cls.__dataclass_fields__)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SpecError(f"{origin}: unknown keys in '{key}': {unknown}; allowed: {sorted(allowed)}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise SpecError(f"{origin}: bad '{key}': {exc}") from None
