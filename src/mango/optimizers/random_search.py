"""Uniform random search: the baseline every method must beat."""
from __future__ import annotations

import torch

from .base import Optimizer
from .options import register


class RandomSearch(Optimizer):
    """Uniform random grid points (searches the discrete grid)."""

    preferred_batch = 50

    def _ask(self, k: int) -> torch.Tensor:
        return torch.randint(0, self.space.size, (k, self.space.dim), generator=self.generator)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        pass


register("random", RandomSearch, "Uniform random grid points (searches the discrete grid).")
