"""Hardening: concurrent registry writers, parallel dbt threads, a killed build and a registry that cannot be written:
complete answers, nothing lost, nothing half-written."""

import ctypes
import errno
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from contextlib import contextmanager

import pandas as pd
import pytest
import yaml

from scorehouse.registry import MODEL_FILE, Registry

from helpers import SPECS

WRITERS = 20

# Each writer waits for the start file, then registers a version and moves two aliases to it.
WRITER = """
import json, sys, time
from pathlib import Path
from scorehouse.registry import Registry

root, payload, start = sys.argv[1:4]
manifest = json.loads(Path(payload, "manifest.json").read_text())
files = {p.name: p.read_bytes() for p in Path(payload, "files").iterdir()}
while not Path(start).exists():
    time.sleep(0.001)
registry = Registry(root)
version = registry.register(manifest, files)
registry.promote(manifest["name"], version)
registry.promote(manifest["name"], version, "candidate")
print(version)
"""


def test_twenty_processes_register_and_promote_at_once(trained, tmp_path):
    candidate = trained.candidates["mortgage_deny"]
    payload = tmp_path / "payload"
    (payload / "files").mkdir(parents=True)
    (payload / "manifest.json").write_text(json.dumps(candidate.manifest))
    for name, data in candidate.files.items():
        (payload / "files" / name).write_bytes(data)
    root, start = tmp_path / "registry", tmp_path / "start"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), str(payload), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    time.sleep(2)  # every writer imported and waiting
    start.touch()
    outputs = [w.communicate(timeout=300) for w in writers]
    assert [w.returncode for w in writers] == [0] * WRITERS, [err for _, err in outputs]

    registry = Registry(root)
    assert sorted(int(out) for out, _ in outputs) == list(range(1, WRITERS + 1))  # no version lost or shared
    assert registry.versions("mortgage_deny") == list(range(1, WRITERS + 1))
    for version in registry.versions("mortgage_deny"):
        assert registry.verify("mortgage_deny", version) == [], version  # complete: every hash and the sample
    aliases = json.loads((root / "mortgage_deny" / "aliases.json").read_text())
    for alias in ("prod", "candidate"):
        assert aliases[alias]["version"] in range(1, WRITERS + 1)
        assert sorted(aliases[alias]["history"]) == list(range(1, WRITERS + 1))  # every move recorded once
        assert aliases[alias]["history"][-1] == aliases[alias]["version"]
    leftovers = [
        p.name for p in (root / "mortgage_deny").iterdir() if p.name not in ("versions", "aliases.json", "audit.jsonl")
    ]
    assert all(name.startswith(".lock") for name in leftovers), leftovers


def test_dbt_with_eight_threads_scores_as_one_thread_does(workspace):
    marts = {"mart_mortgage_risk": "application_id", "mart_diamond_prices": "diamond_id"}

    def scored():
        return {m: workspace.query(f"select * exclude (scored_at) from {m} order by {key}") for m, key in marts.items()}

    workspace.dbt("build", "--select", "tag:scoring", "--threads", "1")
    one = scored()
    workspace.dbt("build", "--select", "tag:scoring", "--threads", "8")
    eight = scored()
    for mart in marts:
        assert len(eight[mart]) == len(one[mart]) > 0
        pd.testing.assert_frame_equal(eight[mart], one[mart], check_exact=True)


def test_a_build_killed_while_scoring_leaves_the_previous_marts_and_the_next_build_succeeds(built, tmp_path):
    import os
    import signal

    from helpers import ROOT

    workspace = built.copy(tmp_path / "ws")
    marts = {"mart_mortgage_risk": "application_id", "mart_diamond_prices": "diamond_id"}

    def read():
        return {m: workspace.query(f"select * from {m} order by {key}") for m, key in marts.items()}

    before = read()
    build = subprocess.Popen(
        workspace.dbt_command("build", "--select", "tag:scoring", "--threads", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, **workspace.env},
    )
    started = None
    for line in build.stdout:  # kill half a second after the first mart starts scoring
        if "START sql table model main.mart_" in line:
            started = line
            break
    assert started is not None, "dbt ended before a mart started"
    time.sleep(0.5)
    build.send_signal(signal.SIGKILL)
    build.wait(timeout=60)
    assert build.returncode == -signal.SIGKILL, started
    after = read()  # readable, and each mart whole: the previous one, or the new one complete
    for mart in marts:
        if not after[mart]["scored_at"].equals(before[mart]["scored_at"]):
            assert after[mart]["scored_at"].nunique() == 1, mart  # one build wrote every row
        pd.testing.assert_frame_equal(after[mart].drop(columns="scored_at"), before[mart].drop(columns="scored_at"))
    workspace.dbt("build", "--select", "tag:scoring")
    rebuilt = read()
    for mart in marts:
        pd.testing.assert_frame_equal(rebuilt[mart].drop(columns="scored_at"), before[mart].drop(columns="scored_at"))


FILE_SIZE_LIMIT = 2048  # bytes: below the small spec's model.onnx (checked below); reading the warehouse writes nothing
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child should not run the dynamic loader


