"""The attacker's view: nobody reaches past the registry, no SQL is spliced, and edits to a signed
registry do not load. Each test is one way in that was open, shown closed."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import duckdb
import numpy as np
import pytest
from numpy.testing import assert_allclose

import scorehouse.duckdb as engine
from scorehouse.errors import IntegrityError, ScorehouseError, SpecError
from scorehouse.names import InvalidReference, ModelRef
from scorehouse.registration.spec import load_spec, parse_spec
from scorehouse.registration.training import read_source, train_and_register
from scorehouse.registry import Registry
from scorehouse.scoring import Session
from scorehouse.signing import generate_keys, load_signing_key
from scorehouse.surface import declared

from helpers import ROOT

BAD_REFERENCES = [
    "/abs/path/mortgage_deny@1",
    "../../x/mortgage_deny@1",
    "mortgage_deny@../1",
    "mortgage_deny/..",
    "mortgage_deny\x00@1",
    "mortgage_deny@\u00b2",
    "mortgage_deny@\u0661",
    "m" * 5000,
    "Mortgage_deny",
    "mortgage_deny@prod\n",
    "mortgage_deny@0",
    "mortgage_deny@1@2",
    "",
]


def rehash(folder, artifacts=()):
    """What a writer of the registry can do without the signing key: rewrite files and every sha256 beside them."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in artifacts:
        data = (folder / name).read_bytes()
        manifest["artifacts"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (folder / "manifest.json").write_bytes(body)
    (folder / "manifest.sha256").write_text(hashlib.sha256(body).hexdigest() + "\n")


def edit_manifest(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    rehash(folder)


def invert_scores(folder):
    """What a writer without the signing key can do to a binary version: every score becomes 1 - score, hashes fixed."""

    def invert(manifest):  # and drop the explanation, whose SQL's check would catch the flipped sample
        manifest.update(positive_class="false")
        manifest["artifacts"].pop("explain.json", None)

    edit_manifest(folder, invert)
    sample = json.loads((folder / "sample.json").read_text())
    sample["expected"]["score"] = [1 - p for p in sample["expected"]["score"]]
    (folder / "sample.json").write_text(json.dumps(sample))
    rehash(folder, ["sample.json"])


@pytest.mark.parametrize("ref", BAD_REFERENCES)
def test_a_reference_outside_the_grammar_is_refused_before_any_lookup(ref):
    with pytest.raises(InvalidReference) as error:
        ModelRef.parse(ref)
    message = str(error.value)
    assert "\n" not in message and "\x00" not in message and len(message) < 500
    assert "a model name is lower-case ASCII letters" in message


def test_registry_methods_refuse_names_that_would_leave_the_registry(small_copy):
    registry = small_copy.registry
    outside = small_copy.root / "outside"
    shutil.copytree(small_copy.registry_path / "mortgage_deny", outside / "mortgage_deny")
    before = (outside / "mortgage_deny" / "aliases.json").read_bytes()
    for call in (
        lambda: registry.card(str(outside / "mortgage_deny"), 1),
        lambda: registry.versions("../outside"),
        lambda: registry.promote("../outside/mortgage_deny", 1),
        lambda: registry.load("mortgage_deny", "1/../1"),
        lambda: registry.resolve(f"{outside}/mortgage_deny@1"),
        lambda: registry.rollback("/tmp/x"),
    ):
        with pytest.raises(InvalidReference):
            call()
    assert (outside / "mortgage_deny" / "aliases.json").read_bytes() == before


def test_cli_refuses_paths_as_references_in_one_line(small_copy):
    outside = small_copy.root / "outside"
    shutil.copytree(small_copy.registry_path / "mortgage_deny", outside / "mortgage_deny")
    before = (outside / "mortgage_deny" / "aliases.json").read_bytes()
    for args in (
        ["show", f"../{outside.name}/mortgage_deny@1"],
        ["promote", str(outside / "mortgage_deny"), "1"],
        ["show", "m" * 5000],
        ["verify", "../outside"],
        ["rollback", "/tmp/m"],
    ):
        result = small_copy.cli(*args)
        assert result.returncode == 1, args
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr and "is not valid" in result.stderr
    assert (outside / "mortgage_deny" / "aliases.json").read_bytes() == before


def test_an_analyst_session_cannot_read_write_or_rename_a_file_through_scorehouse(small_copy, tmp_path):
    """`scorehouse sql`: read-only, external access off; scorehouse's functions reach the registry and nothing else."""
    outside = tmp_path / "outside"
    shutil.copytree(small_copy.registry_path / "mortgage_deny", outside / "mortgage_deny")
    target, secret = tmp_path / "written.csv", tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    aliases = small_copy.registry_path / "mortgage_deny" / "aliases.json"
    before = aliases.read_bytes()
    attempts = {
        f"select predict('{outside}/mortgage_deny@1', t) from features_mortgage t": "is not valid",
        "select predict('../outside/mortgage_deny@1', t) from features_mortgage t": "is not valid",
        f"select * from scorehouse_bins('{outside}/mortgage_deny@1')": "is not valid",
        f"select scorehouse_model_version('{outside}/mortgage_deny')": "is not valid",
        f"select scorehouse_score_sql('{outside}/mortgage_deny', 't', '', '', '', 'p', '')": "is not valid",
        f"select * from score('{outside}/mortgage_deny', 'features_mortgage')": "is not valid",
        f"select * from read_csv('{secret}')": "file system operations are disabled",
        f"copy (select 1) to '{target}'": "",
        f"attach '{tmp_path / 'x.duckdb'}' as x": "",
        f"select scorehouse_publish_file('{aliases}', '{target}')": "does not exist",
        "install httpfs": "",
    }
    for query, expected in attempts.items():
        result = small_copy.cli("sql", query)
        assert result.returncode == 1, (query, result.stdout)
        assert expected in result.stderr and "Traceback" not in result.stderr, (query, result.stderr)
    assert not target.exists() and not (tmp_path / "x.duckdb").exists() and aliases.read_bytes() == before
    functions = small_copy.cli(
        "sql",
        "select distinct function_name from duckdb_functions() where function_name like '%scorehouse%' order by 1",
        "--format",
        "json",
        check=True,
    )
    names = {row["function_name"] for row in json.loads(functions.stdout)}
    assert names == {n for n in declared("duckdb", ["mortgage_deny", "mortgage_logit"]) if "scorehouse" in n}


LOGIT_SCORES = (
    "select predict_mortgage_logit(s) as sql, scorehouse_onnx_mortgage_logit(s) as onnx, lvr from "
    "(select struct_pack(dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, self, single, condominium) as s, lvr "
    "from features_mortgage) order by all"
)


def test_stored_sql_never_runs(small_copy, tmp_path):
    """A registry writer puts a COPY into a compiled.json (what releases before 0.3.0 stored) and fixes every
    hash: nothing reads it. predict()'s SQL is written from explain.json's numbers and the model's names."""
    folder = small_copy.registry_path / "mortgage_logit" / "versions" / "1"
    target = tmp_path / "pwned.csv"
    payload = f"0) END; COPY (SELECT 42) TO '{target}'; SELECT (1"
    (folder / "compiled.json").write_text(
        json.dumps({"expressions": {"duckdb": {"score": payload}, "spark": {"score": payload}}})
    )
    rehash(folder, ["compiled.json"])
    edit_manifest(
        folder,
        lambda manifest: manifest.update(compiled={"outputs": ["score"], "preferred": {"duckdb": True, "spark": True}}),
    )
    with engine.connect(small_copy.warehouse, small_copy.registry_path, read_only=True) as con:
        both = con.sql(LOGIT_SCORES).fetchnumpy()
        kinds = con.sql("select function_type from duckdb_functions() where function_name = 'predict_mortgage_logit'")
        assert {k for (k,) in kinds.fetchall()} == {"macro", "scalar"}  # the macro over the SQL written here
    assert len(both["sql"]) == 2381 and np.abs(both["sql"] - both["onnx"]).max() <= 1e-6
    expression = engine.predict_sql(Session(small_copy.registry_path), "mortgage_logit", "f", "score", "sql")
    assert "COPY" not in expression and "pwned" not in expression
    assert small_copy.cli("verify", "mortgage_logit").returncode == 0
    assert not target.exists()


@pytest.mark.parametrize(
    "change, read",
    [
        (lambda e: e["numeric"][0].update(feature="black"), "'black' (numeric)"),
        (lambda e: e["categorical"][0].update(feature="lvr"), "'lvr' (categorical)"),
        (lambda e: e["numeric"][0].update(feature='lvr" + 1 + "x'), "'lvr\" + 1 + \"x' (numeric)"),
    ],
)
def test_an_explanation_reading_another_column_is_refused(small_copy, change, read):
    """explain.json, rewritten with every hash fixed to read a column that is not the feature it stood for
    (another column of the table, a feature of the other kind, a name made to break out of its quotes): the
    version is refused in one line; the other models keep scoring."""
    folder = small_copy.registry_path / "mortgage_logit" / "versions" / "1"
    explanation = json.loads((folder / "explain.json").read_text())
    change(explanation)
    (folder / "explain.json").write_text(json.dumps(explanation))
    rehash(folder, ["explain.json"])
    message = (
        f"Model mortgage_logit v1: explain.json reads {read}, not one of the version's features as its "
        "manifest types them; refusing to load it"
    )
    with pytest.raises(IntegrityError) as error:
        engine.predict_sql(Session(small_copy.registry_path), "mortgage_logit", "f", "score", "sql")
    assert str(error.value) == message
    verify = small_copy.cli("verify", "mortgage_logit")
    assert verify.returncode == 1 and message in verify.stdout
    with engine.connect(small_copy.warehouse, small_copy.registry_path, read_only=True) as con:
        assert len(con.sql("select predict('mortgage_deny', t) from features_mortgage t").fetchall()) == 2381


@pytest.mark.parametrize(
    "source, message",
    [
        ({"query": "select * from features_mortgage; copy (select 1) to '{target}'"}, "one SELECT statement, found 2"),
        ({"query": "copy (select 1) to '{target}'"}, "one SELECT statement, found 1 statement(s): copy"),
        ({"table": "features_mortgage", "where": "true; copy (select 1) to '{target}'"}, "one SELECT statement"),
        ({"table": "features_mortgage; drop table x"}, "is not a table name"),
        ({"query": "select * from read_csv('{secret}')"}, "file system operations are disabled"),
        (
            {"table": "features_mortgage", "where": "dir in (select length(content) from read_text('{secret}'))"},
            "file system operations are disabled",
        ),
    ],
)
def test_spec_sources_are_one_select_without_file_access(small, tmp_path, source, message):
    target, secret = tmp_path / "written.csv", tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    source = {k: v.format(target=target, secret=secret) for k, v in source.items()}
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec = parse_spec(
            {
                "name": "m",
                "task": "binary",
                "target": "is_denied",
                "source": source,
                "estimator": "logistic_regression",
                "features": {"numeric": ["dir"]},
            }
        )
        read_source(spec, small.warehouse)
    assert not target.exists()


def test_a_query_source_trains(small):
    spec = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "is_denied",
            "estimator": "logistic_regression",
            "source": {"query": "select * from features_mortgage where dir < 1", "where": "lvr > 0.5"},
            "features": {"numeric": ["dir", "lvr"]},
        }
    )
    table = read_source(spec, small.warehouse)
    expected = small.query("select count(*) as n from features_mortgage where dir < 1 and lvr > 0.5")["n"][0]
    assert table.num_rows == expected and table.column_names == ["dir", "lvr", "is_denied"]


