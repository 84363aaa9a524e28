"""On a GPU: the CUDA-graph decision follows weight updates and plans as well as the eager one.

python3 benchmarks/check_cuda_graph.py        # needs CUDA; prints two lines
"""

import numpy as np
import torch

from planet_torch.agents.planet import PlanetAgent
from planet_torch.config import PAPER, override
from planet_torch.models import WorldModel
from planet_torch.models.imagination import LatentObjective

torch.manual_seed(0)
model = WorldModel(PAPER, 6).cuda().eval()
img = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
scores = {}
for graph in (True, False):
    cfg = override(PAPER, planner={"cuda_graph": graph})
    agent = PlanetAgent(
        model, cfg.planner, noise=0.0, generator=torch.Generator("cuda").manual_seed(1)
    )
    judge = LatentObjective(model)
    vals = []
    for k in range(10):
        agent.act_batch(img)
        plan = agent.prev_plan  # [H, 1, A]
        start = agent.belief.map(lambda x: x.expand(200, -1).contiguous())
        with torch.inference_mode():
            vals.append(
                judge(
                    start,
                    plan.expand(-1, 200, -1).contiguous(),
                    torch.Generator("cuda").manual_seed(k),
                )
                .mean()
                .item()
            )
    scores[graph] = (np.mean(vals), agent._graph is not None)
    if graph:
        last = [m for m in model.reward_head.net if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias += 1.0
        agent.act_batch(img)
        n = sum(isinstance(m, torch.nn.Linear) for m in model.reward_head.net) - 1
        buf = agent.objective._buffers[f"reward_b{n}"]
        print("refresh inside graph follows weights:", torch.allclose(buf, last.bias))
        with torch.no_grad():
            last.bias -= 1.0
print(
    "mean predicted return of the chosen plan, (graph_used): graph",
    scores[True],
    "eager",
    scores[False],
)
