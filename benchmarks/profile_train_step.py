"""Where one world-model update spends its time: torch.profiler per operator and input shape.

    .venv/bin/python benchmarks/profile_train_step.py --preset paper --dtype bfloat16 > prof.txt

One update of the chosen preset's model on a random batch of cheetah-run's shape, after
``--warmup`` updates, profiled on the CPU: the operators by self time with their input shapes
(the view that found the decoder-bias and last-conv kernels, BENCHMARKS.md), and the share of
the update each of the encoder, RSSM loop, decoder, heads/losses and optimiser takes (by
``record_function`` ranges). Prints the CPU model, flags and both matmul ceilings first.

``--timer dispatch`` times each operator by the wall clock around its call instead (a
``TorchDispatchMode`` hook, grouped by operator, input shapes and channels-last or not): on a
2-core AMX Xeon torch.profiler's own allocations made the profiled update page-fault and
showed memory-bound operators 10-15× slower than they run (a bf16 ReLU backward at 280 ms that
takes 18), at a different operator each time; the hook's figures matched unprofiled updates
(BENCHMARKS.md, session 19). It lists no forward ranges.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from machine import ceiling_line, machine_info, matmul_ceilings
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import _random_batch

from planet_torch.config import preset
from planet_torch.models import WorldModel, WorldModelTrainer
from planet_torch.models.world_model import retain_freed_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=["paper", "cpu"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", type=int, default=25, help="operators to list")
    parser.add_argument("--timer", default="profiler", choices=["profiler", "dispatch"])
    args = parser.parse_args()
    machine = machine_info()
    print(
        f"CPU: {machine['cpu_model']} × {machine['logical_cpus']} ({' '.join(machine['cpu_flags'])})"
    )
    print(ceiling_line(matmul_ceilings()))
    retain_freed_memory()
    cfg = preset(args.preset)
    torch.manual_seed(0)
    model = WorldModel(cfg, 6)
    model.compute_dtype = getattr(torch, args.dtype)
    trainer = WorldModelTrainer(model)
    batch = _random_batch(cfg, 6)
    generator = torch.Generator().manual_seed(2)
    for _ in range(args.warmup):
        trainer.update(batch, generator)
    if args.timer == "dispatch":
        _dispatch_timed(lambda: trainer.update(batch, generator), args.rows)
        return
    parts = {
        "encoder": model.encoder,
        "decoder": model.decoder,
        "reward head": model.reward_head,
    }
    hooks = []
    for name, module in parts.items():
        hooks.append(module.register_forward_pre_hook(lambda m, i, n=name: _enter(n)))
        hooks.append(module.register_forward_hook(lambda m, i, o: _exit()))
    start = time.perf_counter()
    with (
        profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof,
        record_function("update"),
    ):
        trainer.update(batch, generator)
    seconds = time.perf_counter() - start
    for hook in hooks:
        hook.remove()
    print(f"\none update ({args.preset}, {args.dtype}): {seconds:.3f} s (profiled)\n")
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40
    )
    print(table)
    ranges = {
        e.key: e.cpu_time_total for e in prof.key_averages() if e.key in parts or e.key == "update"
    }
    total = ranges.get("update", float("nan"))
    print("forward ranges (their backward is in the operator table):")
    for name in parts:
        if name in ranges:
            print(
                f"  {name}: {ranges[name] / 1e3:.1f} ms ({100 * ranges[name] / total:.0f} % of the update)"
            )


def _dispatch_timed(update: Callable[[], object], rows: int) -> None:
    """One update with each operator call timed by the wall clock; the slowest groups."""
    seconds: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def describe(a: object) -> str:
        if not isinstance(a, torch.Tensor):
            return ""
        layout = (
            " cl" if a.dim() == 4 and a.is_contiguous(memory_format=torch.channels_last) else ""
        )
        return f"{list(a.shape)}{layout}"

    class Timed(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            key = f"{func.__name__:36s} " + " ".join(filter(None, map(describe, args[:3])))
            seconds[key] += time.perf_counter() - start
            calls[key] += 1
            return out

    start = time.perf_counter()
    with Timed():
        update()
    total = time.perf_counter() - start
    print(f"\none update: {total:.3f} s, {sum(seconds.values()):.3f} s in operators\n")
    ranked = sorted(seconds.items(), key=lambda kv: -kv[1])
    for key, value in ranked[:rows]:
        print(f"{1000 * value:8.1f} ms {calls[key]:5d}×  {key}")
    rest = sum(value for _, value in ranked[rows:])
    print(f"{1000 * rest:8.1f} ms in the other {len(ranked) - rows} groups")


_open: list[torch.autograd.profiler.record_function] = []


def _enter(name: str) -> None:
    context = record_function(name)
    context.__enter__()
    _open.append(context)


def _exit() -> None:
    _open.pop().__exit__(None, None, None)


if __name__ == "__main__":
    main()
