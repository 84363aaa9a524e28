"""Every scalar goes to two places: ``metrics.jsonl`` (plain, greppable, for plots) and TensorBoard.

Each record carries the three clocks of a run: ``env_steps`` (simulator steps, after action
repeat), ``updates`` (gradient updates) and ``wall_seconds`` (summed over resumes).
TensorBoard's x-axis is updates (env steps are a scalar of their own); ``planet plot`` draws
returns against env steps, like the paper's curves.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from planet_torch.fileio import atomic_write_text


class MetricsLogger:
    def __init__(
        self,
        metrics_path: Path,
        tensorboard_dir: Path | None,
        *,
        wall_seconds_before: float = 0.0,
        purge_after_updates: int | None = None,
    ) -> None:
        self.path = Path(metrics_path)
        self._start = time.perf_counter() - wall_seconds_before
        self.records = len(read_metrics(self.path))  # lines so far, for checkpoints
        # Line-buffered: a crash loses at most a torn last line, which read_metrics skips.
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 -- lives as long as the logger
        self._writer: Any = None
        if tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # On resume, drop TensorBoard events logged after the checkpoint (they are redone).
            purge = None if purge_after_updates is None else purge_after_updates + 1
            self._writer = SummaryWriter(str(tensorboard_dir), purge_step=purge)

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self._start

    def log(self, scalars: dict[str, float], *, env_steps: int, updates: int) -> dict[str, Any]:
        record: dict[str, Any] = {
            "env_steps": int(env_steps),
            "updates": int(updates),
            "wall_seconds": round(self.wall_seconds, 3),
        }
        for name, value in scalars.items():
            value = float(value)
            record[name] = value if math.isfinite(value) else str(value)
            if self._writer is not None:
                self._writer.add_scalar(name, value, global_step=int(updates))
        self._file.write(json.dumps(record) + "\n")
        self.records += 1
        return record

    def image(self, name: str, image: Any, *, updates: int) -> None:
        """An HWC uint8 image (e.g. an open-loop strip) to TensorBoard."""
        if self._writer is not None:
            self._writer.add_image(name, image, global_step=int(updates), dataformats="HWC")

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl; a torn last line (killed mid-write) is skipped."""
    records: list[dict[str, Any]] = []
    if not Path(path).exists():
        return records
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def keep_first_metrics(path: Path, count: int) -> None:
    """Keep the first ``count`` records (resume: what was logged after the checkpoint is redone)."""
    records = read_metrics(path)[:count]
    atomic_write_text(Path(path), "".join(json.dumps(r) + "\n" for r in records))
