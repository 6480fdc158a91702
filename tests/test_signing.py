"""A signed registry, probed by a registry writer who lacks the key: each test is the attacker's steps
(copy, rehash, edit, sign, promote, put back) and what the key's checks make of them."""

import json
import os
import pwd
import shutil

import pytest

from scorehouse.errors import IntegrityError, ScorehouseError
from scorehouse.registry import Registry

from helpers import run_cli
from test_security import edit_manifest, rehash

MODEL = "mortgage_deny"


@pytest.fixture
def signed(small, keys, tmp_path):
    """A signed registry: three versions of the demo GBT registered by the key holder, prod on version 3."""
    registry = Registry(tmp_path / "registry", public_key=keys["public"], signing_key=keys["private"])
    candidate = small.candidates[MODEL]
    for day in (1, 2, 3):
        registry.register(
            {
                **candidate.manifest,
                "created_at": f"2026-01-0{day}T00:00:00+00:00",
                "description": f"version of day {day}",
            },
            candidate.files,
        )
    registry.promote(MODEL, 3)
    return registry


def env_of(registry, keys, signing=False) -> dict[str, str]:
    env = {"SCOREHOUSE_REGISTRY": str(registry.root), "SCOREHOUSE_PUBLIC_KEY": str(keys["public"])}
    return {**env, "SCOREHOUSE_SIGNING_KEY": str(keys["private"])} if signing else env


def versions_folder(registry):
    return registry.root / MODEL / "versions"


def forge_copy(registry, source: int, target: int, drop=()):
    """Copy a version under a new number, invert its positive class and its sample's scores, rehash."""
    folder = versions_folder(registry) / str(target)
    shutil.copytree(versions_folder(registry) / str(source), folder)
    (folder / "manifest.sig").unlink()
    for name in drop:
        (folder / name).unlink()

    def invert(manifest):
        manifest.update(version=target, positive_class="false")
        for name in drop:
            manifest["artifacts"].pop(name)

    edit_manifest(folder, invert)
    sample = json.loads((folder / "sample.json").read_text())
    sample["expected"]["score"] = [1 - p for p in sample["expected"]["score"]]
    (folder / "sample.json").write_text(json.dumps(sample))
    rehash(folder, ["sample.json"])
    return folder


def test_sign_refuses_a_copied_version_with_its_positive_class_inverted(signed, keys):
    """The copy reproduces its own (rewritten) sample with onnxruntime; the SQL written from the same
    explain.json, do not, and without explain.json the graph is still version 1's under another meaning."""
    folder = forge_copy(signed, 1, 4)
    assert (
        Registry(signed.root)
        .verify(MODEL, 4, signature=False)[0]
        .startswith(f"Model {MODEL} v4: the SQL written from explain.json gives sample scores that differ")
    )
    refused = run_cli("sign", MODEL, "4", env=env_of(signed, keys, signing=True))  # with the public key configured
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.splitlines() == [f"error: {Registry(signed.root).verify(MODEL, 4)[0]}; not signed"]
    assert not (folder / "manifest.sig").exists()

    bare = forge_copy(signed, 1, 5, drop=("explain.json",))
    assert Registry(signed.root).verify(MODEL, 5) == []  # every check of its own files passes
    refused = run_cli("sign", MODEL, "5", env=env_of(signed, keys, signing=True))
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"error: Model {MODEL} v5: model.onnx is the very graph of {MODEL} v1, but its manifest differs in "
        "positive_class; a registered version has a graph of its own; not signed (and 2 more problem(s): "
        f"scorehouse verify {MODEL})"
    ]
    assert not (bare / "manifest.sig").exists()
    with pytest.raises(IntegrityError, match="v5 is not signed"):
        signed.load(MODEL, 5)


