"""Training specs: what parses, and what fails with a message naming the problem."""

import pytest

from scorehouse.errors import SpecError
from scorehouse.registration.spec import load_spec, parse_spec
from scorehouse.registration.training import build_pipeline

from helpers import SPECS

BASE = {
    "name": "m",
    "task": "binary",
    "target": "y",
    "source": {"table": "t"},
    "estimator": {"kind": "logistic_regression"},
    "features": {"numeric": ["a"], "categorical": ["b"]},
}


def test_demo_specs_load():
    spec = load_spec(SPECS["mortgage_deny"])
    assert spec.name == "mortgage_deny" and spec.task == "binary" and spec.positive_class == "true"
    assert "black" not in spec.features
    assert load_spec(SPECS["diamond_price"]).estimator.kind == "hist_gradient_boosting"


def test_spec_hash_ignores_location_but_not_content(tmp_path):
    a = parse_spec(BASE, base_dir=tmp_path)
    b = parse_spec(BASE, base_dir=tmp_path / "elsewhere")
    c = parse_spec({**BASE, "split": {"seed": 3}})
    assert a.sha256() == b.sha256() != c.sha256()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"name": "Bad-Name"}, "model name .Bad-Name. is not valid"),
        ({"name": "label"}, "not one of \\[.json., .label., .proba.\\]"),
        ({"task": "ranking"}, "task 'ranking' is not one of"),
        ({"source": {"table": "t", "path": "x.csv"}}, "exactly one of 'table', 'path' or 'query'"),
        ({"features": {"numeric": ["a", "a"]}}, "features listed twice: \\['a'\\]"),
        ({"features": {"numeric": []}}, "no features listed"),
        ({"features": {"numerical": ["a"]}}, "accepts 'numeric' and 'categorical'"),
        ({"target": "a"}, "target 'a' is also listed as a feature"),
        ({"colour": "red"}, "unknown keys \\['colour'\\]"),
        ({"split": {"sed": 1}}, "unknown keys in 'split'"),
        ({"task": "regression", "positive_class": "yes"}, "binary models only"),
    ],
)
def test_bad_specs_name_the_problem(change, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({**BASE, **change})


def test_missing_key_and_missing_file(tmp_path):
    raw = dict(BASE)
    del raw["target"]
    with pytest.raises(SpecError, match="missing required key 'target'"):
        parse_spec(raw)
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yml")


def test_unknown_estimator_lists_the_supported_ones():
    spec = parse_spec({**BASE, "estimator": "svm"})
    with pytest.raises(SpecError, match="estimator 'svm' is not supported for binary; choose one of"):
        build_pipeline(spec)
    spec = parse_spec({**BASE, "estimator": {"kind": "random_forest", "params": {"n_trees": 3}}})
    with pytest.raises(SpecError, match="bad parameters for random_forest"):
        build_pipeline(spec)
