"""Start-up: how long a fresh process takes to answer a small command, side by side with importing DuckDB
and pyarrow alone.

    python -m bench.startup [--repeat 5] [--out bench/RESULTS.md]

Builds a private workspace (the demo's mortgage features, the demo GBT as mortgage_deny), then runs each
command in a fresh process, commands alternating round by round, and keeps the best wall time of --repeat:
  baseline    python -c "import duckdb, pyarrow"
  models      scorehouse models
  show        scorehouse show mortgage_deny
  sql         scorehouse sql "select predict('mortgage_deny', t) from features_mortgage t limit 1"
and, for each command, whether the process imported scikit-learn, skl2onnx or scipy (it should not: a
process that only reads or scores loads none of the training stack). Writes its section of --out.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import MODELS, ROOT, build_workspace, publish, ran

BEGIN, END = "<!-- startup -->", "<!-- /startup -->"
SCOREHOUSE = str(Path(sys.executable).parent / "scorehouse")
COMMANDS = {
    "baseline": [sys.executable, "-c", "import duckdb, pyarrow"],
    "models": [SCOREHOUSE, "models"],
    "show": [SCOREHOUSE, "show", "mortgage_deny"],
    "sql": [SCOREHOUSE, "sql", "select predict('mortgage_deny', t) as p from features_mortgage t limit 1"],
}
LABELS = {
    "baseline": '`python -c "import duckdb, pyarrow"`',
    "models": "`scorehouse models`",
    "show": "`scorehouse show mortgage_deny`",
    "sql": "`scorehouse sql \"select predict('mortgage_deny', t) ...\"`",
}
TRAINING_STACK = ("sklearn", "skl2onnx", "scipy")
# Run first in a command's process: at exit it prints the training-stack packages the process imported.
IMPORTED = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('imported:', ','.join(sorted({m.split('.')[0] for m in sys.modules} & "
    f"{set(TRAINING_STACK)!r})), file=sys.stderr))\n"
)


def imported_training_stack(command: list[str], env: dict[str, str]) -> list[str]:
    """The training-stack packages `command` imports (run once through python, with the exit hook)."""
    if command[0] == sys.executable:
        code = IMPORTED + command[2]
    else:  # the scorehouse entry point, as its console script calls it
        code = IMPORTED + f"sys.argv = {command!r}\nfrom scorehouse.cli import main\nsys.exit(main())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    line = next((line for line in done.stderr.splitlines() if line.startswith("imported: ")), None)
    if done.returncode or line is None:
        raise RuntimeError(f"{command} failed (exit {done.returncode}): {done.stderr[-500:]}")
    return [name for name in line.removeprefix("imported: ").split(",") if name]


def best_times(repeat: int, env: dict[str, str]) -> dict[str, float]:
    """The best wall seconds of each command over `repeat` rounds, commands alternating."""
    best = dict.fromkeys(COMMANDS, float("inf"))
    for _ in range(repeat):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, env=env, capture_output=True, check=True)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def section(best: dict[str, float], stacks: dict[str, list[str]], repeat: int) -> str:
    lines = [
        BEGIN,
        "## Start-up",
        "",
        ran(f"python -m bench.startup --repeat {repeat}") + ".",
        f"A fresh process per run, commands alternating, best of {repeat}; the ratio is to the baseline's time.",
        "",
        "| command | seconds | ratio to the baseline | imports of the training stack |",
        "|---|---:|---:|---|",
    ]
    for name, seconds in best.items():
        imports = ", ".join(stacks[name]) or "none"
        lines.append(f"| {LABELS[name]} | {seconds:.3f} | {seconds / best['baseline']:.2f}x | {imports} |")
    return "\n".join([*lines, END])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scorehouse-startup-") as folder:
        env = {**os.environ, **build_workspace(Path(folder), {"mortgage_deny": MODELS["mortgage_deny"]})}
        stacks = {name: imported_training_stack(command, env) for name, command in COMMANDS.items()}
        best = best_times(args.repeat, env)
    publish(args.out, section(best, stacks, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
