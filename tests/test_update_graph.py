"""The world-model update as one CUDA graph (models/update_graph.py): its Adam is torch's Adam
with the original's ε, and its body -- run eagerly here, captured on a GPU -- is the eager
update: the same noise, the same losses, the same weights to float rounding."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from model_helpers import blob_batch, gen, make, one_thread, tiny  # noqa: F401 (a fixture)

from planet_torch.models import WorldModelTrainer
from planet_torch.models.update_graph import WARMUP, adam_bias_corrected_lr, tf_adam_step


def test_tf_adam_step_is_torch_adam_with_the_originals_epsilon() -> None:
    """TF's form (ε added to √v before the bias corrections, folded into lr_t) equals torch's
    Adam whose ε is ε/√(1 − β2^t) at step t, as the eager update sets it."""
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (7,)]
    ours = [torch.randn(s, generator=g) for s in shapes]
    theirs = [p.clone().requires_grad_() for p in ours]
    reference = torch.optim.Adam(theirs, lr=1.0, eps=1e-4, fused=True)
    moments = [torch.zeros_like(p) for p in ours], [torch.zeros_like(p) for p in ours]
    steps = [torch.zeros(()) for _ in ours]
    for t in range(1, 7):
        lr = 1e-3 * min(1.0, t / 3)  # a warm-up, so lr changes too
        grads = [torch.randn(s, generator=g) * 10**t for s in shapes]  # scales that ε matters for
        for p, grad in zip(theirs, grads, strict=True):
            p.grad = grad.clone()
        group = reference.param_groups[0]
        group["lr"], group["eps"] = lr, 1e-4 / (1 - 0.999**t) ** 0.5
        reference.step()
        lr_t = torch.tensor(adam_bias_corrected_lr(lr, (0.9, 0.999), t))
        tf_adam_step(ours, grads, *moments, steps, lr_t, (0.9, 0.999), 1e-4)
        for mine, ref in zip(ours, theirs, strict=True):
            torch.testing.assert_close(mine, ref.detach(), rtol=1e-5, atol=1e-9)
        state = reference.state[theirs[0]]
        torch.testing.assert_close(moments[0][0], state["exp_avg"])
        torch.testing.assert_close(moments[1][0], state["exp_avg_sq"])
        assert steps[0].item() == state["step"].item() == t


def _pair(dtype: str = "float32") -> tuple[WorldModelTrainer, WorldModelTrainer]:
    cfg = tiny(
        model={"state_diagnostics": True, "compute_dtype": dtype}, optim={"warmup_updates": 3}
    )
    eager = WorldModelTrainer(make(cfg, seed=3, state_size=2))
    graphed = WorldModelTrainer(make(cfg, seed=3, state_size=2))
    graphed.graph = graphed.new_update_graph(capture=False)
    return eager, graphed


def _same_weights(a: WorldModelTrainer, b: WorldModelTrainer) -> None:
    for (name, x), y in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_graphs_update_is_the_eager_update(dtype: str) -> None:
    eager, graphed = _pair(dtype)
    for i in range(5):
        g_eager, g_graphed = gen(i), gen(i)
        (m_eager, post_eager), (m_graphed, post_graphed) = (
            eager.update_and_posterior(blob_batch(), g_eager),
            graphed.update_and_posterior(blob_batch(), g_graphed),
        )
        assert m_graphed.keys() == m_eager.keys() and graphed.updates == eager.updates == i + 1
        if i == 0:  # before any weight moved: the same noise gives the same numbers, exactly
            assert m_graphed == m_eager
            for x, y in zip(post_eager, post_graphed, strict=True):
                assert torch.equal(x, y)
        assert m_graphed == pytest.approx(m_eager, rel=1e-3, abs=1e-5), i
        assert m_graphed["lr"] == m_eager["lr"] == pytest.approx(1e-3 * min(1, (i + 1) / 3))
        # The caller's generator ends where the eager update leaves it (Dreamer draws on).
        assert torch.equal(g_graphed.get_state(), g_eager.get_state())
        _same_weights(eager, graphed)
    assert graphed.graph is not None and graphed.graph.calls == 5
    # The probe's Adam group moved too, and both optimisers count the same steps.
    steps = {float(s["step"]) for s in graphed.optimizer.state.values()}
    assert steps == {5.0} and len(graphed.optimizer.state) == len(eager.optimizer.state)


def test_a_batch_of_another_shape_or_a_load_starts_the_graph_afresh() -> None:
    eager, graphed = _pair()
    for i in range(2):
        eager.update(blob_batch(), gen(i))
        graphed.update(blob_batch(), gen(i))
    first = graphed.graph
    # Another shape: an eager update (torch's Adam on the same moments), no graph kept.
    m_eager = eager.update(blob_batch(T=6), gen(2))
    m_graphed = graphed.update(blob_batch(T=6), gen(2))
    assert graphed.graph is None
    assert m_graphed == pytest.approx(m_eager, rel=1e-3, abs=1e-5)
    _same_weights(eager, graphed)
    # A load replaces the optimiser's state tensors: a graph made before it must not keep
    # updating the old ones.
    graphed.graph = first
    graphed.model.load_state_dict(eager.model.state_dict())
    graphed.load_state_dict(copy.deepcopy(eager.state_dict()))  # as from a checkpoint file
    assert graphed.graph is not first and graphed.graph is not None
    assert graphed.graph.calls == 0 and graphed.updates == eager.updates == 3
    m_eager, m_graphed = eager.update(blob_batch(), gen(3)), graphed.update(blob_batch(), gen(3))
    assert m_graphed == pytest.approx(m_eager, rel=1e-3, abs=1e-5)
    _same_weights(eager, graphed)


def test_the_graph_is_off_by_default_and_without_cuda() -> None:
    trainer = WorldModelTrainer(make(tiny(optim={"cuda_graph": True})))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no capture tried (and failed) on a CPU
        trainer.update(blob_batch(), gen(0))
    assert trainer.graph is None  # a CPU: eager, the option does nothing
    assert WorldModelTrainer(make()).cfg.cuda_graph is False


def test_a_users_error_in_the_update_is_not_taken_for_a_missing_cuda_feature() -> None:
    """Only CUDA's and PyTorch's RuntimeErrors send the update back to eager with a warning;
    a wrong batch raises its own error, as the eager update does."""
    _, graphed = _pair()
    batch = blob_batch()
    del batch["state"]  # the state probe needs it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="'state' entry"):
            graphed.update(batch, gen(0))


def _cuda_gen(seed: int) -> torch.Generator:
    return torch.Generator("cuda").manual_seed(seed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_cuda_graph_update_replays_the_eager_update() -> None:
    """On a GPU: warm-up, capture, replays; the same losses as eager, within float rounding,
    and a fresh capture after a load."""
    cfg = tiny(optim={"warmup_updates": 3})
    eager = WorldModelTrainer(make(cfg, seed=3).to("cuda"))
    graphed_cfg = tiny(optim={"warmup_updates": 3, "cuda_graph": True})
    graphed = WorldModelTrainer(make(graphed_cfg, seed=3).to("cuda"))
    batch = {k: v.cuda() for k, v in blob_batch().items()}

    def both(seed: int) -> None:
        m_eager = eager.update(batch, _cuda_gen(seed))
        m_graphed = graphed.update(batch, _cuda_gen(seed))
        assert m_graphed == pytest.approx(m_eager, rel=1e-3, abs=1e-4), seed

    for i in range(WARMUP + 3):  # warm-ups, the capture (and its replay), two replays
        both(i)
    assert graphed.graph is not None and graphed.graph.replays == 3
    assert eager.graph is None
    weight = next(graphed.model.parameters())
    version = weight._version  # a replay moves the weights: their versions say so
    both(9)
    assert weight._version > version
    _same_weights(eager, graphed)
    graphed.model.load_state_dict(eager.model.state_dict())
    graphed.load_state_dict(copy.deepcopy(eager.state_dict()))  # as from a checkpoint file
    for i in range(WARMUP + 2):
        both(10 + i)
    assert graphed.graph is not None and graphed.graph.replays == 2
