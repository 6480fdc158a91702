"""The engine-neutral scoring surface every SQL engine adapter wraps.

A Session reads the registry's catalog (its models, versions and aliases) once, when first asked, and resolves
each model reference once against it: one build, one query or one session sees one set of models and scores
one version per reference, whatever is trained, promoted or rolled back meanwhile (a model added meanwhile is
visible to the next one). It checks the input's columns by name, and scores Arrow columns with the
registry's cached onnxruntime sessions. A version that fails its checks fails the references that use it;
the other models keep scoring.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from logging import DEBUG
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from . import staged
from .errors import FeatureError, IntegrityError, ModelNotFound, ScorehouseError
from .events import event, log
from .explain import explain_rows, not_explained
from .model import LoadedModel, ModelCard
from .names import DEFAULT_ALIAS, ModelRef
from .profile import PROFILE_RELATIONS
from .registry import Catalog, Registry
from .schema import check_columns, column_problems, sql_type_name
from .structure import Structure

# How a reference scores: in SQL written from its explanation, or through onnxruntime (SqlWriter.scoring_choice).
SCORING_ENV = "SCOREHOUSE_SCORING"
SCORING_METHODS = ("auto", "sql", "onnx")
OLDER_METHOD_NAMES = {"compiled": "sql"}  # the names releases before 0.3.0 gave the methods
# The columns dbt's score() adds where asked, beside the score and model_version: name -> what it holds.
TABLE_COLUMNS = {"input_hash": "the input hash", "explanation": "the explanation"}
# The generic SQL function of each output, on every engine.
GENERIC_FUNCTIONS = {"score": "predict", "label": "predict_label", "probabilities": "predict_proba"}


class Session:
    """Model references resolved once, input checks, and scoring (Arrow columns in, Arrow out), for one build,
    query or engine session; SQL for its references: scorehouse.writer.SqlWriter."""

    def __init__(self, registry: Registry | None = None, loader: Callable[[str, int], LoadedModel] | None = None):
        self.registry = registry if isinstance(registry, Registry) else Registry(registry)
        self._catalog: Catalog | None = None  # the registry's catalog as first read, for the scorer's life
        self.loader = loader  # (name, version) -> LoadedModel where models come from elsewhere (Spark executors)
        self._resolved: dict[str, tuple[str, int]] = {}
        self._cards: dict[tuple[str, int], ModelCard] = {}
        self._broken: dict[tuple[str, int], str] = {}  # versions that failed their checks, and why
        self._warned: set[str] = set()
        self._shares: dict[str, float | None] = {}
        self._scored: dict[tuple[str, int], list[float]] = {}  # (name, version) -> [calls, rows, seconds]
        self._explanations: dict[tuple[str, int], Structure | None] = {}
        self._refusals: dict[tuple[str, int], str | None] = {}  # why no SQL is written for a version, or None
        self._lock = threading.Lock()

    @classmethod
    def snapshot(cls, registry: Registry, loader: Callable[[str, int], LoadedModel] | None = None) -> Session:
        """A scorer that holds every manifest, explanation and alias now, to travel where the registry is not.

        A version that fails its checks is kept as its error: references to it fail with it, others score.
        """
        scorer = cls(registry, loader)
        scorer._catalog = registry.catalog()
        for name, (versions, _) in scorer._catalog.entries.items():
            for version in versions:
                try:
                    scorer._cards[(name, version)] = registry.card(name, version)
                    scorer._explanations[(name, version)] = registry.explanation(name, version)
                except ScorehouseError as exc:
                    scorer.mark_broken(name, version, str(exc))
        return scorer

    def mark_broken(self, name: str, version: int, reason: str) -> None:
        """Fail every reference to this version with `reason` (it did not pass a check)."""
        self._broken[(name, version)] = reason
        self.warn(reason)

    def warn(self, message: str) -> None:
        """Log a warning once per scorer (a build or a session registers its functions more than once)."""
        with self._lock:
            if message in self._warned:
                return
            self._warned.add(message)
        log.warning("%s", message)

    def versions(self) -> list[tuple[str, int]]:
        """Every (name, version) this scorer can load."""
        return [
            (n, v) for n, (numbers, _) in self.catalog.entries.items() for v in numbers if (n, v) not in self._broken
        ]

    @property
    def catalog(self) -> Catalog:
        """The versions and aliases this scorer resolves against: the registry's, as first read."""
        with self._lock:
            return self._catalog_unlocked()

    def log_scored(self) -> None:
        """One `scored` event per version this scorer scored with onnxruntime: calls, rows and seconds."""
        with self._lock:
            tallies, self._scored = self._scored, {}
        for (name, version), (calls, rows, seconds) in sorted(tallies.items()):
            event(
                "scored",
                f"{name} version {version}: {int(rows)} rows in {seconds:.3f} s ({int(calls)} calls)",
                DEBUG,
                model=name,
                version=version,
                method="onnx",
                rows=int(rows),
                seconds=round(seconds, 6),
                calls=int(calls),
            )

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def resolve(self, ref: str) -> tuple[str, int]:
        """Return (name, version) for a reference, the same answer for the life of this scorer."""
        with self._lock:
            if ref not in self._resolved:
                self._resolved[ref] = self._catalog_unlocked().resolve(ModelRef.parse(ref))
                name, version = self._resolved[ref]
                event("resolved", f"{ref} -> {name} version {version}", DEBUG, ref=ref, model=name, version=version)
            return self._resolved[ref]

    def _catalog_unlocked(self) -> Catalog:
        """`catalog`, for a caller that holds the lock already."""
        if self._catalog is None:
            self._catalog = self.registry.catalog()
        return self._catalog

    def resolves(self, ref: str) -> bool:
        """Whether the reference names an existing version (for hooks that skip what is not trained yet)."""
        try:
            self.resolve(ref)
            return True
        except ModelNotFound:
            return False

    def card(self, ref: str) -> ModelCard:
        """Return the verified manifest a reference scores with (read once: versions are immutable)."""
        key = self._loadable(ref)
        with self._lock:
            if key not in self._cards:
                self._cards[key] = self.registry.card(*key)
                event(
                    "loaded",
                    f"{key[0]} version {key[1]}: manifest checked",
                    DEBUG,
                    model=key[0],
                    version=key[1],
                    sha256=self._cards[key].manifest.onnx_sha256,
                )
            return self._cards[key]

    def model(self, ref: str) -> LoadedModel:
        return (self.loader or self.registry.load)(*self._loadable(ref))

    def _loadable(self, ref: str) -> tuple[str, int]:
        key = self.resolve(ref)
        if key in self._broken:
            raise IntegrityError(self._broken[key])
        return key

    def describe(self, ref: str) -> str:
        """Return 'name@alias (version n)', how errors name a model."""
        name, version = self.resolve(ref)
        return f"{ModelRef.parse(ref)} (version {version})"

    def default_cards(self) -> list[ModelCard]:
        """Return the model each model name refers to (its `prod` alias), where one is set and loads.

        A model that does not load is left out with a warning; using it fails with the reason.
        """
        cards = []
        for name, (_, aliases) in sorted(self.catalog.entries.items()):
            if DEFAULT_ALIAS not in aliases:
                continue
            try:
                cards.append(self.card(name))
            except ModelNotFound:
                continue  # an alias at a deleted version: the error surfaces when it is used
            except ScorehouseError as exc:
                self.warn(str(exc))
        return cards

    def profile_rows(self, ref: str, relation: str) -> list[dict]:
        """Rows of a profile relation ('features' or 'bins') for the version `ref` points at."""
        card = self.card(ref)
        if card.manifest.profile is None:
            raise ScorehouseError(f"Model {self.describe(ref)} has no training profile; retrain it to get one")
        rows_of, _ = PROFILE_RELATIONS[relation]
        return rows_of(card)

    def schema_problems(self, ref: str, found: Mapping[str, str]) -> list[dict]:
        """Missing or mistyped features among `found` columns (name -> SQL type), one dict each."""
        card = self.card(ref)
        return [
            {"model_name": card.name, "model_version": card.version, **p} for p in column_problems(card.features, found)
        ]

    def check_input(self, ref: str, found: Mapping[str, str]) -> None:
        """Fail unless the input columns (name -> SQL type) hold every feature with a usable type."""
        check_columns(self.describe(ref), self.card(ref).features, found)

    def predict(
        self, ref: str, columns: Mapping[str, pa.Array | pa.ChunkedArray], output: str | None = None
    ) -> pa.Array:
        """Score named columns with the referenced model; extra columns are ignored."""
        model = self.model(ref)
        start = time.perf_counter()
        try:
            result = model.predict(columns, output)
        except FeatureError as exc:
            raise FeatureError(str(exc).replace(f"Model {model.label}", f"Model {self.describe(ref)}", 1)) from None
        seconds, key = time.perf_counter() - start, self.resolve(ref)
        with self._lock:
            tally = self._scored.setdefault(key, [0, 0, 0.0])
            tally[0], tally[1], tally[2] = tally[0] + 1, tally[1] + len(result), tally[2] + seconds
        return result

    def predict_struct(self, ref: str, structs: pa.StructArray, output: str | None = None) -> pa.Array:
        """Score a struct array, its fields bound by name; a NULL struct scores NULL."""
        return null_where_null(self.predict(ref, struct_columns(structs), output), structs)

    def explanation(self, ref: str) -> Structure:
        """The version's structure (scorehouse.structure, its explain.json), or an error saying why it has none."""
        found = self._explanation(ref)
        if found is None:
            raise ScorehouseError(not_explained(self.describe(ref), self.card(ref).manifest.explanation))
        return found

    def _explanation(self, ref: str) -> Structure | None:
        key = self._loadable(ref)
        with self._lock:
            if key not in self._explanations:
                self._explanations[key] = self.registry.explanation(*key)
            return self._explanations[key]

    def records_training_rows(self, ref: str) -> bool:
        """Whether the version recorded which rows trained it (versions registered before that did not)."""
        return self.card(ref).manifest.training_rows is not None

    def training_rows(self, ref: str) -> list[str] | None:
        """The hashes of the rows that trained the version (Registry.training_rows), or None where not recorded."""
        if not self.records_training_rows(ref):
            return None
        return self.registry.training_rows(*self._loadable(ref))

    def explain(self, ref: str, columns: Mapping[str, pa.Array | pa.ChunkedArray], top_k: int) -> pa.Array:
        """Per row the baseline, the margin and the top_k contributions (scorehouse.explain.explain_rows)."""
        card = self.card(ref)
        check_columns(self.describe(ref), card.features, {k: sql_type_name(v.type) for k, v in columns.items()})
        return explain_rows(self.explanation(ref), columns, top_k)

    def explain_struct(self, ref: str, structs: pa.StructArray, top_k: int) -> pa.Array:
        """Explain a struct array, its fields bound by name; a NULL struct explains as NULL."""
        return null_where_null(self.explain(ref, struct_columns(structs), top_k), structs)

    def sql_refusal(self, ref: str) -> str | None:
        """Why no SQL is written for the version at all, or None: it has no explanations, its SQL disagreed with
        the library at registration, or (registered before that check) it does not reproduce its stored sample,
        checked once per scorer."""
        key = self._loadable(ref)
        with self._lock:
            if key in self._refusals:
                return self._refusals[key]
        card, explanation = self.card(ref), self._explanation(ref)
        reason = None
        if explanation is None:
            reason = "no explanations to write its SQL from"
        elif card.manifest.sql_refused:
            reason = f"its SQL disagreed with the library at registration ({card.manifest.sql_refused})"
        elif card.manifest.sql is None:  # registered before 0.3.0, which checks it on the holdout
            problems = staged.sample_problems(card, explanation, self.registry.sample(*key))
            reason = problems[0] if problems else None
        with self._lock:
            self._refusals[key] = reason
        return reason

    def table_input_error(
        self, ref: str, found: Mapping[str, str], column: str = "prediction", added: Iterable[str] = ()
    ) -> str:
        """Why the table form cannot score a relation whose columns are `found` (name -> SQL type) into
        `column`, model_version and the `added` columns of TABLE_COLUMNS, in one line; or '' where it can."""
        try:
            self.check_input(ref, found)
        except FeatureError as exc:
            return str(exc)
        return self.column_clash(ref, found, column, added)

    def column_clash(
        self, ref: str, found: Iterable[str], column: str = "prediction", added: Iterable[str] = ()
    ) -> str:
        """The table form's error for an input that already has `column`, model_version or one of the `added`
        columns, or a column named with the prefix of the table form's own helper columns (names are
        case-blind in SQL), or ''."""
        taken = {name.lower(): name for name in found}
        puts = {column: "the score", "model_version": "the version", **{a: TABLE_COLUMNS[a] for a in added}}
        for name, what in puts.items():
            if name.lower() in taken:
                return (
                    f"Model {self.describe(ref)}: the input already has a column '{taken[name.lower()]}', "
                    f"where the table form puts {what}; exclude or rename it first"
                )
        reserved = [name for lowered, name in taken.items() if lowered.startswith(staged.HELPER)]
        if reserved:
            return (
                f"Model {self.describe(ref)}: the input has a column '{reserved[0]}'; names starting with "
                f"'{staged.HELPER}' are the table form's own (its steps' columns): rename it first"
            )
        return ""

    def rollout_share(self, name: str) -> float | None:
        """The model's rollout share, read once for the life of this scorer (as references are resolved once)."""
        with self._lock:
            if name not in self._shares:
                self._shares[name] = self._catalog_unlocked().shares.get(name)
            return self._shares[name]


