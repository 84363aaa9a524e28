"""Learning curves from run folders: test return vs env steps, mean and spread over seeds."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import IO

import matplotlib

matplotlib.use("Agg")  # headless: never look for a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import EngFormatter

from planet_torch.config import TASKS
from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write
from planet_torch.training.logging import read_metrics
from planet_torch.training.run_dir import RunDir


def plot_runs(run_dirs: list[Path], output: Path, metric: str = "test/return") -> Path:
    """One panel per task; one line per variant (mean over seeds, band = min..max over seeds);
    the paper's Table 1 PlaNet score as a dashed line where the task is in it."""
    curves: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        cfg = run.load_config()
        points = [
            (r["env_steps"], r[metric]) for r in read_metrics(run.metrics_path) if metric in r
        ]
        if not points:
            continue
        steps, values = (np.asarray(v, dtype=float) for v in zip(*points, strict=True))
        curves[cfg.task][cfg.variant].append((steps, values))
    if not curves:
        raise UserError(f"no '{metric}' values in {', '.join(map(str, run_dirs))}; train first")
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (task, variants) in zip(axes[0], sorted(curves.items()), strict=True):
        for variant, runs in sorted(variants.items()):
            grid = np.unique(np.concatenate([s for s, _ in runs]))
            # Each seed interpolated on the common grid, only inside the range it covers.
            table = np.stack(
                [
                    np.where((grid >= s[0]) & (grid <= s[-1]), np.interp(grid, s, v), np.nan)
                    for s, v in runs
                ]
            )
            mean = np.nanmean(table, axis=0)
            label = f"{variant} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
            (line,) = ax.plot(grid, mean, label=label)
            if len(runs) > 1:
                ax.fill_between(
                    grid,
                    np.nanmin(table, 0),
                    np.nanmax(table, 0),
                    alpha=0.2,
                    color=line.get_color(),
                )
        paper = TASKS[task].paper_score if task in TASKS else None
        if paper is not None:
            ax.axhline(
                paper,
                color="k",
                linestyle="--",
                linewidth=1,
                label=f"PlaNet, paper Table 1 ({paper:g})",
            )
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, not 150000 (labels collide)
        ax.set_ylabel(metric.replace("/", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lstrip(".") or "png"

    def write(f: IO[bytes]) -> None:
        fig.savefig(f, format=suffix, dpi=110)

    atomic_write(output, write)
    plt.close(fig)
    return output
