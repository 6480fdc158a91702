"""The registry on disk: versions, aliases, integrity, and what may be loaded."""

import re
from pathlib import Path

import pytest

from scorehouse.errors import IntegrityError, ModelNotFound, ScorehouseError
from scorehouse.registry import ModelRef, Registry

PACKAGE = Path(__file__).resolve().parents[1] / "udfs"


def manifest_for(trained, name="mortgage_deny"):
    return dict(trained.candidates[name].manifest)


def test_model_refs_parse():
    assert ModelRef.parse("m") == ModelRef("m", alias="prod")
    assert ModelRef.parse("m@candidate") == ModelRef("m", alias="candidate")
    assert ModelRef.parse("m@12") == ModelRef("m", version=12)
    assert str(ModelRef.parse("m@prod")) == "m" and str(ModelRef.parse("m@3")) == "m@3"
    with pytest.raises(ModelNotFound, match="no model name"):
        ModelRef.parse("@prod")


def test_versions_are_numbered_immutable_folders(trained, tmp_path):
    registry = Registry(tmp_path / "reg")
    candidate = trained.candidates["mortgage_deny"]
    assert registry.register(candidate.manifest, candidate.files) == 1
    assert registry.register(candidate.manifest, candidate.files) == 2
    assert registry.versions("mortgage_deny") == [1, 2]
    folder = tmp_path / "reg" / "mortgage_deny" / "versions" / "2"
    assert sorted(p.name for p in folder.iterdir()) == [
        "explain.json",
        "manifest.json",
        "manifest.sha256",
        "model.onnx",
        "sample.json",
        "training_rows.json",
    ]
    assert registry.card("mortgage_deny", 2).version == 2
    assert not list((tmp_path / "reg" / "mortgage_deny").glob(".staging-*"))


def test_promote_and_rollback_move_aliases_and_never_delete(trained, tmp_path):
    registry = Registry(tmp_path / "reg")
    candidate = trained.candidates["mortgage_deny"]
    for _ in range(3):
        registry.register(candidate.manifest, candidate.files)
    assert registry.promote("mortgage_deny", 1) is None
    assert registry.promote("mortgage_deny", 3) == 1
    assert registry.promote("mortgage_deny", 2, alias="candidate") is None
    assert registry.aliases("mortgage_deny") == {"prod": 3, "candidate": 2}
    assert registry.resolve(ModelRef.parse("mortgage_deny")) == ("mortgage_deny", 3)
    assert registry.rollback("mortgage_deny") == (3, 1)
    assert registry.resolve(ModelRef.parse("mortgage_deny@prod")) == ("mortgage_deny", 1)
    with pytest.raises(ScorehouseError, match="no earlier version"):
        registry.rollback("mortgage_deny")
    assert registry.versions("mortgage_deny") == [1, 2, 3]
    with pytest.raises(ModelNotFound, match="version 7 does not exist; versions: 1, 2, 3"):
        registry.promote("mortgage_deny", 7)
    with pytest.raises(ScorehouseError, match="Alias '2' is not valid: .*an alias starts with a letter"):
        registry.promote("mortgage_deny", 1, alias="2")
    assert not list((tmp_path / "reg" / "mortgage_deny").glob(".aliases-*"))


def test_unknown_references_list_what_exists(trained):
    registry = trained.registry
    with pytest.raises(ModelNotFound, match=r"'nope' not found .*known models: diamond_price, mortgage_deny"):
        registry.resolve(ModelRef.parse("nope"))
    with pytest.raises(ModelNotFound, match=r"no alias 'staging'; aliases: prod -> 1; versions: 1"):
        registry.resolve(ModelRef.parse("mortgage_deny@staging"))


def test_alias_pointing_at_a_deleted_version(workspace):
    import shutil

    registry = workspace.registry
    version = workspace.train("mortgage_deny")
    shutil.rmtree(workspace.registry_path / "mortgage_deny" / "versions" / str(version))
    with pytest.raises(ModelNotFound, match=f"alias 'prod' points at version {version}, which no longer exists"):
        registry.resolve(ModelRef.parse("mortgage_deny"))


