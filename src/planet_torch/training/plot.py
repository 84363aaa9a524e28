"""Learning curves: test return vs env steps, mean and spread over seeds, one panel per task.

The same drawing serves run folders (``planet plot``, sweeps) and the committed benchmark CSVs
(``planet results``, docs/results/): curves become :class:`Curve` values first. Each panel may
show the random policy's level, the runs' final scores (the noise-free eval at the end of a run)
and published scores at an env-step budget (``reference="dmc100k"``, published.py).
"""

from __future__ import annotations

import difflib
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import matplotlib

matplotlib.use("Agg")  # headless: never look for a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import EngFormatter

from planet_torch.config import TASKS
from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write, writable_file
from planet_torch.published import SOURCE, published, task_order
from planet_torch.training.logging import read_metrics
from planet_torch.training.run_dir import RunDir

REFERENCES = ("dmc100k", "paper", "none")
"""What a panel is compared with: the published PlaNet and Dreamer scores at 100k (and 500k) env
steps (drawn up to the runs' last env step), PlaNet's Table 1 (after 1000 episodes), nothing."""


@dataclass(frozen=True)
class Curve:
    """One run's logged metric against env steps."""

    task: str
    variant: str
    seed: int
    env_steps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Score:
    """A run's final score: the mean return of its noise-free eval episodes at ``env_steps``."""

    task: str
    variant: str
    seed: int
    env_steps: int
    score: float


def curves_from_runs(run_dirs: list[Path], metric: str = "test/return") -> list[Curve]:
    curves = []
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        cfg = run.load_config()
        points = [
            (r["env_steps"], r[metric]) for r in read_metrics(run.metrics_path) if metric in r
        ]
        if points:
            steps, values = (np.asarray(v, dtype=float) for v in zip(*points, strict=True))
            curves.append(Curve(cfg.task, cfg.variant, cfg.seed, steps, values))
    return curves


def _metric_hint(run_dirs: list[Path], metric: str) -> str:
    """What to do when no run logged ``metric``: the names they did log (close ones first);
    where they logged nothing yet, to train first; for a test metric before the first test
    phase, when that comes."""
    logged = sorted(
        {
            key
            for run_dir in run_dirs
            for record in read_metrics(RunDir(run_dir).metrics_path)
            for key, value in record.items()
            if isinstance(value, (int, float))
            and key not in ("env_steps", "updates", "wall_seconds")
        }
    )
    if not logged:
        return "train first"
    if metric.startswith("test/") and not any(k.startswith("test/") for k in logged):
        return _first_test_phase(run_dirs)
    close = difflib.get_close_matches(metric, logged, n=3)
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"--metric takes one of the logged scalars: {', '.join(logged)}"


def _first_test_phase(run_dirs: list[Path]) -> str:
    """Where runs have trained but not yet tested: when their first test phase comes."""
    parts = []
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        done = max((int(r.get("updates", 0)) for r in read_metrics(run.metrics_path)), default=0)
        every = run.load_config().updates_per_test_phase
        parts.append(f"at update {every} of {run_dir}, {done} done")
    return f"no test phase has ended yet (the first ends {'; '.join(parts)}): plot again then"


def scores_from_runs(run_dirs: list[Path]) -> list[Score]:
    """The scores.json of every run that has one (``planet eval``, or the end of a run)."""
    scores = []
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        data = run.scores()
        if data is not None and "env_steps" in data:  # older scores.json lack env steps
            cfg = run.load_config()
            scores.append(
                Score(cfg.task, cfg.variant, cfg.seed, int(data["env_steps"]), data["mean"])
            )
    return scores


def random_levels_from_runs(run_dirs: list[Path]) -> dict[str, float]:
    """Per task, the mean return of the runs' seed episodes (uniform random actions)."""
    returns: dict[str, list[float]] = defaultdict(list)
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        task = run.load_config().task
        for record in read_metrics(run.metrics_path):
            for key in ("seed/train_return", "seed/test_return"):
                if key in record:
                    returns[task].append(float(record[key]))
    return {task: float(np.mean(values)) for task, values in returns.items()}


