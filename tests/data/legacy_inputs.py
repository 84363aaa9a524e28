"""The tiny model and batch of tests/data/legacy_checkpoint.pt: used by the script that wrote it
(against the old code) and by the test that reads it, so both see the same."""

from __future__ import annotations

import torch

from planet_torch.config import DEBUG, Config, override


def legacy_batch(T: int = 4, B: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randint(0, 256, (T, B, 64, 64, 3), dtype=torch.uint8, generator=g),
        "action": torch.rand(T, B, 1, generator=g) * 2 - 1,
        "reward": torch.rand(T, B, generator=g),
        "discount": torch.ones(T, B),
    }


def legacy_config(cell: str) -> Config:
    return override(
        DEBUG,
        model={
            "cell": cell,
            "cnn_depth": 1,
            "belief_size": 6,
            "state_size": 3,
            "hidden_size": 5,
            "reward_layers": 1,
            "reward_units": 4,
        },
    )