@pytest.mark.parametrize("filename", ["model.onnx", "manifest.json", "sample.json", "explain.json"])
def test_a_changed_byte_is_refused_naming_the_file(workspace, filename):
    from scorehouse import registry as registry_module

    registry_module._loaded.clear()
    path = workspace.registry_path / "mortgage_deny" / "versions" / "1" / filename
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    registry = workspace.registry
    with pytest.raises(IntegrityError, match=f"{re.escape(filename)} failed its sha256 check"):
        if filename == "sample.json":
            registry.sample("mortgage_deny", 1)
        elif filename == "explain.json":
            registry.explanation("mortgage_deny", 1)
        else:
            registry.load("mortgage_deny", 1)
    problems = registry.verify("mortgage_deny", 1)
    assert len(problems) == 1 and f"{filename} failed its sha256 check" in problems[0]
    assert registry.verify("diamond_price", 1) == []


def test_files_others_can_write_and_symlinked_artifacts_are_refused_at_load(workspace, tmp_path):
    registry = workspace.registry
    folder = workspace.registry_path / "mortgage_deny" / "versions" / "1"
    assert registry.verify("mortgage_deny", 1) == []
    folder.chmod(folder.stat().st_mode | 0o002)
    problems = registry.verify("mortgage_deny", 1)
    assert len(problems) == 1
    assert problems[0].startswith(f"Model mortgage_deny v1: {folder} is writable by any user (mode d")
    assert problems[0].endswith("); chmod o-w it; refusing to load it")
    with pytest.raises(IntegrityError, match="is writable by any user"):
        Registry(workspace.registry_path).card("mortgage_deny", 1)  # refused at load, not only reported
    folder.chmod(folder.stat().st_mode & ~0o002)
    elsewhere = tmp_path / "model.onnx"
    elsewhere.write_bytes((folder / "model.onnx").read_bytes())  # the same bytes: the hash alone would pass
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(elsewhere)
    problems = registry.verify("mortgage_deny", 1)
    assert problems == [
        f"Model mortgage_deny v1: {folder / 'model.onnx'} is a symbolic link (to {elsewhere}); refusing to load it"
    ]
    with pytest.raises(IntegrityError, match="is a symbolic link"):
        Registry(workspace.registry_path).load("mortgage_deny", 1)
    result = workspace.cli("verify", "mortgage_deny")
    assert result.returncode == 1 and "is a symbolic link" in result.stdout


def test_a_failed_write_leaves_no_version_behind(trained, tmp_path):
    registry = Registry(tmp_path / "reg")
    candidate = trained.candidates["mortgage_deny"]
    files = {**candidate.files, "broken.json": None}  # not bytes: the write fails half-way
    with pytest.raises(TypeError):
        registry.register(candidate.manifest, files)
    assert registry.versions("mortgage_deny") == []
    assert [p.name for p in (tmp_path / "reg" / "mortgage_deny").iterdir() if not p.name.startswith(".lock")] == [
        "versions"
    ]
    assert registry.register(candidate.manifest, candidate.files) == 1


def test_manifest_records_what_the_issue_asks(trained):
    manifest = trained.registry.card("mortgage_deny", 1).raw
    for key in (
        "name",
        "version",
        "task",
        "features",
        "classes",
        "positive_class",
        "metrics",
        "parity",
        "artifacts",
        "libraries",
        "training_data",
        "created_at",
        "spec",
        "estimator",
    ):
        assert key in manifest, key
    assert manifest["parity"]["max_abs_diff"] <= 1e-5 == manifest["parity"]["tolerance"]
    assert set(manifest["metrics"]) == {
        "auc",
        "log_loss",
        "accuracy",
        "brier",
        "precision",
        "recall",
        "f1",
        "true_positives",
        "false_positives",
        "false_negatives",
        "true_negatives",
    }
    assert len(manifest["artifacts"]["model.onnx"]["sha256"]) == 64
    assert len(manifest["training_data"]["fingerprint"]) == 64
    features = {f["name"]: f for f in manifest["features"]}
    assert features["lvr"]["sql_type"] == "DOUBLE" and features["pbcr"]["categories"] == ["no", "yes"]
    sample = trained.registry.sample("mortgage_deny", 1)
    assert len(sample["rows"]) == 20 and len(sample["expected"]["score"]) == 20


def test_the_package_never_loads_pickle_or_joblib():
    forbidden = re.compile(
        r"^\s*(import|from)\s+(pickle|cPickle|joblib|dill|cloudpickle)\b"
        r"|\b(pickle|joblib)\.load",
        re.M,
    )
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if forbidden.search(p.read_text())]
    assert offenders == []
    loaded = [
        line
        for p in PACKAGE.rglob("*.py")
        for line in p.read_text().splitlines()
        if re.search(r"\.(read_bytes|read_text)\(|json\.loads|InferenceSession\(", line)
    ]
    assert loaded, "the scan must see the loading code it guards"
