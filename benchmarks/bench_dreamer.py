"""What Dreamer costs beside PlaNet: seconds per update and per decision, by actor/value size.

    .venv/bin/python benchmarks/bench_dreamer.py > dreamer.json   # JSON on stdout, table on stderr
    .venv/bin/python benchmarks/bench_dreamer.py --preset cpu --units 400 200 128

For one preset's world model (cheetah-run's 6 actions, the preset's batch and chunk), it times

* the world-model update alone (PlaNet's update),
* Dreamer's behaviour update (imagine ``horizon`` steps from all T·B posterior states, actor and
  value steps) for each actor/value width in ``--units``, in each ``--dtypes``
  (``--dreamer.compute-dtype``),
* one decision: filter one frame and call the actor (Dreamer) vs filter and plan with the
  preset's CEM (PlaNet), as ``planet train`` probes it;
* the choice alone (``choose``: the actor's sample vs CEM's plan, from the same belief), i.e.
  the decision without the filter step both agents pay.

A Dreamer run's update costs the first plus one of the second; its decisions cost the third.
Timings where other processes used more than 5 % of the machine are repeated (bench_train_step's
``clean_timings``); the machine line gives the CPU and both matmul ceilings of this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _median(fn: Callable[[], object], repeats: int) -> dict[str, Any]:
    from bench_train_step import clean_timings

    fn()  # warm-up
    kept, busy = clean_timings(fn, repeats, 4 * repeats)
    seconds = kept or busy
    return {"median_s": statistics.median(seconds), "contended": not kept, "n": len(seconds)}


def measure(
    preset_name: str, units: list[int], repeats: int, dtypes: list[str] | None = None
) -> dict[str, Any]:
    import dataclasses

    import numpy as np
    import torch
    from bench_train_step import _random_batch

    from planet_torch.agents.dreamer import DreamerAgent, DreamerLearner
    from planet_torch.agents.planet import PlanetAgent
    from planet_torch.config import preset
    from planet_torch.models import WorldModel, WorldModelTrainer

    cfg = preset(preset_name)
    action_size = 6  # cheetah-run
    torch.manual_seed(0)
    model = WorldModel(cfg, action_size)
    dtype = model.resolve_compute_dtype()  # as a run of this preset on this CPU
    batch = _random_batch(cfg, action_size)
    trainer = WorldModelTrainer(model)
    generator = torch.Generator().manual_seed(2)
    _, posterior = trainer.update_and_posterior(batch, generator)
    out: dict[str, Any] = {
        "preset": preset_name,
        "encoder_decoder_dtype": str(dtype).removeprefix("torch."),
        "batch": [cfg.data.chunk_length, cfg.data.batch_size],
        "horizon": cfg.dreamer.horizon,
        "world_model_update": _median(lambda: trainer.update(batch, generator), repeats),
        "behaviour_update": {},
        "decision": {},
        "choice": {},
    }
    frame = np.zeros((1, 64, 64, 3), np.uint8)
    for width in units:
        d = dataclasses.replace(cfg.dreamer, units=width)
        learner = DreamerLearner(model, d)
        out["behaviour_update"][width] = _median(
            lambda learner=learner: learner.update(posterior, generator), repeats
        ) | {"actor_params": sum(p.numel() for p in learner.actor.parameters())}
        for other in [t for t in dtypes or [] if t != d.compute_dtype]:
            twin = DreamerLearner(model, dataclasses.replace(d, compute_dtype=other))
            out["behaviour_update"][f"{width}-{other}"] = _median(
                lambda twin=twin: twin.update(posterior, generator), repeats
            )
        agent = DreamerAgent(model, learner.actor, noise=0.0, generator=generator)
        out["decision"][f"dreamer-{width}"] = _median(
            lambda agent=agent: agent.act_batch(frame), 5 * repeats
        )
        out["choice"][f"dreamer-{width}"] = _median(
            torch.inference_mode()(agent.choose),
            5 * repeats,  # as act_batch calls it
        )
    model.eval()
    planner = PlanetAgent(model, cfg.planner, noise=0.0, generator=generator)
    out["decision"]["planet-cem"] = _median(lambda: planner.act_batch(frame), 5 * repeats)
    out["choice"]["planet-cem"] = _median(torch.inference_mode()(planner.choose), 5 * repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--preset", default="cpu", choices=["paper", "cpu", "debug"])
    parser.add_argument("--units", nargs="+", type=int, default=[400, 200, 128])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "bfloat16"],
        choices=["float32", "bfloat16"],
        help="also time the behaviour update in these --dreamer.compute-dtype values",
    )
    args = parser.parse_args()

    from machine import bf16_slower, ceiling_line, machine_info, matmul_ceilings

    ceilings = matmul_ceilings(size=4096, seconds=3.0)
    machine = machine_info()
    print(
        f"{machine['cpu_model']} ({' '.join(machine['cpu_flags'])}); {ceiling_line(ceilings)}",
        file=sys.stderr,
    )
    dtypes = args.dtypes
    if bf16_slower(ceilings) and "bfloat16" in dtypes:  # emulated: auto never picks it here
        print(
            "bf16 behaviour update skipped: bf16 matmul is slower than fp32 here", file=sys.stderr
        )
        dtypes = [d for d in dtypes if d != "bfloat16"] or ["float32"]
    result = measure(args.preset, args.units, args.repeats, dtypes)
    wm = result["world_model_update"]["median_s"]
    print(
        f"{args.preset}: world-model update {wm:.3f} s "
        f"(encoder/decoder {result['encoder_decoder_dtype']})",
        file=sys.stderr,
    )
    for width, row in result["behaviour_update"].items():
        if f"dreamer-{width}" not in result["decision"]:  # another dtype of a width above
            b = row["median_s"]
            print(f"  dreamer units {width}: behaviour update {b:.3f} s", file=sys.stderr)
            continue
        b, act = row["median_s"], result["decision"][f"dreamer-{width}"]["median_s"]
        choice = result["choice"][f"dreamer-{width}"]["median_s"]
        print(
            f"  dreamer units {width}: behaviour update {b:.3f} s -> {wm + b:.3f} s per "
            f"update ({(wm + b) / wm:.2f}x PlaNet's); decision {1e3 * act:.2f} ms, "
            f"of which the choice {1e3 * choice:.3f} ms",
            file=sys.stderr,
        )
    cem = result["decision"]["planet-cem"]["median_s"]
    cem_choice = result["choice"]["planet-cem"]["median_s"]
    print(
        f"  planet CEM decision {1e3 * cem:.1f} ms, of which the plan {1e3 * cem_choice:.1f} ms",
        file=sys.stderr,
    )
    print(json.dumps({"machine": machine, "matmul_gflops": ceilings, **result}, indent=1))


if __name__ == "__main__":
    main()
