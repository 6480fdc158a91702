"""Errors meant for a person: each names the thing that failed and what would have worked."""


class ScorehouseError(Exception):
    """Base class; the CLI prints these without a traceback."""


class SpecError(ScorehouseError):
    """A training spec is malformed."""


class ModelNotFound(ScorehouseError):
    """A model, alias or version does not exist in the registry."""


class IntegrityError(ScorehouseError):
    """An artifact on disk does not match the sha256 recorded when it was registered."""


class FeatureError(ScorehouseError):
    """Scoring input lacks a feature or carries one of the wrong type."""


class ParityError(ScorehouseError):
    """onnxruntime and scikit-learn disagree beyond tolerance; the model is not registered."""
