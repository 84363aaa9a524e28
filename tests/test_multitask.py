"""One agent for several tasks: actions padded, tasks alternating per episode, scores per task."""

import json
from pathlib import Path

import numpy as np
import pytest
from run_helpers import planet, planet_here

from planet_torch.config import DEBUG, override, task_spec
from planet_torch.envs import make_env
from planet_torch.envs.multitask import task_of_seed
from planet_torch.errors import UserError
from planet_torch.replay import EpisodeDir
from planet_torch.training.collect import episode_seed

TASKS = "cartpole-balance+reacher-easy"  # 1 and 2 action dims


def test_episode_seeds_alternate_the_tasks() -> None:
    for names in (TASKS, "cartpole-balance+reacher-easy+cheetah-run"):
        spec = task_spec(names)
        parts = names.split("+")
        for split in ("train", "test", "eval"):
            played = [task_of_seed(spec, episode_seed(3, split, i, len(parts))) for i in range(12)]
            assert played == [parts[i % len(parts)] for i in range(12)]
    seeds = [episode_seed(0, "train", i, 3) for i in range(100)]
    assert len(set(seeds)) == 100


def test_multi_task_names_are_checked() -> None:
    with pytest.raises(UserError, match="different tasks"):
        task_spec("cartpole-balance+cartpole-balance")
    with pytest.raises(UserError, match="dm_control"):
        task_spec("cartpole-balance+car-racing")
    with pytest.raises(UserError, match="unknown task"):
        task_spec("cartpole-balance+walker-walkk")
    with pytest.raises(UserError, match=r"--env\.action-repeat"):
        override(DEBUG, task="cartpole-balance+walker-walk").validate()


def test_multi_task_env_pads_actions_and_hides_the_state() -> None:
    cfg = override(DEBUG, task=TASKS, env={"action_repeat": 4})
    env = make_env(cfg, seed=0)
    try:
        assert env.action_size == 2 and env.state_size == 0
        for index, task in enumerate(("cartpole-balance", "reacher-easy")):
            observation = env.reset(episode_seed(0, "train", index, 2))
            assert env.task == task  # type: ignore[attr-defined]
            assert observation.image.shape == (64, 64, 3) and observation.state.shape == (0,)
            result = env.step(np.array([0.5, -0.5], np.float32))
            assert result.observation.image.dtype == np.uint8
    finally:
        env.close()


@pytest.fixture(scope="module")
def single_task_envs():
    """One single-task env per task of TASKS, to render a task's reset frame for a seed."""
    envs = {
        t: make_env(override(DEBUG, task=t, env={"action_repeat": 4}), 0) for t in TASKS.split("+")
    }
    yield envs
    for env in envs.values():
        env.close()


def played(envs, episode, seed: int) -> str:
    """The task whose reset frame for ``seed`` is the episode's first frame."""
    matches = [
        t for t, env in envs.items() if np.array_equal(env.reset(seed).image, episode.image[0])
    ]
    assert len(matches) == 1, matches
    return matches[0]


def test_padded_action_dims_change_nothing() -> None:
    """cartpole has one action dim of the two the run pads to: the second one is ignored."""
    cfg = override(DEBUG, task=TASKS, env={"action_repeat": 4})
    frames = []
    for padding in (-1.0, 1.0):
        env = make_env(cfg, seed=0)
        try:
            env.reset(episode_seed(0, "train", 0, 2))  # index 0: cartpole
            assert env.task == "cartpole-balance"  # type: ignore[attr-defined]
            steps = [env.step(np.array([0.3, padding], np.float32)) for _ in range(3)]
            frames.append(np.stack([s.observation.image for s in steps]))
        finally:
            env.close()
    assert np.array_equal(frames[0], frames[1])


def test_multi_task_debug_run_trains_on_both_tasks(tmp_path: Path, single_task_envs) -> None:
    run = tmp_path / "run"
    result = planet(
        "train",
        "--preset",
        "debug",
        "--task",
        TASKS,
        "--env.action-repeat",
        "4",
        "--schedule.test-episodes",
        "2",
        "--run-dir",
        str(run),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    train = list(EpisodeDir(run / "train_episodes"))
    assert len(train) > DEBUG.schedule.seed_episodes
    assert {e.action.shape[1] for e in train} == {2}
    # Episodes alternate cartpole (even: the pole starts upright, ~1 reward per env step)
    # and reacher (odd: sparse reward); cartpole ignores the padded second action dim.
    rewards = [float(e.reward.sum()) for e in train]
    assert all(r > 0.5 * DEBUG.env.episode_env_steps for r in rewards[0::2]), rewards
    # Every stored episode is the task its seed names, even and odd: its first frame is that
    # task's own reset frame for the seed (rendered by a single-task env).
    train_played = [
        played(single_task_envs, e, episode_seed(0, "train", i, 2)) for i, e in enumerate(train)
    ]
    assert train_played == [["cartpole-balance", "reacher-easy"][i % 2] for i in range(len(train))]
    test = list(EpisodeDir(run / "test_episodes"))
    first = len(test) - 2  # the last test phase's two episodes
    last_phase = {
        played(single_task_envs, test[i], episode_seed(0, "test", i, 2)): test[i]
        for i in (first, first + 1)
    }
    assert set(last_phase) == {"cartpole-balance", "reacher-easy"}
    tests = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in tests if "test/return" in r]
    for task, episode in last_phase.items():  # each task's score is the episode it played
        assert scored[-1][f"test/return/{task}"] == pytest.approx(float(episode.reward.sum()))
    result = planet_here("eval", "--run-dir", str(run), "--episodes", "2", "--video", "none")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((run / "scores.json").read_text())
    assert set(scores["per_task"]) == {"cartpole-balance", "reacher-easy"}
    assert "cartpole-balance: mean return" in result.stdout
    result = planet_here("inspect", "--run-dir", str(run), "--sim-candidates", "8")
    assert result.returncode == 0 and "RuntimeWarning" not in result.stderr, result.stderr[-2000:]


def test_multi_task_run_stopped_and_resumed_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    """Resume is exact for a multi-task run too: the task alternation, the padded actions and
    the per-task scores continue where the checkpoint left them."""
    from run_helpers import metrics

    from planet_torch.training.loop import Trainer

    cfg = override(
        DEBUG,
        task=TASKS,
        env={"action_repeat": 4},
        schedule={"total_updates": 9, "collect_every_updates": 3, "test_every_updates": 6},
    )
    Trainer(cfg, tmp_path / "whole", progress=False).train()
    after_update = Trainer._after_update

    def stop_at_4(self, *args, **kwargs):  # as Ctrl-C after update 4
        after_update(self, *args, **kwargs)
        self.stop_requested = self.stop_requested or self.counters.updates == 4

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_after_update", stop_at_4)
        assert Trainer(cfg, tmp_path / "cut", progress=False).train()["updates"] == 4
    Trainer(cfg, tmp_path / "cut", resume=True, progress=False).train()
    whole, cut = metrics(tmp_path / "whole"), metrics(tmp_path / "cut")
    assert any("test/return/reacher-easy" in m for m in cut)
    assert cut == whole
    for split in ("train_episodes", "test_episodes"):
        a, b = (list(EpisodeDir(tmp_path / r / split)) for r in ("whole", "cut"))
        assert len(a) == len(b) and all(
            np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True)
        )
