"""Shared by every test: nothing a test measures about this machine leaks into another test or
into the user's own cache (``~/.cache/planet-torch``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _own_machine_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANET_TORCH_CACHE_DIR", str(tmp_path_factory.mktemp("machine-cache")))
    from planet_torch.models import precision

    monkeypatch.setattr(precision, "_NOT_KEPT", {})  # as a fresh process
