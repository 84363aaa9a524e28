"""bfloat16 arithmetic: the same function as float32; how ``auto`` measures and keeps its
choice."""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from model_helpers import blob_batch, gen, make, one_thread, tiny  # noqa: F401 (a fixture)

from planet_torch.config import DEBUG, override
from planet_torch.models import WorldModelTrainer


def test_bfloat16_losses_and_gradients_match_float32() -> None:
    """``model.compute_dtype = "bfloat16"`` changes the arithmetic, not the function: on a model
    trained a little, the loss terms are within 0.1 % of float32's (KL 0.5 %) and the gradient
    points the same way (cosine > 1 − 1e-5; per layer > 0.99).

    Headroom, measured on a Zen 4 (avx512_bf16), relative error image / reward / KL: this tiny
    model 1.0e-5 / 1.2e-5 / 1.0e-3, per-layer cosine ≥ 0.9975 (0.9987 on 2026-12-02), whole
    gradient 1 − cosine 1.4e-6; the cpu preset's sizes 1.0e-6 / 2.4e-6 / 2.9e-4; paper sizes
    (3 updates) 9.3e-6 / 4.4e-7 / 7.7e-4. The bounds are 4-7× the worst of these (KL: 5e-3
    against 1.0e-3; per layer: 0.01 against 0.0025; whole: 1e-5 against 1.4e-6)."""
    cfg = tiny(model={"cnn_depth": 8})
    fp32 = make(cfg)
    trainer = WorldModelTrainer(fp32)
    for i in range(10):
        trainer.update(blob_batch(), gen(i))
    bf16 = make(override(cfg, model={"compute_dtype": "bfloat16"}))
    bf16.load_state_dict(fp32.state_dict())
    fp32.zero_grad()
    (total32, terms32), (total16, terms16) = (
        m.loss_terms(blob_batch(seed=3), gen(5)) for m in (fp32, bf16)
    )
    for name, rel in (("image_nll", 1e-3), ("reward_nll", 1e-3), ("kl", 5e-3)):
        assert terms16[name].item() == pytest.approx(terms32[name].item(), rel=rel), name
    assert terms16["image_nll"].item() != terms32["image_nll"].item()  # bf16 really ran
    total32.backward()
    total16.backward()
    pairs = [(a.grad, b.grad) for a, b in zip(fp32.parameters(), bf16.parameters(), strict=True)]
    pairs = [(a.flatten(), b.flatten()) for a, b in pairs if a is not None and b is not None]
    flat32, flat16 = torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs])
    assert F.cosine_similarity(flat32, flat16, dim=0) > 1 - 1e-5
    assert min(F.cosine_similarity(a, b, dim=0).item() for a, b in pairs) > 0.99


def test_auto_compute_dtype_measures_once_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from planet_torch.models import precision

    calls: list[tuple[int, int]] = []

    def fake_speedup(depth: int, feature_size: int) -> float:
        calls.append((depth, feature_size))
        return 1.5

    monkeypatch.setattr(precision, "conv_bf16_speedup", fake_speedup)
    model = make(tiny(model={"compute_dtype": "auto"}))
    assert model.compute_dtype is None and not calls  # nothing measured at construction
    _, terms = model.loss(blob_batch(), gen(0))
    assert math.isfinite(terms["total"])
    assert model.compute_dtype == torch.bfloat16 and "1.50×" in model.compute_dtype_reason
    model.loss(blob_batch(), gen(1))
    assert calls == [(DEBUG.model.cnn_depth, model.feature_size)]  # once, with the model's sizes
    # The next model on this machine reads the kept ratio, even where a new timing would now
    # choose float32: the choice never wavers between runs.
    monkeypatch.setattr(precision, "conv_bf16_speedup", lambda *_: 1.1)
    again = make(tiny(model={"compute_dtype": "auto"}))
    assert (
        again.resolve_compute_dtype() == torch.bfloat16 and "kept in" in again.compute_dtype_reason
    )
    precision.precision_file().unlink()  # deleting the file measures again
    assert make(tiny(model={"compute_dtype": "auto"})).resolve_compute_dtype() == torch.float32
    choice = precision.choose_model_dtype(torch.device("cuda"), 32, 230)
    assert choice[0] == torch.float32  # not measured off the CPU
    for dtype in ("bfloat16", "float32"):  # explicit: as configured, whatever is kept
        explicit = make(tiny(model={"compute_dtype": dtype}))
        assert explicit.resolve_compute_dtype() == getattr(torch, dtype) and len(calls) == 1


