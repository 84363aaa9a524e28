"""Writes tests/data/reach_world_model.pt: a PlaNet world model trained on ``test-reach``, for
the test that Dreamer's actor, trained in its imagination, beats the random policy in the real
env (tests/test_dreamer.py). Learning the image model takes thousands of updates (6000: 41
minutes at one thread beside two training runs), too long for a test; the behaviour update on
top of it takes seconds. At 3000 updates (image NLL 11 317, against 11 304 at 6000) the actor
trained on it drove the point to a wall (37-57 vs random 51; session 20, BENCHMARKS.md).

    .venv/bin/python tests/data/make_reach_world_model.py

Trains on 200 episodes (reach_inputs.reach_episodes: half uniform random, half sticky random)
with the project's own WorldModelTrainer, then keeps what acting and imagination need (encoder,
RSSM, reward head; not the decoder: 3.7 of its 4.7 MB) and prints a check of what it learnt.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from reach_inputs import filtered_posterior, reach_config, reach_episodes

from planet_torch.envs import Env, make_env
from planet_torch.models import WorldModel, WorldModelTrainer
from planet_torch.replay import ChunkSampler, batch_to_torch

UPDATES = 6000
EPISODES = 200
EPISODE_SEED = 10_000  # the test's own episodes use other seeds


def direction_check(model: WorldModel, env: Env, generator: torch.Generator) -> float:
    """Share of states where imagining 8 decisions straight towards the target scores more
    predicted reward than straight away from it (fresh episodes, every 5th row)."""
    wins, total = 0, 0
    for episode in reach_episodes(env, 10, seed=20_000):
        posterior = filtered_posterior(model, [episode], generator)  # [T, 1, ...]
        with torch.no_grad():
            for t in range(5, episode.num_rows, 5):
                start = posterior.map(lambda x, t=t: x[t].expand(64, *x.shape[2:]))
                towards = episode.state[t, 2:] - episode.state[t, :2]
                towards = towards / (np.linalg.norm(towards) + 1e-8)
                scores = []
                for sign in (1.0, -1.0):
                    action = torch.tensor(sign * towards, dtype=torch.float32)
                    scores.append(model.imagine_return(start, action.expand(8, 64, 2), generator))
                wins += int(scores[0].mean() > scores[1].mean())
                total += 1
    return wins / total


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = reach_config()
    env = make_env(cfg, seed=0)
    model = WorldModel(cfg, env.action_size)
    trainer = WorldModelTrainer(model)
    sampler = ChunkSampler(reach_episodes(env, EPISODES, seed=EPISODE_SEED))
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    start = time.time()
    for update in range(1, UPDATES + 1):
        batch = batch_to_torch(sampler.sample(16, 16, rng), "cpu")
        metrics = trainer.update(batch, generator)
        if update % 500 == 0:
            shown = {k: round(metrics[k], 3) for k in ("image_nll", "reward_nll", "kl")}
            print(f"{update} updates, {time.time() - start:.0f} s: {shown}", flush=True)
    model.eval()
    share = direction_check(model, env, generator)
    print(f"towards the target beats away from it in {share:.0%} of the check's states")
    kept = {n: v for n, v in model.state_dict().items() if not n.startswith("decoder.")}
    out = Path(__file__).with_name("reach_world_model.pt")
    torch.save({"model": kept, "updates": UPDATES, "direction_check": share}, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
