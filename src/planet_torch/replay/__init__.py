"""Replay: episodes on disk and in RAM, and the chunk sampler that cuts training batches."""

from planet_torch.replay.episodes import (
    Episode,
    EpisodeBuilder,
    EpisodeDir,
    EpisodeStore,
    ReplayWarning,
)
from planet_torch.replay.sampler import Batch, ChunkSampler, batch_to_torch

__all__ = [
    "Batch",
    "ChunkSampler",
    "Episode",
    "EpisodeBuilder",
    "EpisodeDir",
    "EpisodeStore",
    "ReplayWarning",
    "batch_to_torch",
]