def test_explicit_bf16_on_a_cpu_without_bf16_kernels_says_it_is_slow(
    monkeypatch, tmp_path, capsys
) -> None:
    """An explicit dtype always wins, but on an AVX2-only CPU (oneDNN builds no bf16 kernels,
    torch emulates them: 20× slower planning measured) the reason printed and kept in the run
    says so, for the model, the planner and Dreamer's behaviour update alike."""
    import json

    from planet_torch.agents.dreamer import resolve_behaviour_dtype
    from planet_torch.models import precision
    from planet_torch.models.imagination import resolve_plan_dtype
    from planet_torch.training.loop import Trainer

    cpu = torch.device("cpu")
    for has_bf16 in (True, False):
        monkeypatch.setattr(precision, "onednn_has_bf16", lambda: has_bf16)  # noqa: B023
        model = make(tiny(model={"compute_dtype": "bfloat16"}))
        assert model.resolve_compute_dtype() == torch.bfloat16
        behaviour = override(DEBUG, dreamer={"compute_dtype": "bfloat16"}).dreamer
        for reason in (
            precision.configured_reason(torch.bfloat16, cpu),
            model.compute_dtype_reason,
            resolve_plan_dtype("bfloat16", model, 64)[1],
            resolve_behaviour_dtype(behaviour, model)[1],
        ):
            assert "as configured" in reason
            assert ("slow on this CPU" in reason) == (not has_bf16), reason
        for quiet in ((torch.float32, cpu), (torch.bfloat16, torch.device("cuda"))):
            assert precision.configured_reason(*quiet) == "as configured"
    # a run says it where the user reads it, and keeps it with the run's machine
    monkeypatch.setattr(precision, "onednn_has_bf16", lambda: False)
    cfg = override(
        DEBUG,
        task="cartpole-balance",
        model={"compute_dtype": "bfloat16"},
        planner={"compute_dtype": "bfloat16"},
        schedule={"total_updates": 1, "final_eval_episodes": 0},
    )
    Trainer(cfg, tmp_path / "run", progress=False).train()
    out = capsys.readouterr().out
    for part in ("encoder/decoder", "planning"):
        assert f"{part} in bfloat16 (" in out and "slow on this CPU" in out.split(part)[1]
    machine = json.loads((tmp_path / "run" / "machines.json").read_text())[0]
    assert all(
        precision.SLOW_BF16 in machine[k] for k in ("compute_dtype_reason", "planner_dtype_reason")
    )


def test_auto_precision_is_measured_once_per_machine_across_processes(tmp_path) -> None:
    """Two processes on this machine: the first measures and keeps the ratio, the second reads it
    (same ratio, same choice); another thread count is another machine setting, measured anew."""
    import json
    import os
    import subprocess
    import sys

    script = (  # busy-CPU detection off: this test is about keeping, not about the machine
        "import torch; from planet_torch.models import precision as p; "
        "p.cpu_sample = lambda: None; "
        "d, why = p.choose_model_dtype(torch.device('cpu'), 2, 8); print(d, '|', why)"
    )

    def choose(threads: int) -> str:
        env = {
            **os.environ,
            "PLANET_TORCH_CACHE_DIR": str(tmp_path),
            "OMP_NUM_THREADS": str(threads),
        }
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    first, second = choose(1), choose(1)
    assert "measured now, kept in" in first and "kept in" in second and "now" not in second
    ratio = first.split("convs ran ")[1].split("×")[0]
    assert second.startswith(first.split(" |")[0]) and f"ran {ratio}×" in second
    kept = json.loads((tmp_path / "precision.json").read_text())
    assert len(kept) == 1 and "1 threads" in next(iter(kept))
    assert "measured now" in choose(2)  # 2 threads: its own entry
    assert len(json.loads((tmp_path / "precision.json").read_text())) == 2


