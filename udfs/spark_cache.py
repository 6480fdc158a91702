"""Models on a Spark executor: verified once per executor Python process, then reused by every task.

The driver ships each version as its manifest and ONNX bytes (a broadcast); nothing on the executor
reads the registry's disk. Spark reuses Python workers between tasks (spark.python.worker.reuse),
so this module-level cache keeps one onnxruntime session per version per worker.
"""

from __future__ import annotations

import hashlib
import json
import threading

from .errors import IntegrityError
from .manifest import artifact_sha256
from .model import LoadedModel

_models: dict[tuple[str, int, str], LoadedModel] = {}
_lock = threading.Lock()


def load(shipped, name: str, version: int) -> LoadedModel:
    """Return a model of the `shipped` broadcast, its sha256 checked here before the first use."""
    manifest_bytes, manifest_sha, onnx_bytes = shipped.value[(name, version)]
    key = (name, version, manifest_sha)
    with _lock:
        model = _models.get(key)
        if model is None:
            if hashlib.sha256(manifest_bytes).hexdigest() != manifest_sha:
                raise IntegrityError(f"Model {name} v{version}: manifest.json failed its sha256 check on the executor")
            manifest = json.loads(manifest_bytes)
            if hashlib.sha256(onnx_bytes).hexdigest() != artifact_sha256(manifest, "model.onnx"):
                raise IntegrityError(f"Model {name} v{version}: model.onnx failed its sha256 check on the executor")
            model = _models[key] = LoadedModel(manifest, onnx_bytes)
        return model
