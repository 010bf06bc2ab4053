"""Optimizers: batched ask/tell maximizers over a generator's latent space.

Importing a module registers its optimizers (one ``register(...)`` line per entry, see :mod:`.options`).
"""
from . import cma, discrete, genetic, image_model, nevergrad_opt, protes, random_search, ttopt_opt, two_step  # noqa: F401
from .base import OPTIMIZERS, Optimizer

__all__ = ["OPTIMIZERS", "Optimizer"]
