"""Writes tests/data/legacy_checkpoint.pt: tiny world models (GRU and LSTM) in the weight layouts
planet-torch used before 2026-12-02 (TF-layout GRU/LSTM kernels, a flat first decoder kernel).
It was run once against commit 713e0be (the last of those layouts):

    git worktree add /tmp/old 713e0be
    PYTHONPATH=/tmp/old/src python tests/data/make_legacy_checkpoint.py

For each cell: the model after one update and its loss terms on a batch; for the GRU also Adam's
state and the parameters after a second update, which today's code must reproduce from the
loaded checkpoint (tests/test_fast_kernels.py)."""

import copy
from pathlib import Path

import torch
from legacy_inputs import legacy_batch as batch
from legacy_inputs import legacy_config as config

from planet_torch.models import WorldModel, WorldModelTrainer


def main() -> None:
    out = {}
    for cell in ("gru", "lstm"):
        torch.manual_seed(0)
        model = WorldModel(config(cell), action_size=1)
        trainer = WorldModelTrainer(model)
        trainer.update(batch(), torch.Generator().manual_seed(1))
        _, terms = model.loss_terms(batch(), torch.Generator().manual_seed(2))
        out[cell] = {
            "model": {n: v.clone() for n, v in model.state_dict().items()},
            "loss_terms": {n: v.detach().clone() for n, v in terms.items()},
        }
        if cell == "gru":
            out[cell]["trainer"] = copy.deepcopy(trainer.state_dict())  # not the live moments
            trainer.update(batch(), torch.Generator().manual_seed(2))
            out[cell]["after_second_update"] = {
                n: p.detach().clone() for n, p in model.named_parameters()
            }
    torch.save(out, Path(__file__).with_name("legacy_checkpoint.pt"))


if __name__ == "__main__":
    main()
