"""What the world-model tests share: tiny configs, a batch with a learnable signal, seeded
models and generators, and one torch thread."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

from planet_torch.config import DEBUG, Config, override
from planet_torch.models import WorldModel

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
PIXEL_CONST = 64 * 64 * 3 * HALF_LOG_2PI  # the image NLL of a perfect prediction


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from threads, and on a busy machine an OpenMP team stalls
    whenever one of its threads loses its core: one thread keeps these tests fast."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny(**sections: dict) -> Config:
    """The debug preset with tiny images nets; sections override it."""
    return override(DEBUG, **sections)


def blob_batch(T: int = 8, B: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A 10×10 white square whose x position integrates the action; reward = its position."""
    g = torch.Generator().manual_seed(seed)
    action = torch.rand(T, B, 1, generator=g) * 2 - 1
    action[0] = 0  # row 0: the reset frame, zero action
    pos = (27 + torch.cumsum(action[..., 0] * 6, 0).round().long()).clamp(0, 54)  # [T, B]
    image = torch.zeros(T, B, 64, 64, 3, dtype=torch.uint8)
    for t in range(T):
        for b in range(B):
            image[t, b, 27:37, pos[t, b] : pos[t, b] + 10] = 255
    return {
        "image": image,
        "action": action,
        "reward": (pos.float() - 27) / 27,
        "discount": torch.ones(T, B),
        "state": torch.stack([pos.float() / 54, action[..., 0]], -1),
    }


def make(cfg: Config = DEBUG, seed: int = 0, **kwargs: int) -> WorldModel:
    torch.manual_seed(seed)
    return WorldModel(cfg, action_size=1, **kwargs)


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
