"""The `scorehouse` command: train, inspect, promote and verify models; query with predict()."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from . import config, events
from .errors import ScorehouseError
from .manifest import REGISTRATION_STEPS
from .names import DEFAULT_ALIAS, VERSION, ModelRef, check_model_name, one_line, shown
from .registry import Registry


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _show_warnings()
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except ScorehouseError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader stopped reading (`| head`): stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141


def _show_warnings() -> None:
    """The package's events on stderr (what a command does, warnings; all as JSON lines with
    SCOREHOUSE_LOG_FORMAT=json), under a new trace id for this command."""
    events.configure()
    events.set_trace_id()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scorehouse", description=__doc__)
    parser.add_argument("--registry", help=f"registry directory (env {config.REGISTRY_ENV}; default ./registry)")
    parser.add_argument(
        "--warehouse", help=f"DuckDB file (env {config.WAREHOUSE_ENV}; default {config.DEFAULT_WAREHOUSE})"
    )
    parser.add_argument(
        "--public-key", help=f"refuse versions this ed25519 public key did not sign (env {config.PUBLIC_KEY_ENV})"
    )
    parser.add_argument(
        "--signing-key", help=f"sign new versions with this ed25519 private key (env {config.SIGNING_KEY_ENV})"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "init",
        help="wire a dbt project: the dbt package, the profile's plugin, scorehouse.yml, training/ (safe to run again)",
    )
    p.add_argument("--project-dir", help="the dbt project (default: the one holding the current folder)")
    p.add_argument("--from", dest="from_table", metavar="TABLE", help="write a starter spec from this table's columns")
    p.add_argument("--target", help="with --from: the column the model predicts")
    p.add_argument("--name", help="with --from: the model's name (default: from the table's)")
    p.set_defaults(run=cmd_init)

    p = sub.add_parser("train", help="train, check and register models from spec files")
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("--alias", help="also point this alias at the trained version (e.g. prod)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("models", help="list models, versions and aliases")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("show", help="show one version: MODEL, MODEL@ALIAS or MODEL@VERSION")
    p.add_argument("ref", metavar="MODEL[@ALIAS|VERSION]")
    p.add_argument("--json", action="store_true", help="print the whole manifest")
    p.set_defaults(run=cmd_show)

    p = sub.add_parser("promote", help="point an alias at a version (default alias: prod)")
    p.add_argument("model")
    p.add_argument("version", help="a version number, 'latest' or an alias (e.g. candidate)")
    p.add_argument("--alias", default=DEFAULT_ALIAS)
    p.add_argument("--reason", help="why, for the audit log")
    p.set_defaults(run=cmd_promote)

    p = sub.add_parser("rollback", help="move an alias back to the version it pointed at before")
    p.add_argument("model")
    p.add_argument("--alias", default=DEFAULT_ALIAS)
    p.add_argument("--reason", help="why, for the audit log")
    p.set_defaults(run=cmd_rollback)

    p = sub.add_parser("rollout", help="gray release: send a share of keys to a version (predict(..., key=...))")
    p.add_argument("model")
    p.add_argument("version", help="a version number, 'latest' or an alias (e.g. candidate)")
    p.add_argument("--share", type=float, required=True, help="percent of keys, 0 to 100 (0 ends the rollout)")
    p.add_argument("--reason", help="why, for the audit log")
    p.set_defaults(run=cmd_rollout)

    p = sub.add_parser("history", help="every alias move of a model: when, who, from, to, why")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_history)

    p = sub.add_parser(
        "gc",
        help="remove versions no alias points at, rolls back to or pointed at recently, "
        "and that the latest build and the serving file do not use",
    )
    p.add_argument("model", nargs="?")
    p.add_argument(
        "--keep-days",
        type=float,
        default=7,
        help="keep versions an alias pointed at, or created, within this many days (a number >= 0)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, and why the rest stays")
    p.add_argument("--serving", help="the serving file (default: the warehouse's, with _serving before .duckdb)")
    p.set_defaults(run=cmd_gc)

    p = sub.add_parser(
        "monitor",
        help="after `dbt build`: report the quality gates that errored and, with "
        "--rollback-on-error, move prod back to the version it replaced "
        "(exit 1: a gate errored; 3: prod was rolled back, build the marts again)",
    )
    p.add_argument("--target-path", help="the build's target folder (env DBT_TARGET_PATH; default ./target)")
    p.add_argument(
        "--rollback-on-error",
        action="store_true",
        help="roll prod back where its version fails a gate and the one it replaced does not",
    )
    p.set_defaults(run=cmd_monitor)

    p = sub.add_parser(
        "reproduce",
        help="re-score one row of a scored table with the version recorded for it "
        "and say whether the score comes out again (or what differs)",
    )
    p.add_argument("relation", help="the scored table, e.g. mart_mortgage_risk")
    p.add_argument("row", metavar="KEY=VALUE", help="the row's key column and value, e.g. application_id=17")
    p.add_argument("--score", help="the column holding the score (default: the numeric column that matches)")
    p.set_defaults(run=cmd_reproduce)

    p = sub.add_parser(
        "metrics",
        help="OpenMetrics gauges from the warehouse for Prometheus: drift, quality, rows scored, publication times",
    )
    p.add_argument(
        "--serve", metavar="HOST:PORT", help="serve them on http://HOST:PORT/metrics (re-read on each scrape)"
    )
    p.add_argument("--out", help="write them to this file (for node_exporter's textfile collector)")
    p.add_argument("--serving", help="the serving file (default: the warehouse's, with _serving before .duckdb)")
    p.set_defaults(run=cmd_metrics)

    p = sub.add_parser("verify", help="check files, hashes and signatures, and re-score each version's stored sample")
    p.add_argument("model", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("keygen", help="write a new ed25519 key pair for signing the registry")
    p.add_argument("--out", required=True, help="the folder for the two key files (kept away from the registry)")
    p.set_defaults(run=cmd_keygen)

    p = sub.add_parser(
        "sign",
        help="vouch for a version (after every check verify makes, on every path it scores "
        "by), or for a model's alias state: "
        "MODEL VERSION | MODEL --aliases | --all-unsigned",
    )
    p.add_argument("model", nargs="?")
    p.add_argument("version", nargs="?", help="the version to sign")
    p.add_argument("--aliases", action="store_true", help="sign the model's aliases as they are now (printed first)")
    p.add_argument(
        "--all-unsigned",
        action="store_true",
        help="sign every unsigned version (of MODEL, or of every model), listed first",
    )
    p.set_defaults(run=cmd_sign)

    p = sub.add_parser("revoke", help="withdraw a version for good: no reference loads it again (its files stay)")
    p.add_argument("model")
    p.add_argument("version")
    p.add_argument("--reason", help="why, for the audit log")
    p.set_defaults(run=cmd_revoke)

    p = sub.add_parser("report", help="write an HTML drift report of a table against a model's training profile")
    p.add_argument("ref", metavar="MODEL[@ALIAS|VERSION]")
    p.add_argument("--table", required=True, help="the relation holding the model's features, e.g. features_mortgage")
    p.add_argument("--out", help="the HTML file to write (default: drift-<model>-<table>.html)")
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    p.set_defaults(run=cmd_report)

    p = sub.add_parser(
        "sql",
        help="run SQL on the warehouse with predict() (no query: interactive shell); "
        "files other than the warehouse cannot be read or written",
    )
    p.add_argument("query", nargs="?")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--write", action="store_true", help="open the warehouse read-write (default: read-only)")
    p.set_defaults(run=cmd_sql)

    p = sub.add_parser("functions", help="list the SQL functions scorehouse creates on DuckDB and Spark")
    p.add_argument("--all", action="store_true", help="also the building blocks other functions call")
    p.set_defaults(run=cmd_functions)
    return parser


def _registry(args) -> Registry:
    return Registry(args.registry, public_key=args.public_key, signing_key=args.signing_key)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


PROGRESS_EVERY = 30  # seconds between the lines a long step writes where stderr is not a terminal


@contextlib.contextmanager
def _progress(label: str) -> Iterator[None]:
    """A step's label and the seconds passing: in a terminal on one line, rewritten; elsewhere (a CI log, a
    pipe) a line every PROGRESS_EVERY seconds while it runs. Then one line with its time."""
    terminal = sys.stderr.isatty()
    start, done = time.perf_counter(), threading.Event()

    def tick() -> None:
        while not done.wait(0.5 if terminal else PROGRESS_EVERY):
            elapsed = f"{label} … {time.perf_counter() - start:.0f} s"
            sys.stderr.write(f"\r{elapsed}" if terminal else f"{elapsed}\n")
            sys.stderr.flush()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    finished = False
    try:
        yield
        finished = True
    finally:
        done.set()
        ticker.join()
        carriage = "\r" if terminal else ""  # a terminal's line is rewritten
        if finished:
            sys.stderr.write(f"{carriage}{label}: {time.perf_counter() - start:.1f} s\n")
        elif terminal:  # a failed step's line ends; the error follows
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_init(args) -> int:
    from .project_init import find_project, init_project

    project = find_project(args.project_dir)
    report = init_project(
        project,
        args.from_table,
        args.target,
        args.name,
        config.warehouse_path(args.warehouse, start=project) if args.warehouse else None,
    )
    for line in report.changed:
        print(f"  {line}")
    for line in report.kept:
        print(f"  unchanged: {line}")
    if report.to_paste:
        print(report.to_paste)
    if report.next_steps:
        print("next: " + "; then ".join(report.next_steps))
    elif not report.changed:
        print("nothing to do: the project is wired")
    return 0


def cmd_train(args) -> int:
    from .registration.spec import load_spec
    from .registration.training import train_and_register

    registry = _registry(args)
    results = []
    for path in args.specs:
        spec = load_spec(path)
        version, created = train_and_register(spec, registry, args.warehouse, progress=_progress)
        if args.alias:
            registry.promote(spec.name, version, args.alias)
            _log(f"{spec.name}: {args.alias} -> version {version}")
        results.append({"model": spec.name, "version": version, "created": created})
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def cmd_models(args) -> int:
    registry = _registry(args)
    rows: list[dict[str, Any]] = []
    for name in registry.models():
        versions = registry.versions(name)
        latest = registry.card(name, versions[-1]).manifest if versions else None
        rows.append(
            {
                "model": name,
                "task": latest.task if latest else None,
                "versions": versions,
                "aliases": registry.aliases(name),
                "latest_created": latest.created_at if latest else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"No models in registry {registry.root}")
    else:
        print(
            format_table(
                ["model", "task", "versions", "aliases", "latest created"],
                [
                    [
                        r["model"],
                        r["task"],
                        ",".join(map(str, r["versions"])),
                        " ".join(f"{a}->{v}" for a, v in sorted(r["aliases"].items())) or "-",
                        r["latest_created"],
                    ]
                    for r in rows
                ],
            )
        )
    return 0


def cmd_show(args) -> int:
    registry = _registry(args)
    name, version = registry.resolve(ModelRef.parse(args.ref))
    card = registry.card(name, version)
    manifest = card.manifest
    if args.json:
        print(json.dumps(card.raw, indent=2))
        return 0
    aliases = [a for a, v in registry.aliases(name).items() if v == version]
    print(f"{name} version {version}" + (f" ({', '.join(sorted(aliases))})" if aliases else ""))
    print(f"  {manifest.description}".rstrip())
    print(
        f"  task        {manifest.task}"
        + (f", positive class '{manifest.positive_class}'" if manifest.positive_class else "")
    )
    print(f"  estimator   {manifest.estimator_class} {json.dumps(manifest.estimator_params)}")
    print(
        f"  trained on  {manifest.training.source}: {manifest.training.rows} rows "
        f"({manifest.training.holdout_rows} held out), created {manifest.created_at}"
    )
    print("  metrics     " + ", ".join(f"{k} {v:.4g}" for k, v in card.metrics.items()))
    parity = manifest.parity
    if parity is not None:
        print(
            f"  parity      max |onnxruntime - scikit-learn| {parity.max_abs_diff:.2e} on "
            f"{parity.rows} {parity.compared} (tolerance {parity.tolerance:.2g})"
        )
        if parity.splits_checked is not None:
            print(
                f"              {parity.splits_checked} tree splits route float32 values as the library does "
                f"({parity.thresholds_adjusted} thresholds moved off the converter's rounding)"
            )
    print(f"  sql         {describe_sql(registry, name, version)}")
    explained = manifest.explanation or {"skipped": "registered before explanations were recorded"}
    print(
        "  explained   "
        + (
            f"no ({explained['skipped']})"
            if explained.get("skipped")
            else f"{explained['kind']}, in the margin ({explained['link']}); baseline + contributions "
            f"within {explained['additivity_max_abs_diff']:.1e} of it on the holdout"
        )
    )
    seconds = manifest.registration_seconds
    if seconds:  # the steps in the order they ran
        print(
            "  registered  in "
            + ", ".join(f"{step} {seconds[step]:.1f} s" for step in REGISTRATION_STEPS if step in seconds)
        )
    print(f"  sha256      model.onnx {manifest.onnx_sha256}")
    print()
    print(
        format_table(
            ["feature", "kind", "sql type", "categories seen in training"],
            [[f.name, f.kind, f.sql_type, ", ".join(f.categories) or "-"] for f in manifest.features],
        )
    )
    return 0


def describe_sql(registry: Registry, name: str, version: int) -> str:
    """One line on the SQL written from a version's explanation: its check at registration, and what predict()
    scores with by default on each engine."""
    from .scoring import Session
    from .sql import DIALECTS
    from .writer import SqlWriter

    scorer, ref = Session(registry), str(ModelRef(name, version=version))
    record = scorer.card(ref).manifest.sql
    checked = (
        "checked on its stored sample where first scored in SQL (registered before the holdout check)"
        if not record
        else f"not written: {record['skipped']}"
        if "skipped" in record
        else f"max |SQL - library| {record['max_abs_diff']:.2e} on {record['rows']:,} holdout rows"
        + ("" if record["ok"] else ", beyond the tolerance: refused")
    )
    defaults = []
    for sql in DIALECTS.values():
        expression, why = SqlWriter(scorer, sql).scoring_choice(ref, scorer.card(ref).default_output, "auto")
        defaults.append(f"{sql.name} {'SQL' if expression is not None else f'onnxruntime ({why})'}")
    return f"{checked}; predict() scores with: {', '.join(defaults)}"


def _version(registry: Registry, model: str, text: str) -> int:
    """A VERSION argument: a number, 'latest' or an alias of the model (e.g. candidate)."""
    check_model_name(model)
    if VERSION.fullmatch(text):
        return int(text)
    versions = registry.versions(model)
    if not versions:
        registry.resolve(ModelRef(model, alias=DEFAULT_ALIAS))  # raises, listing the known models
    if text == "latest":
        return versions[-1]
    aliases = registry.aliases(model)
    if text in aliases:
        return aliases[text]
    raise ScorehouseError(
        f"VERSION must be a number, 'latest' or an alias of {model} "
        f"({', '.join(sorted(aliases)) or 'it has none'}), found '{shown(text)}'"
    )


def cmd_promote(args) -> int:
    registry = _registry(args)
    version = _version(registry, args.model, args.version)
    previous = registry.promote(args.model, version, args.alias, args.reason)
    if previous == version:
        print(f"{args.model}: {args.alias} already points at version {version}")
    else:
        print(f"{args.model}: {args.alias} -> version {version}" + (f" (was {previous})" if previous else ""))
    return 0


def cmd_rollback(args) -> int:
    old, new = _registry(args).rollback(args.model, args.alias, args.reason)
    print(f"{args.model}: {args.alias} -> version {new} (was {old})")
    return 0


def cmd_rollout(args) -> int:
    registry = _registry(args)
    version = _version(registry, args.model, args.version)
    before, share = registry.rollout(args.model, version, args.share, args.reason)
    if args.share:
        print(
            f"{args.model}: version {version} scores {args.share:g}% of keys"
            + (f" (was version {before} at {share:g}%)" if before else "")
        )
    else:
        print(f"{args.model}: rollout ended" + (f" (was version {before} at {share:g}%)" if before else ""))
    return 0


def cmd_history(args) -> int:
    registry = _registry(args)
    if not registry.versions(args.model):
        registry.resolve(ModelRef.parse(args.model))  # raises, listing the known models
    events = registry.history(args.model)
    for problem in registry.audit_problems(args.model):
        print(f"warning: {one_line(problem)}", file=sys.stderr)
    if args.json:
        print(json.dumps(events, indent=2))
        return 0
    print(
        format_table(
            ["at", "user", "action", "alias", "from", "to", "reason"],
            [
                [
                    e.get("at"),
                    e.get("user"),
                    f"{e.get('action') or '-'}" + (f" {e['share']:g}%" if e.get("share") else ""),
                    e.get("alias") or "",
                    e.get("from") or "-",
                    e.get("to") or "-",
                    e.get("reason") or "",
                ]
                for e in events
            ],
        )
        if events
        else f"{args.model}: no alias has moved"
    )
    return 0


def cmd_gc(args) -> int:
    """Never removes a version the warehouse's latest build recorded or the serving file serves."""
    from .registry import check_keep_days
    from .serving import versions_in_use

    keep_days = check_keep_days(args.keep_days)
    registry = _registry(args)
    names = [check_model_name(args.model)] if args.model else registry.models()
    if args.model and not registry.versions(args.model):
        registry.resolve(ModelRef.parse(args.model))  # raises, listing the known models
    warehouse = config.warehouse_path(args.warehouse)
    if not warehouse.exists():
        _log(
            f"note: warehouse {warehouse} does not exist, so no version is kept for being scored or served "
            "(pass --warehouse)"
        )
    in_use = versions_in_use(warehouse, _serving_path(args, warehouse))
    for name in names:
        protected = {version: "; ".join(why) for (model, version), why in in_use.items() if model == name}
        result = registry.gc(name, keep_days, args.dry_run, protected)
        verb = "would remove" if args.dry_run else "removed"
        print(
            f"{name}: {verb} version(s) {', '.join(map(str, result.removed))}"
            if result.removed
            else f"{name}: nothing to remove"
        )
        for version, why in result.kept.items():
            print(f"{name}: kept version {version} ({why})")
    return 0


