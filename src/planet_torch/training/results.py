"""Benchmark results that outlive run folders: CSV rows, a markdown table, a figure.

Run folders are scratch; what a benchmark found is committed as plain files (docs/results/):

* ``dmc100k.csv``        one row per run: task, variant, seed, score (mean return of the final
                         model's noise-free eval episodes), env steps, updates, wall-clock, the
                         machine and its load, and the command that reproduces the run
* ``dmc100k-curves.csv`` one row per test phase of every run: the learning curves
* ``random.csv``         the uniform random policy, scored the same way (eval seeds)

Rows are keyed by (task, variant, seed): adding a run again replaces its rows, so each finished
run can be committed as soon as it exists. The table and the figure are made from the CSVs
alone, beside the published PlaNet and Dreamer rows (published.py).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from planet_torch.agents.random import RandomAgent
from planet_torch.config import PRESETS, Config, override
from planet_torch.envs import make_env
from planet_torch.errors import UserError
from planet_torch.fileio import atomic_write_text
from planet_torch.machine import SHARED_CPUS_THRESHOLD, machine_info, machine_label
from planet_torch.published import DMC_TASKS, SOURCE, published, task_order, task_rank
from planet_torch.training.collect import episode_seed, run_episode
from planet_torch.training.logging import read_metrics
from planet_torch.training.plot import Curve, Score, draw_curves
from planet_torch.training.run_dir import RunDir, expand_sweeps, flatten

RUN_FIELDS = (
    "task",
    "variant",
    "seed",
    "score",
    "score_std",
    "eval_episodes",
    "env_steps",
    "updates",
    "train_minutes",
    "eval_minutes",
    "load",
    "action_ms",
    "quiet",
    "machine",
    "precision",
    "command",
)
"""Columns of the runs CSV. ``precision``: the encoder/decoder's (``model.compute_dtype auto``
decides it per machine). ``load``: mean 1-minute load average over the run's test phases
(≈ the run's own threads on a quiet machine; more = it shared the CPU, its minutes are slower
than this machine can do). ``action_ms``: milliseconds per policy step while collecting a train
episode (the agent's decision, the env step and its frame), the median over the run's train
episodes: CEM's planning for PlaNet, one actor call for Dreamer. ``quiet``: see
:func:`quiet_run`; only such runs' minutes say how fast the machine is."""
CURVE_FIELDS = ("task", "variant", "seed", "env_steps", "updates", "wall_minutes", "test_return")
RANDOM_FIELDS = ("task", "episodes", "score", "score_std", "machine")
RUN_KEY = ("task", "variant", "seed")


# ---- rows from a run folder ------------------------------------------------------------------


def reproduce_command(cfg: Config) -> str:
    """The ``planet train`` command of ``cfg``: the preset it differs least from, plus flags
    for every other difference (where it runs, ``device`` and ``env.workers``, and when it
    checkpoints, left out: they change nothing it computes)."""
    flat = flatten(cfg.to_dict())
    # sections another algorithm reads: their values change nothing in this run
    unused = {
        "planet": ("ddpg.", "dreamer."),
        "dreamer": ("ddpg.", "planner."),
        "ddpg": ("dreamer.",),
    }[cfg.algo] + ("device", "env.workers", "schedule.checkpoint_every_minutes")
    best: tuple[int, str, list[str]] | None = None
    for name, base in PRESETS.items():
        base_flat = flatten(override(base, task=cfg.task, seed=cfg.seed, algo=cfg.algo).to_dict())
        diff = sorted(k for k in flat if flat[k] != base_flat.get(k) and not k.startswith(unused))
        if best is None or len(diff) < best[0]:
            best = (len(diff), name, diff)
    assert best is not None
    _, name, diff = best
    flags = [_flag(k, flat[k]) for k in diff]
    algo = "" if cfg.algo == "planet" else f" --algo {cfg.algo}"
    return " ".join(
        [f"planet train --task {cfg.task} --preset {name} --seed {cfg.seed}{algo}", *flags]
    )


TEST_ONLY_PLANNER = ("test_imagination", "test_noise")
"""Planner fields only test episodes read: a run trains the same model whatever they are
(tests/test_training.py:test_test_episodes_never_train)."""


def _scored_command(cfg: Config, scores: dict[str, Any]) -> str:
    """The command that reproduces a row's score. An eval with other test-only planner
    settings (``planet eval --planner.test-imagination``) scored as a run trained with them
    would; other planner changes are the eval's own, after the training command."""
    changed = scores.get("planner", {})
    test_only = {k: v for k, v in changed.items() if k in TEST_ONLY_PLANNER}
    command = reproduce_command(override(cfg, planner=test_only))
    eval_only = [_flag(f"planner.{k}", v) for k, v in changed.items() if k not in test_only]
    if eval_only:
        command += f", then planet eval --episodes {scores['episodes']} " + " ".join(eval_only)
    return command


def _flag(key: str, value: Any) -> str:
    """``--section.field-name VALUE`` of a flattened config key, as the CLI reads it; a boolean
    is ``--section.field-name`` or ``--section.no-field-name``."""
    name = key.replace("_", "-")
    if isinstance(value, bool):
        section, _, field = name.rpartition(".")
        return f"--{section + '.' if section else ''}{'' if value else 'no-'}{field}"
    return f"--{name} {_flag_value(value)}"


def _flag_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(map(str, value))
    return "None" if value is None else str(value)


def quiet_run(
    loads: list[float], machines: list[dict[str, Any]], others: list[float] | None = None
) -> str:
    """``yes`` when the run had its machine to itself: every process used all the CPUs (torch
    threads), and other processes took at most 0.25 CPU between any two test phases
    (``machine/others_cpus``, measured from /proc/stat) or, for runs that predate that
    measurement, the mean load stayed within the CPUs (+ 0.5); ``no`` otherwise, "" if unknown.
    The load is a blunt witness: a 3-minute job beside a 60-minute run barely moves its mean,
    yet slowed it 4-9× while it ran."""
    if not machines or not (loads or others):
        return ""
    cpus = [m.get("affinity_cpus") or m["logical_cpus"] for m in machines]
    all_threads = all(m["torch_threads"] >= c for m, c in zip(machines, cpus, strict=True))
    if others:
        alone = max(others) <= SHARED_CPUS_THRESHOLD
    else:
        alone = bool(np.mean(loads) <= min(cpus) + 0.5)
    return "yes" if all_threads and alone else "no"


def scored_runs(paths: Iterable[Path]) -> list[Path]:
    """The run folders ``paths`` name: a ``planet sweep`` folder stands for its trials that are
    scored (the others are said and skipped); any other path is taken as a run folder."""
    runs: list[Path] = []
    for path in paths:
        for run in expand_sweeps([path]):
            if run != path and RunDir(run).scores() is None:  # a trial of the sweep ``path``
                print(f"skip {run.name}: not scored yet (an unfinished trial)")
            else:
                runs.append(run)
    return runs


def run_rows(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the run's CSV row, its curve rows). The run must be scored (scores.json)."""
    run = RunDir(run_dir)
    cfg = run.load_config()
    scores = run.scores()
    if scores is None:
        raise UserError(
            f"{run.path} has no scores.json: finish the run (planet train --resume) or score "
            f"it (planet eval --run-dir {run.path} --episodes 10)"
        )
    records = read_metrics(run.metrics_path)
    tests = [r for r in records if "test/return" in r]
    loads = [r["machine/load_1min"] for r in tests if "machine/load_1min" in r]
    machines = sorted({machine_label(m["machine"]) for m in run.machines()}) or ["?"]
    others = [r["machine/others_cpus"] for r in tests if "machine/others_cpus" in r]
    actions = [r["seconds_per_action"] for r in records if "train/return" in r]
    actions = [a for a in actions if not math.isnan(a)]  # NaN: nothing acted yet in that process
    quiet = quiet_run(loads, [m["machine"] for m in run.machines()], others)
    key = {"task": cfg.task, "variant": cfg.variant, "seed": cfg.seed}
    row = {
        **key,
        "score": round(scores["mean"], 1),
        "score_std": round(scores["std"], 1),
        "eval_episodes": scores["episodes"],
        "env_steps": scores.get("env_steps", ""),
        "updates": scores["updates"],
        "train_minutes": round(scores.get("train_wall_seconds", math.nan) / 60, 1),
        "eval_minutes": round(scores.get("wall_seconds", math.nan) / 60, 1),
        "load": round(float(np.mean(loads)), 2) if loads else "",
        "action_ms": round(float(np.median(actions)) * 1000, 1) if actions else "",
        "quiet": quiet,
        "machine": " + ".join(machines),
        "precision": " + ".join(sorted({m.get("compute_dtype", "") for m in run.machines()})),
        "command": _scored_command(cfg, scores),
    }
    curve = [
        {
            **key,
            "env_steps": r["env_steps"],
            "updates": r["updates"],
            "wall_minutes": round(r["wall_seconds"] / 60, 2),
            "test_return": round(r["test/return"], 2),
        }
        for r in tests
    ]
    return row, curve


# ---- the random policy -------------------------------------------------------------------------


def random_policy_row(task: str, episodes: int = 10, seed: int = 0) -> dict[str, Any]:
    """The uniform random policy on ``task``: ``episodes`` episodes with the eval seeds of a run
    of ``seed``, scored like a run (mean and std of the returns)."""
    cfg = Config(task=task, seed=seed)  # the task's own episodes and action repeat
    env = make_env(cfg, seed=episode_seed(seed, "eval", 0, cfg.task_count))
    returns = []
    try:
        for i in range(episodes):
            episode_seed_i = episode_seed(seed, "eval", i, cfg.task_count)
            agent = RandomAgent(
                env.action_low, env.action_high, np.random.default_rng(episode_seed_i)
            )
            returns.append(float(run_episode(env, agent, episode_seed_i).reward.sum()))
    finally:
        env.close()
    return {
        "task": task,
        "episodes": episodes,
        "score": round(float(np.mean(returns)), 1),
        "score_std": round(float(np.std(returns)), 1),
        "machine": machine_label(machine_info()),
    }


# ---- CSV files -----------------------------------------------------------------------------------


def read_csv(path: Path) -> list[dict[str, str]]:
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(path), buffer.getvalue())


def _row_order(row: dict[str, Any]) -> tuple[tuple[int, str], str, int, float]:
    step = float(row["env_steps"] or 0) if "test_return" in row else 0.0
    return (
        task_rank(str(row["task"])),
        str(row.get("variant", "")),
        int(row.get("seed") or 0),
        step,
    )


def upsert(
    path: Path, fields: tuple[str, ...], new_rows: list[dict[str, Any]], key: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows of ``path`` whose key is not among ``new_rows``' keys, plus ``new_rows``; written
    back in the tables' task order, then variant, seed (and env steps). Returns all rows."""
    replaced = {tuple(str(r[k]) for k in key) for r in new_rows}
    rows: list[dict[str, Any]] = [
        dict(r) for r in read_csv(path) if tuple(str(r[k]) for k in key) not in replaced
    ]
    rows = sorted(rows + new_rows, key=_row_order)
    write_csv(path, fields, rows)
    return rows


# ---- table and figure from the CSVs ---------------------------------------------------------------


def mean_std(values: list[float], digits: int = 0) -> str:
    """``mean ± sample std (n - 1)`` over seeds; one value alone has no spread to show."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def minutes_span(rows: list[dict[str, Any]]) -> str:
    """Training + eval minutes per run, the range over the runs that had the machine to
    themselves (``quiet``); "shared CPU" where every run shared it, "" where there is none."""
    minutes = [
        float(r["train_minutes"]) + float(r["eval_minutes"])
        for r in rows
        if r.get("quiet") == "yes"
    ]
    if not minutes:
        return "shared CPU" if rows else ""
    low, high = f"{min(minutes):.0f}", f"{max(minutes):.0f}"
    return low if low == high else f"{low}-{high}"


def results_table(
    runs: list[dict[str, Any]], random: list[dict[str, Any]], variant: str = "planet"
) -> str:
    """Markdown: per task, the score over seeds (mean ± sample std) beside the random policy
    and the published 100k rows; updates and wall-clock per run (the range over the quiet runs;
    "shared CPU" where every run of the task shared the machine). Once Dreamer runs exist
    (``--algo dreamer``, variant ``dreamer``), their score over seeds and minutes too.

    The six DMC-100k tasks have a row, run or not, once runs of any of them are in; a run of
    another task (``gym:Pendulum-v1``) adds its own, after them, with the env steps its score
    was taken at where they are not 100 000 (and no published rows). A CSV of other tasks
    only (``--csv``) lists just those, without the published columns."""
    dreamer = [r for r in runs if r["variant"] == "dreamer"]
    extra = " | Dreamer (ours) | seeds | Dreamer minutes" if dreamer else ""
    ran = {r["task"] for r in runs if r["variant"] in (variant, "dreamer")}
    benchmark = not ran or bool(ran & set(DMC_TASKS))
    ours = "score at 100k (ours, cpu preset)" if benchmark else "score (ours)"
    papers = " PlaNet 100k | Dreamer 100k |" if benchmark else ""  # published: DMC-100k only
    lines = [
        f"| task | {ours} | seeds | random policy |{papers} minutes per run | updates{extra} |",
        "|---|---:|---:|---:|" + "---:|" * (4 if benchmark else 2) + "---:|" * 3 * bool(dreamer),
    ]
    randoms = {r["task"]: float(r["score"]) for r in random}
    for task in task_order({*DMC_TASKS, *ran} if benchmark else ran):
        mine = [r for r in runs if r["task"] == task and r["variant"] == variant]
        refs = {m: f"{v:g}" for m, steps, v in published(task, 100_000)}
        score = mean_std([float(r["score"]) for r in mine]) if mine else "not run yet"
        updates = ", ".join(sorted({str(r["updates"]) for r in mine}))
        rnd = f"{randoms[task]:.0f}" if task in randoms else ""
        published_cells = f" {refs.get('PlaNet', '')} | {refs.get('Dreamer', '')} |"
        row = (
            f"| {task} | {score}{_other_budget(mine)} | {len(mine)} | {rnd} |"
            f"{published_cells if benchmark else ''} {minutes_span(mine)} | {updates} |"
        )
        if dreamer:
            theirs_rows = [r for r in dreamer if r["task"] == task]
            theirs = [float(r["score"]) for r in theirs_rows]
            theirs_score = (
                mean_std(theirs) + _other_budget(theirs_rows) if theirs else "not run yet"
            )
            row += f" {theirs_score} | {len(theirs)} |"
            row += f" {minutes_span(theirs_rows)} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def _other_budget(rows: list[dict[str, Any]]) -> str:
    """ " at 10,000 env steps" where runs were scored at a budget other than the table's 100k."""
    steps = sorted({int(float(r["env_steps"])) for r in rows if r.get("env_steps", "") != ""})
    other = [f"{n:,}" for n in steps if n != 100_000]
    return f" at {', '.join(other)} env steps" if other else ""


def results_figure(
    curve_rows: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    random: list[dict[str, Any]],
    output: Path,
) -> Path:
    """The 2 × 3 grid: test return vs env steps per task (mean, min..max over seeds), the final
    scores, the random policy and the published 100k (and 500k) points; a panel more for each
    other task run, or, where no DMC-100k task is among the curves, only their tasks'."""
    grouped: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in curve_rows:
        grouped.setdefault((r["task"], r["variant"], int(r["seed"])), []).append(r)
    curves = [
        Curve(
            task,
            variant,
            seed,
            np.array([float(r["env_steps"]) for r in rows]),
            np.array([float(r["test_return"]) for r in rows]),
        )
        for (task, variant, seed), rows in grouped.items()
    ]
    scores = [
        Score(r["task"], r["variant"], int(r["seed"]), int(r["env_steps"]), float(r["score"]))
        for r in runs
    ]
    levels = {r["task"]: float(r["score"]) for r in random}
    ran = {c.task for c in curves}
    benchmark = not ran or bool(ran & set(DMC_TASKS))  # then all six panels, run or not
    return draw_curves(
        curves,
        output,
        reference="dmc100k",
        random_levels=levels,
        random_label="random policy, 10 episodes",
        scores=scores,
        title=f"DMC-100k, planet-torch cpu preset (published points: {SOURCE})"
        if benchmark
        else "planet-torch runs",
        tasks=task_order({*DMC_TASKS, *ran} if benchmark else ran),
    )


_MARKER = re.compile(r"(<!-- dmc100k-table -->\n)(.*?)(<!-- /dmc100k-table -->)", re.DOTALL)


def update_docs(path: Path, table: str) -> bool:
    """Replace the table between ``<!-- dmc100k-table -->`` and ``<!-- /dmc100k-table -->``
    in ``path``; False when the file has no such markers."""
    text = Path(path).read_text()
    if not _MARKER.search(text):
        return False
    atomic_write_text(Path(path), _MARKER.sub(lambda m: m.group(1) + table + m.group(3), text))
    return True
