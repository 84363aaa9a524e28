"""Shared by every test: nothing a test measures about this machine leaks into another test or
into the user's own cache (``~/.cache/planet-torch``)."""

from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per CPU (pytest-xdist): one thread each, in the worker
    # and in the `planet` processes it starts, so that workers never fight over cores (an
    # OpenMP team stalls whenever one of its threads loses its core).
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _own_machine_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANET_TORCH_CACHE_DIR", str(tmp_path_factory.mktemp("machine-cache")))
    from planet_torch.models import precision

    monkeypatch.setattr(precision, "_NOT_KEPT", {})  # as a fresh process
    # No busy-CPU check unless a test sets its own sampler: under `make test` the other worker
    # keeps one of the two CPUs busy, and every auto-precision measurement would read "busy"
    # and go unkept (tests/test_precision.py checks the busy case with simulated samples).
    monkeypatch.setattr(precision, "cpu_sample", lambda: None)


# `make test` hands whole files to its two workers (`--dist loadfile`), in the order below
# (`--no-loadscope-reorder`; xdist would otherwise order files by their number of tests). The
# files that take longest go first, so that the run ends on short files and neither worker
# idles while the other finishes a long one. Seconds per file from `--durations=0` (session 36,
# AVX2-only Zen 1, 2 workers, quiet; 791 s in all, 6:49 wall): training 168, dreamer 87, sweep
# 78, run_ends 57, ddpg 55, multitask 54, troubleshooting 53, losses 45, cli 44, true_sim 32,
# vector 28, any_env 23, precision 17, results 16; the rest ≤ 11.
LONGEST_FIRST = (
    "test_training.py",
    "test_dreamer.py",
    "test_sweep.py",
    "test_run_ends.py",
    "test_ddpg.py",
    "test_multitask.py",
    "test_troubleshooting.py",
    "test_losses.py",
    "test_cli.py",
    "test_true_sim.py",
    "test_vector.py",
    "test_any_env.py",
    "test_precision.py",
    "test_results.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order inside a file, other files theirs
