"""A model registry on disk: immutable numbered versions, movable aliases, sha256 checked on every load.

    <root>/<model>/versions/<n>/model.onnx       the scoring artifact
                                manifest.json    schema, outputs, metrics, parity, every artifact's sha256
                                manifest.sha256  the manifest's own hash (catches corruption)
                                manifest.sig     an ed25519 signature of the manifest (signed registries)
                                sample.json      a few holdout rows with their expected outputs
                                compiled.json    (releases before 0.3.0) SQL text: hashed, never read
                                explain.json     what explains each score, where recorded (scorehouse.explain)
                                training_rows.json  the rows that trained it (their input hashes' first 16 hex digits)
    <root>/<model>/aliases.json                  {"prod": {"version": 2, "history": [1, 2]},
                                                  "rollout": {"version": 3, "share": 5, "history": [3]},
                                                  "$withdrawn": {"1": {"action": "gc", ...}},  (where any)
                                                  "$audit": <sha256 of the audit line of the last move>,
                                                  "$signature": {...}}  (signed registries)
    <root>/<model>/audit.jsonl                   every alias move: when, who, from, to, why (appended), each
                                                 line naming the sha256 of the one before it (and signed)

Versions are written to a staging folder and renamed into place; aliases are rewritten through a
temporary file and os.replace, under a per-model file lock (which also covers the check that a
retrain is new, and the removal of what killed writers left behind). Names are checked against one
grammar (udfs/names.py) before they become paths. A version loads only if its files are no
symbolic links, nobody else may write them, their hashes match, the manifest describes this very
version, and, where a public key is configured, the manifest carries its signature. Only ONNX and
JSON are read. A broken version or alias file fails the references that use it, nothing else.

In a signed registry the alias state is signed too (the aliases, the versions gc removed or `revoke`
withdrew, and the hash of the audit line of the last move), and so is each audit line: a registry writer
without the key can neither move an alias nor bring a withdrawn version back, nor edit or drop an audit
line unseen. What a writer without the key can still do is put back an earlier signed state as a whole
(the alias file and the audit log as they were at an earlier move); `scorehouse verify` prints each
model's audit head, to compare with the one the key holder last saw.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import pwd
import shutil
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from . import config
from .errors import IntegrityError, ModelNotFound, ScorehouseError
from .events import event, log
from .manifest import Version, artifact_names, artifact_sha256, identity, scoring_differences
from .model import LoadedModel, ModelCard
from .names import (
    DEFAULT_ALIAS,
    VERSION,
    ModelRef,
    check_alias,
    check_model_name,
    check_version,
    is_alias,
    is_model_name,
    one_line,
)
from .signing import SIGNATURE_FILE, PublicKey, SigningKey, load_public_key, load_signing_key, record_message, signer_of
from .structure import Misshapen, Structure, parse, reads_other_than

__all__ = ["DEFAULT_ALIAS", "Catalog", "ModelRef", "Registry", "Retention", "check_keep_days", "sample_problems"]

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_SUM_FILE = "manifest.sha256"
SAMPLE_FILE = "sample.json"
EXPLAIN_FILE = "explain.json"  # scorehouse.explain
TRAINING_ROWS_FILE = "training_rows.json"  # which rows trained the version (scorehouse.fingerprint.row_hash_prefixes)
ALIASES_FILE = "aliases.json"
AUDIT_FILE = "audit.jsonl"  # every alias move, appended, never rewritten
# The alias a gray release sets: its version and the share of keys it scores (see Registry.rollout).
ROLLOUT_ALIAS = "rollout"
STAGING_PREFIX = ".staging-"
ALIAS_TMP_PREFIX = ".aliases-"
# The alias file's own keys (no alias name starts with '$'): versions gc removed or revoke withdrew (they
# never load again), the sha256 of the audit line of the last move, and the key holder's signature.
WITHDRAWN, AUDIT_HEAD, SIGNATURE = "$withdrawn", "$audit", "$signature"
WITHDRAWING_ACTIONS = ("gc", "revoke")
# The manifest fields that decide what a graph's outputs mean: two versions with one graph must agree on them

_EARLIEST = datetime.min.replace(tzinfo=UTC)
_loaded: dict[tuple, LoadedModel] = {}  # per process: versions never change
_loaded_lock = threading.Lock()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Catalog:
    """Which versions and aliases exist: enough to resolve references, even away from the registry."""

    root: str
    known: list[str]  # every model name in the registry
    entries: dict[str, tuple[list[int], dict[str, int]]]  # name -> (versions, aliases)
    problems: dict[str, str] = field(default_factory=dict)  # name -> why its alias file cannot be read
    shares: dict[str, float] = field(default_factory=dict)  # name -> percent of keys its rollout version scores
    withdrawn: dict[str, dict[int, str]] = field(default_factory=dict)  # name -> version -> why it never loads

    def resolve(self, ref: str | ModelRef) -> tuple[str, int]:
        """Return (name, version) for a reference, or fail listing what exists."""
        ref = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
        if ref.alias is not None and ref.name in self.problems:
            raise IntegrityError(self.problems[ref.name])
        versions, aliases = self.entries.get(ref.name, ([], {}))
        if not versions and (ref.name not in self.known or not aliases):
            raise ModelNotFound(f"Model '{ref}' not found in registry {self.root}; known models: {_join(self.known)}")
        described = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "(none)"
        if ref.version is not None:
            self._check_not_withdrawn(ref, ref.version)
            if ref.version not in versions:
                raise ModelNotFound(
                    f"Model '{ref}': version {ref.version} does not exist; "
                    f"versions: {_join(versions)}; aliases: {described}"
                )
            return ref.name, ref.version
        if ref.alias not in aliases:
            hint = f" (promote one with: scorehouse promote {ref.name} VERSION --alias {ref.alias})"
            raise ModelNotFound(
                f"Model '{ref}': no alias '{ref.alias}'; aliases: {described}; versions: {_join(versions)}{hint}"
            )
        version = aliases[ref.alias]
        if version not in versions:
            raise ModelNotFound(
                f"Model '{ref}': alias '{ref.alias}' points at version {version}, "
                f"which no longer exists; versions: {_join(versions)}"
            )
        self._check_not_withdrawn(ref, version)
        return ref.name, version

    def _check_not_withdrawn(self, ref: ModelRef, version: int) -> None:
        why = self.withdrawn.get(ref.name, {}).get(version)
        if why:
            raise IntegrityError(f"Model '{ref}': version {version} was {why}; refusing to load it")

    def refs(self) -> list[str]:
        """Every reference that resolves: name (for prod), name@alias and name@version."""
        result = []
        for name, (versions, aliases) in sorted(self.entries.items()):
            result += [name] if DEFAULT_ALIAS in aliases else []
            result += [f"{name}@{a}" for a in sorted(aliases)] + [f"{name}@{v}" for v in versions]
        return [r for r in result if self._resolves(r)]

    def _resolves(self, ref: str) -> bool:
        try:
            self.resolve(ref)
            return True
        except (ModelNotFound, IntegrityError):
            return False


@dataclass(frozen=True, slots=True)
class Retention:
    """What gc removed (or would, with dry_run), the versions aliases point at, and why each other version stays."""

    removed: list[int]
    aliased: list[int]
    kept: dict[int, str]  # version -> why it stays (every kept version no alias points at)


@dataclass(frozen=True, slots=True)
class AliasState:
    """A model's alias file as read: its aliases, its withdrawn versions, and what signs it."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # alias -> {version, history[, share]}
    withdrawn: dict[int, dict[str, Any]] = field(default_factory=dict)  # version -> the audit record that withdrew it
    audit_head: str | None = None  # the sha256 of the audit line of the last move (signed registries)
    signed_by: str | None = None  # the key id of its signature


