"""planet-torch: PlaNet in plain PyTorch.

The library API (src/planet_torch/api.py)::

    from planet_torch import Config, evaluate, load_run, override, preset, train

Importing the package is cheap: these names load their modules (torch included) on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from planet_torch.api import LoadedRun, evaluate, load_run, train
    from planet_torch.config import Config, override, preset

_LAZY = {
    "Config": "planet_torch.config",
    "override": "planet_torch.config",
    "preset": "planet_torch.config",
    "LoadedRun": "planet_torch.api",
    "load_run": "planet_torch.api",
    "train": "planet_torch.api",
    "evaluate": "planet_torch.api",
}
__all__ = ["Config", "LoadedRun", "evaluate", "load_run", "override", "preset", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'planet_torch' has no attribute {name!r}")