def write_rows(path, kind):
    """A CSV a binary spec trains on: 60 rows of dir, lvr, the category `kind` and the target deny."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "dir,lvr,kind,deny\n"
        + "".join(f"{i % 7 / 10},{i % 5 / 4},{kind},{'yes' if i % 3 == 0 else 'no'}\n" for i in range(60))
    )


def project_spec(root, path, settings="registry: registry\n"):
    """What a spec author controls: a project (scorehouse.yml, data/rows.csv) and its spec training/m.yml,
    whose source is the file `path`. Beside the project: a secret the trainer can read."""
    write_rows(root / "secret" / "creds.csv", "s3cret-token")
    write_rows(root / "project" / "data" / "rows.csv", "public")
    (root / "project" / "scorehouse.yml").write_text(settings)
    spec = root / "project" / "training" / "m.yml"
    spec.parent.mkdir()
    spec.write_text(
        json.dumps(
            {
                "name": "m",
                "task": "binary",
                "target": "deny",
                "source": {"path": path},
                "estimator": "logistic_regression",
                "features": {"numeric": ["dir", "lvr"], "categorical": ["kind"]},
            }
        )
    )
    return load_spec(spec)


def registry_text(registry):
    return "".join(p.read_text(errors="replace") for p in registry.root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "given, target",
    [
        ("../../secret/creds.csv", "secret/creds.csv"),
        ("{root}/secret/creds.csv", "secret/creds.csv"),
        ("/etc/passwd", "/etc/passwd"),
        ("../data/creds.csv", "secret/creds.csv"),
        ("../data/exports/creds.csv", "secret/creds.csv"),
    ],
)
def test_a_spec_cannot_train_on_a_file_outside_its_project(tmp_path, given, target):
    """`..`, an absolute path, a symlinked file or folder inside the project pointing out: refused in one line
    naming the model, the path, where it led and the folder allowed, before anything is read or registered."""
    root = tmp_path.resolve()
    (root / "project" / "data").mkdir(parents=True)
    (root / "project" / "data" / "creds.csv").symlink_to(root / "secret" / "creds.csv")
    (root / "project" / "data" / "exports").symlink_to(root / "secret")
    spec = project_spec(root, given.format(root=root))
    registry = Registry(root / "project" / "registry")
    with pytest.raises(SpecError) as error:
        train_and_register(spec, registry)
    message = str(error.value)
    assert message == (
        f"Model m: source file {given.format(root=root)} resolves to {(root / target).resolve()}, "
        f"outside the folders a spec may read files from ({root / 'project'}); move the file into "
        f"the project, or add its folder to source_roots in {root / 'project' / 'scorehouse.yml'}"
    )
    assert registry.models() == [] and "s3cret" not in message and "root:" not in message


def test_a_spec_outside_any_project_reads_only_its_own_folder(tmp_path):
    root = tmp_path.resolve()
    write_rows(root / "secret" / "creds.csv", "s3cret-token")
    spec = parse_spec(
        {
            "name": "m",
            "task": "binary",
            "target": "deny",
            "source": {"path": "../secret/creds.csv"},
            "estimator": "logistic_regression",
            "features": {"numeric": ["dir"]},
        },
        base_dir=root / "specs",
    )
    with pytest.raises(
        SpecError,
        match=rf"outside the folders a spec may read files from \({root / 'specs'}\); .* "
        rf"source_roots in {root / 'specs' / 'scorehouse.yml'}$",
    ):
        read_source(spec)


def test_a_file_anywhere_in_the_project_trains(tmp_path):
    spec = project_spec(tmp_path, "../data/rows.csv")  # beside the spec's folder, inside the project
    registry = Registry(tmp_path / "project" / "registry")
    assert train_and_register(spec, registry) == (1, True)
    assert registry.card("m", 1).manifest.training.rows == 60


def test_source_roots_in_scorehouse_yml_let_a_spec_read_there_and_nowhere_else(tmp_path):
    spec = project_spec(tmp_path, "../../secret/creds.csv", settings="source_roots: [../secret, /data/exports]\n")
    registry = Registry(tmp_path / "registry")
    assert train_and_register(spec, registry) == (1, True)  # ../secret is taken from scorehouse.yml's folder
    spec.source.path = "/etc/passwd"
    with pytest.raises(
        SpecError,
        match=rf"\({tmp_path.resolve() / 'project'}, {tmp_path.resolve() / 'secret'}, "
        r"/data/exports\)",
    ):
        read_source(spec)


@pytest.mark.parametrize(
    "setting, found",
    [("/data/exports", "/data/exports"), ("[/data, 3]", "['/data', 3]"), ("{a: 1}", "{'a': 1}"), ("['']", "['']")],
)
def test_source_roots_of_the_wrong_type_are_refused_in_one_line(tmp_path, setting, found):
    spec = project_spec(tmp_path, "../data/rows.csv", settings=f"source_roots: {setting}\n")
    with pytest.raises(ScorehouseError) as error:
        read_source(spec)
    assert str(error.value) == (
        f"{tmp_path / 'project' / 'scorehouse.yml'}: source_roots must be a list of folders, "
        f"e.g. [/data/exports], found {found}"
    )


@pytest.mark.parametrize(
    "key, value, found",
    [
        ("path", "data/a\x00.csv", "data/a\\x00.csv"),
        ("path", 3, "3"),
        ("table", ["a"], "['a']"),
        ("where", {"a": 1}, "{'a': 1}"),
    ],
)
def test_a_source_that_is_not_text_is_refused_in_one_line(key, value, found):
    source = {"path": "rows.csv", key: value} if key == "where" else {key: value}
    with pytest.raises(SpecError) as error:
        parse_spec(
            {
                "name": "m",
                "task": "binary",
                "target": "deny",
                "source": source,
                "estimator": "logistic_regression",
                "features": {"numeric": ["dir"]},
            }
        )
    assert str(error.value) == f"spec: source.{key} must be text, found {found}"


def test_a_glob_in_a_source_path_reads_the_one_file_named(tmp_path):
    """DuckDB expands `*` in a file name: `l*nk` would also read `link`, a symlink out of the project."""
    (tmp_path / "project" / "data").mkdir(parents=True)
    (tmp_path / "project" / "data" / "link").symlink_to(tmp_path / "secret")
    write_rows(tmp_path / "project" / "data" / "l*nk" / "creds.csv", "public")
    spec = project_spec(tmp_path, "../data/l*nk/creds.csv")
    registry = Registry(tmp_path / "project" / "registry")
    assert train_and_register(spec, registry) == (1, True)
    assert registry.card("m", 1).manifest.training.rows == 60
    assert "public" in registry_text(registry) and "s3cret" not in registry_text(registry)


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(keys):
    assert oct(keys["private"].stat().st_mode & 0o777) == "0o600"
    assert keys["public"].read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(ScorehouseError, match="keys are never overwritten"):
        generate_keys(keys["private"].parent)


def test_a_signed_registry_refuses_edits_that_fix_every_hash(small, keys, tmp_path):
    """Rewriting positive_class plus manifest.sha256 inverts every score of an unsigned registry; signed, it does not
    load."""
    registry = Registry(tmp_path / "registry", signing_key=keys["private"])
    candidate = small.candidates["mortgage_deny"]
    version = registry.register(candidate.manifest, candidate.files)
    folder = registry.root / "mortgage_deny" / "versions" / str(version)
    assert json.loads((folder / "manifest.sig").read_text())["key_id"] == keys["key_id"]
    checked = Registry(registry.root, public_key=keys["public"])
    assert checked.verify("mortgage_deny", version) == []
    assert checked.card("mortgage_deny", version).manifest.positive_class == "true"

    invert_scores(folder)
    unsigned = Registry(registry.root)
    assert unsigned.verify("mortgage_deny", version) == []  # hashes alone see nothing wrong, and the scores flip:
    assert unsigned.load("mortgage_deny", version).positive_class == "false"
    with pytest.raises(
        IntegrityError,
        match=f"manifest.json changed after it was signed by the configured key {keys['key_id']}; refusing to load it",
    ):
        Registry(registry.root, public_key=keys["public"]).card("mortgage_deny", version)
    with pytest.raises(IntegrityError, match="not signed by the configured key"):
        Registry(registry.root, public_key=keys["other_public"]).load("mortgage_deny", version)


def test_a_configured_public_key_refuses_unsigned_versions_and_sign_adds_signatures(small_copy, keys):
    env = {"SCOREHOUSE_PUBLIC_KEY": str(keys["public"])}
    verify = small_copy.cli("verify")  # without a key, an unsigned registry verifies and says what that means
    assert verify.returncode == 0 and "unsigned; sha256 files catch corruption, not edits" in verify.stderr
    from helpers import run_cli

    refused = run_cli(
        "sql", "select predict('mortgage_deny', t) from features_mortgage t limit 1", env={**small_copy.env, **env}
    )
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        "error: Model mortgage_deny: aliases.json is not signed; its aliases are refused (pinned references "
        "mortgage_deny@<version> still resolve); once the aliases are checked (scorehouse history mortgage_deny), "
        "the key holder signs them: scorehouse sign mortgage_deny --aliases"
    )
    pinned = run_cli(
        "sql", "select predict('mortgage_deny@1', t) from features_mortgage t limit 1", env={**small_copy.env, **env}
    )
    unsigned = (
        f"is not signed, and this registry requires signatures (public key {keys['key_id']}); refusing to load it"
    )
    assert pinned.stderr.splitlines()[-1] == f"error: Model mortgage_deny v1 {unsigned}"
    holder = {**small_copy.env, **env, "SCOREHOUSE_SIGNING_KEY": str(keys["private"])}
    signed = run_cli("sign", "--all-unsigned", env=holder, check=True)  # with the public key configured
    assert signed.stdout.splitlines()[0] == "to sign: mortgage_deny v1, mortgage_logit v1"
    assert "mortgage_deny v1: signed (" in signed.stdout and "mortgage_logit v1: signed (" in signed.stdout
    for model in ("mortgage_deny", "mortgage_logit"):
        assert run_cli("sign", model, "--aliases", env=holder, check=True).stdout == (
            f"{model}: aliases signed (prod -> 1; withdrawn: none)\n"
        )
    scored = run_cli(
        "sql",
        "select predict('mortgage_deny', t) from features_mortgage t limit 1",
        env={**small_copy.env, **env},
        check=True,
    )
    assert "predict" in scored.stdout
    verify = run_cli("verify", env={**small_copy.env, **env}, check=True)
    assert f"signed; every load checks the signature of key {keys['key_id']}" in verify.stderr
    assert keys["key_id"] in verify.stdout


def test_a_version_copied_into_another_folder_does_not_load(small_copy):
    versions = small_copy.registry_path / "mortgage_deny" / "versions"
    shutil.copytree(small_copy.registry_path / "mortgage_logit" / "versions" / "1", versions / "2")
    with pytest.raises(IntegrityError, match="describes mortgage_logit v1; refusing to load it"):
        small_copy.registry.card("mortgage_deny", 2)
    assert small_copy.registry.card("mortgage_deny", 1).version == 1


SCORES = "select predict('mortgage_deny', t) from features_mortgage t order by application_id limit 5"


def sign_every_version(registry, private_key):
    """What `scorehouse sign --all-unsigned` and `scorehouse sign MODEL --aliases` do."""
    key = load_signing_key(private_key)
    for name in registry.models():
        for version in registry.versions(name):
            registry.sign(name, version, key)
        registry.sign_aliases(name, key)


def refusal(warehouse, serving, asked):
    return (
        f"DuckDB database {warehouse}: its scorehouse functions serve {serving} to another connection of this "
        f"process, and this one asks for {asked}; DuckDB shares them among the connections to one file: close "
        "the other connections to it first, or use another database file or ':memory:'"
    )


def test_an_unsigned_connection_cannot_make_a_signed_one_on_the_same_file_score_an_edited_version(small_copy, keys):
    sign_every_version(small_copy.registry, keys["private"])
    invert_scores(small_copy.registry_path / "mortgage_deny" / "versions" / "1")
    signed = engine.connect(small_copy.warehouse, Registry(small_copy.registry_path, public_key=keys["public"]))
    not_signed = (
        f"Model mortgage_deny v1: manifest.json changed after it was signed by the configured key {keys['key_id']}"
    )
    with pytest.raises(duckdb.Error, match=not_signed):
        signed.sql(SCORES).fetchall()
    logit = signed.sql(SCORES.replace("mortgage_deny", "mortgage_logit")).fetchall()
    with pytest.raises(ScorehouseError) as refused:  # the attacker's step: the same file, without the key
        engine.connect(small_copy.warehouse, Registry(small_copy.registry_path))
    root = small_copy.registry_path.resolve()
    assert str(refused.value) == refusal(
        small_copy.warehouse, f"registry {root} (public key {keys['key_id']})", f"registry {root} (unsigned)"
    )
    with pytest.raises(duckdb.Error, match=not_signed):  # the first connection still refuses the edited version
        signed.sql(SCORES).fetchall()
    assert signed.sql(SCORES.replace("mortgage_deny", "mortgage_logit")).fetchall() == logit
    signed.close()


def test_a_connection_with_another_registry_cannot_change_what_the_first_scores(small_copy, tmp_path):
    other = tmp_path / "other_registry"
    shutil.copytree(small_copy.registry_path, other)
    invert_scores(other / "mortgage_deny" / "versions" / "1")
    first = engine.connect(small_copy.warehouse, small_copy.registry_path)
    scores = np.array(first.sql(SCORES).fetchall())[:, 0]
    same = engine.connect(small_copy.warehouse, small_copy.registry_path)  # the same registry shares the functions
    assert np.array(same.sql(SCORES).fetchall())[:, 0].tolist() == scores.tolist()
    with pytest.raises(ScorehouseError) as refused:
        engine.connect(small_copy.warehouse, other)
    assert str(refused.value) == refusal(
        small_copy.warehouse,
        f"registry {small_copy.registry_path.resolve()} (unsigned)",
        f"registry {other.resolve()} (unsigned)",
    )
    assert np.array(first.sql(SCORES).fetchall())[:, 0].tolist() == scores.tolist()
    first.close()
    same.close()
    fresh = engine.connect(small_copy.warehouse, other)  # every connection closed: the file starts afresh
    assert_allclose(np.array(fresh.sql(SCORES).fetchall())[:, 0], 1 - scores, atol=1e-6, rtol=0)
    fresh.close()


CLOSE_THE_FIRST = """
import sys
import scorehouse.duckdb as engine

