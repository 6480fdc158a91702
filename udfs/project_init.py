"""`scorehouse init`: wire an existing dbt project to scorehouse, safely, as often as it is run.

    packages.yml     the scorehouse dbt package (`local:` the copy installed with this Python package)
    profiles.yml     the plugin lines in each DuckDB output of the project's profile, where profiles.yml
                     sits in the project (otherwise they are printed, to paste where it lives)
    scorehouse.yml   where the registry and the warehouse are, for the scorehouse command
    training/        the folder for training specs; with --from TABLE --target COLUMN, a starter spec

Nothing that exists is overwritten: a second run changes nothing and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import DEFAULT_WAREHOUSE, SETTINGS_FILE
from .errors import ScorehouseError
from .names import RESERVED_NAMES, is_model_name
from .schema import CATEGORICAL, NUMERIC, TYPE_PATTERNS, WIDE_CATEGORIES, is_boolean_type

PLUGIN = {"module": "scorehouse.dbt_plugin", "alias": "scorehouse", "config": {"registry": "registry"}}
OLD_PLUGIN_MODULE = "udfs.dbt_plugin"  # releases before 0.3.0 installed the package as `udfs`
# Columns that name a row rather than describe it: left out of a starter spec.
ID_LIKE = re.compile(r"(?i)^(id|key|uuid|.*_(id|key|uuid))$")


@dataclass
class InitReport:
    """What init did (`changed`) and what it left as it was (`kept`), one line each."""

    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    to_paste: str = ""  # profile lines for a profiles.yml outside the project
    next_steps: list[str] = field(default_factory=list)  # the commands to run next, in order


def package_dir() -> Path:
    """The scorehouse dbt package that ships with this Python package (a wheel) or sits beside it (a clone)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "dbt_package", here.parent / "dbt_project"):
        if (candidate / "dbt_project.yml").is_file() and (candidate / "macros").is_dir():
            return candidate
    raise ScorehouseError(f"The scorehouse dbt package is missing beside {here}; reinstall scorehouse")


def find_project(start: str | Path | None = None) -> Path:
    """The dbt project folder: `start` (default: the current folder) or the nearest one above with dbt_project.yml."""
    folder = Path(start or Path.cwd()).absolute()
    for candidate in (folder, *folder.parents):
        if (candidate / "dbt_project.yml").is_file():
            return candidate
    raise ScorehouseError(
        f"No dbt_project.yml in {folder} or above; run `scorehouse init` in a dbt project or pass --project-dir"
    )


def init_project(
    project: Path,
    from_table: str | None = None,
    target: str | None = None,
    name: str | None = None,
    warehouse: Path | None = None,
) -> InitReport:
    """Wire `project` (a dbt project folder); see the module docstring."""
    report = InitReport()
    profile_name = _read_yaml(project / "dbt_project.yml").get("profile")
    _add_package(project / "packages.yml", package_dir(), report)
    warehouse_setting = _add_plugin(project / "profiles.yml", profile_name, report)
    _write_settings(project / SETTINGS_FILE, warehouse_setting, report)
    training = project / "training"
    if training.is_dir():
        report.kept.append(f"{training}/ exists")
    else:
        training.mkdir()
        report.changed.append(f"created {training}/ for training specs")
    if from_table:
        if not target:
            raise ScorehouseError("--from needs --target: the column the model predicts")
        from .config import warehouse_path

        _write_starter_spec(training, from_table, target, name, warehouse or warehouse_path(start=project), report)
    return report


def _add_package(path: Path, package: Path, report: InitReport) -> None:
    data = _read_yaml(path) if path.exists() else {}
    entries = data.get("packages") or []
    if any(_is_scorehouse(entry, path.parent) for entry in entries):
        report.kept.append(f"{path} already installs the scorehouse dbt package")
        return
    stale = [entry for entry in entries if _is_stale_scorehouse(entry, path.parent)]
    if stale:  # the copy an earlier install (or another virtualenv) pointed at is gone: point at this one
        gone = ", ".join(str(entry["local"]) for entry in stale)
        for entry in stale:
            entry["local"] = str(package)
        path.write_text(yaml.safe_dump({**data, "packages": entries}, sort_keys=False))
        report.changed.append(
            f"{path}: the scorehouse dbt package now comes from {package} (was {gone}, "
            "which no longer exists); run `dbt deps`"
        )
        report.next_steps.append("dbt deps")
        return
    line = f"  - local: {package}\n"
    text = path.read_text() if path.exists() else ""
    if not text.strip():
        text = "packages:\n"
    elif "packages" not in data:
        text = text.rstrip("\n") + "\npackages:\n"
    new = text if text.endswith("\n") else text + "\n"
    # appended as text, so the file's comments stay; checked by reading it back
    if [e for e in (yaml.safe_load(new + line) or {}).get("packages") or [] if _is_scorehouse(e, path.parent)]:
        path.write_text(new + line)
    else:
        path.write_text(yaml.safe_dump({**data, "packages": [*entries, {"local": str(package)}]}, sort_keys=False))
    report.changed.append(f"{path}: added the scorehouse dbt package ({package}); run `dbt deps`")
    report.next_steps.append("dbt deps")


