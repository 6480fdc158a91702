"""The estimators a spec may name, per task, and what each needs to be exported, scored and measured.

scikit-learn's come with scorehouse; `xgboost` and `lightgbm` come with the extras of those names
(`pip install 'scorehouse[xgboost]'`) and are exported through onnxmltools' converters, which are
registered with skl2onnx the first time a spec names one. A literal table, not import side effects.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

from ..errors import SpecError

_CLASSIFIERS = {
    "logistic_regression": "sklearn.linear_model:LogisticRegression",
    "random_forest": "sklearn.ensemble:RandomForestClassifier",
    "gradient_boosting": "sklearn.ensemble:GradientBoostingClassifier",
    "hist_gradient_boosting": "sklearn.ensemble:HistGradientBoostingClassifier",
    "xgboost": "xgboost:XGBClassifier",
    "lightgbm": "lightgbm:LGBMClassifier",
}
# task -> kind -> "module:class"
KINDS: dict[str, dict[str, str]] = {
    "binary": _CLASSIFIERS,
    "multiclass": _CLASSIFIERS,
    "regression": {
        "linear_regression": "sklearn.linear_model:LinearRegression",
        "ridge": "sklearn.linear_model:Ridge",
        "random_forest": "sklearn.ensemble:RandomForestRegressor",
        "gradient_boosting": "sklearn.ensemble:GradientBoostingRegressor",
        "hist_gradient_boosting": "sklearn.ensemble:HistGradientBoostingRegressor",
        # generalized linear models for counts and positive amounts (log link: never below zero)
        "poisson_regression": "sklearn.linear_model:PoissonRegressor",
        "gamma_regression": "sklearn.linear_model:GammaRegressor",
        "tweedie_regression": "sklearn.linear_model:TweedieRegressor",
        "xgboost": "xgboost:XGBRegressor",
        "lightgbm": "lightgbm:LGBMRegressor",
    },
}
# Defaults that differ from the library's: LightGBM would print its warnings on every fit.
DEFAULT_PARAMS = {"lightgbm": {"verbose": -1}}
# Linear models get a scaler; tree models must not: the float32 scaler output in ONNX flips split
# thresholds (measured max |dp| 0.31 for HistGradientBoosting).
SCALED_KINDS = frozenset(
    {
        "logistic_regression",
        "linear_regression",
        "ridge",
        "poisson_regression",
        "gamma_regression",
        "tweedie_regression",
    }
)
# Libraries outside scikit-learn: module -> the extra that installs it and onnxmltools' converter.
EXTRAS = {"xgboost": "xgboost", "lightgbm": "lightgbm"}
# Their converters emit the TreeEnsemble operators of this ai.onnx.ml version.
EXTRA_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
# Tweedie powers of the losses for counts (1, Poisson) and positive amounts (2, Gamma), by library spelling.
_POWERS = {"poisson": 1.0, "gamma": 2.0, "count:poisson": 1.0, "reg:gamma": 2.0}


def estimator_class(task: str, kind: str, model: str) -> type:
    """The class a spec's estimator kind names, failing with the kinds there are or the extra to install."""
    kinds = KINDS[task]
    if kind not in kinds:
        raise SpecError(f"Model {model}: estimator '{kind}' is not supported for {task}; choose one of {sorted(kinds)}")
    module, name = kinds[kind].split(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError:
        raise SpecError(
            f"Model {model}: estimator '{kind}' needs the {EXTRAS[module]} extra: "
            f"pip install 'scorehouse[{EXTRAS[module]}]'"
        ) from None
    if module in EXTRAS:
        register_converters(module)
    return cls


def library(estimator: Any) -> str:
    """The top-level module an estimator comes from: sklearn, xgboost or lightgbm."""
    return type(estimator).__module__.split(".")[0]


def encodes_labels(estimator: Any) -> bool:
    """XGBoost's classifier takes classes as 0..k-1 only: it is fitted on positions in the sorted classes."""
    return library(estimator) == "xgboost" and hasattr(estimator, "predict_proba")


def tweedie_power(estimator: Any) -> float | None:
    """The Tweedie power of a count or positive-target model (1 Poisson, 2 Gamma), None for other losses."""
    name = type(estimator).__name__
    if name == "TweedieRegressor":
        return float(estimator.power)
    if name in ("PoissonRegressor", "GammaRegressor"):
        return _POWERS[name[: -len("Regressor")].lower()]
    loss = getattr(estimator, "loss", None) if name == "HistGradientBoostingRegressor" else None
    loss = loss or (getattr(estimator, "objective", None) if library(estimator) in EXTRAS else None)
    if loss in ("tweedie", "reg:tweedie"):
        params = estimator.get_params()
        return float(params.get("tweedie_variance_power") or 1.5)
    return _POWERS.get(loss) if isinstance(loss, str) else None


def missing_log_link(estimator: Any) -> bool:
    """HistGradientBoostingRegressor's Poisson and Gamma losses: skl2onnx exports the raw (log) score."""
    return type(estimator).__name__ == "HistGradientBoostingRegressor" and estimator.loss in ("poisson", "gamma")


@functools.cache
def register_converters(module: str) -> None:
    """Teach skl2onnx XGBoost's or LightGBM's estimators, through onnxmltools' converters (once per process)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    try:
        if module == "xgboost":
            import xgboost
            from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as convert

            classifier, regressor, alias = xgboost.XGBClassifier, xgboost.XGBRegressor, "XGBoostXGB"
        else:
            import lightgbm
            from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as convert

            classifier, regressor, alias = lightgbm.LGBMClassifier, lightgbm.LGBMRegressor, "LightGbmLGBM"
    except ImportError:
        raise SpecError(
            f"Exporting {module} models needs onnxmltools: pip install 'scorehouse[{EXTRAS[module]}]'"
        ) from None
    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    update_registered_converter(
        classifier, f"{alias}Classifier", calculate_linear_classifier_output_shapes, convert, options=options
    )
    update_registered_converter(regressor, f"{alias}Regressor", calculate_linear_regressor_output_shapes, convert)
