"""Optimizers: batched ask/tell maximizers over a generator's latent space."""
from .base import OPTIMIZERS, Optimizer
from . import random_search  # noqa: F401  (registers "random")

__all__ = ["OPTIMIZERS", "Optimizer"]