def _is_scorehouse(entry: Any, base: Path) -> bool:
    if not isinstance(entry, dict):
        return False
    if "local" in entry:
        local = (base / str(entry["local"])).resolve()
        return (local / "dbt_project.yml").is_file() and _read_yaml(local / "dbt_project.yml").get(
            "name"
        ) == "scorehouse"
    return "scorehouse" in str(entry.get("git", "")) or str(entry.get("package", "")).endswith("/scorehouse")


_STALE_PACKAGE_FOLDERS = (("udfs", "dbt_package"), ("scorehouse", "dbt_package"))  # where releases installed it


def _is_stale_scorehouse(entry: Any, base: Path) -> bool:
    """A `local:` entry naming where a scorehouse install kept its dbt package, which is no longer there."""
    if not isinstance(entry, dict) or "local" not in entry:
        return False
    local = base / str(entry["local"])
    return not local.exists() and tuple(local.parts[-2:]) in _STALE_PACKAGE_FOLDERS


def _add_plugin(path: Path, profile_name: str | None, report: InitReport) -> str:
    """Add the plugin to the project's profiles.yml; return the warehouse path for scorehouse.yml."""
    snippet = yaml.safe_dump({"plugins": [PLUGIN]}, sort_keys=False)
    if not path.exists():
        report.to_paste = (
            f"Add to each DuckDB output of the profile '{profile_name or '<your profile>'}' "
            f"in your profiles.yml:\n" + "\n".join("      " + line for line in snippet.splitlines())
        )
        return DEFAULT_WAREHOUSE
    profiles = _read_yaml(path)
    outputs = (profiles.get(profile_name) or {}).get("outputs") or {}
    duckdb_outputs = {k: v for k, v in outputs.items() if isinstance(v, dict) and v.get("type") == "duckdb"}
    if not duckdb_outputs:
        raise ScorehouseError(f"{path}: profile '{profile_name}' has no DuckDB output to add the scorehouse plugin to")
    added, renamed = [], []
    for output_name, output in duckdb_outputs.items():
        plugins = output.setdefault("plugins", [])
        for plugin in plugins:
            if isinstance(plugin, dict) and plugin.get("module") == OLD_PLUGIN_MODULE:
                plugin["module"] = PLUGIN["module"]  # its alias and config stay
                renamed.append(output_name)
        if not any(isinstance(p, dict) and p.get("module") == PLUGIN["module"] for p in plugins):
            plugins.append(dict(PLUGIN))
            added.append(output_name)
    if added or renamed:
        backup = path.with_name(path.name + ".bak")
        backup.write_text(path.read_text())
        path.write_text(yaml.safe_dump(profiles, sort_keys=False))
        done = [f"added the scorehouse plugin to output(s) {', '.join(added)}"] if added else []
        done += (
            [f"renamed the plugin module {OLD_PLUGIN_MODULE} to {PLUGIN['module']} in output(s) {', '.join(renamed)}"]
            if renamed
            else []
        )
        report.changed.append(f"{path}: {'; '.join(done)} (the file as it was: {backup.name})")
    else:
        report.kept.append(f"{path} already loads the scorehouse plugin")
    first = next(iter(duckdb_outputs.values()))
    path_setting = str(first.get("path") or DEFAULT_WAREHOUSE)
    return path_setting if "{{" not in path_setting else DEFAULT_WAREHOUSE


def _write_settings(path: Path, warehouse: str, report: InitReport) -> None:
    if path.exists():
        report.kept.append(f"{path} exists")
        return
    path.write_text(
        "# Where scorehouse keeps models and finds the warehouse; paths are taken from this folder.\n"
        + yaml.safe_dump({"registry": "registry", "warehouse": warehouse}, sort_keys=False)
    )
    report.changed.append(f"wrote {path}")


