"""The latent planning objective and the MPC agent: same function as the world model, aligned
belief updates, batched environments, low-precision planning that chooses the same actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planet_torch.agents.planet import PlanetAgent
from planet_torch.config import DEBUG, PAPER, Config, override
from planet_torch.models import WorldModel
from planet_torch.models.imagination import (
    Kernel,
    LatentObjective,
    choose_dtype,
    onednn_linear_available,
    supports_fast_objective,
)

SMALL = override(
    PAPER,
    model={"belief_size": 32, "state_size": 8, "hidden_size": 32, "cnn_depth": 4},
    planner={"candidates": 64, "top_k": 8, "iterations": 3, "horizon": 5},
)


def _model(cfg: Config, action_size: int = 2, seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    return WorldModel(cfg, action_size).eval()


def _random_state(model: WorldModel, n: int) -> object:
    """A random state [n, ...] on the model's device (drawn on the CPU: the same on any device)."""
    g = torch.Generator().manual_seed(5)
    return model.initial_state(n).map(lambda x: x + torch.randn(x.shape, generator=g).to(x.device))


def test_fast_objective_is_the_world_models_imagine_return() -> None:
    model = _model(SMALL)
    state = _random_state(model, 40)
    actions = torch.rand(5, 40, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    kernels = ["auto", "addmm"] + ["onednn"] * onednn_linear_available(model.device)
    with torch.inference_mode():
        reference = model.imagine_return(state, actions, torch.Generator().manual_seed(3))
        for kernel in kernels:
            objective = LatentObjective(model, kernel=kernel)
            fast = objective(state, actions, torch.Generator().manual_seed(3))
            torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5, msg=kernel)
    # deterministic-only variant (no sampling): still the same function
    det = _model(override(SMALL, model={"mean_only": True}))
    with torch.inference_mode():
        reference = det.imagine_return(state, actions)
        torch.testing.assert_close(LatentObjective(det)(state, actions), reference)


def test_objective_kernel_choice() -> None:
    """auto: oneDNN (where torch has it) for bf16 at any size and for float32 from
    ONEDNN_MIN_ROWS_FP32 candidates; explicit kernels always win."""
    from planet_torch.models.imagination import ONEDNN_MIN_ROWS_FP32

    model = _model(SMALL)
    have = onednn_linear_available(model.device)
    fp32, bf16 = (LatentObjective(model, dtype) for dtype in (torch.float32, torch.bfloat16))
    assert fp32.uses_onednn(ONEDNN_MIN_ROWS_FP32) == have
    assert bf16.uses_onednn(100) == onednn_linear_available(model.device, torch.bfloat16)
    assert not fp32.uses_onednn(ONEDNN_MIN_ROWS_FP32 - 1)
    assert LatentObjective(model, kernel="addmm").uses_onednn(10_000) is False
    if have:
        assert LatentObjective(model, kernel="onednn").uses_onednn(1) is True


