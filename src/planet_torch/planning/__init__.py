"""Planners: they optimise an objective over action sequences and know nothing about models."""

from planet_torch.planning.cem import CEMIteration, cross_entropy_method

__all__ = ["CEMIteration", "cross_entropy_method"]