def _write_starter_spec(
    training: Path, table: str, target: str, name: str | None, warehouse: Path, report: InitReport
) -> None:
    import duckdb

    from .sql import table_name

    name = name or re.sub(r"[^a-z0-9_]+", "_", table.split(".")[-1].lower()).strip("_")
    if not is_model_name(name):
        raise ScorehouseError(
            f"'{name}' cannot name a model (lower-case letters, digits and _, not one of "
            f"{sorted(RESERVED_NAMES)}); pass --name"
        )
    spec_path = training / f"{name}.yml"
    if spec_path.exists():
        report.kept.append(f"{spec_path} exists")
        return
    if not warehouse.exists():
        raise ScorehouseError(f"Warehouse {warehouse} does not exist; build the table first (dbt build)")
    with duckdb.connect(str(warehouse), read_only=True, config={"enable_external_access": False}) as con:
        columns = con.sql(f"describe select * from {table_name(table)}").fetchall()
        types = {column: kind for column, kind, *_ in columns}
        if target not in types:
            raise ScorehouseError(f"Table {table} has no column '{target}'; its columns: {', '.join(types)}")
        distinct = con.sql(f"select count(distinct {_quoted(target)}) from {table_name(table)}").fetchall()[0][0]
        texts = [c for c, kind in types.items() if c != target and re.fullmatch(TYPE_PATTERNS[CATEGORICAL], kind)]
        counts = (
            con.sql(
                f"select {', '.join(f'count(distinct {_quoted(c)})' for c in texts)} from {table_name(table)}"
            ).fetchall()[0]
            if texts
            else ()
        )
    values = dict(zip(texts, counts))
    task = _task(types[target], distinct)
    features: dict[str, list[str]] = {NUMERIC: [], CATEGORICAL: []}
    left_out, wide = [f"{target}: the target"], []
    for column, kind in types.items():
        if column == target:
            continue
        if ID_LIKE.match(column):
            left_out.append(f"{column}: looks like a row id")
        elif values.get(column, 0) > WIDE_CATEGORIES:
            left_out.append(
                f"{column}: {values[column]:,} distinct values, more than {WIDE_CATEGORIES} (each would be "
                "a column of its own and slow training: group them into fewer in a model, then add it)"
            )
            wide.append(f"{column} ({values[column]:,} distinct values)")
        elif is_boolean_type(kind) or re.fullmatch(TYPE_PATTERNS[CATEGORICAL], kind):
            features[CATEGORICAL].append(column)
        elif re.fullmatch(TYPE_PATTERNS[NUMERIC], kind):
            features[NUMERIC].append(column)
        else:
            left_out.append(f"{column}: type {kind} (turn it into a number or text in a model to use it)")
    spec = {
        "name": name,
        "description": f"Starter spec from {table}; review the features before training.",
        "task": task,
        "source": {"table": table},
        "target": target,
        "features": {k: v for k, v in features.items() if v},
        "estimator": {"kind": "gradient_boosting", "params": {"n_estimators": 100, "max_depth": 3, "random_state": 0}},
        "split": {"test_size": 0.25, "seed": 0},
    }
    comments = "".join(f"# left out: {line}\n" for line in left_out)
    spec_path.write_text(
        f"# Written by `scorehouse init --from {table} --target {target}`.\n{comments}"
        + yaml.safe_dump(spec, sort_keys=False)
    )
    report.changed.append(
        f"wrote {spec_path} ({task}; {len(features[NUMERIC])} numeric and "
        f"{len(features[CATEGORICAL])} categorical features"
        + (f"; left out {', '.join(wide)}: see its comments" if wide else "")
        + ")"
    )
    report.next_steps.append(
        f"review {spec_path.relative_to(training.parent)}, then "
        f"`scorehouse train {spec_path.relative_to(training.parent)} --alias prod`"
    )


def _task(kind: str, distinct: int) -> str:
    if is_boolean_type(kind) or distinct <= 2:
        return "binary"
    if re.fullmatch(TYPE_PATTERNS[NUMERIC], kind):
        return "regression"
    return "multiclass"


def _quoted(column: str) -> str:
    from .sql import DUCKDB

    return DUCKDB.identifier(column)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ScorehouseError(f"Cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ScorehouseError(f"{path} is not a YAML mapping")
    return data