warehouse, registry, query = sys.argv[1:]
first, second = engine.connect(warehouse, registry), engine.connect(warehouse, registry)
first.close()
print(second.sql(query).fetchall())
"""


def test_closing_the_connection_that_registered_the_functions_leaves_another_scoring(small_copy):
    """The functions' Python code outlives the connection that registered them (here DuckDB crashed)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", CLOSE_THE_FIRST, str(small_copy.warehouse), str(small_copy.registry_path), SCORES],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    with engine.connect(small_copy.warehouse, small_copy.registry_path) as con:
        assert run.stdout.strip() == str(con.sql(SCORES).fetchall())


def test_a_relation_alias_made_to_inject_sql_is_quoted(small, tmp_path):
    """predict()'s SQL quotes the relation alias and every feature name it writes."""
    from scorehouse.sql import DUCKDB

    target = tmp_path / "pwned.csv"
    evil = f"x\" || 1); copy (select 1) to '{target}'; select (\""
    scorer = Session(small.registry_path)
    with engine.connect(":memory:", small.registry_path) as con:
        con.execute(f"attach {DUCKDB.literal(str(small.warehouse))} as w (read_only)")
        for method in ("sql", "onnx"):
            sql = engine.predict_sql(scorer, "mortgage_logit", evil, "score", method)
            scores = con.sql(f"select {sql} as p from w.features_mortgage as {DUCKDB.identifier(evil)}").fetchnumpy()[
                "p"
            ]
            assert len(scores) == 2381 and ((scores >= 0) & (scores <= 1)).all()
    assert not target.exists()


def test_an_explanation_of_another_shape_fails_its_model_in_one_line(small_copy):
    """explain.json rewritten without a field the SQL writer reads (every hash fixed): the model's references
    fail with one line naming it; the session and the other models are unaffected."""
    folder = small_copy.registry_path / "mortgage_logit" / "versions" / "1"
    explanation = json.loads((folder / "explain.json").read_text())
    del explanation["intercept"]
    (folder / "explain.json").write_text(json.dumps(explanation))
    rehash(folder, ["explain.json"])
    with pytest.raises(
        IntegrityError,
        match=r"^Model mortgage_logit v1: explain.json does not have the shape scorehouse writes "
        r"\(no 'intercept'\); refusing to load it$",
    ):
        engine.predict_sql(Session(small_copy.registry_path), "mortgage_logit", "f", "score")
    session = small_copy.cli("sql", "select count(predict('mortgage_deny', t)) as n from features_mortgage t")
    assert session.returncode == 0 and "2381" in session.stdout and "Traceback" not in session.stderr
