"""A model registry on disk: immutable numbered versions, movable aliases, sha256 checked on every load.

    <root>/<model>/versions/<n>/model.onnx       the scoring artifact
                                manifest.json    schema, outputs, metrics, parity, every artifact's sha256
                                manifest.sha256  the manifest's own hash (catches corruption)
                                manifest.sig     an ed25519 signature of the manifest (signed registries)
                                sample.json      a few holdout rows with their expected outputs
                                compiled.json    the graph as SQL expressions, where it translates
                                explain.json     what explains each score, where recorded (udfs.explain)
                                training_rows.json  the rows that trained it (their input hashes' first 16 hex digits)
    <root>/<model>/aliases.json                  {"prod": {"version": 2, "history": [1, 2]},
                                                  "rollout": {"version": 3, "share": 5, "history": [3]}}
    <root>/<model>/audit.jsonl                   every alias move: when, who, from, to, why (appended)

Versions are written to a staging folder and renamed into place; aliases are rewritten through a
temporary file and os.replace, under a per-model file lock (which also covers the check that a
retrain is new, and the removal of what killed writers left behind). Names are checked against one
grammar (udfs/names.py) before they become paths. A version loads only if its files are no
symbolic links, nobody else may write them, their hashes match, the manifest describes this very
version, and, where a public key is configured, the manifest carries its signature. Only ONNX and
JSON are read. A broken version or alias file fails the references that use it, nothing else.
"""

from __future__ import annotations

import fcntl
import functools
import getpass
import hashlib
import json
import logging
import math
import os
import shutil
import stat
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .events import event, log
from .errors import IntegrityError, ModelNotFound, ScorehouseError
from .model import LoadedModel, ModelCard
from .names import DEFAULT_ALIAS, VERSION, ModelRef, check_alias, check_model_name, check_version, is_alias, is_model_name
from .signing import SIGNATURE_FILE, PublicKey, SigningKey, load_public_key, load_signing_key, signer_of

__all__ = ["DEFAULT_ALIAS", "Catalog", "ModelRef", "Registry", "Retention", "check_keep_days", "sample_problems"]

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_SUM_FILE = "manifest.sha256"
SAMPLE_FILE = "sample.json"
COMPILED_FILE = "compiled.json"
EXPLAIN_FILE = "explain.json"  # udfs.explain
TRAINING_ROWS_FILE = "training_rows.json"  # which rows trained the version (udfs.fingerprint.row_hash_prefixes)
ALIASES_FILE = "aliases.json"
AUDIT_FILE = "audit.jsonl"  # every alias move, appended, never rewritten
# The alias a gray release sets: its version and the share of keys it scores (see Registry.rollout).
ROLLOUT_ALIAS = "rollout"
STAGING_PREFIX = ".staging-"
ALIAS_TMP_PREFIX = ".aliases-"

_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
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
            if ref.version not in versions:
                raise ModelNotFound(f"Model '{ref}': version {ref.version} does not exist; "
                                    f"versions: {_join(versions)}; aliases: {described}")
            return ref.name, ref.version
        if ref.alias not in aliases:
            hint = f" (promote one with: scorehouse promote {ref.name} VERSION --alias {ref.alias})"
            raise ModelNotFound(f"Model '{ref}': no alias '{ref.alias}'; aliases: {described}; "
                                f"versions: {_join(versions)}{hint}")
        version = aliases[ref.alias]
        if version not in versions:
            raise ModelNotFound(f"Model '{ref}': alias '{ref.alias}' points at version {version}, "
                                f"which no longer exists; versions: {_join(versions)}")
        return ref.name, version

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
        except ModelNotFound:
            return False


@dataclass(frozen=True, slots=True)
class Retention:
    """What gc removed (or would, with dry_run), the versions aliases point at, and why each other version stays."""

    removed: list[int]
    aliased: list[int]
    kept: dict[int, str]  # version -> why it stays (every kept version no alias points at)


