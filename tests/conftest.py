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
