"""A stranger's project: a new dbt project (`dbt init`), its own CSV with yes/no and TRUE/FALSE columns,
and the README's guide "Use scorehouse in your dbt project" (then docs/pages/after-deployment.md) followed
literally — its commands run and its files written as the guide shows them. If the guide changes, this test
follows the new text."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from helpers import PACKAGE, PROJECT, ROOT, sklearn_answers

pytestmark = pytest.mark.dbt  # real dbt runs in new projects
BIN = Path(sys.executable).parent
GUIDE = ROOT / "README.md", "## Use scorehouse in your dbt project"
AFTER_DEPLOYMENT = ROOT / "docs" / "pages" / "after-deployment.md", "# After deployment"


def guide_blocks(section: tuple[Path, str] = GUIDE) -> list[tuple[str, str | None, str]]:
    """The code blocks of a section (a file and its title), in order: (language, file name or None, text)."""
    path, title = section
    guide = path.read_text().split(title + "\n", 1)[1]
    if title.startswith("## "):  # a section of a page: up to the next one (a page's title: the whole page)
        guide = guide.split("\n## ", 1)[0]
    return [
        (lang, name.strip() or None, text)
        for lang, name, text in re.findall(r"```(\w+)([^\n]*)\n(.*?)```", guide, re.S)
    ]


def write_applications(seeds: Path) -> pd.DataFrame:
    """The project's own data: mortgage applications with yes/no flags, a TRUE/FALSE flag and a TRUE/FALSE outcome."""
    with duckdb.connect() as con:
        frame = con.sql(f"""
            select cast(column00 as integer) as application_id, dir, hir, lvr, ccs, mcs, uria, pbcr, dmi, self,
                   single, case comdominiom when '1' then 'TRUE' when '0' then 'FALSE' end as condominium,
                   case deny when 'yes' then 'TRUE' when 'no' then 'FALSE' end as denied
            from read_csv('{PROJECT / "data" / "hmda_boston.csv"}', all_varchar = true, header = true,
                          nullstr = 'NA')
            where deny is not null order by 1""").to_df()
    seeds.mkdir(exist_ok=True)
    frame.to_csv(seeds / "applications.csv", index=False)
    return frame


