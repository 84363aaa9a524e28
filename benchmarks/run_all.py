"""`make bench`: every benchmark in turn, each printing its machine line and matmul ceiling.

Results go to benchmarks/results/<name>.json (git-ignored); BENCHMARKS.md quotes them with the
command that produced them. Full-size runs take minutes on a 2-core CPU.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("bench_env.py", "bench_train_step.py", "bench_planner.py")


def main() -> int:
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    failed = []
    for name in BENCHMARKS:
        script = HERE / name
        if not script.exists():
            continue
        print(f"== {name}", flush=True)
        with open(results / f"{script.stem}.json", "w") as out:
            code = subprocess.call([sys.executable, str(script)], stdout=out)
        print(f"   -> {results / (script.stem + '.json')} (exit {code})", flush=True)
        if code:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