def test_sign_signs_only_what_it_is_named_and_lists_all_unsigned_first(small_copy, keys):
    env = {
        **small_copy.env,
        "SCOREHOUSE_PUBLIC_KEY": str(keys["public"]),
        "SCOREHOUSE_SIGNING_KEY": str(keys["private"]),
    }
    usage = run_cli("sign", env=env)
    assert usage.returncode == 1 and usage.stderr == (
        "error: name what to sign: scorehouse sign MODEL VERSION, MODEL --aliases, or --all-unsigned [MODEL]\n"
    )
    one = run_cli("sign", "mortgage_logit", "1", env=env, check=True)
    assert one.stdout.startswith("mortgage_logit v1: signed (created ")
    assert "positive class 'true'" in one.stdout and "model.onnx " in one.stdout
    assert small_copy.registry.signature("mortgage_logit", 1) == keys["key_id"]
    assert small_copy.registry.signature(MODEL, 1) is None
    every = run_cli("sign", "--all-unsigned", env=env, check=True).stdout.splitlines()
    assert every[0] == f"to sign: {MODEL} v1" and every[1].startswith(f"{MODEL} v1: signed (created ")
    again = run_cli("sign", "mortgage_logit", "1", env=env, check=True)
    assert again.stdout.startswith("mortgage_logit v1: signed already by this key")
    other = run_cli("sign", MODEL, "1", env={**env, "SCOREHOUSE_SIGNING_KEY": str(keys["other_private"])})
    assert other.returncode == 1 and other.stderr == (
        f"error: The signing key ({keys['other_key_id']}) is not the pair of the configured public key "
        f"({keys['key_id']}); nothing was signed or moved\n"
    )


def test_a_writer_without_the_key_cannot_move_an_alias_of_a_signed_registry(signed, keys):
    aliases = signed.root / MODEL / "aliases.json"
    state = json.loads(aliases.read_text())
    assert state["prod"]["version"] == 3 and state["$signature"]["key_id"] == keys["key_id"]
    state["prod"] = {"version": 1, "history": [1]}  # an older signed version, signature kept
    aliases.write_text(json.dumps(state))
    with pytest.raises(
        IntegrityError,
        match=f"aliases.json changed after it was signed by the configured key "
        f"{keys['key_id']}; its aliases are refused",
    ):
        signed.resolve(MODEL)
    assert signed.resolve(f"{MODEL}@2") == (MODEL, 2)  # pinned references still resolve
    unsigned_view = Registry(signed.root)  # the writer's own view, with no key configured, still sees it unsigned
    assert unsigned_view.resolve(MODEL) == (MODEL, 1)

    del state["$signature"]
    aliases.write_text(json.dumps(state))
    with pytest.raises(IntegrityError, match="aliases.json is not signed; its aliases are refused"):
        signed.resolve(MODEL)
    refused = run_cli("promote", MODEL, "2", env=env_of(signed, keys))  # no signing key
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1].startswith(f"error: Model {MODEL}: aliases.json is not signed")
    assert json.loads(aliases.read_text()) == state  # not set aside, not replaced

    resigned = run_cli("sign", MODEL, "--aliases", env=env_of(signed, keys, signing=True), check=True)
    assert resigned.stdout == f"{MODEL}: aliases signed (prod -> 1; withdrawn: none)\n"
    assert signed.resolve(MODEL) == (MODEL, 1)
    moved = run_cli("promote", MODEL, "3", env={"SCOREHOUSE_REGISTRY": str(signed.root)})  # no key at all
    assert moved.returncode == 1 and moved.stderr == (
        f"error: Model {MODEL}: its aliases are signed (key {keys['key_id']}); moving them needs the signing key: "
        "pass --signing-key or set SCOREHOUSE_SIGNING_KEY\n"
    )


