"""Seconds per world-model update, achieved GFLOP/s and peak memory, with ablations.

    .venv/bin/python benchmarks/bench_train_step.py > train_step.json  # JSON on stdout, table on stderr
    .venv/bin/python benchmarks/bench_train_step.py --presets paper --variants fast nchw

Every (preset, variant) runs in a fresh process, so that peak RSS is its own and settings read
at torch's start (``THP_MEM_ALLOC_ENABLE``) or made before the first big allocation (glibc's
``mallopt``) take effect. ``fast`` is the code as shipped plus :func:`retain_freed_memory`; every
other variant undoes one speed measure (or, for ``bf16``, adds one), so its time relative to
``fast`` is what that measure is worth.

Other processes on a 2-core machine distort timings badly (an OpenMP thread that loses its core
stalls every parallel region). Each timed update therefore also measures the CPU time that
*other* processes used meanwhile (/proc/stat minus our own); updates where that exceeds 5 % of
the machine are repeated, and the report says how many were dropped.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward
of the original function (matmuls and convolutions; the sub-pixel form's zero-padding FLOPs are
not counted).
"""

from __future__ import annotations

import os
import sys

if "--child" in sys.argv:  # process-wide settings, before torch loads or allocates
    parts = sys.argv[sys.argv.index("--child") + 2].split("+")
    os.environ["THP_MEM_ALLOC_ENABLE"] = "1" if "thp_no_retain" in parts else "0"
    if not {"thp_no_retain", "no_retain"} & set(parts):
        from planet_torch.models.world_model import retain_freed_memory

        retain_freed_memory()

import argparse
import json
import resource
import statistics
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

VARIANTS: dict[str, str] = {
    "fast": "as shipped: channels-last, in-place ReLU, T·B frames per conv call, sub-pixel last "
    "deconv, 1×1 deconv as matmul, fused squared error, bias after the deconvs, the last conv "
    "as im2col matmuls, channels-last encoder weights, conv + bias + ReLU fused in bf16 on AMX "
    "CPUs; retain_freed_memory()",
    "plain": "the plain reference modules (model.fast_kernels off: torch's own layers and "
    "RSSM loops; channels-last, in-place ReLUs and the fast kernels all off)",
    "thp_no_retain": "no retain_freed_memory(), THP_MEM_ALLOC_ENABLE=1 instead",
    "no_retain": "neither retain_freed_memory() nor THP: every update page-faults its tensors",
    "nchw": "contiguous NCHW activations instead of channels-last",
    "relu_copy": "ReLU out of place",
    "native_deconv": "last deconv with torch's ConvTranspose2d forward",
    "deconv1_convT": "first deconv (on the 1×1 map) as ConvTranspose2d instead of a matmul",
    "mse_loss": "image NLL through F.mse_loss(reduction='sum') instead of the fused function",
    "per_step_convs": "encoder and decoder called once per time step (B frames) instead of T·B",
    "conv4_onednn": "last encoder conv by oneDNN (forward and weight gradient) instead of im2col "
    "matmuls",
    "oihw_weights": "encoder conv weights in torch's default (O, I, H, W) memory layout instead of "
    "channels-last",
    "torch_noise": "dequantisation noise from torch.rand (one serial generator) instead of numpy "
    "streams per block on torch's threads",
    "loop_adam": "torch's per-tensor Adam (foreach=False, its CPU default) instead of the fused "
    "one (FusedAdam)",
    "bias_inside": "transposed convs with the bias inside oneDNN's conv (forward and backward)",
    "unfused_relu": "conv, bias and ReLU as separate passes also where the fast layers fuse them "
    "(in bf16 on CPUs with AMX)",
    "fused_relu": "conv, bias and ReLU as one oneDNN call in bf16 also on CPUs without AMX "
    "(encoder convs and decoder transposed convs)",
    "fused_enc_relu": "as fused_relu, the encoder's convs only",
    "bf16": "encoder and decoder under bfloat16 autocast (what model.compute_dtype auto picks "
    "where faster; the paper preset defaults to float32)",
}
"""Variants combine with '+': ``bf16+bias_inside`` is bf16 with the bias measure undone."""


