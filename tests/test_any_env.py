"""Any dm_control suite task, any continuous gymnasium env, a user's own env, the library API."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from planet_torch.config import DEBUG, PAPER, Config, override, task_slug, task_spec
from planet_torch.envs import make_env
from planet_torch.envs.testing import ReachEnv
from planet_torch.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def _cfg(task: str, **env: int) -> Config:
    return override(PAPER, task=task, env=env)


def assert_real_episode(cfg: Config, policy_steps: int = 6) -> np.ndarray:
    """A few policy steps of random actions: 64×64 uint8 frames that are not blank and change."""
    frames = []
    with make_env(cfg, seed=3) as env:
        frames.append(env.reset(seed=3).image)
        rng = np.random.default_rng(0)
        for _ in range(policy_steps):
            step = env.step(rng.uniform(-1, 1, env.action_size).astype(np.float32))
            frames.append(step.observation.image)
            assert np.isfinite(step.reward)
    video = np.stack(frames)
    assert video.shape == (policy_steps + 1, 64, 64, 3) and video.dtype == np.uint8
    assert video.std() > 5, "blank frames"
    assert np.abs(np.diff(video.astype(int), axis=0)).sum() > 0, "nothing moves"
    return video


def test_task_names_of_every_form() -> None:
    assert task_spec("dmc:pendulum-swingup").env_id == "pendulum/swingup"
    assert task_spec("dmc:pendulum-swingup").action_repeat == 2  # the stated default
    cup = task_spec("dmc:ball_in_cup-catch")  # in the table: its action repeat and reference
    assert (cup.env_id, cup.action_repeat, cup.paper_score) == ("ball_in_cup/catch", 4, 930.0)
    assert task_spec("gym:Pendulum-v1").action_repeat == 1
    # a gymnasium env's episode is its own registered time limit, 1000 where it has none
    assert task_spec("gym:Pendulum-v1").episode_env_steps == 200
    assert task_spec("gym:MountainCarContinuous-v0").episode_env_steps == 999
    assert _cfg("gym:Pendulum-v1", episode_env_steps=50).episode_env_steps == 50  # overridable
    assert task_spec("py:examples.custom_env:make").suite == "py"
    assert _cfg("dmc:pendulum-swingup", action_repeat=3).action_repeat == 3  # overridable
    assert task_slug("dmc:walker-run") == "dmc_walker-run"
    for bad, message in (
        ("dmc:walker", "dmc:DOMAIN-TASK"),
        ("py:nomodule", "py:package.module:function"),
        ("walker-run", "dmc:DOMAIN-TASK"),
    ):
        with pytest.raises(UserError, match=message):
            task_spec(bad)


def test_a_dm_control_task_outside_the_table_collects_a_real_episode() -> None:
    cfg = _cfg("dmc:pendulum-swingup")
    assert_real_episode(cfg)
    with make_env(cfg, seed=0) as env:
        assert env.state_size == 3  # orientation (2) + velocity (1): the task's own spec


def test_a_gymnasium_env_collects_a_real_episode() -> None:
    cfg = _cfg("gym:Pendulum-v1")
    assert_real_episode(cfg)
    with make_env(cfg, seed=0) as env:
        assert (env.action_size, env.state_size) == (1, 3)
        np.testing.assert_array_equal(env._native, (np.array([-2.0]), np.array([2.0])))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "task,message",
    [
        ("dmc:walker-rnu", "did you mean dmc:walker-run"),
        ("dmc:walkr-walk", "did you mean dmc:walker-walk"),
        ("gym:Pendulum-v0", "did you mean gym:Pendulum-v1"),
        (
            "gym:CartPole-v1",
            r"Discrete actions; PlaNet plans continuous ones \(a gymnasium Box action space\)$",
        ),
        (
            "gym:LunarLander-v3",
            "Discrete actions;.* its continuous form is gym:LunarLanderContinuous-v3$",
        ),
        ("py:examples.nothing_here:make", "cannot import 'examples.nothing_here'"),
        ("py:examples.custom_env:missing", "has no function 'missing'"),
        ("py:test_any_env:returns_a_string", "returned a str, not a planet_torch.envs.Env"),
        ("py:test_any_env:gym_without_pictures", "draws no picture"),
    ],
)
def test_tasks_that_cannot_be_built_are_user_errors(task: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        make_env(override(DEBUG, task=task), seed=0).close()


def returns_a_string(seed: int) -> str:
    return "not an env"


def gym_without_pictures(seed: int):
    import gymnasium

    return gymnasium.make("Pendulum-v1")  # render_mode None


def test_the_example_env_trains_through_the_api_and_acts(tmp_path: Path, monkeypatch) -> None:
    """examples/custom_env.py's factory, trained through ``planet_torch.train``; ``load_run``
    gives an agent that acts on the env's frames."""
    monkeypatch.chdir(ROOT)  # the factory is named from the repository root, as documented
    monkeypatch.syspath_prepend(str(ROOT))
    import planet_torch

    cfg = planet_torch.override(
        planet_torch.preset("debug"),
        task="py:examples.custom_env:make",
        env={"action_repeat": 2, "episode_env_steps": 40},
        schedule={"total_updates": 6, "final_eval_episodes": 1},
    )
    summary = planet_torch.train(cfg, tmp_path / "custom")
    assert summary["updates"] == 6 and (tmp_path / "custom" / "scores.json").exists()
    run = planet_torch.load_run(tmp_path / "custom")
    assert run.config == cfg and run.updates == 6
    env, agent = run.make_env(seed=0), run.agent(seed=0)
    observation = env.reset(seed=0)
    agent.reset()
    action = agent.act(observation)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1)
    assert env.step(action).observation.image.shape == (64, 64, 3)
    env.close()
    scores = planet_torch.evaluate(tmp_path / "custom", episodes=2)  # as `planet eval`
    assert len(scores["returns"]) == 2 and scores["updates"] == 6
    path = Path(scores.pop("scores_path"))
    assert path == tmp_path / "custom" / "scores.json" and json.loads(path.read_text()) == scores
    with pytest.raises(UserError, match="holds no run"):
        planet_torch.load_run(tmp_path / "nothing")
    with pytest.raises(UserError, match="'gpu': use auto, cpu or cuda"):  # not torch's list
        planet_torch.load_run(tmp_path / "custom", device="gpu")
    for seed in (-1, 2**32, 1.0):  # numpy's own words had named neither the call nor the range
        with pytest.raises(UserError, match=re.escape(f"in [0, 4294967295] (got {seed!r})")):
            run.agent(seed=seed)  # type: ignore[arg-type]
        with pytest.raises(UserError, match="seed must be an int"):
            run.make_env(seed=seed)  # type: ignore[arg-type]
    assert "planet_torch.api" in sys.modules


