"""The typed manifest (udfs/manifest.py): every stored format read, migrated and checked in one place."""

import json

import pytest

from scorehouse.errors import IntegrityError
from scorehouse.manifest import MANIFEST_FORMAT, Version, migrate

from helpers import ROOT

RELEASE_0_2_0 = ROOT / "tests" / "fixtures" / "release-0.2.0" / "loans" / "registry" / "loan_denial" / "versions"


def stored(version: int) -> dict:
    return json.loads((RELEASE_0_2_0 / str(version) / "manifest.json").read_text())


def test_a_manifest_release_0_2_0_wrote_reads_as_typed_fields():
    raw = stored(2)
    version = Version.read(raw)
    assert (version.name, version.version, version.task, version.format) == ("loan_denial", 2, "binary", 2)
    assert version.positive_class == "true" and version.classes == ("false", "true")
    assert [f.name for f in version.features] == [f["name"] for f in raw["features"]]
    assert version.parity.tolerance == raw["parity"]["tolerance"] and version.parity.splits_checked == 900
    assert version.onnx_sha256 == raw["artifacts"]["model.onnx"]["sha256"]
    assert version.training.train_rows == 1785 and version.training.fingerprint == raw["training_data"]["fingerprint"]
    assert version.metrics["auc"] == raw["metrics"]["auc"] and version.label == "loan_denial v2"
    assert version.explanation["unsupported"] is False  # what explanations_outdated reads, derived once


def test_format_1_drops_the_metrics_it_measured_for_the_other_class():
    raw = {**stored(2), "format": 1, "positive_class": "false"}  # the last class in sorted order is not positive
    migrated = migrate(raw)
    assert migrated["format"] == MANIFEST_FORMAT and "precision" in raw["metrics"]
    assert not {"precision", "recall"} & set(Version.read(raw).metrics) and "auc" in Version.read(raw).metrics
    kept = Version.read({**stored(2), "format": 1})  # the positive class is the last: its metrics were right
    assert {"precision", "recall"} <= set(kept.metrics)


def test_an_older_explanation_record_is_flagged_by_what_it_said():
    raw = {**stored(2), "explanation": {"skipped": "xgboost models are not explained yet (linear models are)"}}
    assert Version.read(raw).explanation["unsupported"] is True
    raw["explanation"] = {"skipped": "baseline + contributions differ from the margin by 0.01 on the holdout"}
    assert Version.read(raw).explanation["unsupported"] is False


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format": MANIFEST_FORMAT + 1}, f"format {MANIFEST_FORMAT + 1}, newer than this release of scorehouse reads"),
        ({"format": "2"}, "not a format number"),
        ({"task": "ranking"}, "task is 'ranking'"),
        ({"features": "dir"}, "is not of format"),
        ({"parity": {"rows": 3}}, "has no field 'compared'"),
        ({"positive_class": "maybe"}, "positive class 'maybe' is not one of its classes ['false', 'true']"),
    ],
)
def test_a_manifest_this_release_cannot_read_is_refused_in_one_line(change, message):
    with pytest.raises(IntegrityError, match="^Model loan_denial") as error:
        Version.read({**stored(2), **change})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_manifest_without_a_required_field_names_it():
    raw = stored(1)
    del raw["onnx_outputs"]
    with pytest.raises(IntegrityError, match="loan_denial v1: its manifest has no field 'onnx_outputs'"):
        Version.read(raw)


def test_a_version_of_a_newer_format_fails_alone_with_what_to_do(small_copy):
    """A registry shared with a newer release: its new versions are refused in one line, the others score."""
    import hashlib

    folder = small_copy.registry_path / "mortgage_logit" / "versions" / "1"
    raw = json.loads((folder / "manifest.json").read_text())
    body = json.dumps({**raw, "format": MANIFEST_FORMAT + 1}).encode()
    (folder / "manifest.json").write_bytes(body)
    (folder / "manifest.sha256").write_text(hashlib.sha256(body).hexdigest() + "\n")
    refused = small_copy.cli("sql", "select predict('mortgage_logit', t) from features_mortgage t limit 1")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"its manifest is of format {MANIFEST_FORMAT + 1}, newer than this release" in refused.stderr
    assert "upgrade scorehouse" in refused.stderr
    scored = small_copy.cli(
        "sql", "select count(predict('mortgage_deny', t)) as n from features_mortgage t", "--format", "json"
    )
    assert scored.returncode == 0 and json.loads(scored.stdout)[0]["n"] > 2000, scored.stderr
