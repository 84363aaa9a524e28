"""The run folder: everything a run writes lives under one directory.

runs/<name>/
  config.json        the full Config of the run (written once, checked on resume)
  train_episodes/    one .npz per episode the model trains on (seed + collected)
  test_episodes/     one .npz per episode only used for test losses and scores
  checkpoints/       model, optimiser, RNG states and counters
  videos/            MP4s of episodes and open-loop predictions
  plots/             learning curves
  metrics.jsonl      every logged scalar with env_steps, updates and wall time
  machines.json      the machine of every process that trained the run (and from which update)
  scores.json        the final model's noise-free eval episodes (planet eval): the run's score
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from planet_torch.config import Config
from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write_text
from planet_torch.machine import machine_info

# Fields that may change between a run and its resume without changing what the run computes.
RESUMABLE_CHANGES = frozenset(
    {
        "device",
        "env.workers",
        "schedule.total_updates",
        "schedule.max_hours",
        "schedule.max_env_steps",
        "schedule.final_eval_episodes",
    }
)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def config_differences(a: Config, b: Config) -> list[str]:
    """Dotted names of the fields where two configs differ, ignoring RESUMABLE_CHANGES."""
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return sorted(
        k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k) and k not in RESUMABLE_CHANGES
    )


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def train_episodes(self) -> Path:
        return self.path / "train_episodes"

    @property
    def test_episodes(self) -> Path:
        return self.path / "test_episodes"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def videos(self) -> Path:
        return self.path / "videos"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def scores_path(self) -> Path:
        return self.path / "scores.json"

    def scores(self) -> dict[str, Any] | None:
        """scores.json (``planet eval``, the end of a run), or None before the run is scored."""
        if not self.scores_path.exists():
            return None
        scores: dict[str, Any] = json.loads(self.scores_path.read_text())
        return scores

    @property
    def machines_path(self) -> Path:
        return self.path / "machines.json"

    def machines(self) -> list[dict[str, Any]]:
        """One entry per process that trained this run: ``from_updates`` and ``machine``."""
        if not self.machines_path.exists():
            return []
        entries: list[dict[str, Any]] = json.loads(self.machines_path.read_text())
        return entries

    def record_machine(self, from_updates: int, **notes: Any) -> None:
        """Note the machine of a (re)started training process (and ``notes``, e.g. the precision
        it trains in); a resume at the same update replaces the note of the process it continues."""
        entries = [e for e in self.machines() if e["from_updates"] < from_updates]
        entries.append({"from_updates": from_updates, "machine": machine_info(), **notes})
        atomic_write_text(self.machines_path, json.dumps(entries, indent=1) + "\n")

    def exists(self) -> bool:
        return self.config_path.exists()

    def load_config(self) -> Config:
        if not self.config_path.exists():
            raise UserError(f"{self.path} is not a run folder (no config.json); check --run-dir")
        try:
            return Config.from_dict(json.loads(self.config_path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise UserError(
                f"{self.config_path} is unreadable ({error}); check --run-dir"
            ) from None

    def prepare(self, cfg: Config) -> RunDir:
        """Create the folder layout and write config.json, or check it matches an existing run."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for sub in (self.train_episodes, self.test_episodes, self.checkpoints, self.videos):
                sub.mkdir(exist_ok=True)
        except OSError as error:
            raise UserError(
                f"cannot create run folder {self.path} ({error.strerror}); choose another --run-dir"
            ) from None
        if not os.access(self.path, os.W_OK):
            raise UserError(f"run folder {self.path} is not writable; choose another --run-dir")
        if self.exists():
            stored = self.load_config()
            diff = config_differences(stored, cfg)
            if diff:
                raise UserError(
                    f"run folder {self.path} holds a run with another config (differs in: "
                    f"{', '.join(diff)}); use another --run-dir or the same settings"
                )
        atomic_write_text(self.config_path, cfg.to_json() + "\n")
        return self
