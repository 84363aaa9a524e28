"""Agents turn observations into actions: random, PlaNet's MPC planner, DDPG."""

from planet_torch.agents.base import Agent
from planet_torch.agents.random import RandomAgent

__all__ = ["Agent", "RandomAgent"]