def check_keep_days(days: Any) -> float:
    """The days gc keeps versions for: a finite number >= 0 (one beyond the calendar keeps everything)."""
    number = isinstance(days, (int, float)) and not isinstance(days, bool)
    if not number or not math.isfinite(days) or days < 0:
        found = f"{days:g}" if number else repr(days)
        raise ScorehouseError(f"--keep-days must be a finite number of days >= 0, found {found}")
    return float(days)


class Registry:
    """A directory of models; see the module docstring for the layout and what a load checks."""

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        public_key: PublicKey | str | os.PathLike | None = None,
        signing_key: str | os.PathLike | None = None,
    ):
        self.root = config.registry_path(root)
        # Checked on every load where set; from the argument, else $SCOREHOUSE_PUBLIC_KEY.
        self.public_key = (
            public_key if isinstance(public_key, PublicKey) else load_public_key(config.public_key_path(public_key))
        )
        self._signing_key_path = config.signing_key_path(signing_key)  # read when a version is registered

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    @functools.cached_property
    def _resolved_root(self) -> str:
        """The root as loaded models are cached under (resolved once: load() runs on every UDF call)."""
        return str(self.root.resolve())

    @property
    def identity(self) -> tuple[str, PublicKey | None]:
        """What a load answers from besides the reference: the resolved folder, and the key signatures need."""
        return self._resolved_root, self.public_key

    @property
    def signed(self) -> bool:
        """Whether every load checks a signature."""
        return self.public_key is not None

    # ---- reading -----------------------------------------------------------------------------
    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if is_model_name(p.name) and (p / "versions").is_dir())

    def versions(self, name: str) -> list[int]:
        folder = self._model_dir(name) / "versions"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if VERSION.fullmatch(p.name))

    def alias_state(self, name: str) -> AliasState:
        """The model's aliases, withdrawn versions and signer, after the checks a load makes."""
        return self._state(check_model_name(name))

    def aliases(self, name: str) -> dict[str, int]:
        return {alias: entry["version"] for alias, entry in self._state(name).entries.items()}

    def resolve(self, ref: str | ModelRef) -> tuple[str, int]:
        """Return (name, version) for a reference, or fail listing what exists."""
        ref = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
        return self.catalog([ref.name]).resolve(ref)

    def catalog(self, names: list[str] | None = None) -> Catalog:
        """A snapshot of the versions and aliases of `names` (default: every model).

        A model whose alias file cannot be read keeps its versions (pinned references still resolve);
        its aliases fail with the reason, and no other model is affected.
        """
        known = self.models()
        names = known if names is None else [check_model_name(n) for n in names]
        entries, problems, shares, withdrawn = {}, {}, {}, {}
        for name in names:
            try:
                state = self._state(name)
            except ScorehouseError as exc:  # what gc removed or revoke withdrew stays so, from the audit log
                state, problems[name] = AliasState(withdrawn=self._withdrawn_in_audit(name)), str(exc)
            aliases = state.entries
            if ROLLOUT_ALIAS in aliases:
                shares[name] = aliases[ROLLOUT_ALIAS]["share"]
            if state.withdrawn:
                withdrawn[name] = {version: _withdrawn_why(info) for version, info in state.withdrawn.items()}
            entries[name] = (self.versions(name), {alias: entry["version"] for alias, entry in aliases.items()})
        return Catalog(str(self.root), known, entries, problems, shares, withdrawn)

    def card(self, name: str, version: int) -> ModelCard:
        """Return the verified manifest of a version."""
        return ModelCard(self._manifest(name, version)[0])

    def load(self, name: str, version: int) -> LoadedModel:
        """Return the version's model, its artifact verified once per process."""
        key = (*self.identity, name, version)
        with _loaded_lock:
            model = _loaded.get(key)
            if model is None:
                manifest = self._manifest(name, version)[0]
                model = LoadedModel(manifest, self._read_verified(name, version, MODEL_FILE, manifest))
                _loaded[key] = model
            return model

    def export(self, name: str, version: int) -> tuple[bytes, str, bytes]:
        """(manifest bytes, their sha256, ONNX bytes) of a verified version, to ship where the registry is not."""
        manifest, body, recorded = self._manifest(name, version)
        return body, recorded, self._read_verified(name, version, MODEL_FILE, manifest)

    def explanation(self, name: str, version: int) -> Structure | None:
        """The version's structure (explain.json), verified, naming only the version's own features (SQL is
        written from it); None where no explanation was recorded."""
        manifest = self._manifest(name, version)[0]
        if EXPLAIN_FILE not in artifact_names(manifest):
            return None
        return _explanation(name, version, manifest, self._read_verified(name, version, EXPLAIN_FILE, manifest))

    def training_rows(self, name: str, version: int) -> list[str] | None:
        """The hashes of the rows that trained a version (the first 16 hex digits of each row's input hash),
        verified; None where they were not recorded (versions registered before they were)."""
        manifest = self._manifest(name, version)[0]
        if TRAINING_ROWS_FILE not in artifact_names(manifest):
            return None
        recorded = _json(
            self._read_verified(name, version, TRAINING_ROWS_FILE, manifest),
            f"Model {name} v{version}: {TRAINING_ROWS_FILE}",
        )
        return list(recorded["hashes"])

    def sample(self, name: str, version: int) -> dict[str, Any]:
        manifest = self._manifest(name, version)[0]
        return _json(
            self._read_verified(name, version, SAMPLE_FILE, manifest), f"Model {name} v{version}: {SAMPLE_FILE}"
        )

    def signature(self, name: str, version: int) -> str | None:
        """The id of the key that signed a version, or None where it is unsigned (not checked here)."""
        path = self._version_dir(name, version) / SIGNATURE_FILE
        return signer_of(path.read_bytes() if path.is_file() else None)

    def verify(self, name: str, version: int, signature: bool = True) -> list[str]:
        """Return the problems of one version: unsafe files, failed hashes or signature (unless `signature` is
        False), or a stored sample it no longer reproduces on every path it scores by: onnxruntime and the
        SQL written from its explanation (predict()'s expression and the table form's steps)."""
        from . import staged

        try:
            manifest = self._manifest(name, version, signature)[0]
            verified = {f: self._read_verified(name, version, f, manifest) for f in artifact_names(manifest)}
            model = LoadedModel(manifest, verified[MODEL_FILE])
            sample = _json(verified[SAMPLE_FILE], f"Model {name} v{version}: {SAMPLE_FILE}")
            problems = sample_problems(model, sample)
            if EXPLAIN_FILE in verified:
                explanation = _explanation(name, version, manifest, verified[EXPLAIN_FILE])
                problems += staged.sample_problems(model, explanation, sample)
            return problems
        except ScorehouseError as exc:
            return [str(exc)]
        except (KeyError, TypeError, ValueError) as exc:  # a manifest or sample of the wrong shape
            return [f"Model {name} v{version}: its files do not have the shape scorehouse writes ({exc!r})"]

    def same_graph_problems(self, name: str, version: int) -> list[str]:
        """Versions (of any model) with the very graph of this one whose manifests give its outputs another
        meaning: a copy with, say, positive_class inverted. Each is one line."""
        manifest = self._manifest(name, version, signature=False)[0]
        graph = artifact_sha256(manifest, MODEL_FILE)
        problems = []
        for other_name in self.models():
            for other in self.versions(other_name):
                if (other_name, other) == (name, version):
                    continue
                try:
                    theirs = self._manifest(other_name, other, signature=False)[0]
                except ScorehouseError:
                    continue
                if artifact_sha256(theirs, MODEL_FILE) != graph:
                    continue
                differ = scoring_differences(manifest, theirs)
                if differ or other_name != name:
                    fields = ", ".join(differ or ["name"])
                    problems.append(
                        f"Model {name} v{version}: model.onnx is the very graph of {other_name} v{other}, "
                        f"but its manifest differs in {fields}; "
                        "a registered version has a graph of its own"
                    )
        return problems

    def unsafe_paths(self, name: str, version: int) -> list[str]:
        """Symlinks, and files or folders others may write, from the registry root to the version's files.

        Either lets someone swap an artifact between its hash check and its use, or point it elsewhere.
        """
        folder = self._version_dir(name, version)
        paths = [self.root, self.root / name, self.root / name / "versions", folder]
        paths += sorted(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []
        problems = []
        for path in paths:
            if path.is_symlink():
                problems.append(f"Model {name} v{version}: {path} is a symbolic link (to {os.readlink(path)})")
            elif path.exists() and path.stat().st_mode & stat.S_IWOTH:
                problems.append(
                    f"Model {name} v{version}: {path} is writable by any user "
                    f"(mode {stat.filemode(path.stat().st_mode)}); chmod o-w it"
                )
        return problems

    def find(self, name: str, matches: Callable[[dict[str, Any]], bool]) -> int | None:
        """Return the newest loadable version whose manifest `matches` (never a withdrawn one)."""
        withdrawn = self.catalog([name]).withdrawn.get(name, {})
        for version in reversed(self.versions(name)):
            if version in withdrawn:
                continue
            try:
                if matches(self._manifest(name, version)[0]):
                    return version
            except ScorehouseError:
                continue  # a broken version is no match; `verify` reports it
        return None

    # ---- writing -----------------------------------------------------------------------------
    def register(self, manifest: dict[str, Any], files: Mapping[str, bytes]) -> int:
        """Store a new immutable version; return its number. Nothing is visible until complete."""
        return self.register_new(manifest, files)[0]

    def register_new(
        self,
        manifest: dict[str, Any],
        files: Mapping[str, bytes],
        same_as: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[int, bool]:
        """Store a new version unless one `same_as` matches; return (version, created).

        The check and the write hold the model's lock together, so two identical trainings racing
        register one version between them.
        """
        name = check_model_name(str(identity(manifest)[0]))
        Version.read(manifest)  # what every reader reads: a manifest it cannot read is never stored
        versions = target = self._model_dir(name) / "versions"
        signing_key = load_signing_key(self._signing_key_path)
        if signing_key is not None:
            self._check_signing_key(signing_key)
        first = not self._model_dir(name).exists()
        try:
            with self._lock(name):
                versions.mkdir(exist_ok=True)
                if same_as is not None and (existing := self.find(name, same_as)) is not None:
                    return existing, False
                version = max(self.versions(name), default=0) + 1
                target = versions / str(version)
                manifest = {
                    **manifest,
                    "version": version,
                    "artifacts": {f: {"sha256": sha256_bytes(b), "bytes": len(b)} for f, b in files.items()},
                }
                staging = self._model_dir(name) / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
                staging.mkdir()
                try:
                    for filename, data in files.items():
                        _write_synced(staging / filename, data)
                    body = _dump_json(manifest)
                    _write_synced(staging / MANIFEST_FILE, body)
                    _write_synced(staging / MANIFEST_SUM_FILE, sha256_bytes(body).encode() + b"\n")
                    if signing_key is not None:
                        _write_synced(staging / SIGNATURE_FILE, signing_key.sign(body))
                    os.rename(staging, target)
                    fsync_dir(versions)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
            return version, True
        except OSError as exc:  # a full disk or a read-only folder: one line naming where, not a traceback
            if first:  # the model's first version: leave no empty model behind
                _remove_empty_model(self._model_dir(name))
            raise ScorehouseError(f"Model {name}: could not write version to {target}: {_os_detail(exc)}") from exc

    def sign(self, name: str, version: int, signing_key: SigningKey) -> bool:
        """Sign a version after every check `verify` makes, on every path it scores by, and after checking that
        no other version has its graph under a manifest that reads it otherwise; return whether a signature
        was added (False: this key signed it already). Refused, in one line, where a check fails."""
        self._check_signing_key(signing_key)
        with self._lock(name):
            problems = self.verify(name, version, signature=False) or self.same_graph_problems(name, version)
            if problems:
                more = (
                    f" (and {len(problems) - 1} more problem(s): scorehouse verify {name})" if len(problems) > 1 else ""
                )
                raise IntegrityError(f"{problems[0]}; not signed{more}")
            body = self._manifest(name, version, signature=False)[1]
            path = self._version_dir(name, version) / SIGNATURE_FILE
            if path.exists():
                problem = signing_key.public.problem(
                    _json(path.read_bytes(), f"Model {name} v{version}: {SIGNATURE_FILE}"), body
                )
                if problem is None:
                    return False
                raise IntegrityError(
                    f"Model {name} v{version}: manifest.json {problem}; not signed again "
                    "(a version's manifest never changes: register it anew)"
                )
            tmp = path.with_name(f".{SIGNATURE_FILE}-{uuid.uuid4().hex}.tmp")
            _write_synced(tmp, signing_key.sign(body))
            os.replace(tmp, path)
            fsync_dir(path.parent)
            return True

    def sign_aliases(self, name: str, signing_key: SigningKey, reason: str | None = None) -> AliasState:
        """Sign a model's alias state as it is now (the key holder has checked it: `scorehouse sign MODEL
        --aliases` prints it first); return it. For a registry signed before alias states were."""
        self._check_signing_key(signing_key)
        with self._lock(name):
            state = self._state(name, signature=False)
            for alias, entry in state.entries.items():
                if entry["version"] not in self.versions(name):
                    raise IntegrityError(
                        f"Model '{name}': alias '{alias}' points at version {entry['version']}, "
                        "which does not exist; promote an existing version instead"
                    )
            for version in sorted({entry["version"] for entry in state.entries.values()}):
                if self.signature(name, version) != signing_key.public.key_id or self.verify(name, version):
                    raise IntegrityError(
                        f"Model '{name}': its aliases point at version {version}, which this key "
                        f"has not signed or which does not verify; sign it first: "
                        f"scorehouse sign {name} {version}"
                    )
            self._commit(
                name,
                state.entries,
                state.withdrawn,
                [self._record("sign_aliases", None, None, None, reason)],
                signing_key,
            )
            return self._state(name)

    def revoke(self, name: str, version: int, reason: str | None = None) -> None:
        """Withdraw a version for good: no reference loads it again (its files stay, for the record). Refused
        while an alias points at it."""
        version = check_version(version)
        with self._lock(name):
            self.resolve(ModelRef(check_model_name(name), version=version))
            state = self._state(name)
            key = self._writer_key(name, state)
            holding = sorted(alias for alias, entry in state.entries.items() if entry["version"] == version)
            if holding:
                raise ScorehouseError(
                    f"Model '{name}': {', '.join(holding)} point(s) at version {version}; move "
                    f"them first (scorehouse promote {name} VERSION, or rollback)"
                )
            record = self._record("revoke", None, version, None, reason)
            self._commit(name, state.entries, {**state.withdrawn, version: record}, [record], key)

    def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS, reason: str | None = None) -> int | None:
        """Point `alias` at `version`; return the version it pointed at before. Moving `prod` ends a rollout.

        An alias file that cannot be read is set aside (aliases.json.broken-<time>) and started anew, with
        the versions the audit log says were withdrawn; one whose signature fails is never set aside.
        """
        check_alias(alias)
        if alias == ROLLOUT_ALIAS:
            raise ScorehouseError(f"Alias '{ROLLOUT_ALIAS}' is set by `scorehouse rollout MODEL VERSION --share N`")
        version = check_version(version)
        with self._lock(name):
            self.resolve(ModelRef(check_model_name(name), version=version))  # under the lock: gc cannot race it;
            # and a withdrawn version is refused
            try:
                state = self._state(name)
            except UnsignedState:
                raise  # never set aside: the key holder checks it (scorehouse sign MODEL --aliases)
            except IntegrityError as exc:
                aside = self._alias_path(name).with_name(f"{ALIASES_FILE}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
                os.replace(self._alias_path(name), aside)
                log.warning("%s; kept it as %s and started a new alias file", exc, aside)
                state = AliasState(withdrawn=self._withdrawn_in_audit(name))
            key = self._writer_key(name, state)
            entries = dict(state.entries)
            entry = entries.get(alias, {"version": None, "history": []})
            previous = entry["version"]
            if previous != version:
                entries[alias] = {"version": version, "history": [*entry["history"], version]}
                rollout = entries.pop(ROLLOUT_ALIAS, None) if alias == DEFAULT_ALIAS else None
                records = [self._record("promote", alias, previous, version, reason)]
                if rollout:
                    records.append(
                        self._record(
                            "rollout_end",
                            ROLLOUT_ALIAS,
                            rollout["version"],
                            None,
                            f"{alias} moved to version {version}",
                            share=0,
                        )
                    )
                self._commit(name, entries, state.withdrawn, records, key)
            return previous

    def rollback(
        self,
        name: str,
        alias: str = DEFAULT_ALIAS,
        reason: str | None = None,
        action: str = "rollback",
        expect: int | None = None,
    ) -> tuple[int, int]:
        """Move `alias` back to the version it pointed at before; return (from, to). The move is audited.
        With `expect`, only if the alias still points at that version (checked under the model's lock).
        Refused, changing nothing, where there is no earlier version or it no longer exists."""
        self.resolve(ModelRef(check_model_name(name), alias=check_alias(alias)))
        with self._lock(name):
            state = self._state(name)
            key = self._writer_key(name, state)
            entries = dict(state.entries)
            history = entries[alias]["history"]
            if expect is not None and history[-1] != expect:
                raise ScorehouseError(
                    f"Model '{name}': alias '{alias}' moved to version {history[-1]} meanwhile "
                    f"(expected {expect}); not rolled back"
                )
            refusal = self._rollback_refusal(name, alias, history, state.withdrawn)
            if refusal:
                raise ScorehouseError(refusal)
            # every other field stays (a rollout keeps its share)
            entries[alias] = {**entries[alias], "version": history[-2], "history": history[:-1]}
            self._commit(
                name, entries, state.withdrawn, [self._record(action, alias, history[-1], history[-2], reason)], key
            )
            return history[-1], history[-2]

    def previous(self, name: str, alias: str = DEFAULT_ALIAS) -> int | None:
        """The version `alias` pointed at before its current one (what rollback moves it to), or None."""
        history = self._history_of(name, alias)
        return history[-2] if len(history) >= 2 else None

    def rollback_refusal(self, name: str, alias: str = DEFAULT_ALIAS) -> str | None:
        """Why `rollback` would refuse to move `alias` back (no earlier version, or it no longer exists), or None."""
        state = self._state(check_model_name(name))
        return self._rollback_refusal(
            name, alias, state.entries.get(check_alias(alias), {}).get("history", []), state.withdrawn
        )

    def rollout(self, name: str, version: int, share: float, reason: str | None = None) -> tuple[int | None, float]:
        """Send `share` percent of keys to `version` (gray release); share 0 ends it. Return the previous
        (version, share). Rows are routed by `bucket(key)` where predict() is given a key."""
        version = check_version(version)
        if not 0 <= share <= 100 or round(share * 100) != share * 100:
            raise ScorehouseError(
                f"Rollout share must be a percentage between 0 and 100 in steps of 0.01, found {share}"
            )
        with self._lock(name):
            self.resolve(ModelRef(check_model_name(name), version=version))
            state = self._state(name)
            key = self._writer_key(name, state)
            entries = dict(state.entries)
            previous = entries.get(ROLLOUT_ALIAS) or {"version": None, "share": 0}
            if share == 0:
                entries.pop(ROLLOUT_ALIAS, None)
            else:
                history = previous.get("history", [])
                entries[ROLLOUT_ALIAS] = {
                    "version": version,
                    "share": share,
                    "history": history if history[-1:] == [version] else [*history, version],
                }
            record = self._record(
                "rollout" if share else "rollout_end",
                ROLLOUT_ALIAS,
                previous["version"],
                version if share else None,
                reason,
                share=share,
            )
            self._commit(name, entries, state.withdrawn, [record], key)
            return previous["version"], previous["share"]

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of a model, oldest first, as appended to its audit log (never rewritten)."""
        entries = []
        for number, line in enumerate(self._audit_lines(name), start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            entries.append(entry if isinstance(entry, dict) else {"action": "unreadable", "line": number})
        return entries

    def audit_problems(self, name: str) -> list[str]:
        """Where the audit log was edited: a line that does not follow the one before it (edited, removed or
        inserted), a line the configured key did not sign, or a log that lacks the last move's line."""
        problems, before, hashes, chained, signed = [], None, set(), False, False
        label = f"Model {name}: {AUDIT_FILE}"
        for number, line in enumerate(self._audit_lines(name), start=1):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                problems.append(f"{label} line {number} is not a JSON object")
            elif "prev" in record:
                chained = True
                if record["prev"] != before:
                    problems.append(
                        f"{label} line {number} does not follow the line before it "
                        "(a line was edited, removed or inserted)"
                    )
            elif chained:
                problems.append(f"{label} line {number} names no line before it (written by hand?)")
            if isinstance(record, dict) and self.public_key is not None:
                if "sig" in record:
                    signed = True
                    body = {k: v for k, v in record.items() if k != "sig"}
                    problem = self.public_key.problem(
                        {"signature": record["sig"], "key_id": record.get("key_id")},
                        record_message("audit", name, body),
                    )
                    if problem:
                        problems.append(f"{label} line {number} {problem}")
                elif signed:
                    problems.append(f"{label} line {number} is not signed (written without the key)")
            before = sha256_bytes(line)
            hashes.add(before)
        if self.public_key is not None:
            try:
                head = self._state(name).audit_head
            except ScorehouseError:
                head = None  # the alias file's own problem is reported by itself
            if head and head not in hashes:
                problems.append(f"{label} lacks the line of the last signed alias move (lines were removed or edited)")
        return problems

    def gc(
        self, name: str, keep_days: float = 7, dry_run: bool = False, protected: Mapping[int, str] | None = None
    ) -> Retention:
        """Remove the versions nothing below keeps; return what was removed (or would be, with dry_run) and why
        each other version stays.

        Kept: every version an alias points at; the one each alias's rollback returns to (its history's
        next to last), however old; every version an alias pointed at within `keep_days` (from the audit
        log), so rollback reaches back that far; every version in `protected` (version -> why it is in
        use, e.g. served by a mart); every version created within `keep_days`, and every one that does not
        load (left for `verify` to report). The check and the removal hold the model's lock, as promote does;
        a dry run only reads (it works on a registry it cannot write). A removed version is recorded as
        withdrawn, so a copy put back never loads.
        """
        keep_days = check_keep_days(keep_days)
        with contextlib.nullcontext() if dry_run else self._lock(name):
            state = self._state(name)
            key = None if dry_run else self._writer_key(name, state)
            doomed, aliased, kept = self._retention(name, state, keep_days, protected or {})
            if not dry_run and doomed:
                within = f"within {keep_days:g} days"
                records = [self._record("gc", None, version, None, f"no alias {within}") for version in doomed]
                withdrawn = {**dict(zip(doomed, records)), **state.withdrawn}  # a revocation stays one
                self._commit(name, state.entries, withdrawn, records, key)  # recorded first: a kill keeps them out
                for version in doomed:
                    trash = self._model_dir(name) / f"{STAGING_PREFIX}gc-{uuid.uuid4().hex}"
                    os.rename(self._version_dir(name, version), trash)  # gone at once; deleted below
                    shutil.rmtree(trash, ignore_errors=True)
                fsync_dir(self._model_dir(name) / "versions")
            return Retention(doomed, aliased, kept)

    def _retention(
        self, name: str, state: AliasState, keep_days: float, protected: Mapping[int, str]
    ) -> tuple[list[int], list[int], dict[int, str]]:
        """(the versions gc removes, those aliases point at, why each other version stays)."""
        now = datetime.now(UTC)
        cutoff = now - timedelta(days=min(keep_days, (now - _EARLIEST).days))  # beyond the calendar: keep all
        within = f"within {keep_days:g} days"
        aliased = sorted({entry["version"] for entry in state.entries.values()})
        reasons: dict[int, list[str]] = {}
        for alias, entry in sorted(state.entries.items()):
            if len(entry["history"]) >= 2:
                reasons.setdefault(entry["history"][-2], []).append(f"{alias} rolls back to it")
        for moved in self.history(name):
            if moved.get("action") not in WITHDRAWING_ACTIONS and _at(moved) >= cutoff:
                pointed = f"{moved.get('alias') or 'an alias'} pointed at it {within}"
                for version in (moved.get("from"), moved.get("to")):
                    if isinstance(version, int):
                        reasons.setdefault(version, []).append(pointed)
        for version, why in protected.items():
            reasons.setdefault(version, []).append(why)
        versions, doomed = self.versions(name), []
        for version in versions:
            if version in aliased or version in reasons:
                continue
            try:
                created = datetime.fromisoformat(self._manifest(name, version)[0]["created_at"])
            except (ScorehouseError, KeyError, ValueError):
                reasons[version] = ["it does not load (scorehouse verify says why)"]
                continue
            if created < cutoff:
                doomed.append(version)
            else:
                reasons[version] = [f"created {within}"]
        kept = {v: "; ".join(dict.fromkeys(reasons[v])) for v in versions if v in reasons and v not in aliased}
        return doomed, aliased, kept

    # ---- internals ---------------------------------------------------------------------------
    def _model_dir(self, name: str) -> Path:
        return self.root / check_model_name(name)

    def _version_dir(self, name: str, version: int) -> Path:
        return self._model_dir(name) / "versions" / str(check_version(version))

    def _history_of(self, name: str, alias: str) -> list[int]:
        return self._state(check_model_name(name)).entries.get(check_alias(alias), {}).get("history", [])

    def _rollback_refusal(
        self, name: str, alias: str, history: list[int], withdrawn: Mapping[int, Mapping[str, Any]]
    ) -> str | None:
        if len(history) < 2:
            return f"Model '{name}': alias '{alias}' has no earlier version to roll back to (history: {_join(history)})"
        target, versions = history[-2], self.versions(name)
        if target in versions and target not in withdrawn:
            return None
        how = f" ({_withdrawn_why(withdrawn[target])})" if target in withdrawn else ""
        if alias == ROLLOUT_ALIAS:
            instead = f"start the rollout again instead: scorehouse rollout {name} VERSION --share N"
        else:
            flag = "" if alias == DEFAULT_ALIAS else f" --alias {alias}"
            instead = f"promote an existing version instead: scorehouse promote {name} VERSION{flag}"
        return (
            f"Model '{name}': alias '{alias}' would go back to version {target}, which no longer exists{how}; "
            f"versions: {_join(v for v in versions if v not in withdrawn)}; {instead}"
        )

    def _alias_path(self, name: str) -> Path:
        return self._model_dir(name) / ALIASES_FILE

    def _manifest(self, name: str, version: int, signature: bool = True) -> tuple[dict[str, Any], bytes, str]:
        """(manifest, its bytes, its recorded sha256), after every check a load makes (the signature's only
        where `signature`: `sign` checks the rest before it vouches for a version)."""
        folder = self._version_dir(name, version)
        label = f"{name} v{version}"
        unsafe = self.unsafe_paths(name, version)
        if unsafe:
            raise IntegrityError(f"{unsafe[0]}; refusing to load it")
        try:
            body = (folder / MANIFEST_FILE).read_bytes()
            recorded = (folder / MANIFEST_SUM_FILE).read_text().strip()
        except FileNotFoundError as exc:
            if not folder.is_dir():
                self.resolve(ModelRef(name, version=version))
            raise IntegrityError(f"Model {label}: {Path(exc.filename).name} is missing in {folder}") from None
        if sha256_bytes(body) != recorded:
            raise IntegrityError(
                f"Model {label}: {MANIFEST_FILE} failed its sha256 check "
                f"(recorded {recorded[:12]}…, found {sha256_bytes(body)[:12]}…) in {folder}; refusing to load it"
            )
        if self.public_key is not None and signature:
            signed = folder / SIGNATURE_FILE
            self.public_key.check(label, body, signed.read_bytes() if signed.is_file() else None)
        manifest = _json(body, f"Model {label}: {MANIFEST_FILE}")
        if identity(manifest) != (name, version):
            described = "{} v{}".format(*identity(manifest)) if isinstance(manifest, dict) else "nothing"
            raise IntegrityError(
                f"Model {label}: {MANIFEST_FILE} in {folder} describes {described}; refusing to load it"
            )
        return manifest, body, recorded

    def _read_verified(self, name: str, version: int, filename: str, manifest: Mapping[str, Any]) -> bytes:
        path = self._version_dir(name, version) / filename
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"Model {name} v{version}: {filename} is missing in {path.parent}") from None
        recorded = artifact_sha256(manifest, filename)
        if recorded is None:
            raise IntegrityError(f"Model {name} v{version}: {MANIFEST_FILE} records no sha256 for {filename}")
        if sha256_bytes(data) != recorded:
            raise IntegrityError(
                f"Model {name} v{version}: {filename} failed its sha256 check "
                f"(recorded {recorded[:12]}…, found {sha256_bytes(data)[:12]}…) in {path.parent}; refusing to load it"
            )
        return data

    def _state(self, name: str, signature: bool = True) -> AliasState:
        """The model's alias file, checked: its shape, and, where a public key is configured (unless not
        `signature`), that the key signed it; a missing file is an empty state unless the audit log says
        the key holder moved aliases (then it was removed)."""
        path = self._alias_path(name)
        if path.is_symlink():
            raise IntegrityError(
                f"Model {name}: {path} is a symbolic link (to {os.readlink(path)}); refusing to read it"
            )
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            if self.public_key is not None and signature and any("sig" in e for e in self.history(name)):
                raise UnsignedState(
                    f"Model {name}: {path} is missing although the key holder moved its aliases "
                    f"(see scorehouse history {name}); its aliases are refused"
                ) from None
            return AliasState()
        except ValueError as exc:
            raw = exc
        if not _valid_state(raw):
            raise IntegrityError(
                f"Model {name}: {path} is not a valid alias file (expected "
                '{"prod": {"version": 2, "history": [1, 2]}}); '
                f"pinned references ({name}@<version>) still resolve, "
                f"and `scorehouse promote {name} VERSION` replaces it"
            )
        record = raw.pop(SIGNATURE, None)
        if self.public_key is not None and signature:
            problem = self.public_key.problem(record, record_message("aliases", name, raw))
            if problem:
                raise UnsignedState(
                    f"Model {name}: {ALIASES_FILE} {problem}; its aliases are refused (pinned "
                    f"references {name}@<version> still resolve); once the aliases are checked "
                    f"(scorehouse history {name}), the key holder signs them: "
                    f"scorehouse sign {name} --aliases"
                )
        return AliasState(
            {alias: entry for alias, entry in raw.items() if not alias.startswith("$")},
            {int(version): info for version, info in raw.get(WITHDRAWN, {}).items()},
            raw.get(AUDIT_HEAD),
            signer_of(json.dumps(record).encode()) if record else None,
        )

    def _withdrawn_in_audit(self, name: str) -> dict[int, dict[str, Any]]:
        """The versions the audit log says gc removed or revoke withdrew (where the alias file cannot say)."""
        withdrawn: dict[int, dict[str, Any]] = {}
        for entry in self.history(name):
            if entry.get("action") in WITHDRAWING_ACTIONS and isinstance(entry.get("from"), int):
                withdrawn.setdefault(entry["from"], entry)  # the first record: a revocation stays one
        return withdrawn

    def _check_signing_key(self, key: SigningKey) -> None:
        if self.public_key is not None and key.public.key_id != self.public_key.key_id:
            raise ScorehouseError(
                f"The signing key ({key.public.key_id}) is not the pair of the configured public "
                f"key ({self.public_key.key_id}); nothing was signed or moved"
            )

    def _writer_key(self, name: str, state: AliasState) -> SigningKey | None:
        """The key an alias move of `name` is signed with: the configured signing key; required where the
        registry checks signatures or the alias state is signed already (checked before anything moves)."""
        key = load_signing_key(self._signing_key_path)
        if key is None and (self.public_key is not None or state.signed_by is not None):
            signer = self.public_key.key_id if self.public_key is not None else state.signed_by
            raise ScorehouseError(
                f"Model {name}: its aliases are signed (key {signer}); moving them needs the "
                f"signing key: pass --signing-key or set {config.SIGNING_KEY_ENV}"
            )
        if key is not None:
            self._check_signing_key(key)
        return key

    def _record(
        self, action: str, alias: str | None, before: int | None, after: int | None, reason: str | None, **extra: Any
    ) -> dict[str, Any]:
        """One audit entry: when, who (the OS account), what, why, and the command that did it."""
        return {
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "user": _user(),
            "action": action,
            "alias": alias,
            "from": before,
            "to": after,
            **extra,
            "reason": reason,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
        }

    def _commit(
        self,
        name: str,
        entries: Mapping[str, Any],
        withdrawn: Mapping[int, Mapping[str, Any]],
        records: list[dict[str, Any]],
        key: SigningKey | None,
    ) -> None:
        """Write the alias state, then append `records` to the audit log, each line naming the sha256 of the
        one before it; with `key`, every line and the state (which names the last line's hash) are signed."""
        lines = self._audit_lines(name)
        before = sha256_bytes(lines[-1]) if lines else None
        appended = []
        for record in records:
            record = {**record, "prev": before}
            if key is not None:
                record["key_id"] = key.public.key_id
                record["sig"] = key.record(record_message("audit", name, record))["signature"]
            appended.append(json.dumps(record, sort_keys=True).encode())
            before = sha256_bytes(appended[-1])
            event(
                "alias_moved",
                f"{name}: {record['action']} {record['alias']} {record['from']} -> {record['to']}"
                + (f" ({record['reason']})" if record["reason"] else ""),
                logging.DEBUG,
                model=name,
                **{k: v for k, v in record.items() if k not in ("at", "command", "sig", "prev")},
            )
        state: dict[str, Any] = dict(entries)
        if withdrawn:
            state[WITHDRAWN] = {str(v): dict(info) for v, info in sorted(withdrawn.items())}
        if key is not None:
            state[AUDIT_HEAD] = before
            state[SIGNATURE] = key.record(record_message("aliases", name, state))
        self._write_alias_file(name, state)
        path = self._model_dir(name) / AUDIT_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, b"".join(line + b"\n" for line in appended))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ScorehouseError(f"Model {name}: could not append to {path}: {_os_detail(exc)}") from exc

    def _audit_lines(self, name: str) -> list[bytes]:
        path = self._model_dir(name) / AUDIT_FILE
        try:
            return [line for line in path.read_bytes().split(b"\n") if line.strip()]
        except FileNotFoundError:
            return []

    def _write_alias_file(self, name: str, entries: Mapping[str, Any]) -> None:
        path = self._alias_path(name)
        tmp = path.with_name(f"{ALIAS_TMP_PREFIX}{uuid.uuid4().hex}.tmp")
        try:
            _write_synced(tmp, _dump_json(entries))
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:  # the alias file is unchanged: it is replaced whole or not at all
            tmp.unlink(missing_ok=True)
            raise ScorehouseError(f"Model {name}: could not write {path}: {_os_detail(exc)}") from exc

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """Hold the model's write lock; whatever a killed writer left behind is removed first."""
        folder = self._model_dir(name)
        if folder.is_symlink():
            raise IntegrityError(f"Model {name}: {folder} is a symbolic link; refusing to write through it")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / ".lock", "a+b")
        except OSError as exc:
            raise ScorehouseError(f"Model {name}: could not write to {folder}: {_os_detail(exc)}") from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                _remove_leftovers(folder)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_empty_model(folder: Path) -> None:
    """Remove a model folder holding nothing but its lock and an empty versions folder."""
    try:
        if {p.name for p in folder.iterdir()} <= {".lock", "versions"} and not any((folder / "versions").glob("*")):
            shutil.rmtree(folder)
    except OSError:
        pass  # the write's own error is the one to report


