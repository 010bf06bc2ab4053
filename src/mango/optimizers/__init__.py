"""Optimizers: batched ask/tell maximizers over a generator's latent space.

Importing a module registers its optimizers (one ``register(...)`` line per entry, see :mod:`.options`).
"""
from . import cma, discrete, genetic, nevergrad_opt, protes, random_search, ttopt_opt  # noqa: F401  (registrations)
from .base import OPTIMIZERS, Optimizer

__all__ = ["OPTIMIZERS", "Optimizer"]
