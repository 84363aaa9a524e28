"""`make bench`: every benchmark in turn, each printing its machine line and matmul ceiling.

Results go to benchmarks/results/<name>.json (git-ignored); BENCHMARKS.md quotes them with the
command that produced them. Full-size runs take minutes on a 2-core CPU.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS: tuple[tuple[str, ...], ...] = (
    ("bench_env.py",),
    ("bench_train_step.py",),
    ("bench_vs_kaixhin.py",),  # needs third_party/kaixhin (see its docstring)
    ("bench_true_sim.py", "--episodes", "1"),
    ("bench_collect.py",),
)
"""Script and arguments. bench_planner_choices.py needs a trained run: see BENCHMARKS.md."""


def main() -> int:
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = []
    for name, *args in BENCHMARKS:
        script = HERE / name
        print(f"== {name} {' '.join(args)}", flush=True)
        with open(results / f"{script.stem}.json", "w") as out:
            code = subprocess.call([sys.executable, str(script), *args], stdout=out)
        print(f"   -> {results / (script.stem + '.json')} (exit {code})", flush=True)
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
