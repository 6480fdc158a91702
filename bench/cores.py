"""How each DuckDB arm scales with threads, measured side by side in one run, and what that predicts for more cores.

    python -m bench.cores [--rows 1000000] [--threads 1,2] [--repeat 3] [--out bench/RESULTS.md]

Builds a private workspace (the demo models as bench.__main__ trains them), resamples each model's real
feature rows to --rows, then runs each arm (bench.arm, a process each) at every thread count, thread
counts alternating round by round; best of --repeat. For each arm: the speed-up from the fewest to the most
threads, the serial fraction f that speed-up implies by Amdahl's law (S(n) = 1 / (f + (1 - f) / n)), and the
speed-up f predicts on 16 cores. Python UDF work holds the GIL, so it shows up as serial fraction.
Writes its section of bench/RESULTS.md (between markers, so `python -m bench` keeps it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import duckdb

from bench.__main__ import ARM_NAMES, MODELS, ROOT, build_workspace, publish, ran, resample, run_arm

BEGIN, END = "<!-- cores -->", "<!-- /cores -->"
ARMS = ["limit", "duckdb_onnx", "duckdb_generic", "duckdb_compiled", "orbital"]
PREDICTED_CORES = 16


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cores", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--threads",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[n for n in (1, 2, 4, 8, 16) if n <= (os.cpu_count() or 1)],
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    if len(args.threads) < 2:
        parser.error("--threads needs at least two thread counts to compare")

    results: dict[str, dict[str, dict[int, dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="scorehouse-bench-cores-") as tmp:
        print(f"building the workspace in {tmp} ...", file=sys.stderr, flush=True)
        env = build_workspace(Path(tmp), MODELS)
        with duckdb.connect(env["SCOREHOUSE_WAREHOUSE"]) as con:
            tables = {model: resample(con, table, args.rows) for model, (_, _, table) in MODELS.items()}
        for round_ in range(args.repeat):
            for model in MODELS:
                for arm in ARMS:
                    for threads in args.threads:
                        print(
                            f"  round {round_ + 1}/{args.repeat}: {model} {arm} threads={threads} ...",
                            file=sys.stderr,
                            flush=True,
                        )
                        result = run_arm(arm, env, model, tables[model], "--threads", str(threads))
                        kept = results.setdefault(model, {}).setdefault(arm, {}).get(threads)
                        if kept is None or result.get("seconds", 0) < kept.get("seconds", float("inf")):
                            results[model][arm][threads] = result
    publish(args.out, report(results, args))
    return 0


def serial_fraction(speedup: float, threads: int) -> float:
    """Amdahl's serial fraction implied by `speedup` on `threads` (0: all parallel, 1: all serial)."""
    return min(1.0, max(0.0, (threads / speedup - 1) / (threads - 1)))


def predicted_speedup(fraction: float, cores: int) -> float:
    return 1 / (fraction + (1 - fraction) / cores)


def report(results, args) -> str:
    low, high = min(args.threads), max(args.threads)
    lines = [
        BEGIN,
        "## Scaling with threads",
        "",
        ran(
            f"python -m bench.cores --rows {args.rows} --threads {','.join(map(str, args.threads))} "
            f"--repeat {args.repeat}"
        )
        + f", {os.cpu_count()} cores, duckdb {duckdb.__version__}. DuckDB's "
        "threads (onnxruntime's for the limit) set per arm; each arm in its own process, best of the rounds. "
        f"Serial fraction: Amdahl's f from the speed-up {low} -> {high} threads; the last column is the "
        f"speed-up over one thread that f predicts on {PREDICTED_CORES} cores.",
        "",
    ]
    for model, arms in results.items():
        lines += [
            f"### {model}, {args.rows:,} rows",
            "",
            "| path | "
            + " | ".join(f"{n} thread{'s' if n > 1 else ''} s" for n in args.threads)
            + f" | speed-up {low} -> {high} | serial fraction | predicted on {PREDICTED_CORES} cores |",
            "|---|" + "---:|" * (len(args.threads) + 3),
        ]
        for arm, by_threads in arms.items():
            if any("seconds" not in r for r in by_threads.values()):
                reason = next(r["unsupported"] for r in by_threads.values() if "unsupported" in r)
                lines.append(f"| {ARM_NAMES[arm]} | n/a: {reason[:100]} |" + " |" * (len(args.threads) + 2))
                continue
            seconds = [by_threads[n]["seconds"] for n in args.threads]
            speedup = by_threads[low]["seconds"] / by_threads[high]["seconds"]
            fraction = serial_fraction(speedup, high // low)
            lines.append(
                f"| {ARM_NAMES[arm]} | "
                + " | ".join(f"{s:.3f}" for s in seconds)
                + f" | {speedup:.2f}x | {fraction:.2f} "
                f"| {predicted_speedup(fraction, PREDICTED_CORES):.1f}x |"
            )
        lines.append("")
    return "\n".join([*lines[:-1], END])


if __name__ == "__main__":
    sys.exit(main())
