"""PlaNet's world model: encoder, latent dynamics (RSSM / SSM), decoder, heads, loss, optimiser."""

from planet_torch.models.decoder import Decoder
from planet_torch.models.encoder import Encoder
from planet_torch.models.fast import FastDecoder, FastEncoder
from planet_torch.models.fast_rssm import FastRSSM
from planet_torch.models.heads import MLP, RewardHead, StateProbe
from planet_torch.models.latent import LatentModel, State, kl_normal, kl_standard_normal
from planet_torch.models.optim import FusedAdam
from planet_torch.models.preprocess import NOISE_BLOCK, postprocess, preprocess, uniform_noise
from planet_torch.models.rssm import RSSM, GRUBlockCell, LSTMBlockCell
from planet_torch.models.ssm import SSM
from planet_torch.models.world_model import (
    WorldModel,
    WorldModelTrainer,
    make_latent_model,
    retain_freed_memory,
)

__all__ = [
    "MLP",
    "NOISE_BLOCK",
    "RSSM",
    "SSM",
    "Decoder",
    "Encoder",
    "FastDecoder",
    "FastEncoder",
    "FastRSSM",
    "FusedAdam",
    "GRUBlockCell",
    "LSTMBlockCell",
    "LatentModel",
    "RewardHead",
    "State",
    "StateProbe",
    "WorldModel",
    "WorldModelTrainer",
    "kl_normal",
    "kl_standard_normal",
    "make_latent_model",
    "postprocess",
    "preprocess",
    "retain_freed_memory",
    "uniform_noise",
]
