"""Signed registries: ed25519 signatures over each version's manifest (which lists every artifact's sha256),
each model's alias state and each line of its audit log.

A sha256 beside a file only tells that the file was not corrupted: whoever can rewrite the file can
rewrite its hash. A signature made with a private key kept away from the registry tells that the
version was registered by someone holding that key. Where a public key is configured
(SCOREHOUSE_PUBLIC_KEY, --public-key, or the dbt plugin's `public_key`), every load refuses a version
that is unsigned or signed by another key; where none is, registries work unsigned as before.

    scorehouse keygen --out keys/    # keys/scorehouse_signing.pem (private) and .pub.pem (public)

A signature covers a message: a manifest's bytes as stored, or, for the alias state and audit lines,
a domain tag, the model's name and the record's canonical JSON (so no signature is valid for another
kind of record or another model).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import IntegrityError, ScorehouseError
from .names import shown

SIGNATURE_FILE = "manifest.sig"
PRIVATE_KEY_FILE = "scorehouse_signing.pem"
PUBLIC_KEY_FILE = "scorehouse_signing.pub.pem"


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An ed25519 public key as raw bytes (picklable: it travels to Spark executors with the registry)."""

    raw: bytes

    @property
    def key_id(self) -> str:
        """A short name for the key: the first 16 hex digits of its sha256."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def check(self, label: str, manifest: bytes, signature: bytes | None) -> None:
        """Fail unless `signature` (the manifest.sig file) is this key's signature of `manifest`."""
        if signature is None:
            raise IntegrityError(
                f"Model {label} is not signed, and this registry requires signatures "
                f"(public key {self.key_id}); refusing to load it"
            )
        try:
            record = json.loads(signature)
        except ValueError:
            record = None
        problem = self.problem(record, manifest)
        if problem:
            raise IntegrityError(f"Model {label}: manifest.json {problem}; refusing to load it")

    def problem(self, record: Any, message: bytes) -> str | None:
        """Why `record` (a signature record) is not this key's signature of `message`, or None when it is."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if record is None:
            return "is not signed"
        try:
            signature, signer = base64.b64decode(record["signature"], validate=True), str(record["key_id"])
        except (ValueError, KeyError, TypeError):
            return "carries no valid signature record"
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
            return None
        except InvalidSignature:
            if signer == self.key_id:
                return f"changed after it was signed by the configured key {self.key_id}"
            return f"is not signed by the configured key {self.key_id} (signed by {shown(signer)})"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An ed25519 private key that signs the manifests of new versions."""

    raw: bytes

    @property
    def public(self) -> PublicKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return PublicKey(_raw_public(Ed25519PrivateKey.from_private_bytes(self.raw).public_key()))

    def record(self, message: bytes) -> dict[str, str]:
        """A signature record of `message`: the signature and the id of the key that made it."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        signature = Ed25519PrivateKey.from_private_bytes(self.raw).sign(message)
        return {"algorithm": "ed25519", "key_id": self.public.key_id, "signature": base64.b64encode(signature).decode()}

    def sign(self, manifest: bytes) -> bytes:
        """The manifest.sig file for `manifest`."""
        return (json.dumps(self.record(manifest), indent=2, sort_keys=True) + "\n").encode()


def record_message(kind: str, model: str, record: Mapping[str, Any]) -> bytes:
    """What an alias state's or an audit line's signature covers: its kind, its model and its canonical JSON."""
    return b"\0".join(
        [
            f"scorehouse {kind}".encode(),
            model.encode(),
            json.dumps(record, sort_keys=True, separators=(",", ":")).encode(),
        ]
    )


def signer_of(signature: bytes | None) -> str | None:
    """The key id a signature record names, or None for an unsigned version."""
    return None if signature is None else _signer(signature)


def load_public_key(path: str | os.PathLike | None) -> PublicKey | None:
    """Read a PEM public key file; None where no path is given."""
    if not path:
        return None
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = load_pem_public_key(_read_key(path, "public"))
    if not isinstance(key, Ed25519PublicKey):
        raise ScorehouseError(f"Public key {Path(path).resolve()} is not an ed25519 key")
    return PublicKey(_raw_public(key))


def load_signing_key(path: str | os.PathLike | None) -> SigningKey | None:
    """Read a PEM private key file; None where no path is given."""
    if not path:
        return None
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(_read_key(path, "signing"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ScorehouseError(f"Signing key {Path(path).resolve()} is not an ed25519 private key")
    return SigningKey(
        key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    )


def generate_keys(folder: str | os.PathLike) -> tuple[Path, Path, str]:
    """Write a new key pair into `folder` (the private key readable by its owner only); return paths and key id."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(folder).resolve()
    private_path, public_path = folder / PRIVATE_KEY_FILE, folder / PUBLIC_KEY_FILE
    if private_path.exists() or public_path.exists():
        raise ScorehouseError(f"{private_path} or {public_path} exists already; keys are never overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    public_path.write_bytes(public)
    return private_path, public_path, PublicKey(_raw_public(key.public_key())).key_id


def _raw_public(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _read_key(path: str | os.PathLike, kind: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ScorehouseError(f"Cannot read the {kind} key {Path(path).resolve()}: {exc.strerror}") from None


def _signer(signature: bytes) -> str:
    try:
        return str(json.loads(signature)["key_id"])
    except (ValueError, KeyError, TypeError):
        return "an unreadable record"
