"""Optimizers: batched ask/tell maximizers over a generator's latent space."""
from .base import OPTIMIZERS, Optimizer
from . import random_search  # noqa: F401  (registers "random")
from . import protes  # noqa: F401
from . import genetic, ttopt_opt  # noqa: F401  (ga, ga-ponce, ttopt)
from . import cma  # noqa: F401  (cma, sepcma, oneplusone)
from . import nevergrad_opt  # noqa: F401  (ng-*, ng:NAME)

__all__ = ["OPTIMIZERS", "Optimizer"]
