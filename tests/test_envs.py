"""Environments: the shared policy-step logic on the test env, then real simulators, headless."""

from __future__ import annotations

import ctypes.util
import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from planet_torch.config import PAPER, TASKS, Config, override
from planet_torch.envs import Env, Observation, StepResult, configure_headless, make_env
from planet_torch.envs import headless as headless_module
from planet_torch.errors import UserError


def _cfg(task: str, **env: int) -> Config:
    return override(PAPER, task=task, env=env)


def _run_python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else dict(os.environ),
        check=False,
    )


# ---- the shared logic, on the pure-numpy test env ------------------------------------------


def test_interface_of_test_env() -> None:
    env = make_env(_cfg("test-reach"), seed=0)
    assert isinstance(env, Env)
    assert (env.action_size, env.state_size, env.action_repeat) == (2, 4, 2)
    assert env.max_policy_steps == 40 // 2
    assert env.action_low.dtype == env.action_high.dtype == np.float32
    np.testing.assert_array_equal(env.action_low, [-1, -1])
    np.testing.assert_array_equal(env.action_high, [1, 1])
    obs = env.reset()
    assert isinstance(obs, Observation)
    assert obs.image.shape == (64, 64, 3) and obs.image.dtype == np.uint8
    assert obs.state.shape == (4,) and obs.state.dtype == np.float32
    result = env.step(np.zeros(2, np.float32))
    assert isinstance(result, StepResult)
    assert isinstance(result.reward, float) and 0.0 <= result.reward <= 2.0  # 2 env steps in [0, 1]
    # The image shows point (red) and target (green): it changes when the point moves.
    moved = env.step(np.ones(2, np.float32)).observation
    assert moved.image[..., 0].any() and moved.image[..., 1].any()
    assert not np.array_equal(moved.image, result.observation.image)


def test_action_repeat_sums_rewards_and_matches_single_steps() -> None:
    repeated = make_env(_cfg("test-reach", action_repeat=3), seed=5)
    single = make_env(_cfg("test-reach", action_repeat=1), seed=5)
    np.testing.assert_array_equal(repeated.reset().state, single.reset().state)
    rng = np.random.default_rng(0)
    for _ in range(4):
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        big = repeated.step(action)
        smalls = [single.step(action) for _ in range(3)]
        assert big.reward == pytest.approx(sum(s.reward for s in smalls), abs=1e-12)
        np.testing.assert_array_equal(big.observation.state, smalls[-1].observation.state)
        np.testing.assert_array_equal(big.observation.image, smalls[-1].observation.image)


def test_truncation_after_episode_policy_steps() -> None:
    cfg = _cfg("test-reach", action_repeat=3, episode_env_steps=40)
    assert cfg.episode_policy_steps == 13  # 40 // 3, the original's MaximumDuration
    env = make_env(cfg, seed=0)
    env.reset()
    flags = [env.step(np.zeros(2)).truncated for _ in range(13)]
    assert flags == [False] * 12 + [True]
    assert env.policy_steps == 13
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2))
    env.reset()
    assert env.policy_steps == 0 and not env.step(np.zeros(2)).done


class _Recorder(Env):
    """Records native actions; terminates at env step ``end`` with reward 1 per env step."""

    def __init__(self, action_repeat: int, end: int, low: float = 0.0, high: float = 2.0) -> None:
        super().__init__(
            action_size=1,
            state_size=0,
            action_repeat=action_repeat,
            max_policy_steps=100,
            image_size=8,
            native_low=np.array([low]),
            native_high=np.array([high]),
        )
        self.end = end
        self.native_actions: list[float] = []

    def _reset(self, seed: int | None) -> Observation:
        self.native_actions = []
        return self._observe()

    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        self.native_actions.append(float(native_action[0]))
        return 1.0, len(self.native_actions) >= self.end, False

    def _observe(self) -> Observation:
        return Observation(np.zeros((8, 8, 3), np.uint8), np.zeros(0, np.float32))


def test_termination_stops_the_repeat_early() -> None:
    env = _Recorder(action_repeat=4, end=6)
    env.reset()
    first, second = env.step(np.zeros(1)), env.step(np.zeros(1))
    assert (first.reward, first.terminated) == (4.0, False)
    assert (second.reward, second.terminated, second.truncated) == (2.0, True, False)
    assert len(env.native_actions) == 6