def cmd_monitor(args) -> int:
    """Exit 1 when a quality gate errored, so a scheduler alerts; 3 when prod was rolled back, so it builds the
    marts the failed version scored again."""
    import os

    from .monitor import monitor
    from .sql import DUCKDB

    with _warehouse(args) as conn:
        target = args.target_path or os.environ.get("DBT_TARGET_PATH") or "target"
        verdict = monitor(
            _registry(args),
            target,
            lambda sql: conn.sql(sql).to_arrow_table().to_pylist(),
            DUCKDB,
            args.rollback_on_error,
        )
    for line in verdict.lines():
        print(line)
    return 3 if verdict.moved else 1 if verdict.breaches else 0


def cmd_reproduce(args) -> int:
    """Exit 0 when the score is reproduced, 1 with what differs."""
    from .reproduce import reproduce
    from .sql import DUCKDB

    key, sep, value = args.row.partition("=")
    if not sep or not key:
        raise ScorehouseError(f"the row is KEY=VALUE, e.g. application_id=17, found '{shown(args.row)}'")
    with _warehouse(args) as conn:
        result = reproduce(
            _registry(args),
            lambda sql, params: conn.sql(sql, params=params).to_arrow_table(),
            DUCKDB,
            args.relation,
            key,
            value,
            args.score,
        )
    for line in result.lines:
        print(line)
    return 0 if result.reproduced else 1