def check_keep_days(days: Any) -> float:
    """The days gc keeps versions for: a finite number >= 0 (one beyond the calendar keeps everything)."""
    number = isinstance(days, (int, float)) and not isinstance(days, bool)
    if not number or not math.isfinite(days) or days < 0:
        found = f"{days:g}" if number else repr(days)
        raise ScorehouseError(f"--keep-days must be a finite number of days >= 0, found {found}")
    return float(days)


class Registry:
    """A directory of models; see the module docstring for the layout and what a load checks."""

    def __init__(self, root: str | os.PathLike | None = None, public_key: PublicKey | str | os.PathLike | None = None,
                 signing_key: str | os.PathLike | None = None):
        self.root = config.registry_path(root)
        # Checked on every load where set; from the argument, else $SCOREHOUSE_PUBLIC_KEY.
        self.public_key = (public_key if isinstance(public_key, PublicKey)
                           else load_public_key(config.public_key_path(public_key)))
        self._signing_key_path = config.signing_key_path(signing_key)  # read when a version is registered

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    @functools.cached_property
    def _resolved_root(self) -> str:
        """The root as loaded models are cached under (resolved once: load() runs on every UDF call)."""
        return str(self.root.resolve())

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

    def aliases(self, name: str) -> dict[str, int]:
        return {alias: entry["version"] for alias, entry in self._alias_file(name).items()}

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
        entries, problems, shares = {}, {}, {}
        for name in names:
            try:
                aliases = self._alias_file(name)
            except ScorehouseError as exc:
                aliases, problems[name] = {}, str(exc)
            if ROLLOUT_ALIAS in aliases:
                shares[name] = aliases[ROLLOUT_ALIAS]["share"]
            entries[name] = (self.versions(name), {alias: entry["version"] for alias, entry in aliases.items()})
        return Catalog(str(self.root), known, entries, problems, shares)

    def card(self, name: str, version: int) -> ModelCard:
        """Return the verified manifest of a version."""
        return ModelCard(self._manifest(name, version)[0])

    def load(self, name: str, version: int) -> LoadedModel:
        """Return the version's model, its artifact verified once per process."""
        key = (self._resolved_root, name, version, self.public_key)
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

    def compiled(self, name: str, version: int) -> dict[str, Any] | None:
        """The version's compiled SQL (compiled.json), verified; None where the graph was not compiled."""
        manifest = self._manifest(name, version)[0]
        if COMPILED_FILE not in manifest["artifacts"]:
            return None
        return _json(self._read_verified(name, version, COMPILED_FILE, manifest), f"Model {name} v{version}: {COMPILED_FILE}")

    def explanation(self, name: str, version: int) -> dict[str, Any] | None:
        """The version's explain.json, verified; None where no explanation was recorded."""
        manifest = self._manifest(name, version)[0]
        if EXPLAIN_FILE not in manifest["artifacts"]:
            return None
        return _json(self._read_verified(name, version, EXPLAIN_FILE, manifest), f"Model {name} v{version}: {EXPLAIN_FILE}")

    def training_rows(self, name: str, version: int) -> list[str] | None:
        """The hashes of the rows that trained a version (the first 16 hex digits of each row's input hash),
        verified; None where they were not recorded (versions registered before they were)."""
        manifest = self._manifest(name, version)[0]
        if TRAINING_ROWS_FILE not in manifest["artifacts"]:
            return None
        recorded = _json(self._read_verified(name, version, TRAINING_ROWS_FILE, manifest),
                         f"Model {name} v{version}: {TRAINING_ROWS_FILE}")
        return list(recorded["hashes"])

    def sample(self, name: str, version: int) -> dict[str, Any]:
        manifest = self._manifest(name, version)[0]
        return _json(self._read_verified(name, version, SAMPLE_FILE, manifest), f"Model {name} v{version}: {SAMPLE_FILE}")

    def signature(self, name: str, version: int) -> str | None:
        """The id of the key that signed a version, or None where it is unsigned (not checked here)."""
        path = self._version_dir(name, version) / SIGNATURE_FILE
        return signer_of(path.read_bytes() if path.is_file() else None)

    def verify(self, name: str, version: int) -> list[str]:
        """Return the problems of one version: unsafe files, failed hashes or signature, or a sample it no
        longer reproduces, with onnxruntime and with its compiled SQL."""
        from .compiled import sample_problems as compiled_sample_problems

        try:
            manifest = self._manifest(name, version)[0]
            verified = {f: self._read_verified(name, version, f, manifest) for f in manifest["artifacts"]}
            model = LoadedModel(manifest, verified[MODEL_FILE])
            sample = _json(verified[SAMPLE_FILE], f"Model {name} v{version}: {SAMPLE_FILE}")
            problems = sample_problems(model, sample)
            if COMPILED_FILE in verified:
                compiled = _json(verified[COMPILED_FILE], f"Model {name} v{version}: {COMPILED_FILE}")
                problems += compiled_sample_problems(model, compiled, sample)
            return problems
        except ScorehouseError as exc:
            return [str(exc)]

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
                problems.append(f"Model {name} v{version}: {path} is writable by any user "
                                f"(mode {stat.filemode(path.stat().st_mode)}); chmod o-w it")
        return problems

    def find(self, name: str, matches: Callable[[dict[str, Any]], bool]) -> int | None:
        """Return the newest loadable version whose manifest `matches`."""
        for version in reversed(self.versions(name)):
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

    def register_new(self, manifest: dict[str, Any], files: Mapping[str, bytes],
                     same_as: Callable[[dict[str, Any]], bool] | None = None) -> tuple[int, bool]:
        """Store a new version unless one `same_as` matches; return (version, created).

        The check and the write hold the model's lock together, so two identical trainings racing
        register one version between them.
        """
        name = check_model_name(manifest["name"])
        versions = target = self._model_dir(name) / "versions"
        signing_key = load_signing_key(self._signing_key_path)
        try:
            with self._lock(name):
                versions.mkdir(exist_ok=True)
                if same_as is not None and (existing := self.find(name, same_as)) is not None:
                    return existing, False
                version = max(self.versions(name), default=0) + 1
                target = versions / str(version)
                manifest = {**manifest, "version": version,
                            "artifacts": {f: {"sha256": sha256_bytes(b), "bytes": len(b)} for f, b in files.items()}}
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
            raise ScorehouseError(f"Model {name}: could not write version to {target}: {_os_detail(exc)}") from exc

    def sign(self, name: str, version: int, signing_key: SigningKey) -> bool:
        """Sign an unsigned version after checking its hashes; return whether a signature was added."""
        with self._lock(name):
            manifest, body, _ = self._manifest(name, version)
            for filename in manifest["artifacts"]:
                self._read_verified(name, version, filename, manifest)
            path = self._version_dir(name, version) / SIGNATURE_FILE
            if path.exists():
                return False
            tmp = path.with_name(f".{SIGNATURE_FILE}-{uuid.uuid4().hex}.tmp")
            _write_synced(tmp, signing_key.sign(body))
            os.replace(tmp, path)
            fsync_dir(path.parent)
            return True

    def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS, reason: str | None = None) -> int | None:
        """Point `alias` at `version`; return the version it pointed at before. Moving `prod` ends a rollout.

        An alias file that cannot be read is set aside (aliases.json.broken-<time>) and started anew.
        """
        check_alias(alias)
        if alias == ROLLOUT_ALIAS:
            raise ScorehouseError(f"Alias '{ROLLOUT_ALIAS}' is set by `scorehouse rollout MODEL VERSION --share N`")
        version = check_version(version)
        with self._lock(name):
            self.resolve(ModelRef(check_model_name(name), version=version))  # under the lock: gc cannot race it
            try:
                entries = self._alias_file(name)
            except IntegrityError as exc:
                aside = self._alias_path(name).with_name(f"{ALIASES_FILE}.broken-{time.strftime('%Y%m%dT%H%M%S')}")
                os.replace(self._alias_path(name), aside)
                log.warning("%s; kept it as %s and started a new alias file", exc, aside)
                entries = {}
            entry = entries.get(alias, {"version": None, "history": []})
            previous = entry["version"]
            if previous != version:
                entries[alias] = {"version": version, "history": [*entry["history"], version]}
                rollout = entries.pop(ROLLOUT_ALIAS, None) if alias == DEFAULT_ALIAS else None
                self._write_alias_file(name, entries)
                self._audit(name, "promote", alias, previous, version, reason)
                if rollout:
                    self._audit(name, "rollout_end", ROLLOUT_ALIAS, rollout["version"], None,
                                f"{alias} moved to version {version}", share=0)
            return previous

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS, reason: str | None = None,
                 action: str = "rollback", expect: int | None = None) -> tuple[int, int]:
        """Move `alias` back to the version it pointed at before; return (from, to). The move is audited.
        With `expect`, only if the alias still points at that version (checked under the model's lock).
        Refused, changing nothing, where there is no earlier version or it no longer exists."""
        self.resolve(ModelRef(check_model_name(name), alias=check_alias(alias)))
        with self._lock(name):
            entries = self._alias_file(name)
            history = entries[alias]["history"]
            if expect is not None and history[-1] != expect:
                raise ScorehouseError(f"Model '{name}': alias '{alias}' moved to version {history[-1]} meanwhile "
                                      f"(expected {expect}); not rolled back")
            refusal = self._rollback_refusal(name, alias, history)
            if refusal:
                raise ScorehouseError(refusal)
            # every other field stays (a rollout keeps its share)
            entries[alias] = {**entries[alias], "version": history[-2], "history": history[:-1]}
            self._write_alias_file(name, entries)
            self._audit(name, action, alias, history[-1], history[-2], reason)
            return history[-1], history[-2]

    def previous(self, name: str, alias: str = DEFAULT_ALIAS) -> int | None:
        """The version `alias` pointed at before its current one (what rollback moves it to), or None."""
        history = self._history_of(name, alias)
        return history[-2] if len(history) >= 2 else None

    def rollback_refusal(self, name: str, alias: str = DEFAULT_ALIAS) -> str | None:
        """Why `rollback` would refuse to move `alias` back (no earlier version, or it no longer exists), or None."""
        return self._rollback_refusal(name, alias, self._history_of(name, alias))

    def rollout(self, name: str, version: int, share: float, reason: str | None = None) -> tuple[int | None, float]:
        """Send `share` percent of keys to `version` (gray release); share 0 ends it. Return the previous
        (version, share). Rows are routed by `bucket(key)` where predict() is given a key."""
        version = check_version(version)
        if not 0 <= share <= 100 or round(share * 100) != share * 100:
            raise ScorehouseError(f"Rollout share must be a percentage between 0 and 100 in steps of 0.01, found {share}")
        with self._lock(name):
            self.resolve(ModelRef(check_model_name(name), version=version))
            entries = self._alias_file(name)
            previous = entries.get(ROLLOUT_ALIAS) or {"version": None, "share": 0}
            if share == 0:
                entries.pop(ROLLOUT_ALIAS, None)
            else:
                history = previous.get("history", [])
                entries[ROLLOUT_ALIAS] = {"version": version, "share": share,
                                          "history": history if history[-1:] == [version] else [*history, version]}
            self._write_alias_file(name, entries)
            self._audit(name, "rollout" if share else "rollout_end", ROLLOUT_ALIAS, previous["version"],
                        version if share else None, reason, share=share)
            return previous["version"], previous["share"]

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every alias move of a model, oldest first, as appended to its audit log (never rewritten)."""
        path = self._model_dir(name) / AUDIT_FILE
        if not path.exists():
            return []
        entries = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            try:
                entries.append(json.loads(line))
            except ValueError:
                entries.append({"action": "unreadable", "line": number})
        return entries

    def gc(self, name: str, keep_days: float = 7, dry_run: bool = False,
           protected: Mapping[int, str] | None = None) -> Retention:
        """Remove the versions nothing below keeps; return what was removed (or would be, with dry_run) and why
        each other version stays.

        Kept: every version an alias points at; the one each alias's rollback returns to (its history's
        next to last), however old; every version an alias pointed at within `keep_days` (from the audit
        log), so rollback reaches back that far; every version in `protected` (version -> why it is in
        use, e.g. served by a mart); every version created within `keep_days`, and every one that does not
        load (left for `verify` to report). The check and the removal hold the model's lock, as promote does.
        """
        keep_days = check_keep_days(keep_days)
        now = datetime.now(timezone.utc)
        cutoff = now - timedelta(days=min(keep_days, (now - _EARLIEST).days))  # beyond the calendar: keep all
        within = f"within {keep_days:g} days"
        with self._lock(name):
            entries = self._alias_file(name)
            aliased = sorted({entry["version"] for entry in entries.values()})
            reasons: dict[int, list[str]] = {}
            for alias, entry in sorted(entries.items()):
                if len(entry["history"]) >= 2:
                    reasons.setdefault(entry["history"][-2], []).append(f"{alias} rolls back to it")
            for moved in self.history(name):
                if moved.get("action") != "gc" and _at(moved) >= cutoff:
                    pointed = f"{moved.get('alias') or 'an alias'} pointed at it {within}"
                    for version in (moved.get("from"), moved.get("to")):
                        if isinstance(version, int):
                            reasons.setdefault(version, []).append(pointed)
            for version, why in (protected or {}).items():
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
            if not dry_run:
                for version in doomed:
                    trash = self._model_dir(name) / f"{STAGING_PREFIX}gc-{uuid.uuid4().hex}"
                    os.rename(self._version_dir(name, version), trash)  # gone at once; deleted below
                    shutil.rmtree(trash, ignore_errors=True)
                    self._audit(name, "gc", None, version, None, f"no alias {within}")
                if doomed:
                    fsync_dir(self._model_dir(name) / "versions")
            kept = {v: "; ".join(dict.fromkeys(reasons[v])) for v in versions if v in reasons and v not in aliased}
            return Retention(doomed, aliased, kept)

    # ---- internals ---------------------------------------------------------------------------
    def _model_dir(self, name: str) -> Path:
        return self.root / check_model_name(name)

    def _version_dir(self, name: str, version: int) -> Path:
        return self._model_dir(name) / "versions" / str(check_version(version))

    def _history_of(self, name: str, alias: str) -> list[int]:
        return self._alias_file(check_model_name(name)).get(check_alias(alias), {}).get("history", [])

    def _rollback_refusal(self, name: str, alias: str, history: list[int]) -> str | None:
        if len(history) < 2:
            return f"Model '{name}': alias '{alias}' has no earlier version to roll back to (history: {_join(history)})"
        target, versions = history[-2], self.versions(name)
        if target in versions:
            return None
        how = " (removed by gc)" if any(e.get("action") == "gc" and e.get("from") == target
                                        for e in self.history(name)) else ""
        if alias == ROLLOUT_ALIAS:
            instead = f"start the rollout again instead: scorehouse rollout {name} VERSION --share N"
        else:
            flag = "" if alias == DEFAULT_ALIAS else f" --alias {alias}"
            instead = f"promote an existing version instead: scorehouse promote {name} VERSION{flag}"
        return (f"Model '{name}': alias '{alias}' would go back to version {target}, which no longer exists{how}; "
                f"versions: {_join(versions)}; {instead}")

    def _alias_path(self, name: str) -> Path:
        return self._model_dir(name) / ALIASES_FILE

    def _manifest(self, name: str, version: int) -> tuple[dict[str, Any], bytes, str]:
        """(manifest, its bytes, its recorded sha256), after every check a load makes."""
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
        if self.public_key is not None:
            signature = folder / SIGNATURE_FILE
            self.public_key.check(label, body, signature.read_bytes() if signature.is_file() else None)
        manifest = _json(body, f"Model {label}: {MANIFEST_FILE}")
        if not isinstance(manifest, dict) or manifest.get("name") != name or manifest.get("version") != version:
            described = f"{manifest.get('name')} v{manifest.get('version')}" if isinstance(manifest, dict) else "nothing"
            raise IntegrityError(f"Model {label}: {MANIFEST_FILE} in {folder} describes {described}; refusing to load it")
        return manifest, body, recorded

    def _read_verified(self, name: str, version: int, filename: str, manifest: Mapping[str, Any]) -> bytes:
        path = self._version_dir(name, version) / filename
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"Model {name} v{version}: {filename} is missing in {path.parent}") from None
        recorded = manifest["artifacts"][filename]["sha256"]
        if sha256_bytes(data) != recorded:
            raise IntegrityError(
                f"Model {name} v{version}: {filename} failed its sha256 check "
                f"(recorded {recorded[:12]}…, found {sha256_bytes(data)[:12]}…) in {path.parent}; refusing to load it"
            )
        return data

    def _alias_file(self, name: str) -> dict[str, dict[str, Any]]:
        path = self._alias_path(name)
        if path.is_symlink():
            raise IntegrityError(f"Model {name}: {path} is a symbolic link (to {os.readlink(path)}); refusing to read it")
        try:
            entries = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            entries = exc
        if not _valid_aliases(entries):
            raise IntegrityError(
                f"Model {name}: {path} is not a valid alias file (expected "
                '{"prod": {"version": 2, "history": [1, 2]}}); '
                f"pinned references ({name}@<version>) still resolve, and `scorehouse promote {name} VERSION` replaces it"
            )
        return entries

    def _audit(self, name: str, action: str, alias: str | None, before: int | None, after: int | None,
               reason: str | None, **extra: Any) -> None:
        """Append one alias move to the model's audit log (O_APPEND, then fsync): who, when, what, why."""
        record = {"at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "user": _user(),
                  "action": action, "alias": alias, "from": before, "to": after, **extra,
                  "reason": reason, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500]}
        path = self._model_dir(name) / AUDIT_FILE
        event("alias_moved", f"{name}: {action} {alias} {before} -> {after}" + (f" ({reason})" if reason else ""),
              logging.DEBUG, model=name, **{k: v for k, v in record.items() if k not in ("at", "command")})
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ScorehouseError(f"Model {name}: could not append to {path}: {_os_detail(exc)}") from exc

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