def draw_curves(
    curves: list[Curve],
    output: Path,
    *,
    metric: str = "test/return",
    reference: str = "dmc100k",
    random_levels: dict[str, float] | None = None,
    random_label: str = "random policy",
    scores: list[Score] | None = None,
    title: str | None = None,
    tasks: list[str] | None = None,
) -> Path:
    """One panel per task (three per row): per variant the mean over seeds, band = min..max.
    ``tasks``: these panels in this order, "not run yet" where a task has no curve."""
    if reference not in REFERENCES:
        raise UserError(f"--reference {reference!r}: choose from {', '.join(REFERENCES)}")
    by_task: dict[str, dict[str, list[Curve]]] = defaultdict(lambda: defaultdict(list))
    for curve in curves:
        by_task[curve.task][curve.variant].append(curve)
    if not by_task:
        raise UserError(f"no '{metric}' values to plot; train first")
    tasks = tasks or task_order(set(by_task))
    colors = variant_colors({c.variant for c in curves})
    columns = min(3, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(tasks) :]:
        ax.set_visible(False)
    for ax, task in zip(axes.flat, tasks, strict=False):
        last_step = max(
            (float(c.env_steps[-1]) for v in by_task[task].values() for c in v), default=0.0
        )
        if not by_task[task]:
            ax.text(0.5, 0.5, "not run yet", ha="center", transform=ax.transAxes, color="0.4")
            ax.set_xlim(0, 105_000)
        for variant, runs in sorted(by_task[task].items()):
            color = _draw_variant(ax, variant, runs, colors[variant])
            _draw_scores(ax, task, variant, scores or [], color)
        if random_levels and task in random_levels:
            level = random_levels[task]
            ax.axhline(level, color="0.5", linestyle=":", label=f"{random_label} ({level:.0f})")
        _draw_reference(ax, task, reference, last_step)
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, not 150000 (labels collide)
        ax.set_ylabel(metric.replace("/", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lstrip(".") or "png"

    def write(f: IO[bytes]) -> None:
        fig.savefig(f, format=suffix, dpi=110)

    atomic_write(output, write)
    plt.close(fig)
    return output


def variant_colors(variants: set[str]) -> dict[str, str]:
    """One colour per variant for every panel of a figure: ``planet`` (the preset) first in
    matplotlib's cycle, the others in name order after it."""
    ordered = sorted(variants, key=lambda v: (v != "planet", v))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {v: matplotlib.colors.to_hex(cycle[i % len(cycle)]) for i, v in enumerate(ordered)}


def _draw_variant(ax: plt.Axes, variant: str, runs: list[Curve], color: str) -> str:
    grid = np.unique(np.concatenate([c.env_steps for c in runs]))
    # Each seed interpolated on the common grid, only inside the range it covers.
    table = np.stack(
        [
            np.where(
                (grid >= c.env_steps[0]) & (grid <= c.env_steps[-1]),
                np.interp(grid, c.env_steps, c.values),
                np.nan,
            )
            for c in runs
        ]
    )
    mean = np.nanmean(table, axis=0)
    label = f"{variant} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
    marker = "o" if len(grid) == 1 else None  # one test phase so far: a line would not show
    ax.plot(grid, mean, label=label, color=color, marker=marker)
    if len(runs) > 1:
        ax.fill_between(grid, np.nanmin(table, 0), np.nanmax(table, 0), alpha=0.2, color=color)
    return color


def _draw_scores(ax: plt.Axes, task: str, variant: str, scores: list[Score], color: str) -> None:
    """Final scores: mean over seeds at their env steps, error bar = min..max over seeds."""
    mine = [s for s in scores if s.task == task and s.variant == variant]
    if not mine:
        return
    values = np.array([s.score for s in mine])
    x = float(np.mean([s.env_steps for s in mine]))
    mean = float(values.mean())
    ax.errorbar(
        [x],
        [mean],
        yerr=[[mean - values.min()], [values.max() - mean]],
        fmt="o",
        color=color,
        capsize=3,
        label=f"{variant} score, final eval ({mean:.0f})",
    )


def _draw_reference(ax: plt.Axes, task: str, reference: str, last_step: float) -> None:
    if reference == "paper":
        paper = TASKS[task].paper_score if task in TASKS else None
        if paper is not None:
            ax.axhline(
                paper,
                color="k",
                linestyle="--",
                linewidth=1,
                label=f"PlaNet, paper Table 1 ({paper:g})",
            )
    elif reference == "dmc100k":
        markers = {"PlaNet": ("k", "^"), "Dreamer": ("tab:red", "s")}
        # Published points up to the runs' last env step (at least the 100k ones).
        for method, steps, value in published(task, max(last_step, 100_000) * 1.01):
            color, marker = markers.get(method, ("k", "x"))
            ax.plot(
                [steps],
                [value],
                marker=marker,
                color=color,
                linestyle="none",
                markersize=7,
                label=f"{method} at {steps // 1000}k, {SOURCE.split(' (')[0]} ({value:g})",
            )


def figure_file(path: Path, flag: str) -> Path:
    """``path`` as a figure file matplotlib can write (png, pdf, svg, ...; no suffix: png) in
    a folder this process can write, checked before any work; else a one-line
    :class:`UserError` naming ``flag``."""
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = path.suffix.lstrip(".") or "png"
    if suffix not in FigureCanvasBase.get_supported_filetypes():
        raise UserError(f"{flag} {path}: no figure format .{suffix}; use .png, .pdf or .svg")
    return writable_file(path, flag)


def plot_runs(
    run_dirs: list[Path],
    output: Path,
    metric: str = "test/return",
    reference: str = "dmc100k",
) -> Path:
    """Curves of run folders (seeds of a task and variant averaged), their random-policy level
    (the seed episodes) and final scores where they have them, against ``reference``."""
    curves = curves_from_runs(run_dirs, metric)
    if not curves:
        raise UserError(
            f"no '{metric}' values in {', '.join(map(str, run_dirs))}; {_metric_hint(run_dirs, metric)}"
        )
    return draw_curves(
        curves,
        output,
        metric=metric,
        reference=reference,
        random_levels=random_levels_from_runs(run_dirs) if metric == "test/return" else None,
        random_label="random policy: seed episodes",
        scores=scores_from_runs(run_dirs) if metric == "test/return" else None,
    )