def _limit_file_size():
    """In the child: a write past FILE_SIZE_LIMIT fails with EFBIG, as on a full disk, instead of raising SIGXFSZ."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


def _obey_file_modes():
    """In the child: root gives up the capabilities that let it write into read-only folders."""
    if os.geteuid() == 0:
        for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if LIBC.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {capability}) failed")


def _skip_unless_read_only_folders_stop_writes(tmp_path):
    """Skip where a child cannot be made to obey file modes (root without CAP_SETPCAP)."""
    folder = tmp_path / "read-only-probe"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = subprocess.run(["touch", str(folder / "file")], capture_output=True, preexec_fn=_obey_file_modes)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE from the bounding set (CAP_SETPCAP needed): {exc}")
    if probe.returncode == 0:
        pytest.skip("a read-only folder does not stop this user's writes, even without CAP_DAC_OVERRIDE")


@contextmanager
def _disk_full(folder, tmp_path):
    yield _limit_file_size


@contextmanager
def _read_only(folder, tmp_path):
    _skip_unless_read_only_folders_stop_writes(tmp_path)
    mode = stat.S_IMODE(folder.stat().st_mode)
    folder.chmod(0o555)
    try:
        yield _obey_file_modes
    finally:
        folder.chmod(mode)


# fault -> (context giving the child's preexec_fn, folder under the model it applies to, the OS error expected)
REGISTRY_FAULTS = {
    "disk_full": (_disk_full, "versions", errno.EFBIG),
    "versions_folder_read_only": (_read_only, "versions", errno.EACCES),
    "model_folder_read_only": (_read_only, ".", errno.EACCES),
}


def _new_mortgage_spec(tmp_path):
    """The demo spec with 10 trees: a spec the registry has no version of, so train must write one, quickly."""
    spec = yaml.safe_load(SPECS["mortgage_deny"].read_text())
    spec["estimator"]["params"]["n_estimators"] = 10
    path = tmp_path / "mortgage_deny.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _model_state(registry, name):
    """Everything a failed write must leave as it was: versions, alias file and every path under the model."""
    model_dir = registry.root / name
    return (
        registry.versions(name),
        (model_dir / "aliases.json").read_text(),
        sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")),
    )


@pytest.mark.parametrize("fault", list(REGISTRY_FAULTS))
def test_a_registry_write_failing_during_train_leaves_no_half_version(workspace, tmp_path, fault):
    name, registry = "mortgage_deny", workspace.registry
    model_dir, spec = registry.root / name, _new_mortgage_spec(tmp_path)
    inject, folder, code = REGISTRY_FAULTS[fault]
    before = _model_state(registry, name)

    with inject(model_dir / folder, tmp_path) as preexec_fn:
        failed = workspace.cli("train", str(spec), preexec_fn=preexec_fn)

    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr, failed.stderr
    error = failed.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: Model {name}: could not write version to {model_dir / 'versions'}"), error
    assert error.endswith(f": [Errno {code}] {os.strerror(code)}"), error
    assert _model_state(registry, name) == before  # no version, no staging folder, no alias moved
    for version in before[0]:
        assert registry.verify(name, version) == [], version

    retried = workspace.cli("train", str(spec), check=True)
    version = before[0][-1] + 1
    assert f"{name}: registered version {version}" in retried.stderr
    assert registry.versions(name) == [*before[0], version]
    assert registry.verify(name, version) == []
    assert (model_dir / "versions" / str(version) / MODEL_FILE).stat().st_size > FILE_SIZE_LIMIT


def test_an_alias_move_failing_leaves_the_alias_file_as_it_was(workspace, tmp_path):
    name, model_dir = "mortgage_deny", workspace.registry_path / "mortgage_deny"
    before = _model_state(workspace.registry, name)
    with _read_only(model_dir, tmp_path) as preexec_fn:
        failed = workspace.cli("promote", name, "1", "--alias", "candidate", preexec_fn=preexec_fn)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert failed.stderr.strip().splitlines()[-1] == (
        f"error: Model {name}: could not write {model_dir / 'aliases.json'}: [Errno 13] Permission denied"
    )
    assert _model_state(workspace.registry, name) == before
    workspace.cli("promote", name, "1", "--alias", "candidate", check=True)
    assert workspace.registry.aliases(name)["candidate"] == 1


def test_a_failed_first_train_leaves_no_empty_model_behind(small_copy, tmp_path):
    """A full disk during a new model's first version: the error names where, and `scorehouse models` lists nothing
    new."""
    spec = yaml.safe_load(_new_mortgage_spec(tmp_path).read_text())
    spec["name"] = "mortgage_first"
    path = tmp_path / "mortgage_first.yml"
    path.write_text(yaml.safe_dump(spec))
    failed = small_copy.cli("train", str(path), preexec_fn=_limit_file_size)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr
    folder = small_copy.registry_path / "mortgage_first"
    assert failed.stderr.strip().splitlines()[-1] == (
        f"error: Model mortgage_first: could not write version to {folder / 'versions' / '1'}: "
        f"[Errno {errno.EFBIG}] {os.strerror(errno.EFBIG)}"
    )
    assert not folder.exists()
    assert small_copy.registry.models() == ["mortgage_deny", "mortgage_logit"]
