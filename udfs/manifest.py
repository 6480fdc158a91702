"""A registered version's manifest (manifest.json), typed: its fields declared once, here.

`Version.read` takes the stored JSON of any format this release knows, migrates it to the current one
(`migrate`, the one place that knows what older releases wrote), checks the fields every reader relies on
and returns a `Version`; readers use its attributes, never the JSON's keys. Registration writes the JSON
(training.py, fitted.py) and reads it back through `Version.read` before storing it, so a manifest that
this module cannot read is never registered.

Formats:
  1  a binary classifier's holdout precision and recall were those of the last class in sorted order,
     whatever its positive class (read without them where that class is not the positive one)
  2  every holdout metric is the positive class's, with f1 and the confusion counts at 0.5
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import IntegrityError
from .schema import Feature

MANIFEST_FORMAT = 2
REGISTRATION_STEPS = ("fit", "export", "parity", "explain", "sql", "profile")  # as timed in `registration_seconds`
TASKS = ("binary", "multiclass", "regression")
DEFAULT_TOLERANCE = 1e-5  # a version without a parity record (none is registered so today)
# the holdout metrics a format-1 binary version computed for the last class in sorted order
_OTHER_CLASS_METRICS = ("precision", "recall")


@dataclass(frozen=True)
class Parity:
    """The registration's check of the ONNX graph against the fitted pipeline on the holdout."""

    compared: str
    rows: int
    max_abs_diff: float
    tolerance: float
    splits_checked: int | None = None  # tree splits checked to route float32 values as the library does
    thresholds_adjusted: int | None = None


@dataclass(frozen=True)
class TrainingData:
    source: str
    rows: int
    train_rows: int
    holdout_rows: int
    fingerprint: str | None
    weight: str | None = None
    evaluated_on: str | None = None


@dataclass(frozen=True)
class Version:
    """What a manifest says about a version (an unregistered candidate has no `version` yet)."""

    format: int
    name: str
    version: int | None
    task: str
    features: tuple[Feature, ...]
    classes: tuple[str, ...]
    positive_class: str | None
    onnx_outputs: Mapping[str, str]
    onnx_category_codes: Mapping[str, list[str]] | None
    estimator_kind: str
    estimator_class: str
    estimator_params: Mapping[str, Any]
    training: TrainingData
    parity: Parity | None
    metrics: Mapping[str, float]
    tweedie_power: float | None
    artifacts: Mapping[str, Mapping[str, Any]]
    # where absent: a version registered before the release that records it
    explanation: Mapping[str, Any] | None
    sql: Mapping[str, Any] | None  # the SQL written from explain.json, checked on the holdout at registration
    profile: Mapping[str, Any] | None
    training_rows: Mapping[str, int] | None
    description: str = ""
    target: str | None = None
    created_at: str | None = None
    spec: Mapping[str, Any] = field(default_factory=dict)
    spec_sha256: str | None = None
    libraries: Mapping[str, str] = field(default_factory=dict)
    registration_seconds: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def read(cls, raw: Mapping[str, Any]) -> Version:
        """The manifest JSON of any known format, migrated and checked."""
        m = migrate(raw)
        label = f"{m.get('name')} v{m['version']}" if "version" in m else str(m.get("name"))
        try:
            parity = m.get("parity")
            training = m.get("training_data") or {}
            estimator = m.get("estimator") or {}
            version = cls(
                format=m["format"],
                name=m["name"],
                version=int(m["version"]) if "version" in m else None,
                task=m["task"],
                features=tuple(Feature.from_dict(f) for f in m["features"]),
                classes=tuple(str(c) for c in m.get("classes") or ()),
                positive_class=m.get("positive_class"),
                onnx_outputs=dict(m["onnx_outputs"]),
                onnx_category_codes=m.get("onnx_category_codes"),
                estimator_kind=str(estimator.get("kind", "")),
                estimator_class=str(estimator.get("class", "")),
                estimator_params=estimator.get("params") or {},
                training=TrainingData(
                    source=str(training.get("source", "")),
                    rows=int(training.get("rows", 0)),
                    train_rows=int(training.get("train_rows", 0)),
                    holdout_rows=int(training.get("holdout_rows", 0)),
                    fingerprint=training.get("fingerprint"),
                    weight=training.get("weight"),
                    evaluated_on=training.get("evaluated_on"),
                ),
                parity=Parity(
                    str(parity["compared"]),
                    int(parity["rows"]),
                    float(parity["max_abs_diff"]),
                    float(parity["tolerance"]),
                    parity.get("splits_checked"),
                    parity.get("thresholds_adjusted"),
                )
                if parity
                else None,
                metrics={k: float(v) for k, v in (m.get("metrics") or {}).items() if v is not None},
                tweedie_power=m.get("tweedie_power"),
                artifacts=dict(m.get("artifacts") or {}),
                explanation=m.get("explanation"),
                sql=m.get("sql"),
                profile=m.get("profile"),
                training_rows=m.get("training_rows"),
                description=m.get("description") or "",
                target=m.get("target"),
                created_at=m.get("created_at"),
                spec=m.get("spec") or {},
                spec_sha256=m.get("spec_sha256"),
                libraries=m.get("libraries") or {},
                registration_seconds=m.get("registration_seconds") or {},
            )
        except KeyError as exc:
            raise IntegrityError(f"Model {label}: its manifest has no field {exc}; refusing to load it") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise IntegrityError(
                f"Model {label}: its manifest is not of format {MANIFEST_FORMAT} ({exc}); refusing to load it"
            ) from None
        if version.task not in TASKS:
            raise IntegrityError(f"Model {label}: its manifest's task is {version.task!r}, not one of {list(TASKS)}")
        if version.task == "binary" and version.positive_class not in version.classes:
            raise IntegrityError(
                f"Model {label}: its manifest's positive class {version.positive_class!r} is not one "
                f"of its classes {list(version.classes)}; refusing to load it"
            )
        return version

    @property
    def label(self) -> str:
        """How errors name the model: 'name v3' (just 'name' before it is registered)."""
        return f"{self.name} v{self.version}" if self.version is not None else self.name

    @property
    def positive(self) -> str:
        """A binary classifier's positive class (read checks it is one of its classes)."""
        if self.positive_class is None:
            raise IntegrityError(f"Model {self.label} is a {self.task} model: it has no positive class")
        return self.positive_class

    @property
    def tolerance(self) -> float:
        """How far a re-scored output may be from the registered one: the parity check's tolerance."""
        return self.parity.tolerance if self.parity else DEFAULT_TOLERANCE

    @property
    def sql_refused(self) -> str | None:
        """Why the SQL written from the version's explanation must not score it (it disagreed with the library
        on the holdout at registration), or None."""
        if self.sql and self.sql.get("ok") is False:
            return (
                f"max |difference| {float(self.sql['max_abs_diff']):.3g} on {int(self.sql['rows']):,} "
                f"holdout rows, tolerance {self.tolerance:.3g}"
            )
        return None

    @property
    def onnx_sha256(self) -> str | None:
        """The sha256 of the version's model.onnx (what scoring runs record)."""
        return (self.artifacts.get("model.onnx") or {}).get("sha256")