def _remove_leftovers(folder: Path) -> None:
    """Staging folders and temporary alias files of writers that were killed (only lock holders make them)."""
    for path in folder.iterdir():
        if path.name.startswith(STAGING_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(ALIAS_TMP_PREFIX) and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


class UnsignedState(IntegrityError):
    """An alias state the configured key did not sign (never set aside or replaced by a move)."""


def _valid_state(state: Any) -> bool:
    def is_version(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    def is_share(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 100

    def is_entry(alias: str, entry: Any) -> bool:
        return (
            is_alias(alias)
            and isinstance(entry, dict)
            and is_version(entry.get("version"))
            and isinstance(entry.get("history"), list)
            and all(map(is_version, entry["history"]))
            and (alias != ROLLOUT_ALIAS or is_share(entry.get("share")))
        )

    own = {
        WITHDRAWN: lambda v: (
            isinstance(v, dict)
            and all(isinstance(k, str) and VERSION.fullmatch(k) and isinstance(i, dict) for k, i in v.items())
        ),
        AUDIT_HEAD: lambda v: isinstance(v, str),
        SIGNATURE: lambda v: isinstance(v, dict),
    }
    return isinstance(state, dict) and all(
        own[key](value) if key in own else is_entry(key, value) for key, value in state.items()
    )


def _withdrawn_why(record: Mapping[str, Any]) -> str:
    """How a version was withdrawn, for messages: 'removed by gc on <date>' or 'revoked on <date> by <user>: why'."""
    when = str(record.get("at", ""))[:10]
    if record.get("action") == "gc":
        return f"removed by gc on {when}"
    reason = record.get("reason")
    return f"revoked on {when} by {one_line(record.get('user'))}" + (f": {one_line(reason)}" if reason else "")


def _at(event: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(event["at"])
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC)  # an unreadable entry: treated as recent, so nothing is removed for it


def _user() -> str:
    """The OS account running the command (not $USER or $LOGNAME, which anyone sets)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def _explanation(name: str, version: int, manifest: dict[str, Any], data: bytes) -> Structure:
    """A version's verified explain.json bytes, read into its structure, naming only the version's own features
    (SQL is written from it, reading the columns it names)."""
    try:
        explanation = parse(_json(data, f"Model {name} v{version}: {EXPLAIN_FILE}"))
    except Misshapen as exc:
        raise IntegrityError(
            f"Model {name} v{version}: {EXPLAIN_FILE} does not have the shape scorehouse writes ({exc}); "
            "refusing to load it"
        ) from None
    foreign = reads_other_than(explanation, ModelCard(manifest).features)
    if foreign:
        raise IntegrityError(
            f"Model {name} v{version}: {EXPLAIN_FILE} reads {foreign[0]}, not one of the "
            "version's features as its manifest types them; refusing to load it"
        )
    return explanation


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"{what} is not valid JSON ({exc}); refusing to load it") from None


def sample_problems(model: LoadedModel, sample: Mapping[str, Any]) -> list[str]:
    """Re-score the stored holdout sample and compare with scikit-learn's recorded outputs."""
    import numpy as np
    import pyarrow as pa

    columns = {
        f.name: pa.array(
            [row.get(f.name) for row in sample["rows"]], pa.float64() if f.kind == "numeric" else pa.string()
        )
        for f in model.features
    }
    problems = []
    for output, expected in sample["expected"].items():
        got = model.predict(columns, output).to_pylist()
        if output == "label":
            wrong = sum(g != e for g, e in zip(got, expected))
            if wrong:
                problems.append(
                    f"Model {model.label}: {wrong} of {len(expected)} sample labels differ from scikit-learn's"
                )
            continue
        diff = float(np.max(np.abs(np.asarray(got) - np.asarray(expected)), initial=0.0))
        if diff > model.manifest.tolerance:
            problems.append(
                f"Model {model.label}: sample {output} differs from scikit-learn's by {diff:.3g} "
                f"(tolerance {model.manifest.tolerance:.3g})"
            )
    return problems


def _join(values) -> str:
    return ", ".join(str(v) for v in values) or "(none)"


def _os_detail(exc: OSError) -> str:
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.strerror else str(exc)


def _dump_json(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
