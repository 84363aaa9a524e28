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


# `make test` hands whole files to its two workers (`--dist loadfile`), in the order below
# (`--no-loadscope-reorder`; xdist would otherwise order files by their number of tests). The
# files that take longest go first, so that the run ends on short files and neither worker
# idles while the other finishes a long one. Order measured with `--durations` (session 15,
# Zen 3, 2 workers): test_training ≈ 440 s of worker time beside two learning runs, then
# troubleshooting and run_ends ≈ 140 each, ddpg and cli ≈ 125, sweep ≈ 105, multitask ≈ 100,
# losses ≈ 95, vector ≈ 55; every other file under 40.
LONGEST_FIRST = (
    "test_training.py",
    "test_troubleshooting.py",
    "test_run_ends.py",
    "test_ddpg.py",
    "test_cli.py",
    "test_sweep.py",
    "test_multitask.py",
    "test_losses.py",
    "test_vector.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: tests keep their order inside a file, other files theirs
