"""A run from start to score, as ``planet train`` and every sweep trial run it.

    train     the trainer of the run's algorithm (PlaNet: loop.py, DDPG: ddpg_loop.py) runs the
              schedule to its end (updates, hours or the env-step budget)
    score     the final model plays schedule.final_eval_episodes noise-free episodes
              (``planet eval``): their mean return is the run's score, the papers' protocol

A run stopped early (Ctrl-C, SIGTERM) is not scored; ``--resume`` finishes it and scores it then.
A finished run whose scores.json already belongs to its last checkpoint is not played again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from planet_torch.config import Config, override, preset
from planet_torch.errors import UserError
from planet_torch.published import published
from planet_torch.training.base import BaseTrainer, Plan, Rates, projected_seconds, size_text
from planet_torch.training.evaluate import evaluate


def trainer_class(cfg: Config) -> type[BaseTrainer]:
    """The trainer of ``cfg.algo``."""
    if cfg.algo == "ddpg":
        from planet_torch.training.ddpg_loop import DDPGTrainer

        return DDPGTrainer
    if cfg.algo == "dreamer":
        from planet_torch.training.dreamer_loop import DreamerTrainer

        return DreamerTrainer
    from planet_torch.training.loop import Trainer

    return Trainer


def train_and_score(
    cfg: Config, run_dir: Path, *, resume: bool = False, progress: bool | None = None
) -> dict[str, Any]:
    """Train (or continue) the run in ``run_dir``, then score its final model. Returns the
    trainer's summary, with ``score``, ``score_std`` and ``eval_wall_seconds`` once scored."""
    trainer = trainer_class(cfg)(cfg, Path(run_dir), resume=resume, progress=progress)
    with trainer.run.writer_lock():  # held until the score is written (the trainer's own
        return _train_then_score(trainer)  # ends with its train())


def _train_then_score(trainer: BaseTrainer) -> dict[str, Any]:
    summary = trainer.train()
    episodes = trainer.cfg.schedule.final_eval_episodes
    if summary["finished"] and episodes > 0:
        try:
            scores = trainer.run.scores()
        except UserError:  # damaged by hand: the eval below writes it again
            scores = None
        if scores is None or (scores.get("updates"), scores.get("episodes")) != (
            summary["updates"],
            episodes,
        ):  # not yet scored, or scored at another checkpoint or episode count
            print(f"final eval: {episodes} noise-free episodes of the final model", flush=True)
            scores = evaluate(
                trainer.run.path, episodes, "mp4", trainer.cfg.device, trainer.cfg.env.workers
            )
        summary.update(
            score=scores["mean"],
            score_std=scores["std"],
            eval_wall_seconds=scores.get("wall_seconds"),
        )
    return summary


def checked_action_size(cfg: Config) -> int:
    """Build ``cfg``'s env once and close it: the task checked as a run checks it (it exists,
    has continuous actions, renders), in seconds. Returns its action dimensions."""
    from planet_torch.envs import make_env

    with make_env(cfg, seed=cfg.seed) as env:
        return env.action_size


def train_env_steps(cfg: Config, plan: Plan) -> int:
    """Env steps of the train episodes (seed and agent's) a run of ``cfg`` with ``plan``
    (its trainer's :meth:`~BaseTrainer.plan`) collects."""
    return (cfg.schedule.seed_episodes + plan.train_episodes) * cfg.episode_env_steps