class _Falls(ReachEnv):
    """Terminates on every step: an env whose episodes would be shorter than a chunk."""

    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        return 1.0, True, False


def falls(**sizes: int) -> _Falls:
    return _Falls(**sizes)


def test_an_early_termination_still_fills_a_chunk() -> None:
    """As the original's MinimumDuration: a gymnasium or user env that terminates before
    data.chunk_length decisions plays on to it; the termination after that counts."""
    cfg = override(DEBUG, task="py:test_any_env:falls", data={"chunk_length": 5})
    with make_env(cfg, seed=0) as env:
        env.reset(seed=0)
        flags = [env.step(np.zeros(2, np.float32)).terminated for _ in range(5)]
    assert flags == [False, False, False, False, True]


def test_doctor_checks_a_named_task() -> None:
    from planet_torch.doctor import check_task, task_list

    assert task_list(("dmc:a,gym:B-v1", "py:m:f", ",")) == ["dmc:a", "gym:B-v1", "py:m:f"]

    good = check_task("dmc:pendulum-swingup", steps=5)
    assert good.ok and "real 64×64 frames" in good.detail, good.detail
    bad = check_task("gym:Pendulum-v0", steps=5)
    assert not bad.ok and "did you mean gym:Pendulum-v1" in bad.detail


def test_sweeps_and_multi_task_take_the_new_names() -> None:
    from planet_torch.sweep import plan_trials

    trials = plan_trials(DEBUG, "dmc:pendulum-swingup,gym:Pendulum-v1", "0", "planet")
    assert [t.name for t in trials] == [
        "dmc_pendulum-swingup-planet-seed0",
        "gym_Pendulum-v1-planet-seed0",
    ]
    multi = task_spec("dmc:walker-run+dmc:walker-walk")
    assert (multi.suite, multi.action_repeat) == ("multi", 2)
    with pytest.raises(UserError, match="only dm_control tasks"):
        task_spec("dmc:walker-run+gym:Pendulum-v1")


def test_a_gymnasium_run_trains_evaluates_and_is_inspected(tmp_path: Path) -> None:
    from planet_torch.api import train
    from planet_torch.training.evaluate import evaluate
    from planet_torch.training.inspection import inspect_run

    cfg = override(
        DEBUG,
        task="gym:Pendulum-v1",
        env={"episode_env_steps": 30},
        data={"chunk_length": 6},
        schedule={"total_updates": 3, "final_eval_episodes": 1},
    )
    summary = train(cfg, tmp_path / "pendulum")
    assert summary["updates"] == 3 and np.isfinite(summary["score"])
    assert np.isfinite(evaluate(tmp_path / "pendulum", episodes=1, video=None)["mean"])
    report = inspect_run(tmp_path / "pendulum", output=tmp_path / "inspect", planner_steps=(0,))
    assert (report.parent / "rewards.png").exists() and (
        report.parent / "planner_0000.png"
    ).exists()


def test_the_readme_python_example_runs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    """README "From Python": its code block, run verbatim, with ``preset`` answering the debug
    preset's sizes and a 4-update schedule instead of the cpu preset's hour."""
    import planet_torch

    readme = (ROOT / "README.md").read_text()
    code = readme.split("From Python, the same runs and folders as the CLI:")[1]
    code = code.split("```python\n")[1].split("```")[0]
    assert 'preset("cpu")' in code and "load_run(" in code and "agent.act(" in code
    tiny = override(DEBUG, schedule={"total_updates": 4, "final_eval_episodes": 1})
    monkeypatch.setattr(planet_torch, "preset", lambda name: tiny)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    score = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.isfinite(score)
    assert (tmp_path / "runs" / "pendulum" / "scores.json").exists()


def test_train_checks_a_python_config_before_it_makes_a_folder(tmp_path: Path) -> None:
    from planet_torch import train

    for cfg, needle in [
        (override(DEBUG, seed=np.int64(1)), "seed must be an int (got np.int64(1))"),
        (override(DEBUG, model={"kind": "gru"}), "model.kind must be one of 'rssm', 'ssm'"),
        (DEBUG.to_dict(), "cfg must be a Config"),
    ]:
        with pytest.raises(UserError, match=re.escape(needle)):
            train(cfg, tmp_path / "run")  # type: ignore[arg-type]
        assert not (tmp_path / "run").exists()
