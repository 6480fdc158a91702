"""A registered model version ready to score: its manifest and one onnxruntime session."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import ScorehouseError
from .manifest import Version
from .schema import Feature, model_inputs

# What a model can return to SQL. `score` is the positive-class probability of a binary
# classifier or the value of a regressor; `label` the predicted class; `probabilities` a
# class -> probability map.
OUTPUTS = ("score", "label", "probabilities")
DEFAULT_OUTPUT = {"binary": "score", "regression": "score", "multiclass": "label"}
OUTPUT_SQL_TYPES = {"score": "DOUBLE", "label": "VARCHAR", "probabilities": "MAP(VARCHAR, DOUBLE)"}
# onnxruntime inside a SQL engine: the engine already runs one call per thread, so one thread each
# (measured: 1M rows of the demo GBT in DuckDB, 0.93 s with 1 thread per call, 1.40 s with 2).
THREADS_ENV = "SCOREHOUSE_ORT_THREADS"


class ModelCard:
    """What a manifest says about a model version, without the artifact."""

    def __init__(self, manifest: Mapping[str, Any]):
        self.raw = manifest  # the JSON as stored
        self.manifest = Version.read(manifest)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        if self.manifest.version is None:
            raise ScorehouseError(f"Model {self.name} is not registered yet: it has no version")
        return self.manifest.version

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def label(self) -> str:
        """How errors name the model: 'name v3' (just 'name' before it is registered)."""
        return self.manifest.label

    @property
    def features(self) -> list[Feature]:
        return list(self.manifest.features)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest.classes)

    @property
    def positive_class(self) -> str | None:
        return self.manifest.positive_class

    @property
    def metrics(self) -> dict[str, float]:
        """The holdout metrics, each of the positive class (manifest.migrate drops what format 1 got wrong)."""
        return dict(self.manifest.metrics)

    @property
    def default_output(self) -> str:
        return DEFAULT_OUTPUT[self.task]

    def check_output(self, output: str | None) -> str:
        """Return the output to compute, failing if this model cannot give it."""
        output = self.default_output if output in (None, "", "default") else output
        if output not in OUTPUTS:
            raise ScorehouseError(f"Unknown output '{output}'; choose one of {list(OUTPUTS)}")
        if self.task == "regression" and output != "score":
            raise ScorehouseError(f"Model {self.label} is a regressor: it has no '{output}' output, only 'score'")
        if self.task == "multiclass" and output == "score":
            raise ScorehouseError(
                f"Model {self.label} is a multiclass classifier: it has no single 'score'; "
                "use predict_label(...) or predict_proba(...)"
            )
        return output


class LoadedModel(ModelCard):
    """A model card plus the ONNX bytes; the onnxruntime session is created on first use."""

    def __init__(self, manifest: Mapping[str, Any], onnx_bytes: bytes):
        super().__init__(manifest)
        self.onnx_bytes = onnx_bytes

    @cached_property
    def session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get(THREADS_ENV, "1"))
        options.inter_op_num_threads = 1
        return ort.InferenceSession(self.onnx_bytes, options, providers=["CPUExecutionProvider"])

    def inputs(self, columns: Mapping[str, pa.Array | pa.ChunkedArray]) -> dict[str, np.ndarray]:
        """Named Arrow columns as this graph's inputs (categories as codes where the graph takes codes)."""
        return model_inputs(self.label, self.features, columns, self.manifest.onnx_category_codes)

    def run(self, feeds: Mapping[str, np.ndarray], roles: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the ONNX graph on prepared inputs; return its outputs by role (default: all of them)."""
        roles = roles or list(self.manifest.onnx_outputs)
        return dict(zip(roles, self.session.run(self.output_names(roles), dict(feeds))))

    def output_names(self, roles: list[str]) -> list[str]:
        """The graph's names for output roles ('label', 'probabilities', 'value')."""
        return [self.manifest.onnx_outputs[role] for role in roles]

    def roles_for(self, output: str) -> list[str]:
        """The ONNX outputs an output is computed from (onnxruntime skips the graph's other branches)."""
        if output == "label":
            return ["label"]
        return ["value" if self.task == "regression" else "probabilities"]

    def predict(self, columns: Mapping[str, pa.Array | pa.ChunkedArray], output: str | None = None) -> pa.Array:
        """Score named Arrow columns (extra columns ignored) and return one Arrow array."""
        output = self.check_output(output)
        return self.to_arrow(self.run(self.inputs(columns), self.roles_for(output)), output)

    def to_arrow(self, raw: Mapping[str, np.ndarray], output: str) -> pa.Array:
        """Turn raw ONNX outputs into the Arrow array of one output."""
        if output == "score":
            if self.task == "regression":
                return pa.array(raw["value"].reshape(-1).astype(np.float64))
            positive = self.classes.index(self.manifest.positive)
            return pa.array(raw["probabilities"][:, positive].astype(np.float64))
        if output == "label":
            return pa.array(raw["label"].reshape(-1).astype(str), pa.string())
        probs = raw["probabilities"].astype(np.float64)
        n, k = probs.shape
        keys = pa.array(self.classes * n, pa.string())
        offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
        return pa.MapArray.from_arrays(offsets, keys, pa.array(probs.reshape(-1)))
