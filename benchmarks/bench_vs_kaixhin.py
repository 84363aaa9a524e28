"""Train step and planned action at paper size: planet-torch beside Kaixhin/PlaNet, same run.

    .venv/bin/python benchmarks/bench_vs_kaixhin.py > vs_kaixhin.json       # CPU (this machine)
    python3 benchmarks/bench_vs_kaixhin.py --device cuda                     # a GPU machine

Needs Kaixhin/PlaNet's ``models.py`` and ``planner.py`` in ``third_party/kaixhin/``
(``git clone https://github.com/Kaixhin/PlaNet third_party/kaixhin``; git-ignored). Each
(implementation, job) runs in a fresh child process, one after the other.

Both sides do the same work, as each implementation does it in its own training loop:

* **train step** — batch 50 × chunk 50 of 64×64 RGB, belief 200, state 30, hidden 200,
  embedding 1024, 6 actions (cheetah-run), latent overshooting off: from uint8 frames on the host
  (Kaixhin: to float, quantise + dequantisation noise on the CPU, as its replay memory's
  ``sample``; ours: ``WorldModelTrainer.update``), encode, filter, decode, losses, backward, clip,
  Adam step.
* **planned action** — one environment: encode the new frame, one posterior step, CEM with
  1000 candidates × 10 iterations × horizon 12, top 100 (Kaixhin: ``update_belief_and_act``
  without the environment step; ours: ``PlanetAgent.act_batch``).

``--rounds N`` runs every (implementation, job) in N fresh processes, round by round, and
reports the median of their medians: on Zen 3 and Zen 4 the same code's time moved by ±10 %
from one process to the next (BENCHMARKS.md), and a ratio from one process each moves with it.

CPU timings drop calls during which other processes used the CPU (see bench_train_step.py);
CUDA timings synchronise around every call. On a GPU ``ours`` runs the decision and the update
as CUDA graphs (``--planner.cuda-graph``, ``--optim.cuda-graph``), ``ours_nograph`` neither.
The planner's FLOPs are counted with torch's FlopCounterMode over one of our planned actions,
to state the fraction of the ceiling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KAIXHIN_DIR = HERE.parent / "third_party" / "kaixhin"
ACTION_SIZE = 6
B, L = 50, 50
IMPLS = ("ours", "ours_bf16", "ours_matched", "ours_matched_bf16", "kaixhin")
"""ours: the paper preset (the original's 3×300 reward head), float32; _matched: Kaixhin's 2×200
reward head instead, i.e. the same FLOPs as theirs; _bf16: bfloat16 convolutions in training and
bfloat16 planning (``--model.compute-dtype bfloat16 --planner.compute-dtype bfloat16``)."""
BELIEF, STATE, HIDDEN, EMBED = 200, 30, 200, 1024


def _timer(device: str, repeats: int) -> Callable[[Callable[[], object]], list[float]]:
    """Seconds per call: quiet CPU calls only on the CPU, synchronised calls on CUDA."""
    import torch

    if device == "cpu":
        sys.path.insert(0, str(HERE))
        from bench_train_step import clean_timings

        def time_cpu(fn: Callable[[], object]) -> list[float]:
            kept, busy = clean_timings(fn, repeats, 4 * repeats)
            return kept or busy

        return time_cpu

    def time_cuda(fn: Callable[[], object]) -> list[float]:
        seconds = []
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        return seconds

    return time_cuda


def _frames(generator: Any) -> Any:
    import torch

    return torch.randint(0, 256, (L, B, 64, 64, 3), dtype=torch.uint8, generator=generator)


def _count_gflop(fn: Callable[[], object]) -> float:
    sys.path.insert(0, str(HERE))
    from machine import count_flops

    return count_flops(fn) / 1e9


def ours(job: str, device: str, warmup: int, repeats: int, variant: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from planet_torch.agents.planet import PlanetAgent
    from planet_torch.config import PAPER, override
    from planet_torch.models import WorldModel, WorldModelTrainer
    from planet_torch.models.world_model import retain_freed_memory

    if device == "cpu":
        retain_freed_memory()
    torch.manual_seed(0)
    cfg = PAPER
    if "matched" in variant:  # Kaixhin's reward head (2×200), not the original's 3×300
        cfg = override(cfg, model={"reward_layers": 2, "reward_units": 200})
    if variant == "ours_nograph":  # the same decision without the CUDA graph (GPU only)
        cfg = override(cfg, planner={"cuda_graph": False})
    elif device == "cuda":  # and the update as one CUDA graph (--optim.cuda-graph)
        cfg = override(cfg, optim={"cuda_graph": True})
    if variant.endswith("bf16"):  # bfloat16 convolutions in training, bfloat16 planning
        cfg = override(
            cfg, model={"compute_dtype": "bfloat16"}, planner={"compute_dtype": "bfloat16"}
        )
    model = WorldModel(cfg, ACTION_SIZE).to(device)
    g = torch.Generator().manual_seed(0)
    gen = torch.Generator(device).manual_seed(1)
    if job == "train":
        batch = {
            "image": _frames(g),
            "action": torch.rand(L, B, ACTION_SIZE, generator=g) * 2 - 1,
            "reward": torch.rand(L, B, generator=g),
        }
        trainer = WorldModelTrainer(model)

        def call() -> object:
            return trainer.update(batch, gen)  # returns floats: synchronises like a real loop
    else:
        agent = PlanetAgent(model, cfg.planner, noise=0.0, generator=gen, batch=1)
        image = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)

        def call() -> object:
            return agent.act_batch(image)

    for _ in range(warmup):
        call()
    seconds = _timer(device, repeats)(call)
    # Count the last deconv as the layer it is (its sub-pixel form would add zero-padding FLOPs).
    import types

    from torch import nn

    last = model.decoder.net[-1]
    last.forward = types.MethodType(nn.ConvTranspose2d.forward, last)
    if job == "train":
        # FLOPs counted on an eager update (a graph replay dispatches no countable ops).
        eager = WorldModelTrainer(model, override(cfg, optim={"cuda_graph": False}).optim)
        return {
            "seconds": seconds,
            "gflop_per_call": _count_gflop(lambda: eager.update(batch, gen)),
            "cuda_graph_used": trainer.graph is not None and trainer.graph.replays > 0,
        }
    # FLOPs of one decision counted eagerly (a CUDA graph replay dispatches no countable ops)
    with torch.inference_mode():
        gflop = _count_gflop(lambda: agent._plan(agent.belief, None))
    return {
        "seconds": seconds,
        "gflop_per_call": gflop,
        "cuda_graph_used": agent._graph is not None,
    }


def kaixhin(job: str, device: str, warmup: int, repeats: int) -> dict[str, Any]:
    import warnings

    warnings.filterwarnings("ignore")  # TorchScript deprecation warnings
    sys.path.insert(0, str(KAIXHIN_DIR))
    import torch
    from models import Encoder, ObservationModel, RewardModel, TransitionModel, bottle
    from planner import MPCPlanner
    from torch import nn, optim
    from torch.distributions import Normal
    from torch.distributions.kl import kl_divergence
    from torch.nn import functional as F

    torch.manual_seed(0)
    transition = TransitionModel(BELIEF, STATE, ACTION_SIZE, HIDDEN, EMBED).to(device)
    observation_model = ObservationModel(False, 0, BELIEF, STATE, EMBED).to(device)
    reward_model = RewardModel(BELIEF, STATE, HIDDEN).to(device)
    encoder = Encoder(False, 0, EMBED).to(device)
    g = torch.Generator().manual_seed(0)
    if job == "train":
        params = [
            p
            for m in (transition, observation_model, reward_model, encoder)
            for p in m.parameters()
        ]
        optimiser = optim.Adam(params, lr=1e-3, eps=1e-4)
        free_nats = torch.full((1,), 3.0, device=device)
        frames = _frames(g).permute(0, 1, 4, 2, 3).contiguous()  # their memory stores [3, 64, 64]
        actions = (torch.rand(L, B, ACTION_SIZE, generator=g) * 2 - 1).to(device)
        rewards = torch.rand(L, B, generator=g).to(device)
        nonterminals = torch.ones(L, B, 1, device=device)

        def call() -> object:
            # ExperienceReplay.sample: to float, preprocess_observation_ on the host, to device
            obs = frames.float()
            obs.div_(2**3).floor_().div_(2**5).sub_(0.5).add_(torch.rand_like(obs).div_(2**5))
            obs = obs.to(device)
            init_belief = torch.zeros(B, BELIEF, device=device)
            init_state = torch.zeros(B, STATE, device=device)
            (
                beliefs,
                _,
                prior_means,
                prior_stds,
                posterior_states,
                posterior_means,
                posterior_stds,
            ) = transition(
                init_state,
                actions[:-1],
                init_belief,
                bottle(encoder, (obs[1:],)),
                nonterminals[:-1],
            )
            observation_loss = (
                F.mse_loss(
                    bottle(observation_model, (beliefs, posterior_states)),
                    obs[1:],
                    reduction="none",
                )
                .sum(dim=(2, 3, 4))
                .mean(dim=(0, 1))
            )
            reward_loss = F.mse_loss(
                bottle(reward_model, (beliefs, posterior_states)), rewards[:-1], reduction="none"
            ).mean(dim=(0, 1))
            kl = kl_divergence(
                Normal(posterior_means, posterior_stds), Normal(prior_means, prior_stds)
            )
            kl_loss = torch.max(kl.sum(dim=2), free_nats).mean(dim=(0, 1))
            optimiser.zero_grad()
            (observation_loss + reward_loss + kl_loss).backward()
            nn.utils.clip_grad_norm_(params, 1000, norm_type=2)
            optimiser.step()
            return [observation_loss.item(), reward_loss.item(), kl_loss.item()]  # as main.py
    else:
        planner = MPCPlanner(ACTION_SIZE, 12, 10, 1000, 100, transition, reward_model, -1.0, 1.0)
        frame = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8, generator=g)
        state = {
            "belief": torch.zeros(1, BELIEF, device=device),
            "posterior": torch.zeros(1, STATE, device=device),
            "action": torch.zeros(1, ACTION_SIZE, device=device),
        }

        def call() -> object:
            with torch.no_grad():  # update_belief_and_act, without env.step
                obs = frame.float()
                obs.div_(2**3).floor_().div_(2**5).sub_(0.5).add_(torch.rand_like(obs).div_(2**5))
                belief, _, _, _, posterior, _, _ = transition(
                    state["posterior"],
                    state["action"].unsqueeze(dim=0),
                    state["belief"],
                    encoder(obs.to(device)).unsqueeze(dim=0),
                )
                state["belief"], state["posterior"] = belief.squeeze(0), posterior.squeeze(0)
                action = planner(state["belief"], state["posterior"]).clamp_(-1.0, 1.0)
                state["action"] = action
                return action.cpu()

    for _ in range(warmup):
        call()
    return {"seconds": _timer(device, repeats)(call), "gflop_per_call": _count_gflop(call)}


def _ceiling(device: str) -> dict[str, Any]:
    import torch

    if device == "cpu":
        from machine import machine_info, matmul_ceilings

        return {"machine": machine_info(), "matmul_gflops": matmul_ceilings(4096, 3.0)}
    n, flops = 8192, 2 * 8192**3
    ceilings = {}
    for name in ("float32", "bfloat16"):
        a = torch.randn(n, n, device=device, dtype=getattr(torch, name))
        b = torch.randn(n, n, device=device, dtype=getattr(torch, name))
        best = 0.0
        for _ in range(10):
            torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            torch.cuda.synchronize()
            best = max(best, flops / (time.perf_counter() - start) / 1e9)
        ceilings[name] = best
    return {
        "machine": {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__},
        "matmul_gflops": ceilings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--jobs", nargs="+", default=["train", "plan"], choices=["train", "plan"])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="fresh processes per (implementation, job), interleaved round by round; the "
        "median of their medians is reported (the same code's time moves ±10 %% between "
        "processes on Zen 3/4)",
    )
    parser.add_argument(
        "--impls", nargs="+", choices=["ours_nograph", *IMPLS], help="a subset (default: all)"
    )
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.child:
        impl, job = args.child
        if impl == "kaixhin":
            result = kaixhin(job, args.device, args.warmup, args.repeats)
        else:
            result = ours(job, args.device, args.warmup, args.repeats, impl)
        print(json.dumps(result))
        return
    if not (KAIXHIN_DIR / "models.py").exists():
        raise SystemExit(f"{KAIXHIN_DIR}/models.py missing: see this script's docstring")

    sys.path.insert(0, str(HERE))
    from machine import bf16_slower, ceiling_line, fraction_of_ceiling, run_child_json

    report: dict[str, Any] = {"device": args.device, **_ceiling(args.device), "jobs": {}}
    ceilings = report["matmul_gflops"]
    log = sys.stderr
    print(f"{report['machine']}\n{ceiling_line(ceilings)}", file=log)
    for job in args.jobs:
        results: dict[str, Any] = {}
        impls = IMPLS if args.device == "cpu" else ("ours_nograph", *IMPLS)
        if args.impls:
            impls = tuple(impl for impl in impls if impl in args.impls)
        if bf16_slower(ceilings):
            print(f"{job:>5} bf16 variants skipped: bf16 matmul is slower than fp32 here", file=log)
            impls = tuple(impl for impl in impls if not impl.endswith("bf16"))
        runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
        for round_ in range(args.rounds):
            for impl in impls:
                command = [sys.executable, __file__, "--child", impl, job, "--device", args.device]
                command += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
                run = run_child_json(command, f"{job} {impl}", log)
                if run is None:
                    continue
                run["median_s"] = statistics.median(run["seconds"])
                runs[impl].append(run)
                if args.rounds > 1:
                    print(
                        f"{job:>5} {impl:<12} round {round_ + 1}: median {run['median_s']:.4f} s",
                        file=log,
                        flush=True,
                    )
        for impl in impls:
            if not runs[impl]:
                continue
            medians = [r["median_s"] for r in runs[impl]]
            run = {**runs[impl][0], "median_s": statistics.median(medians)}
            run["process_medians_s"] = medians
            run["seconds"] = [t for r in runs[impl] for t in r["seconds"]]
            run["gflops"] = run["gflop_per_call"] / run["median_s"]
            run["precision"] = "bfloat16" if impl.endswith("bf16") else "float32"
            run["fraction_of_ceiling"] = fraction_of_ceiling(
                run["gflops"], run["precision"], ceilings
            )
            results[impl] = run
            spread = (
                f" (processes {min(medians):.4f}-{max(medians):.4f})" if len(medians) > 1 else ""
            )
            print(
                f"{job:>5} {impl:<12} median {run['median_s']:.4f} s{spread}  "
                f"{run['gflop_per_call']:.1f} GFLOP/call  {run['gflops']:.0f} GFLOP/s = "
                f"{100 * run['fraction_of_ceiling']:.0f}% of the {run['precision']} ceiling",
                file=log,
                flush=True,
            )
        for impl in impls[:-1]:
            if impl in results and "kaixhin" in results:
                speedup = results["kaixhin"]["median_s"] / results[impl]["median_s"]
                results[impl]["speedup_vs_kaixhin"] = speedup
                print(f"{job:>5} {impl} vs kaixhin: x{speedup:.2f}", file=log)
        report["jobs"][job] = results
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