def describe_plan(cfg: Config, run_dir: Path, resume: bool = False) -> str:
    """``planet train --dry-run``: what the run would do, in each unit a "step" may mean (updates,
    episodes, env steps, policy steps), and the episodes it would hold in RAM; nothing is run or
    written. The env is built once and closed, so the task is checked as the run will check it
    (it exists, has continuous actions, renders). The time it takes is measured by a real
    run's cost line. ``resume``: also where the run's checkpoint would resume it."""
    cfg = cfg.validate()
    actions = checked_action_size(cfg)
    plan = trainer_class(cfg).plan(cfg)
    s, repeat = cfg.schedule, cfg.action_repeat
    train = s.seed_episodes + plan.train_episodes
    test = s.test_seed_episodes + plan.test_episodes
    frame_bytes = cfg.env.image_size**2 * 3
    held = (train + test) * (cfg.episode_policy_steps + 1) * frame_bytes
    batch = (
        f"{cfg.ddpg.batch_size} transitions"
        if cfg.algo == "ddpg"
        else f"{cfg.data.batch_size} chunks × {cfg.data.chunk_length} steps"
    )
    budget = (
        "" if s.max_env_steps is None else f" (budget --schedule.max-env-steps {s.max_env_steps:,})"
    )
    return "\n".join(
        [
            f"plan of {run_dir} ({cfg.task}, {cfg.variant}, seed {cfg.seed}); nothing trained or written:",
            f"  env: built and checked, then closed: {actions} action "
            f"dimension{'s' if actions != 1 else ''}, {cfg.env.image_size}×{cfg.env.image_size} frames",
            f"  {plan.updates:,} updates of {batch}{budget}",
            f"  episodes of {cfg.episode_env_steps:,} env steps = {cfg.episode_policy_steps} policy "
            f"steps (decisions) at action repeat {repeat}:",
            f"    train: {s.seed_episodes} random + {plan.train_episodes} by the agent = "
            f"{train_env_steps(cfg, plan):,} env steps",
            f"    test:  {s.test_seed_episodes} random + {plan.test_episodes} noise-free in "
            f"test phases; final eval: {plan.eval_episodes} (the score)",
            f"  episodes held in RAM at the end: {train + test} ≈ {size_text(held)} (their frames)",
            *([_resume_point(run_dir, plan.updates)] if resume else []),
            "  its time: the cost line a real run prints after its first updates",
        ]
    )


def _resume_point(run_dir: Path, updates: int) -> str:
    """``--resume --dry-run``: how far the run's checkpoint got, and what is left."""
    from planet_torch.training.checkpoint import load_checkpoint
    from planet_torch.training.run_dir import CHECKPOINT_NAME, RunDir

    path = RunDir(run_dir).checkpoints / CHECKPOINT_NAME
    if not path.exists():
        return "  resumes from the start: no checkpoint yet"
    c = load_checkpoint(path)["counters"]
    return (
        f"  resumes at update {c['updates']:,} from its checkpoint ({c['train_collected']} "
        f"train episodes collected, {c['tests_done']} test phases done): "
        f"{max(0, updates - c['updates']):,} updates left"
    )


def budget_note(cfg: Config, preset_name: str, summary: dict[str, Any]) -> str | None:
    """For a run that ended before its preset's env-step budget (``make demo``): how long the
    whole budget would take on this machine, at the speed this run measured, and the command."""
    from planet_torch.training.results import reproduce_command  # matplotlib: not at start-up

    target = override(preset(preset_name), task=cfg.task, seed=cfg.seed, algo=cfg.algo)
    budget = target.schedule.max_env_steps
    rates = Rates(**summary["rates"])
    measured = (rates.seconds_per_update, rates.seconds_per_action)
    if budget is None or summary["env_steps"] >= budget or any(map(math.isnan, measured)):
        return None
    plan = trainer_class(target).plan(target)
    minutes = projected_seconds(target, rates, plan) / 60
    lines = [
        f"this run stopped at {summary['env_steps']:,} env steps; the {preset_name} preset learns "
        f"to a budget of {budget:,} env steps: {plan.updates:,} updates, {plan.train_episodes} "
        f"train, {plan.test_episodes} test and {plan.eval_episodes} eval episodes, about "
        f"{minutes:.0f} min on this machine at this run's speed "
        f"({rates.seconds_per_update:.2f} s/update, {rates.seconds_per_action:.3f} s/action):",
        f"  {reproduce_command(target)}",
    ]
    points = published(cfg.task, budget)
    if points:
        others = ", ".join(f"{m} {v:g}" for m, _, v in points)
        lines.append(
            f"published at {budget // 1000}k env steps: {others}; what the {preset_name} preset "
            "scores on this task: docs/results/README.md"
        )
    return "\n".join(lines)