def test_bf16_far_slower_stops_timing_after_one_round(monkeypatch) -> None:
    """Emulated bf16 (0.09x on Zen 3) is decided after the warm-up and one round; a ratio near
    the thresholds gets all five rounds. A clock that each step advances by its own seconds:
    the count and the ratio are exact on any machine, under any load (a sleeping step failed
    once beside two learning runs, its 5 ms sleeps overslept)."""
    from planet_torch.models import precision

    for bf16_seconds, steps in ((0.05, 4), (0.004, 12)):  # fp32 takes 0.005 s
        calls: list[torch.dtype] = []
        now = [0.0]
        clock = types.SimpleNamespace(perf_counter=lambda now=now: now[0])
        monkeypatch.setattr(precision, "time", clock)  # this module's clock only

        def step(
            dtype: torch.dtype, slow: float = bf16_seconds, calls: list = calls, now=now
        ) -> None:
            calls.append(dtype)
            now[0] += slow if dtype == torch.bfloat16 else 0.005

        ratio = precision.bf16_speedup(step)
        assert len(calls) == steps, (bf16_seconds, len(calls))
        assert ratio == pytest.approx(0.005 / bf16_seconds, rel=1e-9)


def test_a_measurement_beside_busy_processes_is_not_kept(monkeypatch) -> None:
    """Other processes busy during the timing: the ratio serves this process only; the next one
    measures again, and a quiet measurement is kept."""
    import itertools
    import time

    from planet_torch.models import precision

    def slow_measure() -> float:  # long enough for /proc/stat's ticks to judge it
        time.sleep(0.3)
        return 1.5

    from planet_torch.machine import CpuSample

    def sample(busy: Iterator[float]) -> Callable[[], CpuSample]:
        return lambda: CpuSample(time.monotonic(), next(busy), 0.0)

    machine_busy = itertools.count(step=100.0)  # 100 CPU-seconds elsewhere per reading: busy
    monkeypatch.setattr(precision, "cpu_sample", sample(machine_busy))
    speedup, why = precision.remembered_speedup("probe", slow_measure)
    assert speedup == 1.5 and "not kept" in why and "other processes used" in why
    machine_quiet = itertools.repeat(5.0)  # nothing ran elsewhere
    monkeypatch.setattr(precision, "cpu_sample", sample(machine_quiet))
    # This process goes on with its busy value (one precision for all its models) and never
    # writes it, not even on a quiet CPU later; the next process measures again.
    assert precision.remembered_speedup("probe", slow_measure) == (
        1.5,
        "measured earlier in this process; not kept",
    )
    assert not precision.precision_file().exists()
    monkeypatch.setattr(precision, "_NOT_KEPT", {})  # the next process
    assert "measured now, kept in" in precision.remembered_speedup("probe", slow_measure)[1]
    assert "kept in" in precision.remembered_speedup("probe", lambda: 9.0)[1]  # read, not timed
    assert precision.remembered_speedup("probe", lambda: 9.0)[0] == 1.5


def test_a_short_measurement_on_a_busy_machine_is_not_kept(monkeypatch) -> None:
    """The planner's probe takes milliseconds, shorter than /proc/stat can judge: it is watched
    for MIN_WATCH_SECONDS anyway, so a busy machine's ratio is not kept (it was, before)."""
    import itertools
    import time

    from planet_torch.machine import CpuSample
    from planet_torch.models import precision

    busy = itertools.count(step=100.0)  # 100 CPU-seconds elsewhere per reading
    monkeypatch.setattr(precision, "cpu_sample", lambda: CpuSample(time.monotonic(), next(busy), 0))
    start = time.monotonic()
    speedup, why = precision.remembered_speedup("short probe", lambda: 0.5)
    assert speedup == 0.5 and "not kept" in why, why
    assert time.monotonic() - start >= precision.MIN_WATCH_SECONDS
    assert not precision.precision_file().exists()


def test_auto_precision_survives_an_unwritable_cache(tmp_path, monkeypatch) -> None:
    from planet_torch.models import precision

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PLANET_TORCH_CACHE_DIR", str(blocker / "cache"))  # under a plain file
    monkeypatch.setattr(precision, "conv_bf16_speedup", lambda *_: 1.5)
    dtype, why = precision.choose_model_dtype(torch.device("cpu"), 2, 8)
    assert dtype == torch.bfloat16 and "not kept" in why


def test_bf16_speedup_times_both_dtypes() -> None:
    from planet_torch.models.precision import bf16_speedup, conv_bf16_speedup, mlp_bf16_speedup

    seen: list[torch.dtype] = []
    assert bf16_speedup(seen.append, repeats=2) > 0
    assert seen == [torch.float32, torch.bfloat16] * 3  # a warm-up, then interleaved rounds
    before = torch.get_rng_state()
    with torch.inference_mode():  # as when a model first runs while acting (planet eval)
        assert conv_bf16_speedup(2, 8, frames=2) > 0  # a real measurement on tiny nets
        assert mlp_bf16_speedup(4, 6, 8) > 0
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random stream is untouched