def scoring_method(method: str | None = None) -> str:
    """'auto', 'sql' or 'onnx': the one asked for, else $SCOREHOUSE_SCORING, else 'auto' (the name an older
    release gave a method is read as it)."""
    method = (method or os.environ.get(SCORING_ENV) or "auto").strip().lower()
    method = OLDER_METHOD_NAMES.get(method, method)
    if method not in SCORING_METHODS:
        raise ScorehouseError(f"Unknown scoring method '{method}'; choose one of {list(SCORING_METHODS)}")
    return method


def flat(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def struct_columns(structs: pa.StructArray) -> dict[str, pa.Array]:
    """A struct array's fields as named columns."""
    return dict(zip((f.name for f in structs.type), structs.flatten()))


def first_value(values: pa.Array | pa.ChunkedArray) -> Any:
    """The first value of an argument SQL passes as a constant (top_k, a row's type), or None for no rows."""
    return values[0].as_py() if len(values) else None


def null_where_null(result: pa.Array, inputs: pa.Array) -> pa.Array:
    """A NULL row (not a row of NULLs) scores NULL."""
    if not inputs.null_count:
        return result
    return pc.if_else(inputs.is_valid(), result, pa.scalar(None, result.type))


def per_reference(refs: pa.Array, rows: pa.Array, score) -> pa.Array:
    """Score rows whose model reference may differ row to row: score(ref, rows of that ref) per reference."""
    refs, rows = flat(refs), flat(rows)
    if refs.null_count:
        raise ScorehouseError("predict(): the model reference is NULL")
    unique = pc.unique(refs).to_pylist()
    if len(unique) == 1:
        return score(unique[0], rows)
    parts, order = [], []
    for ref in unique:
        where = pc.equal(refs, ref)
        order.append(pc.indices_nonzero(where))
        parts.append(score(ref, rows.filter(where)))
    return pa.concat_arrays(parts).take(pc.sort_indices(pa.concat_arrays(order)))
