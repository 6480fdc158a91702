"""`scorehouse init --from`: the starter spec it writes from a table's columns, and what it leaves out."""

import re
from pathlib import Path

import duckdb
import yaml

from scorehouse.project_init import WIDE_CATEGORIES, init_project


def _project(tmp_path: Path, applications: str) -> tuple[Path, Path]:
    """A dbt project folder and its warehouse holding `applications` (a SELECT) as a table."""
    project = tmp_path / "loans"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: loans\nprofile: loans\n")
    warehouse = project / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(f"create table applications as {applications}")
    return project, warehouse


def test_a_text_column_with_too_many_values_is_left_out_and_said_so(tmp_path):
    """A job-title-like column (one value per few rows) is not put in `categorical:`: the spec's comments
    and init's report name it with its count; a text column of few values and the numbers go in."""
    project, warehouse = _project(
        tmp_path,
        "select i as application_id, i * 0.5 as income, ['own', 'rent', 'other'][i % 3 + 1] as housing, "
        "'title ' || (i % 250) as job_title, i % 2 = 0 as denied from range(1000) t(i)",
    )
    report = init_project(project, "applications", "denied", "loan_denial", warehouse)
    spec_file = project / "training" / "loan_denial.yml"
    spec = yaml.safe_load(spec_file.read_text())
    assert spec["features"] == {"numeric": ["income"], "categorical": ["housing"]}
    comment = (
        f"# left out: job_title: 250 distinct values, more than {WIDE_CATEGORIES} (each would be a column "
        "of its own and slow training: group them into fewer in a model, then add it)"
    )
    assert comment in spec_file.read_text().splitlines()
    assert (
        f"wrote {spec_file} (binary; 1 numeric and 1 categorical features; left out job_title "
        "(250 distinct values): see its comments)"
    ) in report.changed


def test_training_on_a_wide_column_anyway_warns_naming_it(tmp_path, caplog):
    """Put back into the spec by hand, the wide column trains, with one warning naming it and its count."""
    import logging

    from scorehouse.registration.spec import load_spec
    from scorehouse.registration.training import train_and_register
    from scorehouse.registry import Registry

    project, warehouse = _project(
        tmp_path,
        "select i * 0.5 as income, 'title ' || (i % 250) as job_title, (i * 7919) % 3 = 0 as denied "
        "from range(1000) t(i)",
    )
    init_project(project, "applications", "denied", "loan_denial", warehouse)
    spec_file = project / "training" / "loan_denial.yml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["features"]["categorical"] = ["job_title"]
    spec["estimator"]["params"]["n_estimators"] = 5
    spec_file.write_text(yaml.safe_dump(spec))
    with caplog.at_level(logging.WARNING, logger="scorehouse"):
        assert train_and_register(load_spec(spec_file), Registry(tmp_path / "registry"), warehouse) == (1, True)
    wide = [r.getMessage() for r in caplog.records if getattr(r, "scorehouse_event", None) == "wide_categories"]
    assert len(wide) == 1 and re.fullmatch(
        r"loan_denial: categorical feature 'job_title' has 2[0-5]\d distinct values in training, more than "
        rf"{WIDE_CATEGORIES}: each is a column of its own, and the fit slows with them",
        wide[0],
    ), wide  # the training rows' share of the 250 titles
