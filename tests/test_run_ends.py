"""How a run ends: at an env-step budget (a test phase, then a score; killed and resumed, the same
end) and at a wall-clock limit (checkpointed; resumed, the run goes on as if never stopped).
Apart from test_training.py so that the two pytest workers of `make test` share the long
subprocess runs."""

import json
from pathlib import Path

import numpy as np
import pytest
from run_helpers import (
    assert_one_line_error,
    assert_same_episodes,
    assert_same_run,
    kill_once_written,
    metrics,
    planet_here,
)

from planet_torch.config import DEBUG, override
from planet_torch.errors import UserError
from planet_torch.training.loop import Trainer

# An env-step budget: 2 seed episodes of 80 env steps, then one episode per 3 updates until the
# train episodes hold 500 env steps (5 more: 560), i.e. 15 updates; test phases at 6, 12, 15.
BUDGET = [
    "train",
    "--preset",
    "debug",
    "--task",
    "cartpole-balance",
    "--schedule.max-env-steps",
    "500",
    "--schedule.total-updates",
    "1000",
]


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("runs") / "budget"
    result = planet_here(*BUDGET, "--run-dir", str(run))
    assert result.returncode == 0, result.stderr
    return run, result.stdout


def test_env_step_budget_ends_with_a_test_phase_and_a_score(budget_run):
    run, stdout = budget_run
    lengths = [int(p.stem.split("len")[1]) for p in (run / "train_episodes").glob("*.npz")]
    assert len(lengths) == 2 + 5 and sum(lengths) * 8 == 560  # 10 decisions × repeat 8
    records = metrics(run)
    tests = [r for r in records if "test/return" in r]
    assert [(r["updates"], r["env_steps"]) for r in tests] == [(6, 320), (12, 480), (15, 560)]
    assert max(r["updates"] for r in records) == 15  # no update after the budget
    scores = json.loads((run / "scores.json").read_text())
    assert (scores["updates"], scores["env_steps"], scores["episodes"]) == (15, 560, 2)
    assert f"score: {scores['mean']:.1f}" in stdout
    assert "budget 500 env steps" in stdout  # the cost line projects to the budget
    machines = json.loads((run / "machines.json").read_text())
    assert [m["from_updates"] for m in machines] == [0] and machines[0]["machine"]["cpu_model"]


