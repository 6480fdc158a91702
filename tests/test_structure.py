"""The model structure (scorehouse.structure): explain.json read into typed data, checked once, written back
the same; data that is not as scorehouse writes it names the field and what was found."""

import copy
import json
import math
from pathlib import Path

import pytest

from scorehouse.structure import Linear, Misshapen, Trees, parse, reads_other_than, to_json

FIXTURES = Path(__file__).parent / "fixtures"
RELEASED = sorted(FIXTURES.glob("*/**/explain.json"))  # files earlier releases wrote


def test_released_explanations_read_and_write_back_unchanged():
    """Every explain.json of an earlier release in the fixtures reads, and to_json gives back its data."""
    assert len(RELEASED) >= 3
    kinds = set()
    for path in RELEASED:
        data = json.loads(path.read_text())
        structure = parse(data)
        kinds.add(structure.kind)
        assert to_json(structure) == data, path
        assert structure.baseline == data["baseline"]
    assert kinds == {"linear", "trees"}


def test_the_registered_explanations_read_back_as_written(small):
    """A version's structure, as registration wrote it, reads back equal (floats exactly)."""
    for model, kind in (("mortgage_deny", Trees), ("mortgage_logit", Linear)):
        structure = small.registry.explanation(model, 1)
        assert isinstance(structure, kind)
        again = parse(json.loads(json.dumps(to_json(structure))))
        assert to_json(again) == to_json(structure)
        if isinstance(structure, Trees):
            assert structure.nodes == sum(len(t.left) for t in structure.trees) > 0
            assert all(t.left[0] > 0 for t in structure.trees)  # every root splits
        else:
            assert structure.nodes == 0 and {kind for _, kind in structure.reads()} <= {"numeric", "categorical"}


def _trees() -> dict:
    return json.loads(next(p for p in RELEASED if json.loads(p.read_text())["kind"] == "trees").read_text())


def _linear() -> dict:
    return json.loads(next(p for p in RELEASED if json.loads(p.read_text())["kind"] == "linear").read_text())


def _changed(data: dict, change) -> dict:
    data = copy.deepcopy(data)
    change(data)
    return data


def _inner(data: dict) -> int:
    return next(i for i, child in enumerate(data["trees"][0]["left"]) if child >= 0)


@pytest.mark.parametrize(
    "data, message",
    [
        (_changed(_linear(), lambda d: d.pop("intercept")), "no 'intercept'"),
        (_changed(_linear(), lambda d: d.update(kind="forest")), "kind is 'forest', not 'linear' or 'trees'"),
        (_changed(_linear(), lambda d: d.update(intercept=True)), "intercept is True, not a finite number"),
        (_changed(_linear(), lambda d: d.update(baseline=math.nan)), "baseline is nan, not a finite number"),
        (_changed(_linear(), lambda d: d["numeric"][0].update(scale=0)), "numeric[0].scale is 0"),
        (_changed(_linear(), lambda d: d["numeric"][0].update(coef="1")), "numeric[0].coef is '1', not a finite"),
        (
            _changed(_linear(), lambda d: d["categorical"][0]["coef"].append(0.5)),
            "categorical[0] has",
        ),
        (_changed(_linear(), lambda d: d.update(numeric={})), "numeric is dict, not a list"),
        (_changed(_trees(), lambda d: d["columns"][0].pop("feature")), "columns[0] has no 'feature'"),
        (_changed(_trees(), lambda d: d["trees"][0]["value"].pop()), "trees[0] has node arrays of lengths"),
        (_changed(_trees(), lambda d: d["trees"][0]["value"].__setitem__(-1, math.inf)), "is inf, not a finite"),
        (
            _changed(_trees(), lambda d: d["trees"][0]["left"].__setitem__(_inner(d), 0)),  # a loop to the root
            "not nodes after it",
        ),
        (
            _changed(_trees(), lambda d: d["trees"][0]["column"].__setitem__(_inner(d), len(d["columns"]))),
            "not one of the",
        ),
        (
            _changed(_trees(), lambda d: d["trees"][0]["threshold"].__setitem__(_inner(d), math.nan)),
            "at nan, not one of the",
        ),
        (_changed(_trees(), lambda d: d["trees"][0]["left"].__setitem__(0, 1.5)), "left[0] is 1.5, not a whole"),
        ([], "the file is list, not an object"),
    ],
)
def test_a_misshapen_explanation_names_the_field_and_what_was_found(data, message):
    with pytest.raises(Misshapen) as failed:
        parse(data)
    assert message in str(failed.value) and "\n" not in str(failed.value)


def test_a_structure_reading_other_columns_than_the_features_is_named():
    from scorehouse.schema import Feature

    structure = parse(_linear())
    features = [Feature(name, kind) for name, kind in structure.reads()]
    assert reads_other_than(structure, features) == []
    first, kind = structure.reads()[0]
    swapped = [Feature(f.name, "categorical" if f.name == first else f.kind) for f in features]
    assert reads_other_than(structure, swapped) == [f"'{first}' ({kind})"]