def test_bfloat16_planning_without_onednn_bf16_uses_addmm(monkeypatch) -> None:
    """On a CPU oneDNN builds no bf16 kernels for (AVX2 only: its bf16 linear fails to build),
    bf16 planning runs through addmm, and asking for oneDNN there is a clear error."""
    from planet_torch.models import imagination

    monkeypatch.setattr(imagination, "onednn_has_bf16", lambda: False)
    model = _model(SMALL)
    bf16 = LatentObjective(model, torch.bfloat16)
    assert not bf16.uses_onednn(10_000)
    state = _random_state(model, 40)
    actions = torch.rand(5, 40, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    returns = bf16(state, actions, torch.Generator().manual_seed(3))  # crashed in oneDNN there
    reference = LatentObjective(model)(state, actions, torch.Generator().manual_seed(3))
    torch.testing.assert_close(returns, reference, atol=0.1, rtol=0.02)
    with pytest.raises(ValueError, match=r"no torch\.bfloat16 linear on this machine"):
        LatentObjective(model, torch.bfloat16, kernel="onednn")
    if onednn_linear_available(model.device):  # float32 keeps oneDNN from its row threshold
        assert LatentObjective(model, torch.float32).uses_onednn(10_000)


def test_mean_imagination_follows_the_prior_means() -> None:
    """planner.imagination = "mean": no noise is drawn, the fast objective equals the reference
    with sample=False, and both equal the deterministic (mean_only) model's return."""
    model = _model(SMALL)
    state = _random_state(model, 40)
    actions = torch.rand(5, 40, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        one = LatentObjective(model)(state, actions, torch.Generator().manual_seed(3), False)
        other = LatentObjective(model)(state, actions, torch.Generator().manual_seed(4), False)
        reference = model.imagine_return(state, actions, torch.Generator().manual_seed(5), False)
        sampled = model.imagine_return(state, actions, torch.Generator().manual_seed(3))
        model.rssm.mean_only = True  # the same network, its samples replaced by their means
        means = model.imagine_return(state, actions)
    ssm = _model(override(SMALL, model={"kind": "ssm"}))
    ssm_state = _random_state(ssm, 40)
    with torch.inference_mode():
        ssm_mean = ssm.imagine_return(ssm_state, actions, torch.Generator().manual_seed(1), False)
        ssm.rssm.mean_only = True
        torch.testing.assert_close(ssm_mean, ssm.imagine_return(ssm_state, actions))
    torch.testing.assert_close(one, other)
    torch.testing.assert_close(one, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reference, means)
    assert not torch.allclose(sampled, reference)


def test_test_episodes_plan_with_test_imagination() -> None:
    cfg = override(SMALL, planner={"imagination": "sample", "test_imagination": "mean"})
    model = _model(cfg)
    train = PlanetAgent(model, cfg.planner, noise=0.3, generator=torch.Generator())
    test = PlanetAgent(model, cfg.planner, noise=0.0, generator=torch.Generator(), test=True)
    assert train.sample and not test.sample


def test_fast_objective_follows_weight_updates_after_refresh() -> None:
    """The objective snapshots the weights; refresh() updates the snapshot in place."""
    model = _model(SMALL)
    for dtype, tolerance in ((torch.float32, 1e-5), (torch.bfloat16, 0.1)):
        objective = LatentObjective(model, dtype)
        buffers = [t.data_ptr() for t in objective._buffers.values()]
        state, actions = _random_state(model, 8), torch.zeros(5, 8, 2)
        before = objective(state, actions, torch.Generator().manual_seed(0))
        with torch.no_grad():
            model.reward_head.net[-1].bias += 1.0  # every predicted reward +1
            model.rssm.transition_in.weight.mul_(1.0)  # (weights change in place in training)
        stale = objective(state, actions, torch.Generator().manual_seed(0))
        torch.testing.assert_close(stale, before)
        objective.refresh()
        assert [t.data_ptr() for t in objective._buffers.values()] == buffers  # same memory
        after = objective(state, actions, torch.Generator().manual_seed(0))
        torch.testing.assert_close(after, before + 5.0, atol=tolerance, rtol=0.02)  # horizon 5
        with torch.no_grad():
            model.reward_head.net[-1].bias -= 1.0


@pytest.mark.parametrize("kernel", ["addmm", "onednn"])
def test_bfloat16_planning_ranks_candidates_like_float32(kernel: Kernel) -> None:
    model = _model(override(PAPER, model={"cnn_depth": 4}), action_size=6)
    if kernel == "onednn" and not onednn_linear_available(model.device, torch.bfloat16):
        pytest.skip("no oneDNN bf16 linear on this machine (torch without it, or an AVX2 CPU)")
    state = _random_state(model, 500)
    actions = torch.rand(12, 500, 6, generator=torch.Generator().manual_seed(2)) * 2 - 1
    fp32, bf16 = (
        LatentObjective(model, dtype, kernel)(state, actions, torch.Generator().manual_seed(0))
        for dtype in (torch.float32, torch.bfloat16)
    )
    assert bf16.dtype == torch.float32
    # Measured with this setting on 8 model/state seeds (Zen 4, avx512_bf16, 2026-12-02):
    # top-50 overlap 48-50, max |diff| 0.026-0.032 std; on a Xeon with AMX (2026-12-03),
    # addmm 49-50 and 0.022-0.036, fused oneDNN 49-50 and 0.022-0.030. Bounds at 2.5x both: at
    # most 5 of the top 50 swapped, 0.08 std.
    top32 = set(fp32.topk(50).indices.tolist())
    top16 = set(bf16.topk(50).indices.tolist())
    assert len(top32 & top16) >= 45, len(top32 & top16)
    assert (fp32 - bf16).abs().max() < 0.08 * fp32.std()
    assert (fp32 - bf16).abs().max() > 1e-4 * fp32.std()  # bf16 really ran (not float32 again)


def test_dtype_choice() -> None:
    model = _model(SMALL)
    assert choose_dtype("float32", model, 64) == torch.float32
    assert choose_dtype("bfloat16", model, 64) == torch.bfloat16
    from planet_torch.models import imagination as latent
    from planet_torch.models import precision

    for speedup, dtype in ((2.0, torch.bfloat16), (1.1, torch.float32)):
        precision.precision_file().unlink(missing_ok=True)  # measure afresh (kept otherwise)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(latent, "_bf16_speedup", lambda *_, s=speedup: s)
            assert choose_dtype("auto", model, 64) == dtype, speedup
            patch.setattr(latent, "_bf16_speedup", lambda *_: 9.0)  # a new timing, ignored:
            assert choose_dtype("auto", model, 64) == dtype  # the kept ratio decides
    ssm = _model(override(SMALL, model={"kind": "ssm"}))
    assert not supports_fast_objective(ssm)
    assert choose_dtype("auto", ssm, 64) == torch.float32


def test_auto_planner_choice_is_said_and_recorded_in_the_run(tmp_path, capsys) -> None:
    """``--planner.compute-dtype auto``: the choice and the measurement behind it are printed
    and kept in the run's machines.json (as the model's), and an explicit dtype always wins."""
    import json

    from planet_torch.config import DEBUG
    from planet_torch.models import imagination as latent
    from planet_torch.models.imagination import resolve_plan_dtype
    from planet_torch.training.loop import Trainer

    model = _model(SMALL)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(latent, "_bf16_speedup", lambda *_: 1.75)
        dtype, reason = resolve_plan_dtype("auto", model, 64)
        assert dtype == torch.bfloat16 and "1.75×" in reason and "measured now" in reason
        assert resolve_plan_dtype("float32", model, 64) == (torch.float32, "float32, as configured")
        cfg = override(
            DEBUG,
            task="cartpole-balance",
            planner={"compute_dtype": "auto"},
            schedule={"total_updates": 1, "final_eval_episodes": 0},
        )
        Trainer(cfg, tmp_path / "run", progress=False).train()
    assert "planning in bfloat16 (auto: a bf16" in capsys.readouterr().out
    machines = json.loads((tmp_path / "run" / "machines.json").read_text())
    assert machines[0]["planner_dtype"] == "bfloat16"
    assert "1.75×" in machines[0]["planner_dtype_reason"]


def _noiseless(model: WorldModel) -> WorldModel:
    """Embed without dequantisation noise, so that two code paths see identical embeddings."""

    def embed(image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = ((image >> 3).float() + 0.5) / 32 - 0.5
        return model.encoder(x.movedim(-1, -3))

    model.embed = embed  # type: ignore[method-assign]
    return model


def _frames(steps: int, batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (steps, batch, 64, 64, 3), np.uint8)


@pytest.mark.parametrize("kind", ["rssm", "ssm"])
def test_agent_belief_is_the_world_models_posterior_over_the_same_sequence(kind: str) -> None:
    """Acting feeds (a_{t-1}, o_t) exactly as a training chunk pairs action[t] with image[t]:
    the agent's belief after T steps equals the model's filtering posterior of the chunk."""
    cfg = override(SMALL, model={"kind": kind, "mean_only": True})  # no sampling noise
    model = _noiseless(_model(cfg))
    agent = PlanetAgent(model, cfg.planner, noise=0.3, generator=torch.Generator().manual_seed(0))
    frames = _frames(6, 1, seed=1)
    executed = []
    for t in range(6):
        executed.append(agent.act_batch(frames[t]))
    # The chunk: row t holds the frame and the action executed *before* it (zeros at t = 0).
    action = torch.from_numpy(np.stack([np.zeros((1, 2), np.float32), *executed[:-1]]))
    with torch.inference_mode():
        embed = model.embed(torch.from_numpy(frames))
        posterior, _ = model.rssm.observe(embed, action)
    torch.testing.assert_close(agent.belief.belief, posterior.belief[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(agent.belief.mean, posterior.mean[-1], atol=1e-5, rtol=1e-5)


def test_agent_plans_for_a_batch_of_environments_at_once() -> None:
    cfg = override(
        DEBUG,
        model={"mean_only": True},  # no posterior sampling: beliefs comparable across agents
        planner={"candidates": 32, "top_k": 4, "iterations": 2},
    )
    model = _noiseless(_model(cfg))
    frames = _frames(3, 3, seed=2)
    batched = PlanetAgent(model, cfg.planner, noise=0.0, generator=torch.Generator(), batch=3)
    actions = np.stack([batched.act_batch(frames[t]) for t in range(3)])  # [T, 3, A]
    assert actions.shape == (3, 3, 2) and np.all(np.abs(actions) <= 1.0)
    assert batched.belief.belief.shape[0] == 3
    # each environment's belief is what a single-env agent would hold for that env alone
    for b in range(3):
        single = PlanetAgent(model, cfg.planner, noise=0.0, generator=torch.Generator())
        single.prev_action = torch.zeros(1, 2)
        for t in range(3):
            single.belief = model.filter(
                single.belief, single.prev_action, torch.from_numpy(frames[t, b : b + 1])
            )
            single.prev_action = torch.from_numpy(actions[t, b : b + 1])
        torch.testing.assert_close(
            single.belief.belief, batched.belief.belief[b : b + 1], atol=1e-5, rtol=1e-5
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_cuda_graph_plans_one_launch_per_decision_with_fresh_noise_and_current_belief() -> None:
    """README: 'one CUDA graph per decision on GPUs'. The graph is captured once and replayed;
    each replay reads the agent's current belief and draws fresh noise."""
    cfg = override(SMALL, planner={"cuda_graph": True, "test_imagination": "mean"})
    model = _noiseless(_model(cfg)).to("cuda")
    generator = torch.Generator("cuda").manual_seed(0)
    agent = PlanetAgent(model, cfg.planner, noise=0.0, generator=generator, test=True)
    agent.belief = _random_state(model, 1).map(lambda x: x.to("cuda"))
    first = agent.plan()
    graph = agent._graph
    assert graph is not None and not agent._graph_failed  # captured
    again = agent.plan()
    assert agent._graph is graph  # replayed, not captured again
    assert not torch.equal(first, again)  # fresh noise on each replay
    agent.belief = agent.belief.map(lambda x: x + 1.0)
    moved = agent.plan()
    assert agent._static_belief is not None
    for static, current in zip(agent._static_belief, agent.belief, strict=True):
        assert torch.equal(static, current)  # the replay read the current belief
    assert torch.isfinite(moved).all() and moved.abs().max() <= 1.0
    eager = PlanetAgent(
        model, override(cfg, planner={"cuda_graph": False}).planner, noise=0.0,
        generator=torch.Generator("cuda").manual_seed(0), test=True,
    )  # fmt: skip
    eager.belief = agent.belief
    assert eager.plan().shape == moved.shape and eager._graph is None