def test_dry_run_plans_what_the_run_did(budget_run, tmp_path):
    """``--dry-run`` of the same command: the updates, episodes and env steps the run above
    made and holds, and no folder written."""
    run, _ = budget_run
    plan = planet_here(*BUDGET, "--run-dir", str(tmp_path / "dry"), "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert not (tmp_path / "dry").exists()
    text = plan.stdout
    assert "15 updates of 4 chunks × 8 steps (budget --schedule.max-env-steps 500)" in text
    assert "episodes of 80 env steps = 10 policy steps (decisions) at action repeat 8" in text
    assert "train: 2 random + 5 by the agent = 560 env steps" in text
    tests = len(list((run / "test_episodes").glob("*.npz")))  # seed ones + one per test phase
    seeded = DEBUG.schedule.test_seed_episodes
    assert (
        f"test:  {seeded} random + {tests - seeded} noise-free in test phases; final eval: 2"
        in text
    )
    frames = sum(np.load(p)["image"].nbytes for p in run.glob("t*_episodes/*.npz")) / 2**20
    assert f"episodes held in RAM at the end: {7 + tests} ≈ {frames:.1f} MiB" in text
    assert "env: built and checked, then closed: 1 action dimension, 64×64 frames" in text
    # the env is built: a task the run would refuse, the dry run refuses, writing nothing
    typo = [*BUDGET[:4], "dmc:cartpole-swing", *BUDGET[5:]]
    plan = planet_here(*typo, "--run-dir", str(tmp_path / "typo"), "--dry-run")
    assert_one_line_error(plan, "no cartpole/swing", "did you mean dmc:cartpole-swingup")
    assert not (tmp_path / "typo").exists()


def test_env_step_budget_run_killed_then_resumed_reaches_the_same_end(budget_run, tmp_path):
    run = tmp_path / "killed"
    kill_once_written(BUDGET, run, "000004-len10.npz")
    assert not (run / "scores.json").exists()
    resumed = planet_here("train", "--resume", "--run-dir", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(budget_run[0], run)
    a, b = (json.loads((r / "scores.json").read_text()) for r in (budget_run[0], run))
    assert a["returns"] == b["returns"] and a["env_steps"] == b["env_steps"] == 560
    machines = json.loads((run / "machines.json").read_text())
    starts = [m["from_updates"] for m in machines]  # the first process, then the resumed one
    assert starts[0] == 0 and len(starts) == 2 and starts[1] in (6, 12), starts
    # finished and scored: a further --resume replays nothing
    again = planet_here("train", "--resume", "--run-dir", str(run))
    assert again.returncode == 0 and "final eval" not in again.stdout, again.stderr
    # a scores.json damaged by hand: the resume scores the final model again, the same
    (run / "scores.json").write_text("garbage")
    rescored = planet_here("train", "--resume", "--run-dir", str(run))
    assert rescored.returncode == 0 and "final eval" in rescored.stdout, rescored.stderr
    assert json.loads((run / "scores.json").read_text())["returns"] == b["returns"]


def test_plan_counts_the_work_of_a_budget_run():
    from planet_torch.config import CPU
    from planet_torch.training.ddpg_loop import DDPGTrainer

    walker = override(CPU, task="walker-walk")
    # 5 seed episodes + 95 planned = 100 episodes of 1000 env steps, one per 100 updates on
    # every task (the original's), a test phase per 10 of them.
    plan = Trainer.plan(walker)
    assert (plan.updates, plan.train_episodes, plan.test_episodes, plan.eval_episodes) == (
        9500,
        95,
        10,
        10,
    )
    cheetah = Trainer.plan(override(CPU, task="cheetah-run"))
    assert (cheetah.updates, cheetah.train_episodes, cheetah.test_episodes) == (9500, 95, 10)
    assert Trainer.plan(override(walker, schedule={"total_updates": 100})).updates == 100
    ddpg = override(walker, algo="ddpg")  # one update per policy step, paid after an episode
    assert DDPGTrainer.plan(ddpg).updates == 94 * 500
    assert DDPGTrainer.plan(ddpg).train_episodes == 94
    assert ddpg.updates_per_test_phase == 1000  # by its own test_every_updates, not the rule


def test_min_updates_per_decision_sets_the_updates_per_episode_by_the_action_repeat():
    """``--schedule.min-updates-per-decision``: 0.2 gives the repeat-2 tasks (500 decisions per
    episode) 100 updates per episode and leaves the 50 of repeat 4 and 8 (250 and 125)."""
    from planet_torch.config import CPU

    rule = {"collect_every_updates": 50, "min_updates_per_decision": 0.2, "test_every_updates": 500}
    per_episode = {
        task: override(CPU, task=task, schedule=rule).updates_per_train_episode
        for task in ("walker-walk", "finger-spin", "cheetah-run", "cartpole-swingup")
    }
    assert per_episode == {
        "walker-walk": 100,
        "finger-spin": 100,
        "cheetah-run": 50,
        "cartpole-swingup": 50,
    }
    walker = override(CPU, task="walker-walk", schedule=rule)
    assert Trainer.plan(walker).updates == 9500  # 95 planned episodes, 100 updates each
    # test phases stretch with the episodes: one per 10 train episodes on every task
    cheetah = override(CPU, task="cheetah-run", schedule=rule)
    assert (walker.updates_per_test_phase, cheetah.updates_per_test_phase) == (1000, 500)
    assert Trainer.plan(walker).test_episodes == Trainer.plan(cheetah).test_episodes == 10
    off = {"collect_every_updates": 50}  # the original's rule: collect_every_updates alone
    assert override(CPU, task="walker-walk", schedule=off).updates_per_train_episode == 50
    with pytest.raises(UserError, match="min-updates-per-decision"):
        override(CPU, schedule={"min_updates_per_decision": -1.0}).validate()


def test_a_run_collects_by_the_per_decision_rule(tmp_path):
    """The schedule collects one train episode per updates_per_train_episode updates: debug
    episodes of 40 decisions at 0.2 per decision = 8 updates per episode (not 3), and tests
    after as many train episodes as without the rule."""
    cfg = override(
        DEBUG,
        schedule={
            "total_updates": 16,
            "collect_every_updates": 3,
            "min_updates_per_decision": 0.2,
            "test_every_updates": 6,  # two train episodes at 3 updates each
            "final_eval_episodes": 0,
        },
    )
    assert cfg.episode_policy_steps == 10 and cfg.updates_per_train_episode == 3
    cfg = override(cfg, env={"episode_env_steps": 320})  # 40 decisions at repeat 8
    assert cfg.updates_per_train_episode == 8
    Trainer(cfg, tmp_path / "run", progress=False).train()
    train = sorted((tmp_path / "run" / "train_episodes").glob("*.npz"))
    assert len(train) == cfg.schedule.seed_episodes + 16 // 8, [p.name for p in train]
    # two train episodes per test phase at 8 updates each: one phase, at 16 (not at 6 and 12)
    assert cfg.updates_per_test_phase == 16
    assert len(list((tmp_path / "run" / "test_episodes").glob("*.npz"))) == (
        cfg.schedule.test_seed_episodes + 1
    )


def test_max_hours_stops_with_a_checkpoint_and_resume_goes_on(tmp_path):
    """``--schedule.max-hours``: the run stops at the time limit between updates, scored and
    checkpointed; ``--resume`` with a later limit (or none) continues it to total_updates."""
    import itertools
    import types

    from planet_torch.training import logging as run_logging

    cfg = override(DEBUG, task="cartpole-balance", schedule={"total_updates": 24})
    limited = override(cfg, schedule={"max_hours": 0.05})  # 180 s of the clock below
    ticks = itertools.count()  # a clock that advances 10 s per reading: no machine's speed
    clock = types.SimpleNamespace(perf_counter=lambda: 10.0 * next(ticks))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_logging, "time", clock)
        first = Trainer(limited, tmp_path / "run", progress=False).train()
    assert first["finished"] and 0 < first["updates"] < 24
    assert first["test_returns"]  # it ended with a test phase, as every run does
    resumed = Trainer(cfg, tmp_path / "run", resume=True, progress=False).train()
    assert resumed["updates"] == 24 and resumed["finished"]
    updates = [m["updates"] for m in metrics(tmp_path / "run")]
    assert updates == sorted(updates)  # one run, continued: no record repeated or lost order
    # It learns what the uninterrupted run learns: the stop adds a test phase (test episodes
    # never train), so the train episodes and every update's losses are the same.
    Trainer(cfg, tmp_path / "whole", progress=False).train()
    assert_same_episodes(tmp_path / "run", tmp_path / "whole", "train_episodes")

    def losses(run: Path) -> list[dict]:
        return [
            {k: v for k, v in m.items() if k.startswith("train/") and k != "train/return"}
            for m in metrics(run)
            if "train/total" in m
        ]

    assert losses(tmp_path / "run") == losses(tmp_path / "whole")


def test_a_resume_missing_an_episode_file_says_which_and_why(tmp_path):
    """An episode file cut short by hand (planet writes atomically): the resume warns about
    the file and stops in one line when it reaches the gap, instead of training on without it."""
    cfg = override(
        DEBUG, task="cartpole-balance", schedule={"total_updates": 3, "final_eval_episodes": 0}
    )
    Trainer(cfg, tmp_path / "run", progress=False).train()
    episode = tmp_path / "run" / "train_episodes" / "000001-len10.npz"
    episode.write_bytes(episode.read_bytes()[:300])
    longer = override(cfg, schedule={"total_updates": 6})
    with (
        pytest.warns(UserWarning, match="skipping unreadable episode file"),
        pytest.raises(UserError, match=r"missing episodes before #\d+: .* or is unreadable"),
    ):
        Trainer(longer, tmp_path / "run", resume=True, progress=False).train()
