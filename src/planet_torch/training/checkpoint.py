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
        raise UserError(
            f"checkpoint {path} is unreadable ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} does not hold a planet-torch state")
    return state


def capture_rng(np_rng: np.random.Generator, torch_generator: torch.Generator) -> dict[str, Any]:
    """Every random stream a run uses, in a form ``weights_only`` loading accepts."""
    state: dict[str, Any] = {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "numpy": np_rng.bit_generator.state,
        "torch_global": torch.get_rng_state(),
        "torch_generator": torch_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(
    state: dict[str, Any], np_rng: np.random.Generator, torch_generator: torch.Generator
) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), None))
    np_rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch_global"])
    torch_generator.set_state(state["torch_generator"])
    if "torch_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["torch_cuda"])