def _remove_leftovers(folder: Path) -> None:
    """Staging folders and temporary alias files of writers that were killed (only lock holders make them)."""
    for path in folder.iterdir():
        if path.name.startswith(STAGING_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(ALIAS_TMP_PREFIX) and path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)


def _valid_aliases(entries: Any) -> bool:
    def is_version(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    def is_share(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 100

    return isinstance(entries, dict) and all(
        is_alias(alias) and isinstance(entry, dict) and is_version(entry.get("version"))
        and isinstance(entry.get("history"), list) and all(map(is_version, entry["history"]))
        and (alias != ROLLOUT_ALIAS or is_share(entry.get("share")))
        for alias, entry in entries.items()
    )


def _at(event: Mapping[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(event["at"])
    except (KeyError, TypeError, ValueError):
        return datetime.now(timezone.utc)  # an unreadable entry: treated as recent, so nothing is removed for it


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"{what} is not valid JSON ({exc}); refusing to load it") from None


def sample_problems(model: LoadedModel, sample: Mapping[str, Any]) -> list[str]:
    """Re-score the stored holdout sample and compare with scikit-learn's recorded outputs."""
    import numpy as np
    import pyarrow as pa

    columns = {f.name: pa.array([row.get(f.name) for row in sample["rows"]],
                                pa.float64() if f.kind == "numeric" else pa.string()) for f in model.features}
    problems = []
    for output, expected in sample["expected"].items():
        got = model.predict(columns, output).to_pylist()
        if output == "label":
            wrong = sum(g != e for g, e in zip(got, expected))
            if wrong:
                problems.append(f"Model {model.label}: {wrong} of {len(expected)} sample labels differ from scikit-learn's")
            continue
        diff = float(np.max(np.abs(np.asarray(got) - np.asarray(expected)), initial=0.0))
        if diff > model.manifest["parity"]["tolerance"]:
            problems.append(f"Model {model.label}: sample {output} differs from scikit-learn's by {diff:.3g} "
                            f"(tolerance {model.manifest['parity']['tolerance']:.3g})")
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