def cmd_metrics(args) -> int:
    from . import metrics

    warehouse = _existing_warehouse(args)
    serving = _serving_path(args, warehouse)
    if args.out:
        metrics.write(metrics.collect(warehouse, serving, _registry(args)), args.out)
        _log(f"wrote {args.out}")
    if args.serve:
        host, _, port = args.serve.rpartition(":")
        if not port.isdigit():
            raise ScorehouseError(f"--serve takes HOST:PORT, e.g. 127.0.0.1:9464, found '{shown(args.serve)}'")
        server = metrics.serve(
            host or "127.0.0.1", int(port), lambda: metrics.collect(warehouse, serving, _registry(args))
        )
        _log(f"serving http://{host or '127.0.0.1'}:{server.server_address[1]}/metrics (Ctrl-C stops)")
        try:
            threading.Event().wait()
        finally:
            server.shutdown()
    if not args.out and not args.serve:
        sys.stdout.write(metrics.collect(warehouse, serving, _registry(args)))
    return 0


@contextlib.contextmanager
def _warehouse(args) -> Iterator[Any]:
    """The warehouse, read-only, with no file access beyond it."""
    import duckdb

    conn = duckdb.connect(str(_existing_warehouse(args)), read_only=True, config={"enable_external_access": False})
    try:
        yield conn
    finally:
        conn.close()