def test_actions_are_clipped_and_rescaled_to_native_bounds() -> None:
    env = _Recorder(action_repeat=1, end=100, low=0.0, high=2.0)
    env.reset()
    for action in (-1.0, 0.0, 1.0, 7.5, -3.0):
        env.step(np.array([action], np.float32))
    assert env.native_actions == pytest.approx([0.0, 1.0, 2.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan]))


def test_out_of_bounds_actions_equal_bound_actions() -> None:
    a, b = make_env(_cfg("test-reach"), seed=1), make_env(_cfg("test-reach"), seed=1)
    a.reset(), b.reset()
    big = a.step(np.array([10.0, -10.0]))
    bound = b.step(np.array([1.0, -1.0]))
    assert big.reward == bound.reward
    np.testing.assert_array_equal(big.observation.state, bound.observation.state)


def test_same_seed_same_episode_and_reset_seed_reseeds() -> None:
    a, b = make_env(_cfg("test-reach"), seed=3), make_env(_cfg("test-reach"), seed=3)
    np.testing.assert_array_equal(a.reset().image, b.reset().image)
    assert not np.array_equal(a.reset().state, b.reset(seed=4).state)
    np.testing.assert_array_equal(a.reset(seed=9).image, b.reset(seed=9).image)


def test_unknown_task_is_a_user_error_listing_tasks() -> None:
    with pytest.raises(UserError, match=r"unknown task 'nope'.*cartpole-swingup.*test-reach"):
        make_env(dataclasses.replace(PAPER, task="nope"), seed=0)


# ---- headless set-up -----------------------------------------------------------------------


def test_configure_headless_defaults_and_respects_user(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):
        monkeypatch.delenv(name, raising=False)
    backend = configure_headless()
    assert backend in ("egl", "osmesa") and os.environ["PYOPENGL_PLATFORM"] == backend
    assert os.environ["SDL_VIDEODRIVER"] == os.environ["SDL_AUDIODRIVER"] == "dummy"
    assert configure_headless() == backend  # idempotent
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
    with pytest.raises(UserError, match="PYOPENGL_PLATFORM"):
        configure_headless()  # inconsistent: PyOpenGL would load another library than MuJoCo
    monkeypatch.setenv("MUJOCO_GL", "glfw")
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    assert configure_headless() == "glfw" and os.environ["SDL_VIDEODRIVER"] == "x11"