def _apply_variant(model: Any, variants: str) -> None:
    for variant in variants.split("+"):
        _apply_one(model, variant)


def _apply_one(model: Any, variant: str) -> None:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from planet_torch.models import fast, world_model
    from planet_torch.models.fast import ReLUConv2d, ReLUConvTranspose2d

    if variant == "nchw":
        model.encoder.memory_format = torch.contiguous_format
        model.decoder.memory_format = torch.contiguous_format
    elif variant == "relu_copy":
        for module in model.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
            elif isinstance(module, ReLUConv2d | ReLUConvTranspose2d):
                module.relu_inplace = False
    elif variant == "native_deconv":
        last = model.decoder.net[-1]
        last.forward = types.MethodType(nn.ConvTranspose2d.forward, last)
    elif variant == "deconv1_convT":
        first = model.decoder.net[0]
        first.forward = types.MethodType(nn.ConvTranspose2d.forward, first)
    elif variant == "mse_loss":

        class MseLoss:
            @staticmethod
            def apply(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                return 0.5 * F.mse_loss(mean.float(), target, reduction="sum")

        world_model._HalfSquaredError = MseLoss  # type: ignore[assignment,misc]
    elif variant == "per_step_convs":
        for net in (model.encoder, model.decoder):
            batched = net.forward

            def per_step(x: torch.Tensor, batched: Any = batched) -> torch.Tensor:
                return torch.stack([batched(x[t]) for t in range(x.shape[0])])

            net.forward = per_step
    elif variant == "conv4_onednn":
        last_conv = model.encoder.net[-2]
        last_conv.forward = types.MethodType(nn.Conv2d.forward, last_conv)
    elif variant == "oihw_weights":
        for module in model.encoder.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.data = module.weight.data.contiguous()
    elif variant == "torch_noise":
        import importlib

        preprocess = importlib.import_module("planet_torch.models.preprocess")  # the module

        def torch_rand(shape: Any, generator: Any = None, device: Any = "cpu") -> torch.Tensor:
            return torch.rand(shape, generator=generator, device=device)

        preprocess.uniform_noise = torch_rand  # type: ignore[assignment]
    elif variant == "unfused_relu":
        fast.cpu_has_amx = lambda: False  # type: ignore[assignment]  # (this child process only)
    elif variant == "fused_relu":
        fast.cpu_has_amx = lambda: True  # type: ignore[assignment]  # (this child process only)
    elif variant == "fused_enc_relu":

        def fused(module: Any, x: torch.Tensor) -> torch.Tensor:
            if fast.in_bf16(x):  # fuse_conv_relu's rule without its AMX condition
                return fast.conv_relu(x, module, transposed=False)
            return ReLUConv2d.forward(module, x)

        for module in model.encoder.modules():
            if isinstance(module, ReLUConv2d):
                module.forward = types.MethodType(fused, module)
    elif variant == "bias_inside":
        from planet_torch.models.fast import BiasAfterConvTranspose2d, _SubPixelConvTranspose

        def deconv_relu(module: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
            return F.relu(nn.ConvTranspose2d.forward(module, x))

        for module in model.decoder.modules():
            if isinstance(module, ReLUConvTranspose2d):
                module.forward = types.MethodType(deconv_relu, module)
            elif isinstance(module, BiasAfterConvTranspose2d):
                module.forward = types.MethodType(nn.ConvTranspose2d.forward, module)
        _SubPixelConvTranspose.backward = staticmethod(_bias_inside_backward)  # type: ignore[method-assign]
    elif variant == "bf16":
        model.compute_dtype = torch.bfloat16  # = model.compute_dtype "bfloat16" in the config
    elif variant not in ("fast", "plain", "thp_no_retain", "no_retain", "loop_adam"):
        raise SystemExit(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")


def _bias_inside_backward(ctx: Any, grad: Any) -> tuple[Any, ...]:
    """The sub-pixel deconv's backward with oneDNN computing the bias gradient too."""
    import torch

    x, weight = ctx.saved_tensors
    needs = ctx.needs_input_grad
    return tuple(
        torch.ops.aten.convolution_backward(
            grad.contiguous(memory_format=torch.channels_last),
            x,
            weight,
            [weight.shape[1]] if ctx.has_bias else None,
            [2, 2],
            [0, 0],
            [1, 1],
            True,
            [0, 0],
            1,
            [needs[0], needs[1], ctx.has_bias and needs[2]],
        )
    )


def _random_batch(cfg: Any, action_size: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    T, B = cfg.data.chunk_length, cfg.data.batch_size
    return {
        "image": torch.randint(0, 256, (T, B, 64, 64, 3), dtype=torch.uint8, generator=g),
        "action": torch.rand(T, B, action_size, generator=g) * 2 - 1,
        "reward": torch.rand(T, B, generator=g),
        "discount": torch.ones(T, B),
    }


def _count_flops(model: Any, batch: dict[str, Any]) -> float:
    """FLOPs of one forward + backward of the loss, as the original layers define them."""
    import torch
    from machine import count_flops
    from torch import nn

    def step() -> None:
        total, _ = model.loss_terms(batch, torch.Generator().manual_seed(1))
        total.backward()

    last = model.decoder.net[-1]
    last.forward = types.MethodType(nn.ConvTranspose2d.forward, last)  # count the true deconv
    try:
        flops = count_flops(step)
    finally:
        del last.forward
    model.zero_grad(set_to_none=True)
    return flops


def clean_timings(
    fn: Callable[[], object], repeats: int, max_tries: int, tolerance: float = 0.05
) -> tuple[list[float], list[float]]:
    """Wall seconds of up to ``repeats`` calls during which other processes used less than
    ``tolerance`` of the CPUs this process may use (trying up to ``max_tries`` calls), and of
    the calls that overlapped with busy periods."""
    from planet_torch.machine import cpu_sample, others_cpus, usable_cpus

    cpus = usable_cpus()  # others_cpus counts over the same affinity CPUs
    kept: list[float] = []
    busy: list[float] = []
    for _ in range(max_tries):
        sample, start = cpu_sample(), time.perf_counter()
        fn()
        wall = time.perf_counter() - start
        others = others_cpus(sample, cpu_sample())  # NaN where not measurable: kept
        (busy if others >= tolerance * cpus else kept).append(wall)
        if len(kept) == repeats:
            break
    return kept, busy


def child(preset: str, variant: str, warmup: int, repeats: int) -> dict[str, Any]:
    import torch

    from planet_torch.config import override
    from planet_torch.config import preset as get_preset
    from planet_torch.models import WorldModel, WorldModelTrainer

    cfg = get_preset(preset)
    if "plain" in variant.split("+"):
        cfg = override(cfg, model={"fast_kernels": False})
    action_size = 6  # cheetah-run
    torch.manual_seed(0)
    model = WorldModel(cfg, action_size)
    # float32 unless the variant says bf16, whatever the preset's compute_dtype (the cpu
    # preset's "auto" would otherwise measure inside the FLOP count and pick per machine)
    model.compute_dtype = torch.float32
    batch = _random_batch(cfg, action_size)
    flops = _count_flops(model, batch) if variant == "fast" else None
    _apply_variant(model, variant)
    trainer = WorldModelTrainer(model)
    if "loop_adam" in variant.split("+"):
        fused = trainer.optimizer
        groups = [{"params": group["params"]} for group in fused.param_groups]
        trainer.optimizer = torch.optim.Adam(groups, **fused.defaults | {"fused": None})
    generator = torch.Generator().manual_seed(2)
    for _ in range(warmup):
        trainer.update(batch, generator)
    seconds, busy = clean_timings(lambda: trainer.update(batch, generator), repeats, 4 * repeats)
    result: dict[str, Any] = {
        "preset": preset,
        "variant": variant,
        "contended": not seconds,  # no quiet update at all: the numbers below are not clean
        "dropped_busy": len(busy) if seconds else 0,
    }
    seconds = seconds or busy
    result |= {
        "seconds": seconds,
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": [cfg.data.batch_size, cfg.data.chunk_length],
    }
    if flops is not None:
        result["gflop_per_update"] = flops / 1e9
        result.update(_time_observe(model, batch))
    return result


def _time_observe(model: Any, batch: dict[str, Any]) -> dict[str, float]:
    """Seconds of the RSSM's filtering over the chunk (forward + backward): the optimised
    ``observe`` loop, and the same function as a plain loop of ``obs_step`` calls."""
    import torch

    from planet_torch.models import State

    rssm = model.rssm
    T, B = batch["action"].shape[:2]
    embed = torch.randn(T, B, model.encoder.embed_size, requires_grad=True)

    def fused() -> None:
        posterior, prior = rssm.observe(embed, batch["action"])
        (rssm.features(posterior).sum() + rssm.kl(posterior, prior).sum()).backward()

    def stepwise() -> None:
        state, posteriors, priors = rssm.initial_state(B), [], []
        for t in range(T):
            state, prior = rssm.obs_step(state, batch["action"][t], embed[t])
            posteriors.append(state)
            priors.append(prior)
        posterior, prior = State.stack(posteriors), State.stack(priors)
        (rssm.features(posterior).sum() + rssm.kl(posterior, prior).sum()).backward()

    out = {}
    for name, fn in (("rssm_observe_s", fused), ("rssm_stepwise_s", stepwise)):
        fn()
        kept, busy = clean_timings(fn, 3, 12)
        out[name] = min(kept or busy)
    model.zero_grad(set_to_none=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["paper", "cpu"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    parser.add_argument("--child", nargs=2, metavar=("PRESET", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(*args.child, args.warmup, args.repeats)))
        return

    sys.path.insert(0, str(HERE))
    from machine import (
        bf16_slower,
        ceiling_line,
        fraction_of_ceiling,
        machine_info,
        matmul_ceilings,
        run_child_json,
    )

    ceilings = matmul_ceilings(size=4096, seconds=3.0)
    report: dict[str, Any] = {"machine": machine_info(), "matmul_gflops": ceilings, "runs": []}
    log = sys.stderr
    machine = report["machine"]
    print(
        f"{machine['cpu_model']} ({' '.join(machine['cpu_flags'])}); {ceiling_line(ceilings)}",
        file=log,
    )
    variants = args.variants
    if bf16_slower(ceilings):
        print("bf16 variants skipped: bf16 matmul is slower than fp32 here", file=log)
        variants = [variant for variant in variants if "bf16" not in variant.split("+")]
    for preset in args.presets:
        fast: dict[str, Any] | None = None
        for variant in variants:
            command = [sys.executable, __file__, "--child", preset, variant]
            command += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
            run = run_child_json(command, f"{preset:>5} {variant:<15}", log)
            if run is None:
                continue
            if variant == "fast":
                fast = run
            if fast is not None:  # every variant does the fast one's FLOPs, in its precision
                run["vs_fast"] = run["median_s"] / fast["median_s"]
                run["gflops"] = fast["gflop_per_update"] / run["median_s"]
                run["precision"] = "bfloat16" if "bf16" in variant.split("+") else "float32"
                run["fraction_of_ceiling"] = fraction_of_ceiling(
                    run["gflops"], run["precision"], ceilings
                )
            report["runs"].append(run)
            extra = ""
            if "gflops" in run:
                extra = (
                    f"  {run['gflops']:.0f} GFLOP/s = {100 * run['fraction_of_ceiling']:.0f}% of "
                    f"the {run['precision']} ceiling"
                )
            if "rssm_observe_s" in run:
                extra += (
                    f", {run['gflop_per_update']:.0f} GFLOP/update, RSSM filtering "
                    f"{run['rssm_observe_s']:.2f} s (as obs_step calls {run['rssm_stepwise_s']:.2f} s)"
                )
            print(
                f"{preset:>5} {variant:<15} median {run['median_s']:6.2f} s  min {run['min_s']:6.2f} s"
                f"  x{run.get('vs_fast', 1.0):4.2f}  peak RSS {run['peak_rss_mb']:6.0f} MB"
                f"  ({'CONTENDED' if run['contended'] else str(run['dropped_busy']) + ' busy dropped'})"
                f"{extra}",
                file=log,
                flush=True,
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        tmp.replace(args.out)
        print(f"wrote {args.out}", file=log)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