def migrate(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest of any format this release knows, as the current format says it."""
    m = dict(raw)
    found = m.get("format", 1)
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise IntegrityError(f"Model {m.get('name')}: its manifest's format is {found!r}, not a format number")
    if found > MANIFEST_FORMAT:
        raise IntegrityError(
            f"Model {m.get('name')} v{m.get('version')}: its manifest is of format {found}, "
            f"newer than this release of scorehouse reads (up to {MANIFEST_FORMAT}): "
            "upgrade scorehouse"
        )
    if found < 2 and m.get("task") == "binary" and m.get("classes") and m.get("positive_class") != m["classes"][-1]:
        m["metrics"] = {k: v for k, v in (m.get("metrics") or {}).items() if k not in _OTHER_CLASS_METRICS}
    explanation = m.get("explanation")
    if isinstance(explanation, Mapping) and "unsupported" not in explanation:
        # releases before the flag said so only in the text: the kind or task "is not explained yet"
        m["explanation"] = {**explanation, "unsupported": "not explained yet" in str(explanation.get("skipped") or "")}
    m["format"] = MANIFEST_FORMAT
    return m


# What a version's outputs mean: two versions with one graph must agree on each (Registry.same_graph_problems).
SCORING_FIELDS = (
    "name",
    "task",
    "target",
    "classes",
    "positive_class",
    "features",
    "onnx_outputs",
    "onnx_category_codes",
    "tweedie_power",
)


def identity(raw: Any) -> tuple[Any, Any]:
    """(name, version) a stored manifest says it describes (checked against its folder before anything else)."""
    return (raw.get("name"), raw.get("version")) if isinstance(raw, Mapping) else (None, None)


def artifact_names(raw: Mapping[str, Any]) -> list[str]:
    """The files a manifest records (each with its sha256)."""
    return list(raw.get("artifacts") or {})


def artifact_sha256(raw: Mapping[str, Any], filename: str) -> str | None:
    """The sha256 a manifest records for one of its files, or None where it records none."""
    return ((raw.get("artifacts") or {}).get(filename) or {}).get("sha256")


def scoring_differences(raw: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """The fields giving a graph's outputs their meaning in which two manifests differ (the name aside)."""
    return [f for f in SCORING_FIELDS if f != "name" and raw.get(f) != other.get(f)]


def training_fingerprint(raw: Mapping[str, Any]) -> str | None:
    """The fingerprint of the rows a manifest's version was trained on."""
    return (raw.get("training_data") or {}).get("fingerprint")