def test_no_gl_library_names_the_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    headless_module._find_backend.cache_clear()
    try:
        with pytest.raises(UserError, match=r"libegl1 libgl1-mesa-dri.*libosmesa6"):
            configure_headless()
        assert configure_headless(need_gl=False) == ""
    finally:
        headless_module._find_backend.cache_clear()


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="libOSMesa installed")
def test_osmesa_without_libosmesa_is_a_one_line_user_error() -> None:
    result = _run_python(
        """
        from planet_torch.config import PAPER, override
        from planet_torch.envs import make_env
        from planet_torch.errors import UserError
        try:
            make_env(override(PAPER, task="cartpole-swingup"), seed=0)
        except UserError as error:
            print("USER_ERROR:" + str(error))
        """,
        env={
            **{k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"},
            "MUJOCO_GL": "osmesa",
        },
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("USER_ERROR:")]
    assert len(lines) == 1, result.stdout + result.stderr
    assert "libosmesa6" in lines[0] and "MUJOCO_GL=osmesa" in lines[0]


# ---- real simulators ----------------------------------------------------------------------


def test_dmc_cartpole_pixels_state_and_seeding() -> None:
    with make_env(_cfg("cartpole-swingup"), seed=0) as env:
        assert (env.action_size, env.state_size, env.action_repeat) == (1, 5, 8)
        assert env.max_policy_steps == 125
        first = env.reset(seed=11)
        assert first.image.shape == (64, 64, 3) and first.image.dtype == np.uint8
        assert first.image.std() > 10.0, "blank render"
        assert first.state.dtype == np.float32 and first.state.shape == (5,)
        later = first
        for _ in range(3):
            later = env.step(np.ones(1, np.float32)).observation
        assert np.abs(later.image.astype(int) - first.image).mean() > 0.5
        np.testing.assert_array_equal(env.reset(seed=11).image, first.image)
        assert not np.array_equal(env.reset(seed=12).state, first.state)


def test_dmc_physics_state_round_trip_is_exact() -> None:
    with make_env(_cfg("cheetah-run"), seed=0) as env:
        env.reset()
        env.step(np.full(6, 0.5, np.float32))
        saved = env.get_physics_state()  # type: ignore[attr-defined]
        actions = np.random.default_rng(0).uniform(-1, 1, (3, 6)).astype(np.float32)
        first = [env.step(a) for a in actions]
        env.set_physics_state(saved)  # type: ignore[attr-defined]
        again = [env.step(a) for a in actions]
        for x, y in zip(first, again, strict=True):
            assert x.reward == y.reward
            np.testing.assert_array_equal(x.observation.state, y.observation.state)
            np.testing.assert_array_equal(x.observation.image, y.observation.image)


def test_dmc_render_matches_original_physics_render(tmp_path: Path) -> None:
    """With exact_render, our renderer reproduces ``physics.render(64, 64, camera_id=0)`` exactly."""
    from planet_torch.envs.dmc import DmcEnv

    reference = tmp_path / "reference.npy"
    # A separate process: dm_control's own GL context must not share ours (EGL errors at exit).
    result = _run_python(
        f"""
        import numpy as np
        from planet_torch.envs.headless import configure_headless
        configure_headless()
        from dm_control import suite
        env = suite.load("cartpole", "swingup", task_kwargs={{"random": 7}})
        env.reset()
        for _ in range(16):
            env.step(np.array([0.5]))  # exact in float32 too
        np.save({str(reference)!r}, env.physics.render(64, 64, camera_id=0))
        """
    )
    assert result.returncode == 0, result.stderr
    images = {}
    for exact in (True, False):
        with DmcEnv(
            TASKS["cartpole-swingup"],
            seed=7,
            action_repeat=8,
            max_policy_steps=10,
            exact_render=exact,
        ) as env:
            env.reset()
            env.step(np.array([0.5], np.float32))
            images[exact] = env.step(np.array([0.5], np.float32)).observation.image
            assert env.physics.model.vis.quality.numslices == 28  # the model is left as it was
    np.testing.assert_array_equal(images[True], np.load(reference))
    # The fast render (no shadows, coarser tessellation) frames the same scene: nearly equal pixels.
    assert np.abs(images[False].astype(int) - images[True]).mean() < 2.0


def test_exit_is_clean_without_close() -> None:
    # One env closed, one left open: without our exit hook EGL prints errors at interpreter exit.
    result = _run_python(
        """
        import numpy as np
        from planet_torch.config import PAPER, override
        from planet_torch.envs import make_env
        first, second = (make_env(override(PAPER, task="cartpole-swingup"), seed=0) for _ in "ab")
        second.reset()
        first.close()
        print(second.step(np.zeros(1)).observation.image.std() > 10)
        """
    )
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
    assert "EGL" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr


def test_half_cheetah_pixels_and_state() -> None:
    with make_env(_cfg("half-cheetah"), seed=0) as env:
        assert (env.action_size, env.state_size, env.action_repeat) == (6, 17, 1)
        first = env.reset()
        assert first.image.shape == (64, 64, 3) and first.image.std() > 10.0
        result = env.step(np.ones(6, np.float32))
        assert result.observation.state.shape == (17,) and not result.done


def test_car_racing_frame_with_dummy_sdl_set_by_us() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SDL_") and k != "DISPLAY"}
    result = _run_python(
        """
        import os
        import numpy as np
        from planet_torch.config import PAPER, override
        from planet_torch.envs import make_env
        env = make_env(override(PAPER, task="car-racing"), seed=0)
        first = env.reset()
        step = env.step(np.array([0.0, 1.0, -1.0], np.float32))  # full gas, no brake
        env.close()
        print(os.environ["SDL_VIDEODRIVER"], os.environ["SDL_AUDIODRIVER"], env.action_size,
              env.state_size, first.image.shape, first.image.dtype, round(float(first.image.std())),
              step.observation.image.shape)
        """,
        env=clean,
    )
    assert result.returncode == 0, result.stderr
    video, audio, actions, states, *rest = result.stdout.split()
    assert (video, audio, actions, states) == ("dummy", "dummy", "3", "0")
    assert "(64, 64, 3) uint8" in result.stdout
    assert int(rest[4]) > 10, result.stdout  # not a blank frame


def test_cheetah_loads_without_mujoco_deprecation_noise(caplog):
    """MuJoCo 3.x logs 'settotalmass is deprecated' through absl at every cheetah load."""
    env = make_env(Config(task="cheetah-run"), seed=0)
    env.close()
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()]
