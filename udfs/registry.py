"""A model registry on disk: immutable numbered versions, movable aliases, sha256 checked on every load.

    <root>/<model>/versions/<n>/model.onnx       the scoring artifact
                                manifest.json    schema, outputs, metrics, parity, hashes
                                manifest.sha256  the manifest's own hash
                                sample.json      a few holdout rows with their expected outputs
                                compiled.json    the graph as SQL expressions, where it translates
    <root>/<model>/aliases.json                  {"prod": {"version": 2, "history": [1, 2]}}

Versions are written to a staging folder and renamed into place; aliases are rewritten through a
temporary file and os.replace, under a per-model file lock. Only ONNX and JSON are read.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config
from .errors import IntegrityError, ModelNotFound, ScorehouseError
from .model import LoadedModel, ModelCard

DEFAULT_ALIAS = "prod"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
MANIFEST_SUM_FILE = "manifest.sha256"
SAMPLE_FILE = "sample.json"
COMPILED_FILE = "compiled.json"
ALIAS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")

_loaded: dict[tuple[str, str, int], LoadedModel] = {}  # per process: versions never change
_loaded_lock = threading.Lock()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class ModelRef:
    """`name`, `name@alias` or `name@<version number>`; a bare name means the `prod` alias."""

    name: str
    alias: str | None = None
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, _, selector = str(text).strip().partition("@")
        if not name:
            raise ModelNotFound(f"Model reference '{text}' has no model name; use name, name@alias or name@version")
        if not selector:
            return cls(name, alias=DEFAULT_ALIAS)
        if selector.isdigit():
            return cls(name, version=int(selector))
        return cls(name, alias=selector)

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        return self.name if self.alias == DEFAULT_ALIAS else f"{self.name}@{self.alias}"


@dataclass(frozen=True, slots=True)
class Catalog:
    """Which versions and aliases exist: enough to resolve references, even away from the registry."""

    root: str
    known: list[str]  # every model name in the registry
    entries: dict[str, tuple[list[int], dict[str, int]]]  # name -> (versions, aliases)

    def resolve(self, ref: str | ModelRef) -> tuple[str, int]:
        """Return (name, version) for a reference, or fail listing what exists."""
        ref = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
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


class Registry:
    """A directory of models; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = config.registry_path(root)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # ---- reading -----------------------------------------------------------------------------
    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def versions(self, name: str) -> list[int]:
        folder = self.root / name / "versions"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())

    def aliases(self, name: str) -> dict[str, int]:
        return {alias: entry["version"] for alias, entry in self._alias_file(name).items()}

    def resolve(self, ref: str | ModelRef) -> tuple[str, int]:
        """Return (name, version) for a reference, or fail listing what exists."""
        ref = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
        return self.catalog([ref.name]).resolve(ref)

    def catalog(self, names: list[str] | None = None) -> Catalog:
        """A snapshot of the versions and aliases of `names` (default: every model)."""
        known = self.models()
        names = known if names is None else names
        return Catalog(str(self.root), known, {n: (self.versions(n), self.aliases(n)) for n in names})

    def card(self, name: str, version: int) -> ModelCard:
        """Return the verified manifest of a version."""
        return ModelCard(self._manifest(name, version))

    def load(self, name: str, version: int) -> LoadedModel:
        """Return the version's model, its artifact verified once per process."""
        key = (str(self.root.resolve()), name, version)
        with _loaded_lock:
            model = _loaded.get(key)
            if model is None:
                manifest = self._manifest(name, version)
                model = LoadedModel(manifest, self._read_verified(name, version, MODEL_FILE, manifest))
                _loaded[key] = model
            return model

    def compiled(self, name: str, version: int) -> dict[str, Any] | None:
        """The version's compiled SQL (compiled.json), verified; None where the graph was not compiled."""
        manifest = self._manifest(name, version)
        if COMPILED_FILE not in manifest["artifacts"]:
            return None
        return json.loads(self._read_verified(name, version, COMPILED_FILE, manifest))

    def sample(self, name: str, version: int) -> dict[str, Any]:
        manifest = self._manifest(name, version)
        return json.loads(self._read_verified(name, version, SAMPLE_FILE, manifest))

    def verify(self, name: str, version: int) -> list[str]:
        """Return the problems of one version: unsafe files, failed hashes, or a sample it no longer reproduces."""
        problems = self.unsafe_paths(name, version)
        try:
            manifest = self._manifest(name, version)
            verified = {f: self._read_verified(name, version, f, manifest) for f in manifest["artifacts"]}
            model = LoadedModel(manifest, verified[MODEL_FILE])
            return problems + sample_problems(model, json.loads(verified[SAMPLE_FILE]))
        except ScorehouseError as exc:
            return [*problems, str(exc)]

    def unsafe_paths(self, name: str, version: int) -> list[str]:
        """Symlinks, and files or folders others may write, from the registry root to the version's files.

        Either lets someone swap an artifact between its hash check and its use, or point it elsewhere.
        """
        folder = self._version_dir(name, version)
        paths = [self.root, self.root / name, self.root / name / "versions", folder]
        paths += sorted(folder.iterdir()) if folder.is_dir() else []
        problems = []
        for path in paths:
            if path.is_symlink():
                problems.append(f"Model {name} v{version}: {path} is a symbolic link (to {os.readlink(path)})")
            elif path.exists() and path.stat().st_mode & stat.S_IWOTH:
                problems.append(f"Model {name} v{version}: {path} is writable by any user "
                                f"(mode {stat.filemode(path.stat().st_mode)}); chmod o-w it")
        return problems

    def find(self, name: str, matches: Callable[[dict[str, Any]], bool]) -> int | None:
        """Return the newest version whose manifest `matches`."""
        for version in reversed(self.versions(name)):
            if matches(self._manifest(name, version)):
                return version
        return None

    # ---- writing -----------------------------------------------------------------------------
    def register(self, manifest: dict[str, Any], files: Mapping[str, bytes]) -> int:
        """Store a new immutable version; return its number. Nothing is visible until complete."""
        name = manifest["name"]
        model_dir = self.root / name
        versions = target = model_dir / "versions"
        staging = model_dir / f".staging-{uuid.uuid4().hex}"
        try:
            versions.mkdir(parents=True, exist_ok=True)
            staging.mkdir()
            with self._lock(name):
                version = max(self.versions(name), default=0) + 1
                target = versions / str(version)
                manifest = {**manifest, "version": version,
                            "artifacts": {f: {"sha256": sha256_bytes(b), "bytes": len(b)} for f, b in files.items()}}
                for filename, data in files.items():
                    _write_synced(staging / filename, data)
                body = _dump_json(manifest)
                _write_synced(staging / MANIFEST_FILE, body)
                _write_synced(staging / MANIFEST_SUM_FILE, sha256_bytes(body).encode() + b"\n")
                os.rename(staging, target)
                fsync_dir(versions)
            return version
        except OSError as exc:  # a full disk or a read-only folder: one line naming where, not a traceback
            raise ScorehouseError(f"Model {name}: could not write version to {target}: {_os_detail(exc)}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def promote(self, name: str, version: int, alias: str = DEFAULT_ALIAS) -> int | None:
        """Point `alias` at `version`; return the version it pointed at before."""
        if not ALIAS_NAME.match(alias) or alias.isdigit():
            raise ScorehouseError(f"Alias '{alias}' must start with a letter and hold letters, digits, _ or -")
        self.resolve(ModelRef(name, version=version))
        with self._lock(name):
            entries = self._alias_file(name)
            entry = entries.get(alias, {"version": None, "history": []})
            previous = entry["version"]
            if previous != version:
                entries[alias] = {"version": version, "history": [*entry["history"], version]}
                self._write_alias_file(name, entries)
            return previous

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS) -> tuple[int, int]:
        """Move `alias` back to the version it pointed at before; return (from, to)."""
        self.resolve(ModelRef(name, alias=alias))
        with self._lock(name):
            entries = self._alias_file(name)
            history = entries[alias]["history"]
            if len(history) < 2:
                raise ScorehouseError(
                    f"Model '{name}': alias '{alias}' has no earlier version to roll back to "
                    f"(history: {_join(history)})"
                )
            entries[alias] = {"version": history[-2], "history": history[:-1]}
            self._write_alias_file(name, entries)
            return history[-1], history[-2]

    # ---- internals ---------------------------------------------------------------------------
    def _version_dir(self, name: str, version: int) -> Path:
        return self.root / name / "versions" / str(version)

    def _manifest(self, name: str, version: int) -> dict[str, Any]:
        folder = self._version_dir(name, version)
        try:
            body = (folder / MANIFEST_FILE).read_bytes()
            recorded = (folder / MANIFEST_SUM_FILE).read_text().strip()
        except FileNotFoundError as exc:
            if not folder.is_dir():
                self.resolve(ModelRef(name, version=version))
            raise IntegrityError(f"Model {name} v{version}: {Path(exc.filename).name} is missing in {folder}") from None
        if sha256_bytes(body) != recorded:
            raise IntegrityError(
                f"Model {name} v{version}: {MANIFEST_FILE} failed its sha256 check "
                f"(recorded {recorded[:12]}…, found {sha256_bytes(body)[:12]}…) in {folder}; refusing to load it"
            )
        return json.loads(body)

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
        path = self.root / name / "aliases.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return {}

    def _write_alias_file(self, name: str, entries: Mapping[str, Any]) -> None:
        path = self.root / name / "aliases.json"
        tmp = path.with_name(f".aliases-{uuid.uuid4().hex}.tmp")
        try:
            _write_synced(tmp, _dump_json(entries))
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except OSError as exc:  # the alias file is unchanged: it is replaced whole or not at all
            tmp.unlink(missing_ok=True)
            raise ScorehouseError(f"Model {name}: could not write {path}: {_os_detail(exc)}") from exc

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        with open(self.root / name / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


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
