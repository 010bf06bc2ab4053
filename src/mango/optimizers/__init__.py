"""Optimizers: batched ask/tell maximizers over a generator's latent space."""
from .base import OPTIMIZERS, Optimizer
from . import random_search  # noqa: F401  (registers "random")
from . import protes  # noqa: F401

__all__ = ["OPTIMIZERS", "Optimizer"]
