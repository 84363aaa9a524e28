"""Does capturing the whole world-model update pay on a GPU? Eager, one CUDA graph, torch.compile.

    python3 benchmarks/bench_update_graph.py --device cuda > update_graph.json      # a GPU machine
    .venv/bin/python benchmarks/bench_update_graph.py --device cpu --preset debug \\
        --variants eager compile                                                    # CPU smoke run

On a GPU the paper-size update is launch-bound (BENCHMARKS.md, "On a GPU": 12 % of the matmul
ceiling): about 50 filter steps of small kernels, forward and backward, each a kernel launch the
host has to issue. The ways to issue fewer, each in a fresh child process, one after the other:

* ``eager`` — ``WorldModelTrainer.update`` as every run calls it: uint8 batch from the host in,
  the loss terms back as floats.
* ``graph`` — the same update as ``planet train --optim.cuda-graph`` runs it
  (models/update_graph.py): preprocess, filter, decode, losses, backward, global-norm clip and
  Adam (in TF's form, its step size a tensor) captured once as one CUDA graph after two eager
  warm-up updates, and replayed: each update copies the next batch into the graph's input
  buffers, replays, and reads the terms back, as eager does.
* ``compile`` / ``compile_ro`` — ``torch.compile`` of the loss (inductor; its backward from
  AOTAutograd), default mode and ``mode="reduce-overhead"`` (inductor's own CUDA graphs); the
  backward call, clip and Adam stay eager. The first call's seconds are the compile time.

Sameness: every variant starts from the same weights (seed 0), the same five batches and, as in
``planet train``, a generator per update seeded from the update's number (it draws the
dequantisation and the RSSM's noise), and reports the loss terms and gradient norm of its first
update, before any weight moved, and of its fifth. A graph replays the eager kernels with the
same random offsets, so its first update should match eager's exactly and its fifth to float
rounding (its Adam's form rounds differently); inductor draws its own random numbers, so a
compiled update matches only to the noise's effect. The largest relative differences to eager
are in the report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ("eager", "graph", "compile", "compile_ro")
ACTION_SIZE, SEED, CHECKED = 6, 123, 5


def _batches(cfg: Any, count: int) -> list[dict[str, Any]]:
    """``count`` host batches of the preset's size: uint8 frames, actions, rewards (time-major)."""
    import torch

    g = torch.Generator().manual_seed(0)
    T, B = cfg.data.chunk_length, cfg.data.batch_size
    return [
        {
            "image": torch.randint(0, 256, (T, B, 64, 64, 3), dtype=torch.uint8, generator=g),
            "action": torch.rand(T, B, ACTION_SIZE, generator=g) * 2 - 1,
            "reward": torch.rand(T, B, generator=g),
        }
        for _ in range(count)
    ]


def child(variant: str, preset: str, device: str, warmup: int, repeats: int) -> dict[str, Any]:
    import torch

    from planet_torch.config import preset as load_preset
    from planet_torch.models import WorldModel, WorldModelTrainer

    cfg = load_preset(preset)
    if variant == "graph":
        if device != "cuda":
            raise SystemExit("the graph variant needs --device cuda")
        cfg = replace(cfg, optim=replace(cfg.optim, cuda_graph=True))
    torch.manual_seed(0)
    model = WorldModel(cfg, ACTION_SIZE).to(device)
    trainer = WorldModelTrainer(model)
    batches = _batches(cfg, CHECKED)
    names: list[str] = []
    compile_s = None
    if variant.startswith("compile"):
        mode = "reduce-overhead" if variant == "compile_ro" else "default"
        # An instance attribute: WorldModelTrainer.update calls the compiled loss.
        model.loss_terms_and_posterior = torch.compile(  # type: ignore[method-assign]
            model.loss_terms_and_posterior, mode=mode
        )

    def step(batch: dict[str, Any]) -> list[float]:
        # A generator per update, seeded from its number, as planet train does.
        generator = torch.Generator(device).manual_seed(SEED + trainer.updates)
        metrics = trainer.update(batch, generator)
        names[:] = [name for name in metrics if name != "lr"]
        return [metrics[name] for name in names]

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    terms = []
    for k in range(CHECKED):
        start = time.perf_counter()
        terms.append(step(batches[k]))
        sync()
        if k == 0 and variant.startswith("compile"):
            compile_s = time.perf_counter() - start
    for k in range(warmup):
        step(batches[k % CHECKED])
    seconds = []
    for k in range(repeats):
        sync()
        start = time.perf_counter()
        step(batches[k % CHECKED])
        sync()
        seconds.append(time.perf_counter() - start)
    if variant == "graph" and (trainer.graph is None or trainer.graph.replays == 0):
        raise SystemExit("the graph variant ran eagerly: the capture failed (see its warning)")
    return {
        "seconds": seconds,
        "first_update": terms[0],
        "fifth_update": terms[-1],
        "names": names,
        "compile_s": compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="paper", choices=["paper", "cpu", "debug"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--child-limit-s",
        type=float,
        default=300.0,
        help="a variant's time limit, compile included",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.preset, args.device, args.warmup, args.repeats)
        print(json.dumps(result))
        return

    sys.path.insert(0, str(HERE))
    import torch
    from machine import run_child_json

    log = sys.stderr
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no GPU here")
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    report: dict[str, Any] = {"device": where, "torch": torch.__version__, "preset": args.preset}
    print(f"{where}, torch {torch.__version__}, preset {args.preset}", file=log)
    results: dict[str, Any] = {}
    for variant in args.variants:
        command = [sys.executable, __file__, "--child", variant, "--device", args.device]
        command += ["--preset", args.preset, "--warmup", str(args.warmup)]
        command += ["--repeats", str(args.repeats)]
        run = run_child_json(command, variant, log, timeout_s=args.child_limit_s)
        if run is None:
            continue
        run["median_s"] = statistics.median(run["seconds"])
        results[variant] = run
        line = f"{variant:<11} median {run['median_s'] * 1e3:8.2f} ms per update"
        if run["compile_s"] is not None:
            line += f"  (first call, compile included: {run['compile_s']:.0f} s)"
        print(line, file=log, flush=True)
    if "eager" in results:
        base = results["eager"]
        for variant, run in results.items():
            run["speedup_vs_eager"] = base["median_s"] / run["median_s"]
            for which in ("first", "fifth"):
                run[f"{which}_update_max_rel_diff"] = max(
                    abs(a - b) / max(abs(b), 1e-12)
                    for a, b in zip(run[f"{which}_update"], base[f"{which}_update"], strict=True)
                )
            print(
                f"{variant:<11} x{run['speedup_vs_eager']:.2f} vs eager; first update's terms "
                f"within {run['first_update_max_rel_diff']:.1e} (relative) of eager's, the "
                f"fifth's within {run['fifth_update_max_rel_diff']:.1e}",
                file=log,
            )
    report["variants"] = results
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
