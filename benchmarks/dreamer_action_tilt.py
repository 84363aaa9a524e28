"""Which constant action does a run's world model prefer over the actor's horizon, and the simulator?

    .venv/bin/python benchmarks/dreamer_action_tilt.py RUN_DIR            # JSON on stdout
    .venv/bin/python benchmarks/dreamer_action_tilt.py RUN_DIR --true-sim # and dm_control's answer

A Dreamer actor learns what its world model says pays within ``dreamer.horizon`` imagined
decisions (plus the value after them). Where the model says one constant action is best from
every state, the actor's gradient has the same sign everywhere and it saturates at that bound
(docs/dreamer.md: cartpole-swingup). From the run's latest checkpoint, along the first and last
``--episodes`` train episodes, every ``--every`` rows, this filters the posterior and imagines
``horizon`` decisions of each constant action in ``--actions`` (``--samples`` prior samples
each; the same value in every action dim), and prints

* ``model_best``: how often each constant action had the highest imagined reward sum;
* ``model_slope``: d(imagined reward sum)/d(action) at a = 0, per episode (its last state);
* ``actor_mean``: the range of the actor's pre-tanh mean over those states (±5 = saturated);
* with ``--true-sim`` (table dm_control tasks): the true reward sum of each constant action
  over the same number of env steps (``true_mean``) and how often each was best (``true_best``), from ``--episodes`` states reached by a random policy
  (dm_control's own physics state; not the run's episodes, whose physics state is not stored).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from planet_torch.agents.dreamer import DreamerLearner  # noqa: E402
from planet_torch.models import WorldModel  # noqa: E402
from planet_torch.replay.episodes import EpisodeDir  # noqa: E402
from planet_torch.training.checkpoint import load_checkpoint  # noqa: E402
from planet_torch.training.run_dir import RunDir  # noqa: E402


def model_tilt(
    run_dir: Path, episodes: int, every: int, actions: list[float], samples: int
) -> dict:
    run = RunDir(run_dir)
    cfg = run.load_config()
    learner = load_checkpoint(run.latest_checkpoint())["world_model"]
    files = EpisodeDir(run.train_episodes).load_all()
    chosen = files[:episodes] + files[-episodes:]
    action_size = chosen[0].action.shape[-1]
    model = WorldModel(cfg, action_size=action_size)
    model.load_state_dict(learner["model"])
    model.eval()
    behaviour = DreamerLearner(model, cfg.dreamer)
    behaviour.load_state_dict(learner["behaviour"])
    generator = torch.Generator().manual_seed(0)
    H = cfg.dreamer.horizon
    levels = torch.tensor(actions)
    constant = levels.repeat(samples)[:, None].expand(-1, action_size)  # [S·K, A]
    constant_plan = constant.expand(H, -1, -1)  # [H, S·K, A]: the same action every decision
    wins, slopes, means = np.zeros(len(actions)), [], []
    for episode in chosen:
        image = torch.from_numpy(episode.image[:, None])  # [T, 1, 64, 64, 3]
        action = torch.from_numpy(episode.action[:, None])  # [T, 1, A]
        with torch.no_grad():
            posterior = model.observe(image, action, generator)[0]  # [T, 1, ...]
            rows = list(range(every, len(episode.image), every))
            for t in rows:
                start = posterior.map(lambda x, t=t: x[t].expand(len(constant), -1))
                total = model.imagine_return(start, constant_plan, generator)  # [S·K]
                wins[int(total.view(samples, len(actions)).mean(0).argmax())] += 1
            features = model.rssm.features(posterior.map(lambda x, rows=rows: x[rows, 0]))
            means.append(behaviour.actor(features)[0].flatten())
        zero = torch.zeros(samples, action_size, requires_grad=True)
        last = posterior.map(lambda x: x[-1].expand(samples, -1))  # the episode's last state
        total = model.imagine_return(last, zero.expand(H, -1, -1), generator).sum()
        slopes.append(float(torch.autograd.grad(total, zero)[0].sum(-1).mean()))
    mean = torch.cat(means)
    return {
        "run": str(run_dir),
        "task": cfg.task,
        "horizon_decisions": H,
        "action_repeat": cfg.action_repeat,
        "states": int(wins.sum()),
        "model_best": {
            str(a): round(float(w / wins.sum()), 3) for a, w in zip(actions, wins, strict=True)
        },
        "model_slope": [round(s, 3) for s in slopes],
        "actor_mean": [round(float(mean.min()), 2), round(float(mean.max()), 2)],
    }


def true_tilt(task: str, env_steps: int, episodes: int, actions: list[float]) -> dict:
    import os

    os.environ.setdefault("MUJOCO_GL", "egl")
    from dm_control import suite

    from planet_torch.config import task_spec

    domain, name = task_spec(task).env_id.split("/")
    env = suite.load(domain, name, task_kwargs={"random": 0})
    size = env.action_spec().shape[0]
    rng = np.random.default_rng(0)
    sums: dict[float, list[float]] = {a: [] for a in actions}
    for _ in range(episodes):
        env.reset()
        for _ in range(int(rng.integers(0, 300))):  # a state a random policy reaches
            env.step(rng.uniform(-1, 1, size))
        start = env.physics.get_state().copy()
        for a in actions:
            with env.physics.reset_context():
                env.physics.set_state(start)
            sums[a].append(sum(env.step(np.full(size, a)).reward or 0.0 for _ in range(env_steps)))
    table = np.array([sums[a] for a in actions])  # [K, states]
    best = np.bincount(table.argmax(0), minlength=len(actions)) / table.shape[1]
    return {
        "true_env_steps": env_steps,
        "true_mean": {
            str(a): round(float(m), 3) for a, m in zip(actions, table.mean(1), strict=True)
        },
        "true_best": {str(a): round(float(b), 3) for a, b in zip(actions, best, strict=True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--actions", type=float, nargs="+", default=[-1.0, -0.5, 0.0, 0.5, 1.0])
    parser.add_argument("--true-sim", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = model_tilt(args.run_dir, args.episodes, args.every, args.actions, args.samples)
    if args.true_sim:
        steps = out["horizon_decisions"] * out["action_repeat"]
        out |= true_tilt(out["task"], steps, 2 * args.episodes, args.actions)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
