"""The distribution: a wheel that builds, carries the dbt package and the type marker, and leaves the clone clean."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import scorehouse

from helpers import PACKAGE, ROOT

pytestmark = pytest.mark.dbt  # slow tier: builds a wheel


def test_the_wheel_builds_with_the_dbt_package_and_no_demo(tmp_path):
    source = tmp_path / "source"  # the clone's files alone: no build/ of an earlier build to reuse
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], capture_output=True, text=True, cwd=ROOT
    ).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "Package would be ignored" not in build.stderr
    (wheel,) = tmp_path.glob("scorehouse-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.removeprefix("scorehouse/dbt_package/") for n in names if n.startswith("scorehouse/dbt_package/")}
    expected = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*")
        if p.is_file() and "demo" not in p.relative_to(PACKAGE).parts
    }
    assert shipped == expected
    assert "scorehouse/py.typed" in names and "scorehouse/__init__.py" in names
    assert not [n for n in names if n.startswith("udfs/")]  # `udfs` is a common name for a user's own module
    shipped_modules = {n for n in names if n.endswith(".py") and not n.startswith("scorehouse/dbt_package/")}
    assert shipped_modules == {
        f"scorehouse/{p.relative_to(ROOT / 'udfs').as_posix()}" for p in (ROOT / "udfs").rglob("*.py")
    }  # every module, the registration sub-package's too
    # the wheel's files alone import: scoring, the dbt plugin, the CLI and registration, from the wheel
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        f"import sys; sys.path.insert(0, {str(site)!r})\n"
        "import scorehouse, scorehouse.duckdb, scorehouse.dbt_plugin, scorehouse.cli, scorehouse.spark\n"
        "import scorehouse.registration.training, scorehouse.registration.fitted, scorehouse.registration.importers\n"
        "print(scorehouse.__file__, scorehouse.registration.training.__file__)"
    )
    imported = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert all(path.startswith(str(site)) for path in imported.stdout.split()), imported.stdout
    metadata = zipfile.ZipFile(wheel).read(f"scorehouse-{scorehouse.__version__}.dist-info/METADATA").decode()
    assert f"Version: {scorehouse.__version__}" in metadata and "License-Expression: Apache-2.0" in metadata
    untracked = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    assert not [line for line in untracked.splitlines() if line.startswith("??") and "build/" in line]


def test_init_points_a_project_at_the_installed_dbt_package():
    from scorehouse.project_init import package_dir

    assert package_dir() == PACKAGE.resolve() and (Path(package_dir()) / "macros" / "predict.sql").exists()
    assert scorehouse.__version__ == "0.3.0"
    dbt_package = yaml.safe_load((PACKAGE / "dbt_project.yml").read_text())
    assert dbt_package["version"] == scorehouse.__version__  # the dbt package is released with the Python package
