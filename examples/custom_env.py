"""Your own environment in planet-torch: a factory, named on the command line as a task.

    planet train --preset debug --task py:examples.custom_env:make \\
        --env.action-repeat 2 --env.episode-env-steps 100 --schedule.total-updates 20
    python examples/custom_env.py          # the same through the Python API, then one episode

Run both from the repository root (the current folder is importable). The env below is a dot
pushed by a 2-d force towards a target; the reward is its closeness. An env implements three
methods of planet_torch.envs.Env; action repeat, the time limit and action scaling are done by
the base class. A gymnasium env works too: return it from the factory instead.
"""

from __future__ import annotations

import numpy as np

from planet_torch.envs import Env, Observation


class Dot(Env):
    def __init__(self, seed: int, **run: int) -> None:
        # run: action_repeat, max_policy_steps and image_size, as the run sets them
        super().__init__(action_size=2, state_size=4, **run)
        self.rng = np.random.default_rng(seed)

    def _reset(self, seed: int | None) -> Observation:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.position, self.velocity = self.rng.uniform(-1, 1, 2), np.zeros(2)
        self.target = self.rng.uniform(-0.8, 0.8, 2)
        return self._observe()

    def _env_step(self, native_action: np.ndarray) -> tuple[float, bool, bool]:
        self.velocity = 0.9 * self.velocity + 0.05 * native_action
        self.position = np.clip(self.position + self.velocity, -1, 1)
        distance = float(np.linalg.norm(self.position - self.target))
        return 1.0 - distance / np.sqrt(8), False, False  # (reward, terminated, truncated)

    def _observe(self) -> Observation:
        size = self.image_size
        image = np.zeros((size, size, 3), np.uint8)
        for (x, y), colour in ((self.target, (255, 64, 64)), (self.position, (64, 255, 64))):
            col, row = (int((v + 1) / 2 * (size - 6)) for v in (x, y))
            image[row : row + 6, col : col + 6] = colour
        return Observation(image, np.concatenate([self.position, self.velocity]).astype("f4"))


def make(seed: int, **run: int) -> Dot:
    """The factory: planet-torch calls it with the keywords it declares (all of them here)."""
    return Dot(seed, **run)


if __name__ == "__main__":
    from planet_torch import load_run, override, preset, train

    cfg = override(
        preset("debug"),
        task="py:examples.custom_env:make",
        env={"action_repeat": 2, "episode_env_steps": 100},
        schedule={"total_updates": 20},
    )
    summary = train(cfg, "runs/custom-example")
    print(f"trained {summary['updates']} updates; test returns {summary['test_returns']}")
    run = load_run("runs/custom-example")
    env, agent = run.make_env(seed=0), run.agent(seed=0)
    observation, total = env.reset(seed=0), 0.0
    agent.reset()
    while True:
        step = env.step(agent.act(observation))
        observation, total = step.observation, total + step.reward
        if step.done:
            break
    env.close()
    print(f"one episode with the trained agent: return {total:.1f}")
