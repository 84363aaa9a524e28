"""DDPG: transition alignment, target networks, gradient paths, exploration, checkpoints, and its
schedule end to end on ``test-reach`` (learning, crash and Ctrl-C resume, schedule extension)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from run_helpers import assert_same_run, metrics

from planet_torch.agents.ddpg import DDPG, DDPGAgent, Transitions
from planet_torch.config import DEBUG, DDPGConfig, override
from planet_torch.envs import make_env
from planet_torch.errors import UserError
from planet_torch.replay import ChunkSampler, EpisodeBuilder, batch_to_torch
from planet_torch.training.checkpoint import load_checkpoint, save_checkpoint
from planet_torch.training.ddpg_loop import DDPGTrainer, load_ddpg_agent
from planet_torch.training.logging import read_metrics

SMALL = DDPGConfig(hidden_units=32, hidden_layers=2, batch_size=16)
STATE, ACTION = 4, 2


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny MLPs gain nothing from threads, and on a busy 2-core machine lose 100× to them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_batch(seed: int, batch: int = 16, pixels: bool = False) -> dict[str, torch.Tensor]:
    """Time-major chunks of 2 rows with random content (terminal on every 4th chunk)."""
    g = torch.Generator().manual_seed(seed)
    out = {
        "state": torch.rand(2, batch, STATE, generator=g) * 2 - 1,
        "action": torch.rand(2, batch, ACTION, generator=g) * 2 - 1,
        "reward": torch.rand(2, batch, generator=g),
        "discount": torch.ones(2, batch),
    }
    out["discount"][1, ::4] = 0.0
    if pixels:
        out["image"] = torch.randint(0, 256, (2, batch, 64, 64, 3), generator=g, dtype=torch.uint8)
    return out


def params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ---- the learner ---------------------------------------------------------------------------


def test_transitions_pair_row_t_minus_1_with_the_action_and_reward_of_row_t():
    builder = EpisodeBuilder()
    image = np.zeros((64, 64, 3), np.uint8)
    builder.start({"image": image, "state": np.array([0.0], np.float32)})
    for t in range(1, 6):  # state o_t = t, action a_{t-1} = 10 t, reward r_t = 100 t
        builder.add(
            np.array([10.0 * t]), {"image": image, "state": np.array([t])}, 100.0 * t, t == 5
        )
    batch = batch_to_torch(
        ChunkSampler([builder.finish()]).sample(32, 2, np.random.default_rng(0)), "cpu"
    )
    tr = Transitions.from_batch(batch, "state")
    s, s_next = tr.observation[:, 0], tr.next_observation[:, 0]
    assert torch.equal(s_next, s + 1)  # s' follows s
    assert torch.equal(tr.action[:, 0], 10 * s_next)  # a was taken in s and led to s'
    assert torch.equal(tr.reward, 100 * s_next)  # r was received on that step
    assert torch.equal(tr.discount, (s_next != 5).float())  # only the terminal s' stops bootstrap


def test_hard_target_copies_exactly_at_the_interval_and_never_between():
    learner = DDPG(replace(SMALL, target_update="hard", hard_update_every=3), ACTION, STATE, "cpu")
    target = params(learner.target)
    assert same(target, params(learner.online))  # targets start as copies
    for u in range(1, 10):
        learner.update(random_batch(u))
        assert learner.updates == u
        if u % 3 == 0:
            assert same(params(learner.target), params(learner.online)), u
            target = params(learner.target)
        else:
            assert same(params(learner.target), target), u
            assert not same(params(learner.target), params(learner.online)), u


def test_soft_target_is_exact_polyak_averaging():
    tau = 0.3
    learner = DDPG(replace(SMALL, tau=tau), ACTION, STATE, "cpu")
    for u in range(3):
        before = params(learner.target)
        learner.update(random_batch(u))
        for new, old, online in zip(
            params(learner.target), before, params(learner.online), strict=True
        ):
            torch.testing.assert_close(new, tau * online + (1 - tau) * old, rtol=0, atol=1e-7)


def test_critic_target_is_r_plus_gamma_q_target_of_target_action_without_gradient():
    learner = DDPG(replace(SMALL, discount=0.9), ACTION, STATE, "cpu")
    with torch.no_grad():  # make the targets differ from the online networks
        for p in learner.target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    tr = Transitions.from_batch(random_batch(0), "state")
    y = learner.target_value(tr)
    assert not y.requires_grad

    def by_hand(actor: torch.nn.Module, critic: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            q_next = critic(tr.next_observation, actor(tr.next_observation))
        return tr.reward + 0.9 * tr.discount * q_next

    torch.testing.assert_close(y, by_hand(learner.target.actor, learner.target.critic))
    assert not torch.allclose(y, by_hand(learner.online.actor, learner.target.critic))
    assert not torch.allclose(y, by_hand(learner.target.actor, learner.online.critic))
    # Terminal rows do not bootstrap.
    assert torch.equal(y[tr.discount == 0], tr.reward[tr.discount == 0])

    target = params(learner.target.actor) + params(learner.target.critic)
    learner.critic_step(tr)
    modules = (learner.target.actor, learner.target.critic)
    assert all(p.grad is None and not p.requires_grad for m in modules for p in m.parameters())
    assert same(params(learner.target.actor) + params(learner.target.critic), target)


def test_actor_gradient_reaches_only_the_actor():
    learner = DDPG(SMALL, ACTION, STATE, "cpu")
    tr = Transitions.from_batch(random_batch(0), "state")
    actor_before = params(learner.online.actor)
    features, _ = learner.critic_step(tr)
    assert same(params(learner.online.actor), actor_before)  # the critic step leaves μ alone
    critic = params(learner.online.critic)
    critic_grads = [p.grad.clone() for p in learner.online.critic.parameters()]  # type: ignore[union-attr]
    learner.actor_step(features)
    assert same(params(learner.online.critic), critic)
    assert same([p.grad for p in learner.online.critic.parameters()], critic_grads)  # type: ignore[misc]
    assert not same(params(learner.online.actor), actor_before)
    assert all(p.grad is not None for p in learner.online.actor.parameters())


def test_pixel_variant_updates_with_correct_shapes_and_encoder_trained_by_the_critic_only():
    cfg = DDPGConfig(obs="pixels", cnn_depth=4, hidden_units=16, batch_size=4)
    learner = DDPG(cfg, ACTION, STATE, "cpu")
    batch = random_batch(0, batch=4, pixels=True)
    tr = Transitions.from_batch(batch, "image")
    assert tr.observation.shape == (4, 64, 64, 3) and tr.action.shape == (4, ACTION)
    assert learner.online.encoder is not None
    encoder = params(learner.online.encoder)
    features, _ = learner.critic_step(tr)
    assert features.shape == (4, 32 * 4) and not features.requires_grad
    assert not same(params(learner.online.encoder), encoder)  # the critic's loss trains it
    encoder = params(learner.online.encoder)
    grads = [p.grad.clone() for p in learner.online.encoder.parameters()]  # type: ignore[union-attr]
    learner.actor_step(features)
    assert same(params(learner.online.encoder), encoder)
    assert same([p.grad for p in learner.online.encoder.parameters()], grads)  # type: ignore[misc]
    metrics = learner.update(batch)
    assert set(metrics) == {"critic_loss", "actor_loss", "q_mean", "target_q_mean"}
    assert all(np.isfinite(v) for v in metrics.values())
    env = make_env(override(DEBUG, task="test-reach"), seed=0)
    agent = DDPGAgent(learner.online, cfg, noise_std=0.1, generator=torch.Generator())
    action = agent.act(env.reset(seed=0))
    assert action.shape == (ACTION,) and action.dtype == np.float32


# ---- the agent -----------------------------------------------------------------------------


@pytest.mark.parametrize("noise", ["gaussian", "ou"])
def test_exploration_noise_by_hand_and_none_at_test(noise):
    cfg = replace(SMALL, noise=noise, noise_std=0.05, ou_theta=0.2)
    learner = DDPG(cfg, ACTION, STATE, "cpu")
    env = make_env(override(DEBUG, task="test-reach"), seed=0)
    observation = env.reset(seed=0)
    with torch.no_grad():
        mean = learner.online.actor(torch.from_numpy(observation.state)[None])[0]
    greedy = DDPGAgent(learner.online, cfg, noise_std=0.0, generator=torch.Generator())
    assert np.array_equal(greedy.act(observation), mean.numpy())
    agent = DDPGAgent(
        learner.online, cfg, noise_std=0.05, generator=torch.Generator().manual_seed(1)
    )
    eps = torch.randn(3, ACTION, generator=torch.Generator().manual_seed(1))
    x = torch.zeros(ACTION)
    for k in range(3):  # same observation, so only the noise changes
        x = x - 0.2 * x + 0.05 * eps[k] if noise == "ou" else 0.05 * eps[k]
        torch.testing.assert_close(
            torch.from_numpy(agent.act(observation)), (mean + x).clamp(-1, 1)
        )


def test_save_load_gives_the_same_actions_and_the_same_next_update(tmp_path):
    cfg = override(DEBUG, task="test-reach", algo="ddpg", ddpg=asdict(SMALL))
    learner = DDPG(cfg.ddpg, ACTION, STATE, "cpu")
    for u in range(3):
        learner.update(random_batch(u))
    path = save_checkpoint(tmp_path / "latest.pt", {"ddpg": learner.state_dict()})
    state = load_checkpoint(path)  # weights_only=True
    env = make_env(cfg, seed=0)
    loaded = load_ddpg_agent(cfg, state, env, torch.device("cpu"))
    original = DDPGAgent(learner.online, cfg.ddpg, noise_std=0.0, generator=torch.Generator())
    observation = env.reset(seed=3)
    for _ in range(5):
        action = original.act(observation)
        assert np.array_equal(loaded.act(observation), action)
        observation = env.step(action).observation

    restored = DDPG(cfg.ddpg, ACTION, STATE, "cpu")
    restored.load_state_dict(state["ddpg"])
    assert restored.updates == 3
    assert restored.update(random_batch(9)) == learner.update(random_batch(9))
    assert same(params(restored.online), params(learner.online))
    assert same(params(restored.target), params(learner.target))
    with pytest.raises(UserError, match="no DDPG agent"):
        load_ddpg_agent(cfg, {"model": {}}, env, torch.device("cpu"))


# ---- the schedule --------------------------------------------------------------------------

# 40 policy steps per episode, 0.25 updates per policy step: an episode every 10 updates.
RUN = override(
    DEBUG,
    algo="ddpg",
    task="test-reach",
    ddpg={**asdict(SMALL), "updates_per_policy_step": 0.25},
    schedule={"total_updates": 24},
)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ddpg") / "reference"
    summary = DDPGTrainer(RUN, run, progress=False).train()
    assert summary["updates"] == 24 and len(summary["test_returns"]) == 4
    return run


def test_debug_run_writes_everything(reference):
    assert json.loads((reference / "config.json").read_text())["algo"] == "ddpg"
    # Seed 2 + an episode at 0, 10 and 20 updates; test: 1 seed + 1 per test phase.
    assert len(list((reference / "train_episodes").glob("*.npz"))) == 2 + 3
    assert len(list((reference / "test_episodes").glob("*.npz"))) == 1 + 4
    state = load_checkpoint(reference / "checkpoints" / "latest.pt")
    assert state["counters"]["updates"] == 24 and state["ddpg"]["updates"] == 24
    assert list((reference / "tensorboard").glob("events.out.tfevents.*"))
    assert len(list((reference / "videos").glob("test-*.mp4"))) == 4
    records = metrics(reference)
    tests = [r for r in records if "test/return" in r]
    assert [r["updates"] for r in tests] == [6, 12, 18, 24]
    # Episodes in train_episodes/ × 40 policy steps × action repeat 2.
    assert [r["env_steps"] for r in tests] == [3 * 80, 4 * 80, 4 * 80, 5 * 80]
    updates = [r["updates"] for r in records if "train/critic_loss" in r]
    assert updates == list(range(1, 25))
    assert [r["updates"] for r in records if "train/return" in r] == [0, 10, 20]


def test_longer_schedule_on_resume_continues_the_run(reference, tmp_path):
    run = tmp_path / "extended"
    short = override(RUN, schedule={"total_updates": 12})
    assert DDPGTrainer(short, run, progress=False).train()["updates"] == 12
    with pytest.raises(UserError, match="--resume"):
        DDPGTrainer(RUN, run, progress=False)
    with pytest.raises(UserError, match="another config"):
        DDPGTrainer(override(RUN, ddpg={"tau": 0.5}), run, resume=True, progress=False)
    summary = DDPGTrainer(RUN, run, resume=True, progress=False).train()
    assert summary["updates"] == 24
    assert_same_run(reference, run)
    with pytest.raises(UserError, match="nothing to resume"):
        DDPGTrainer(RUN, tmp_path / "none", resume=True, progress=False)


LEARN = override(
    DEBUG,
    algo="ddpg",
    task="test-reach",
    ddpg={
        "hidden_units": 128,
        "batch_size": 64,
        "discount": 0.9,
        "actor_lr": 1e-4,
        "critic_lr": 3e-3,
        "tau": 0.02,
        "noise_std": 0.3,
    },
    schedule={
        "seed_episodes": 5,
        "test_seed_episodes": 5,
        "test_episodes": 5,
        "test_every_updates": 2000,
        "total_updates": 2000,
    },
)


def test_learns_test_reach_from_states_on_most_seeds(tmp_path):
    """Three seeds; a majority must beat the random policy of its own seed episodes by a margin
    (returns in [0, 80]: random ≈ 50, reaching the target ≈ 75).

    Measured (session 13, Zen 3, gains over seeds 0-7): at 1000 updates 24.7, 24.2, 8.7,
    -13.7, 4.2, 19.8, -6.2, -7.0 (3 of 8 above 10: seed-fragile, as noted); 10 test episodes
    instead of 5 did not change that (3 of 8), nor did actor lr 3e-4, critic lr 1e-3 and noise
    0.2 (0 of 8). At 1500 updates 7 of 8; at 2000 updates all 8: 28.1, 30.6, 22.7, 23.1, 17.8,
    19.8, 22.3, 18.8 (mean 22.9, sd 4.4). So 2000 updates; the bar of 10 lies 2.9 sd below
    their mean, and a majority of three cannot be one unlucky draw. The third seed runs only
    when the first two disagree: two passes (or two failures) already decide the majority."""
    gains: list[float] = []
    for seed in range(3):
        run = tmp_path / f"learn{seed}"
        summary = DDPGTrainer(replace(LEARN, seed=seed), run, progress=False).train()
        records = read_metrics(run / "metrics.jsonl")
        random_return = np.mean([r["seed/test_return"] for r in records if "seed/test_return" in r])
        gains.append(summary["test_returns"][-1] - random_return)
        passed = sum(gain > 10 for gain in gains)
        if passed >= 2 or len(gains) - passed >= 2:  # the majority of three is decided
            break
    assert sum(gain > 10 for gain in gains) >= 2, gains


def test_bad_ddpg_values_are_one_line_user_errors_before_any_folder_exists(tmp_path):
    for ddpg, needle in [({"tau": 0.0}, "ddpg.tau"), ({"batch_size": 0}, "ddpg.batch-size")]:
        with pytest.raises(UserError, match=needle):
            DDPGTrainer(override(RUN, ddpg=ddpg), tmp_path / "bad", progress=False)
        assert not (tmp_path / "bad").exists()