def run(command: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """One line of the guide, as a user types it in the project folder (the environment's dbt and scorehouse)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREHOUSE_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", DBT_SEND_ANONYMOUS_USAGE_STATS="False", DO_NOT_TRACK="1")
    result = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"{command}\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
    return result


def follow_guide(
    project: Path, packages: str | None = None, section: tuple[Path, str] = GUIDE
) -> dict[str, subprocess.CompletedProcess]:
    """Every command and file of a section, in order; `packages` replaces packages.yml before `dbt deps`."""
    ran = {}
    for lang, name, text in guide_blocks(section):
        if name:
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).write_text(text)
        elif lang == "sh":
            for line in text.strip().splitlines():
                if line.startswith("pip install"):
                    continue  # scorehouse is installed in this environment already (test_packaging builds the wheel)
                if line == "dbt deps" and packages:
                    (project / "packages.yml").write_text(packages)
                ran[line] = run(line, project)
    return ran


@pytest.mark.parametrize("installed_by", ["local", "git"])
def test_a_new_dbt_project_follows_the_guide(tmp_path, installed_by):
    run("dbt init loans --skip-profile-setup", tmp_path)
    project = tmp_path / "loans"
    shutil.rmtree(project / "models" / "example")  # dbt's starter models, one with a failing test by design
    applications = write_applications(project / "seeds")
    packages = None
    if installed_by == "git":
        clone = tmp_path / "scorehouse_clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        packages = f'packages:\n  - git: "file://{clone}"\n    subdirectory: dbt_project\n'
    ran = follow_guide(project, packages)

    # init wired it, each time saying what to run next: the plugin lines as the guide shows them, the package,
    # scorehouse.yml
    assert ran["scorehouse init"].stdout.strip().splitlines()[-1] == "next: dbt deps"
    assert (
        ran["scorehouse init --from applications --target denied --name loan_denial"].stdout.strip().splitlines()[-1]
        == "next: review training/loan_denial.yml, then `scorehouse train training/loan_denial.yml --alias prod`"
    )
    shown = next(text for lang, name, text in guide_blocks() if lang == "yaml" and not name)
    profiles = yaml.safe_load((project / "profiles.yml").read_text())
    assert profiles["loans"]["outputs"]["dev"]["plugins"] == yaml.safe_load(shown)["plugins"]
    assert (project / "dbt_packages" / "scorehouse" / "macros" / "predict.sql").exists()
    assert yaml.safe_load((project / "scorehouse.yml").read_text())["registry"] == "registry"

    # the booleans trained as categories, and none of the demo's nodes came along with the package
    spec = yaml.safe_load((project / "training" / "loan_denial.yml").read_text())
    assert spec["task"] == "binary" and "application_id" not in str(spec["features"])
    assert {"pbcr", "condominium"} <= set(spec["features"]["categorical"])
    listed = run("dbt ls", project).stdout
    assert "scored_applications" in listed
    assert not re.search(r"mart_mortgage_risk|features_mortgage|scorehouse_demo|stg_diamonds", listed)

    # rows in == rows out, scores equal scikit-learn's
    warehouse = project / "warehouse" / "loans.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        types = dict(
            con.sql(
                "select column_name, data_type from information_schema.columns where table_name = 'applications'"
            ).fetchall()
        )
        scored = con.sql("select * from scored_applications order by application_id").to_df()
        rows = con.sql("select * from applications order by application_id").to_df()
        history = con.sql("select * from drift_history where model_ref = 'loan_denial'").to_df()
    # as dbt seeds them
    assert (types["pbcr"], types["condominium"], types["denied"]) == ("VARCHAR", "BOOLEAN", "BOOLEAN")
    assert len(scored) == len(rows) == len(applications)
    assert set(scored.model_version) == {1} and set(scored.model_name) == {"loan_denial"}
    from scorehouse.registration.spec import load_spec
    from scorehouse.registration.training import read_source, train
    from scorehouse.registry import Registry

    registry = Registry(project / "registry")
    manifest = registry.card("loan_denial", 1).raw
    candidate = train(
        load_spec(project / "training" / "loan_denial.yml"),
        read_source(load_spec(project / "training" / "loan_denial.yml"), warehouse),
    )
    expected = sklearn_answers(candidate, rows)["score"]
    assert abs(scored.denial_probability.to_numpy() - expected).max() <= manifest["parity"]["tolerance"]
    assert len(history) > 0 and set(history.input_relation) == {"applications"}

    # the serving file holds the published table
    with duckdb.connect(str(project / "warehouse" / "loans_serving.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from scored_applications").fetchall() == [(len(rows),)]
        assert con.sql("select mart from scorehouse_publication").fetchall() == [("scored_applications",)]

    # a broken batch: the guard stops the scored table, names the features, and the table keeps its rows
    broken = applications.assign(
        dir=applications.dir.astype(float) * 100, lvr=applications.lvr.where(applications.application_id % 10 >= 3)
    )
    broken.to_csv(project / "seeds" / "applications.csv", index=False)
    result = run("dbt build", project, check=False)
    assert result.returncode == 1
    named = set(re.findall(r"error: model loan_denial v1, feature (\w+):", result.stdout))
    assert {"dir", "lvr"} <= named, result.stdout[-3000:]
    assert re.search(r"SKIP relation \S+scored_applications", result.stdout)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        again = con.sql("select * from scored_applications order by application_id").to_df()
    pd.testing.assert_frame_equal(again, scored)


def test_scorehouse_init_wires_a_fresh_project_and_a_second_run_changes_nothing(tmp_path):
    run("dbt init shop --skip-profile-setup", tmp_path)
    project = tmp_path / "shop"
    (project / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: shop.duckdb\n"
    )
    first = run("scorehouse init", project)
    assert "packages.yml: added the scorehouse dbt package" in first.stdout
    assert "added the scorehouse plugin to output(s) dev" in first.stdout
    files = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    second = run("scorehouse init", project)
    assert second.stdout.strip().endswith("nothing to do: the project is wired"), second.stdout
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == files
    packages = yaml.safe_load((project / "packages.yml").read_text())["packages"]
    assert packages == [{"local": str(PACKAGE.resolve())}]
    profile = yaml.safe_load((project / "profiles.yml").read_text())["shop"]["outputs"]["dev"]
    assert profile["plugins"] == [
        {"module": "scorehouse.dbt_plugin", "alias": "scorehouse", "config": {"registry": "registry"}}
    ]
    assert yaml.safe_load((project / "scorehouse.yml").read_text()) == {
        "registry": "registry",
        "warehouse": "shop.duckdb",
    }
    # a profile outside the project: the lines to paste are printed, nothing else is touched
    elsewhere = tmp_path / "elsewhere"
    run("dbt init elsewhere --skip-profile-setup", tmp_path)
    printed = run("scorehouse init", elsewhere).stdout
    assert "Add to each DuckDB output of the profile 'elsewhere'" in printed and "scorehouse.dbt_plugin" in printed
    assert not (elsewhere / "profiles.yml").exists()


def test_init_outside_a_dbt_project_says_where_it_looked(tmp_path):
    result = run("scorehouse init", tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: No dbt_project.yml in {tmp_path} or above; run `scorehouse init` "
        "in a dbt project or pass --project-dir"
    )


def test_dbt_from_another_folder_finds_the_projects_files(tmp_path):
    """Paths follow the project, not the current folder; a registry without the model names its absolute path."""
    run("dbt init here --skip-profile-setup", tmp_path)
    project = tmp_path / "here"
    (project / "profiles.yml").write_text(
        "here:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: warehouse/here.duckdb\n"
    )
    run("scorehouse init", project)
    (project / "models" / "scored.sql").write_text(
        "{{ config(materialized='table') }}\nselect {{ scorehouse.model_version('nothing_yet') }} as v"
    )
    run("dbt deps", project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run(f"dbt build --project-dir {project} --profiles-dir {project} --select scored", elsewhere, check=False)
    assert result.returncode == 1
    assert f"Model 'nothing_yet' not found in registry {project / 'registry'}; known models: (none)" in result.stdout
    assert (project / "warehouse" / "here.duckdb").exists() and not list(elsewhere.iterdir())


def test_after_deployment_follows_the_docs(tmp_path):
    """The section "After deployment", typed in the guide's project: quality, a challenger at 10%, the
    comparison and its gate, monitor, history, promotion and gc."""
    run("dbt init loans --skip-profile-setup", tmp_path)
    project = tmp_path / "loans"
    shutil.rmtree(project / "models" / "example")
    write_applications(project / "seeds")
    follow_guide(project)
    ran = follow_guide(project, section=AFTER_DEPLOYMENT)

    from scorehouse.sql import BUCKETS, bucket

    with duckdb.connect(str(project / "warehouse" / "loans.duckdb"), read_only=True) as con:
        scored = con.sql("select application_id, model_version from scored_applications").to_df()
        quality = con.sql("select * from quality_loan_denial").to_df()
        comparison = con.sql("select * from challenger_comparison").to_df().set_index("metric")
        history = con.sql("select distinct quality_relation from quality_history").fetchall()
    # the rollout's version scored exactly the keys under the share, and every row says which version scored it
    routed = scored.application_id.map(bucket) < BUCKETS // 10
    assert (scored.model_version == routed.map({True: 2, False: 1})).all() and 0.08 < routed.mean() < 0.12
    assert set(quality.model_version) == {1, 2} and history == [("quality_loan_denial",)]
    auc = quality[quality.metric == "auc"].set_index("model_version")
    assert (auc.value > 0.5).all() and auc.holdout_value.notna().all() and (auc.label_coverage == 1).all()
    assert (comparison.loc["auc", "champion_version"], comparison.loc["auc", "challenger_version"]) == (1, 2)
    assert 0.9 < comparison.loc["agreement", "value"] <= 1
    assert ran["scorehouse monitor --rollback-on-error"].stdout.strip() == "1 quality gate ran, none errored"
    shown = ran["scorehouse history loan_denial"].stdout
    assert "rollout 10%" in shown and "gray release of the challenger" in shown
    # the promotion ended the rollout, and gc keeps both versions: 2 aliased, 1 for the reasons it prints
    from scorehouse.registry import Registry

    registry = Registry(project / "registry")
    assert registry.aliases("loan_denial") == {"prod": 2, "candidate": 2}
    assert [e["action"] for e in registry.history("loan_denial")][-2:] == ["promote", "rollout_end"]
    assert ran["scorehouse gc loan_denial --keep-days 7 --dry-run"].stdout.splitlines() == [
        "loan_denial: nothing to remove",
        "loan_denial: kept version 1 (prod rolls back to it; prod pointed at it within 7 days; "
        "recorded by the latest build in scoring_runs; served by scored_applications)",
    ]