def test_a_version_gc_removed_or_revoke_withdrew_never_loads_again(signed, keys, tmp_path):
    backup = tmp_path / "backup"
    shutil.copytree(versions_folder(signed), backup)
    env = env_of(signed, keys, signing=True)
    refused = run_cli("revoke", MODEL, "3", env=env)
    assert refused.returncode == 1 and "prod point(s) at version 3; move them first" in refused.stderr
    run_cli("revoke", MODEL, "2", "--reason", "trained on a broken export", env=env, check=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    withdrawn = f"version 2 was revoked on {signed.history(MODEL)[-1]['at'][:10]} by {user}: trained on a broken export"
    with pytest.raises(IntegrityError, match=withdrawn):
        signed.resolve(f"{MODEL}@2")
    promote = run_cli("promote", MODEL, "2", env=env)
    assert promote.returncode == 1 and withdrawn in promote.stderr

    gc = run_cli("gc", MODEL, "--keep-days", "0", env=env, check=True)
    assert f"{MODEL}: removed version(s) 1, 2" in gc.stdout  # a revoked version goes too, and stays revoked
    shutil.copytree(backup / "1", versions_folder(signed) / "1")  # put back, every file and signature intact
    with pytest.raises(IntegrityError, match="version 1 was removed by gc on"):
        signed.resolve(f"{MODEL}@1")
    (signed.root / MODEL / "aliases.json").unlink()  # and the state that records it
    with pytest.raises(IntegrityError, match="aliases.json is missing although the key holder moved its aliases"):
        signed.resolve(MODEL)
    with pytest.raises(IntegrityError, match="version 1 was removed by gc on"):  # the signed audit log still says so
        signed.resolve(f"{MODEL}@1")
    verify = run_cli("verify", MODEL, env=env_of(signed, keys))
    assert verify.returncode == 1 and f"{MODEL}  1        {keys['key_id']}  ok (removed by gc on" in verify.stdout
    with pytest.raises(IntegrityError, match=withdrawn):
        signed.resolve(f"{MODEL}@2")


def test_the_audit_log_is_a_signed_chain_so_forged_edited_or_dropped_lines_show(signed, keys):
    env = env_of(signed, keys, signing=True)
    run_cli("promote", MODEL, "2", "--reason", "second", env=env, check=True)
    run_cli("promote", MODEL, "1", "--alias", "candidate", env=env, check=True)
    audit = signed.root / MODEL / "audit.jsonl"
    assert run_cli("history", MODEL, env=env_of(signed, keys), check=True).stderr == ""
    assert run_cli("verify", MODEL, env=env_of(signed, keys), check=True).returncode == 0
    lines = audit.read_bytes().splitlines(keepends=True)
    assert len(lines) == 3 and all(b'"sig"' in line and b'"prev"' in line for line in lines)

    def warnings(content: bytes) -> list[str]:
        audit.write_bytes(content)
        shown = run_cli("history", MODEL, env=env_of(signed, keys))
        assert shown.returncode == 0
        assert run_cli("verify", MODEL, env=env_of(signed, keys)).returncode == 1
        return shown.stderr.splitlines()

    label = f"warning: Model {MODEL}: audit.jsonl"
    forged = json.dumps({"action": "promote", "alias": "prod", "from": 2, "to": 1, "user": "ops", "reason": "x"})
    assert warnings(b"".join(lines) + forged.encode() + b"\n") == [
        f"{label} line 4 names no line before it (written by hand?)",
        f"{label} line 4 is not signed (written without the key)",
    ]
    edited = lines[1].replace(b'"second"', b'"first"')
    assert warnings(lines[0] + edited + lines[2]) == [
        f"{label} line 2 changed after it was signed by the configured key {keys['key_id']}",
        f"{label} line 3 does not follow the line before it (a line was edited, removed or inserted)",
    ]
    assert warnings(lines[0] + lines[2]) == [
        f"{label} line 2 does not follow the line before it (a line was edited, removed or inserted)"
    ]
    assert warnings(lines[0] + lines[1]) == [
        f"{label} lacks the line of the last signed alias move (lines were removed or edited)"
    ]


def test_a_reason_with_a_newline_stays_on_its_line_and_the_user_is_the_os_account(small_copy):
    forged = "ok\nerror: Model mortgage_deny: gate failed (forged line)"
    moved = small_copy.cli("promote", MODEL, "1", "--alias", "candidate", "--reason", forged, check=True)
    shown = small_copy.cli("history", MODEL, check=True)
    lines = shown.stdout.splitlines()
    assert not any(line.startswith("error") for line in lines + moved.stderr.splitlines())
    assert "ok\\nerror: Model mortgage_deny: gate failed (forged line)" in lines[-1]
    logged = run_cli(
        "promote",
        MODEL,
        "1",
        "--alias",
        "other",
        "--reason",
        forged,
        env={**small_copy.env, "SCOREHOUSE_LOG_LEVEL": "debug", "USER": "mallory", "LOGNAME": "mallory"},
        check=True,
    )
    assert not any(line.startswith("error") for line in logged.stderr.splitlines()), logged.stderr
    assert "(ok\\nerror: Model mortgage_deny" in logged.stderr
    entry = small_copy.registry.history(MODEL)[-1]
    assert entry["reason"] == forged and entry["user"] == pwd.getpwuid(os.getuid()).pw_name != "mallory"


def test_a_gc_dry_run_only_reads(small_copy):
    """It takes no lock and writes nothing, so it works where the registry cannot be written."""
    model = small_copy.registry_path / MODEL
    before = sorted((p.name, p.stat().st_mtime_ns) for p in model.iterdir())
    (model / ".lock").unlink()
    dry = small_copy.cli("gc", MODEL, "--dry-run", check=True)
    assert dry.stdout.splitlines() == [f"{MODEL}: nothing to remove"]
    assert not (model / ".lock").exists()
    assert sorted((p.name, p.stat().st_mtime_ns) for p in model.iterdir()) == [b for b in before if b[0] != ".lock"]
    with pytest.raises(ScorehouseError, match="keep-days"):
        small_copy.registry.gc(MODEL, float("nan"), dry_run=True)
