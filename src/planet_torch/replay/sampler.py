"""Training batches: B chunks of L consecutive rows, each from one episode, time-major.

Follows the original (``chunk_sequence.py``, ``numpy_episodes.py``) with uniform episode draws:
each chunk picks an episode uniformly among those with at least L rows, then a uniform offset in
[0, rows − L]; a chunk never crosses an episode boundary. Rows keep the alignment of
:mod:`planet_torch.replay.episodes` (row t: o_t, a_{t−1}, r_t), so a chunk needs no shifting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from planet_torch.errors import UserError
from planet_torch.replay.episodes import Episode

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class Batch:
    """Time-major numpy arrays of one batch; L = chunk length, B = batch size."""

    image: np.ndarray
    """uint8 [L, B, H, W, C]."""
    action: np.ndarray
    """float32 [L, B, A]; action[t] produced image[t]."""
    reward: np.ndarray
    """float32 [L, B]; reward[t] was received on the step into image[t]."""
    discount: np.ndarray
    """float32 [L, B]."""
    state: np.ndarray | None = None
    """float32 [L, B, S] when the episodes store a state."""

    def arrays(self) -> dict[str, np.ndarray]:
        out = {
            "image": self.image,
            "action": self.action,
            "reward": self.reward,
            "discount": self.discount,
        }
        if self.state is not None:
            out["state"] = self.state
        return out


class ChunkSampler:
    """Cuts batches from ``episodes``, which may grow between calls (an EpisodeStore)."""

    def __init__(self, episodes: Sequence[Episode]) -> None:
        self.episodes = episodes

    def sample(self, batch_size: int, chunk_length: int, rng: np.random.Generator) -> Batch:
        """B chunks of L rows; the same ``rng`` state and episodes give the same batch."""
        if batch_size < 1 or chunk_length < 1:
            raise ValueError(
                f"batch_size {batch_size} and chunk_length {chunk_length} must be >= 1"
            )
        if len(self.episodes) == 0:
            raise UserError("no episodes to sample training chunks from; collect episodes first")
        rows = np.array([e.num_rows for e in self.episodes])
        eligible = np.flatnonzero(rows >= chunk_length)
        if eligible.size == 0:
            raise UserError(
                f"no stored episode has the {chunk_length} rows a chunk needs (longest: "
                f"{rows.max()}); shorten data.chunk-length to at most {rows.max()}"
            )
        # The result arrays first: a batch too large for memory fails here, at once, with
        # MemoryError (before any per-chunk Python object is made).
        first = self.episodes[int(eligible[0])]
        fields = ["image", "action", "reward", "discount"]
        if first.state is not None:
            fields.append("state")
        out = {
            f: np.empty(
                (chunk_length, batch_size, *getattr(first, f).shape[1:]), getattr(first, f).dtype
            )
            for f in fields
        }
        picks = eligible[rng.integers(0, eligible.size, size=batch_size)]
        starts = rng.integers(0, rows[picks] - chunk_length + 1)
        for b, (i, s) in enumerate(zip(picks, starts, strict=True)):
            episode = self.episodes[int(i)]
            if (episode.state is not None) != ("state" in out):
                raise ValueError("some sampled episodes store a state and others do not")
            for f in fields:  # one copy per chunk straight into the time-major result [L, B, ...]
                out[f][:, b] = getattr(episode, f)[s : s + chunk_length]
        return Batch(
            image=out["image"],
            action=out["action"],
            reward=out["reward"],
            discount=out["discount"],
            state=out.get("state"),
        )


def batch_to_torch(batch: Batch, device: torch.device | str) -> dict[str, torch.Tensor]:
    """Tensors on ``device``; images stay uint8 (the model turns them into floats)."""
    import torch  # here, so env worker processes that only build episodes never load torch

    device = torch.device(device)
    out = {}
    for name, array in batch.arrays().items():
        tensor = torch.from_numpy(array)  # shares memory with the batch on the CPU
        if device.type == "cuda":
            # Pinned host memory lets the copy overlap with GPU work.
            tensor = tensor.pin_memory().to(device, non_blocking=True)
        else:
            tensor = tensor.to(device)
        out[name] = tensor
    return out
