"""Declarative training specs: one YAML file per model.

A spec is read with YAML's safe loader, refusing anchors and aliases (a few hundred bytes of them
expand to gigabytes) and files over MAX_SPEC_BYTES. Its source is a table name, a CSV/Parquet file
or one SELECT; SQL in it is checked here and runs on a read-only connection with file access off
(scorehouse.registration.training.read_source).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ScorehouseError, SpecError
from ..events import log
from ..names import NAME_RULE, RESERVED_NAMES, is_model_name, shown
from ..sql import table_name

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

TASKS = ("binary", "multiclass", "regression")
# Keys earlier releases read, with their defaults: a spec holding one still loads (the key is ignored, with a
# warning), and the spec's hash counts each at its default, so that a retrain after the upgrade is recognised.
RETIRED_KEYS = {"compile": "auto"}  # 0.3.0 writes every model's SQL from its explanation, at load time
MAX_SPEC_BYTES = 256 * 1024
# A feature is also an ONNX input name, which skl2onnx rewrites unless it is a plain identifier.
FEATURE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass(slots=True)
class Source:
    """Where the training rows come from: a warehouse relation, one SELECT, or a CSV/Parquet file."""

    table: str | None = None  # a relation in the warehouse, e.g. main.features_mortgage
    path: str | None = None  # a CSV or Parquet file, relative to the spec file, inside its project or source_roots
    query: str | None = None  # one SELECT over the warehouse, run with file access off
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
    weight: str | None = None  # a column of sample weights (>= 0, not NULL): in fitting, metrics and profile
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
        content = {**self.to_dict(), **RETIRED_KEYS}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a training spec from YAML."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"Training spec {path.resolve()} is {size:,} bytes; a spec is at most {MAX_SPEC_BYTES:,}")
        raw = yaml.load(path.read_text(), Loader=_SpecLoader)  # noqa: S506 - a SafeLoader without aliases
    except (FileNotFoundError, IsADirectoryError):
        raise SpecError(f"Training spec {path.resolve()} does not exist") from None
    except UnicodeDecodeError:
        raise SpecError(f"Training spec {path.resolve()} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"Training spec {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"Training spec {path} must be a mapping, found {type(raw).__name__}")
    return parse_spec(raw, base_dir=path.parent, origin=str(path))


def parse_spec(raw: dict[str, Any], base_dir: Path = Path("."), origin: str = "spec") -> ModelSpec:
    """Build a ModelSpec from a mapping, failing with a message that names the bad key."""
    known = {
        "name",
        "task",
        "target",
        "source",
        "estimator",
        "features",
        "split",
        "positive_class",
        "description",
        "weight",
    }
    unknown = sorted(set(raw) - known - set(RETIRED_KEYS))
    if unknown:
        raise SpecError(f"{origin}: unknown keys {unknown}; allowed: {sorted(known)}")
    for key in ("name", "task", "target", "source", "estimator", "features"):
        if key not in raw:
            raise SpecError(f"{origin}: missing required key '{key}'")

    name = str(raw["name"])
    if not is_model_name(name):
        raise SpecError(
            f"{origin}: model name '{shown(name)}' is not valid ({NAME_RULE}), and not one "
            f"of {sorted(RESERVED_NAMES)}; it becomes the SQL function predict_<name>"
        )
    task = str(raw["task"])
    if task not in TASKS:
        raise SpecError(f"{origin}: task '{task}' is not one of {list(TASKS)}")

    source = _source(raw["source"], origin)
    estimator = raw["estimator"]
    if isinstance(estimator, str):
        estimator = {"kind": estimator}
    estimator = _sub(estimator, Estimator, origin, "estimator")

    features = raw["features"] or {}
    if not isinstance(features, dict):
        raise SpecError(f"{origin}: 'features' must be a mapping with 'numeric' and/or 'categorical' lists")
    extra = sorted(set(features) - {"numeric", "categorical"})
    if extra:
        raise SpecError(f"{origin}: features accepts 'numeric' and 'categorical', found {extra}")
    numeric = [str(f) for f in features.get("numeric") or []]
    categorical = [str(f) for f in features.get("categorical") or []]
    all_features = numeric + categorical
    if not all_features:
        raise SpecError(f"{origin}: no features listed")
    odd = [shown(f) for f in all_features if not FEATURE_NAME.fullmatch(f)]
    if odd:
        raise SpecError(
            f"{origin}: feature name(s) {odd} are not plain identifiers (ASCII letters, digits and _, "
            "not starting with a digit, at most 128); rename the column in the model that builds the "
            'features, e.g. select "it\'s" as its'
        )
    duplicated = sorted(f for f, n in Counter(all_features).items() if n > 1)
    if duplicated:
        raise SpecError(f"{origin}: features listed twice: {duplicated}")
    target = str(raw["target"])
    if target in all_features:
        raise SpecError(f"{origin}: the target '{target}' is also listed as a feature")
    weight = raw.get("weight")
    if weight is not None and (str(weight) in all_features or str(weight) == target):
        raise SpecError(f"{origin}: the weight column '{weight}' is also the target or a feature")

    positive = raw.get("positive_class")
    if positive is not None and task != "binary":
        raise SpecError(f"{origin}: positive_class applies to binary models only")
    for key in sorted(set(raw) & set(RETIRED_KEYS)):
        log.warning(
            "%s: '%s' is no longer read (scorehouse 0.3.0 writes every model's SQL from its explanation "
            "when it scores); remove it",
            origin,
            key,
        )
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
        weight=None if weight is None else str(weight),
        base_dir=Path(base_dir),
    )


def _class_label(value: Any) -> str:
    """Return the string form a class takes in the model (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _sub(raw: Any, cls: type[DataclassInstance], origin: str, key: str):
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


def _source(raw: Any, origin: str) -> Source:
    """The spec's source: exactly one of table, path or query; SQL in it parsed before anything runs."""
    source = _sub(raw, Source, origin, "source")
    for key in ("table", "path", "query", "where"):
        value = getattr(source, key)
        if value is not None and (not isinstance(value, str) or "\x00" in value):
            raise SpecError(f"{origin}: source.{key} must be text, found {shown(value)}")
    given = [key for key in ("table", "path", "query") if getattr(source, key)]
    if len(given) != 1:
        raise SpecError(f"{origin}: source needs exactly one of 'table', 'path' or 'query', found {given or 'none'}")
    try:
        if source.table:
            table_name(source.table, what=f"{origin}: source.table")
        if source.query:
            check_select(source.query, f"{origin}: source.query")
        if source.where:
            check_select(f"select 1 from scorehouse_source where {source.where}", f"{origin}: source.where")
    except ScorehouseError as exc:
        raise SpecError(str(exc)) from None
    return source


def check_select(sql: str, what: str):
    """Parse `sql` with DuckDB's own parser: one SELECT statement, else a SpecError naming `what`."""
    import duckdb

    from ..sql import single_select

    with duckdb.connect(config={"enable_external_access": False}) as con:
        return single_select(con, sql, what)


class _SpecLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing anchors and aliases: a spec has no use for them, and they can expand
    a few hundred bytes into gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            event = self.peek_event()
            raise yaml.YAMLError(f"anchors and aliases are not allowed in a spec (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)
