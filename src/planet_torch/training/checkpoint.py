"""Checkpoints: written atomically, loaded with ``weights_only=True`` (no pickled code runs)."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Serialise ``state`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write(Path(path), lambda f: f.write(buffer.getbuffer()))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        state = torch.load(Path(path), map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"no checkpoint at {path}; train first or check --run-dir") from None
    except Exception as error:  # a truncated or foreign file: say which, never a traceback
        first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        first = first if len(first) <= 100 else first[:97] + "..."  # torch's page-long advice
        raise UserError(
            f"checkpoint {path} is unreadable ({type(error).__name__}: {first}): not a "
            "planet-torch checkpoint, or cut short; pass another --checkpoint or train again"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} does not hold a planet-torch state")
    return state


def capture_rng() -> dict[str, Any]:
    """The global random streams (Python, NumPy, torch CPU and CUDA) in a ``weights_only`` form.

    The training loop itself draws from generators seeded by its counters, so these only matter
    for code outside it; they are saved so that nothing random is left behind by a resume.
    """
    version, internal, _ = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal)],
        "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in _numpy_state()[1:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> tuple[Any, ...]:
    return tuple(np.random.get_state(legacy=True))  # ("MT19937", keys, pos, has_gauss, cached)


def restore_rng(state: dict[str, Any]) -> None:
    version, internal = state["python"]
    random.setstate((version, tuple(internal), None))
    keys, *rest = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), *rest))
    # RNG states are CPU byte tensors, even when the checkpoint was mapped onto a GPU.
    torch.set_rng_state(state["torch"].cpu())
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["torch_cuda"]])