def _serving_path(args, warehouse):
    """The serving file beside the warehouse, or the one --serving names."""
    from .serving import serving_path

    return args.serving or serving_path(warehouse)


def _existing_warehouse(args):
    """The warehouse file the command reads, which must exist."""
    path = config.warehouse_path(args.warehouse)
    if not path.exists():
        raise ScorehouseError(f"Warehouse {path} does not exist; build it with `make demo` or pass --warehouse")
    return path


def cmd_verify(args) -> int:
    registry = _registry(args)
    names = [check_model_name(args.model)] if args.model else registry.models()
    if args.model and not registry.versions(args.model):
        registry.resolve(ModelRef.parse(args.model))  # raises, listing the known models
    results = []
    for name in names:
        catalog = registry.catalog([name])
        withdrawn = catalog.withdrawn.get(name, {})
        for version in registry.versions(name):
            problems = [] if version in withdrawn else registry.verify(name, version)
            results.append(
                {
                    "model": name,
                    "version": version,
                    "ok": not problems,
                    "problems": problems,
                    "signed_by": registry.signature(name, version),
                    "withdrawn": withdrawn.get(version),
                }
            )
        problems = [catalog.problems[name]] if name in catalog.problems else []
        problems += registry.audit_problems(name)
        state = registry.alias_state(name) if not catalog.problems.get(name) else None
        results.append(
            {
                "model": name,
                "version": None,
                "ok": not problems,
                "problems": problems,
                "signed_by": state.signed_by if state else None,
                "audit_head": state.audit_head if state else None,
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(describe_integrity(registry), file=sys.stderr)
        print(
            format_table(
                ["model", "version", "signed by", "status"],
                [[r["model"], r["version"] or "aliases", r["signed_by"] or "-", _status(r)] for r in results],
            )
        )
    return 0 if all(r["ok"] for r in results) else 1


def _status(result: dict) -> str:
    if not result["ok"]:
        return "; ".join(result["problems"])
    if result.get("withdrawn"):
        return f"ok ({result['withdrawn']}: never loads)"
    if result.get("audit_head"):
        return f"ok (audit head {result['audit_head'][:16]})"
    return "ok"


def describe_integrity(registry: Registry) -> str:
    """One line on what a load of this registry checks."""
    if registry.public_key is not None:  # signed
        return (
            f"registry {registry.root.resolve()}: signed; every load checks the signature of key "
            f"{registry.public_key.key_id}"
        )
    return (
        f"registry {registry.root.resolve()}: unsigned; sha256 files catch corruption, not edits "
        f"(sign it: scorehouse keygen, then {config.SIGNING_KEY_ENV} and {config.PUBLIC_KEY_ENV})"
    )


def cmd_keygen(args) -> int:
    from .signing import generate_keys

    private, public, key_id = generate_keys(args.out)
    print(
        f"key {key_id}\n  private (signs new versions; keep it away from the registry): {private}\n"
        f"  public (checks every load): {public}\n"
        f"export {config.SIGNING_KEY_ENV}={private} {config.PUBLIC_KEY_ENV}={public}"
    )
    return 0


def cmd_sign(args) -> int:
    """Sign only what is named: one version, a model's aliases, or every unsigned version listed first."""
    from .signing import load_signing_key

    usage = "name what to sign: scorehouse sign MODEL VERSION, MODEL --aliases, or --all-unsigned [MODEL]"
    if [bool(args.version), args.aliases, args.all_unsigned].count(True) != 1 or (
        not args.model and not args.all_unsigned
    ):
        raise ScorehouseError(usage)
    registry = _registry(args)
    key = load_signing_key(config.signing_key_path(args.signing_key))
    if key is None:
        raise ScorehouseError(f"No signing key: pass --signing-key or set {config.SIGNING_KEY_ENV}")
    if args.model and not registry.versions(args.model):
        registry.resolve(ModelRef.parse(args.model))  # raises, listing the known models
    if args.aliases:
        state = registry.sign_aliases(check_model_name(args.model), key)
        described = ", ".join(f"{alias} -> {entry['version']}" for alias, entry in sorted(state.entries.items()))
        print(
            f"{args.model}: aliases signed ({described or 'none'}; withdrawn: "
            f"{', '.join(map(str, sorted(state.withdrawn))) or 'none'})"
        )
        return 0
    if args.version:
        targets = [(check_model_name(args.model), _version(registry, args.model, args.version))]
    else:
        targets = [
            (name, version)
            for name in ([check_model_name(args.model)] if args.model else registry.models())
            for version in registry.versions(name)
            if registry.signature(name, version) is None
        ]
        print(
            "to sign: "
            + (", ".join(f"{name} v{version}" for name, version in targets) or "nothing (every version is signed)")
        )
    failed = 0
    for name, version in targets:
        try:
            added = registry.sign(name, version, key)
        except ScorehouseError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            failed += 1
            continue
        print(
            f"{name} v{version}: {'signed' if added else 'signed already by this key'} "
            f"({_summary(registry, name, version)})"
        )
    return 1 if failed else 0


def _summary(registry: Registry, name: str, version: int) -> str:
    """What a signature vouches for, in one line: when, what it predicts, how well, which graph."""
    card = registry.card(name, version)
    manifest = card.manifest
    what = f"positive class {manifest.positive_class!r}" if manifest.positive_class is not None else manifest.task
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in list(card.metrics.items())[:3])
    return f"created {manifest.created_at}, {what}, {metrics}, model.onnx {(manifest.onnx_sha256 or '')[:12]}"


def cmd_revoke(args) -> int:
    registry = _registry(args)
    version = _version(registry, args.model, args.version)
    registry.revoke(args.model, version, args.reason)
    print(f"{args.model}: version {version} revoked; no reference loads it again")
    return 0


def cmd_report(args) -> int:
    import duckdb

    from . import duckdb as engine
    from .report import write_report
    from .scoring import Session
    from .sql import table_name

    table_name(args.table, what="--table")
    out = args.out or f"drift-{ModelRef.parse(args.ref).name}-{args.table.replace('.', '_')}.html"
    scorer = Session(_registry(args))
    with _warehouse(args) as conn:
        try:
            report = write_report(scorer, args.ref, conn, args.table, out)
        except duckdb.Error as exc:
            raise ScorehouseError(engine.friendly_error(exc, scorer.registry)) from None
    flagged = [f"{name} ({f['level']})" for name, f in report["features"].items() if f["level"]]
    _log(
        f"wrote {out}: {report['rows']} rows of {args.table} against {report['model']}; "
        + (f"thresholds crossed by {', '.join(flagged)}" if flagged else "no threshold crossed")
    )
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    return 0


def cmd_functions(args) -> int:
    from .surface import ANALYSTS, DBT, INTERNAL, reference_table

    print(reference_table((ANALYSTS, DBT, INTERNAL) if args.all else (ANALYSTS, DBT)))
    return 0


def cmd_sql(args) -> int:
    from . import duckdb as engine

    path = config.warehouse_path(args.warehouse) if args.write else _existing_warehouse(args)
    # An analyst's session: predict() and the warehouse, no other file (no read_csv, COPY, ATTACH).
    conn = engine.connect(
        path, registry=_registry(args), read_only=not args.write, config={"enable_external_access": False}
    )
    try:
        if args.query:
            return _run_sql(conn, args.query, args.format, _registry(args))
        return _shell(conn, args.format, _registry(args))
    finally:
        conn.close()


def _run_sql(conn, query: str, output_format: str, registry: Registry) -> int:
    import duckdb

    from . import duckdb as engine

    try:
        relation = conn.sql(query)
        if relation is None:
            return 0
        if output_format == "table":
            relation.show(max_rows=1000, max_width=200)
        else:
            table = relation.to_arrow_table()
            if output_format == "json":
                print(json.dumps(table.to_pylist(), default=str, indent=1))
            else:
                import pyarrow.csv as pacsv

                pacsv.write_csv(table, sys.stdout.buffer)
        return 0
    except duckdb.Error as exc:
        print(f"error: {engine.friendly_error(exc, registry)}", file=sys.stderr)
        return 1


def _shell(conn, output_format: str, registry: Registry) -> int:
    try:
        import readline  # noqa: F401  (line editing and history)
    except ImportError:
        pass
    print(
        "scorehouse SQL shell: statements end with ';', .quit or Ctrl-D leaves. "
        "predict('model', t) scores a whole row t.",
        file=sys.stderr,
    )
    buffer: list[str] = []
    while True:
        try:
            line = input("scorehouse> " if not buffer else "      ...> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if not buffer and line.strip() in (".quit", ".exit", "quit", "exit"):
            return 0
        buffer.append(line)
        if line.rstrip().endswith(";"):
            _run_sql(conn, "\n".join(buffer), output_format, registry)
            buffer = []


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """Return rows as an aligned plain-text table."""
    cells = [[one_line("" if v is None else v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


if __name__ == "__main__":
    sys.exit(main())
