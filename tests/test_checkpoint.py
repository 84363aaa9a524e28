"""Checkpoints round-trip exactly, RNG streams resume where they stopped, bad files are user errors."""

import random

import numpy as np
import pytest
import torch

from planet_torch.errors import UserError
from planet_torch.training.checkpoint import (
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


def test_round_trip_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    state = {"model": model.state_dict(), "updates": 7, "name": "x", "nested": {"a": [1.5, 2]}}
    path = save_checkpoint(tmp_path / "latest.pt", state)
    loaded = load_checkpoint(path)
    assert loaded["updates"] == 7 and loaded["nested"] == {"a": [1.5, 2]}
    assert torch.equal(loaded["model"]["weight"], model.weight)
    assert not list(tmp_path.glob(".*.tmp"))


def test_rng_streams_resume_identically(tmp_path):
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng()})
    first = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.random(), torch.rand(1).item()) == first


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_rng_streams_resume_from_a_checkpoint_mapped_onto_the_gpu(tmp_path):
    """A run resumed with ``map_location=cuda`` (``--device cuda``) gets its RNG states as CUDA
    tensors; torch.set_rng_state takes CPU byte tensors only (restore_rng moves them back)."""
    torch.manual_seed(5)
    torch.cuda.manual_seed_all(5)
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng()})
    first = (torch.rand(1).item(), torch.rand(1, device="cuda").item())
    torch.manual_seed(99)
    torch.cuda.manual_seed_all(99)
    state = load_checkpoint(tmp_path / "c.pt", map_location=torch.device("cuda"))
    assert state["rng"]["torch"].is_cuda  # what the resume path hands over
    restore_rng(state["rng"])
    assert (torch.rand(1).item(), torch.rand(1, device="cuda").item()) == first


def test_missing_and_corrupt_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(1000)})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="unreadable"):
        load_checkpoint(path)
