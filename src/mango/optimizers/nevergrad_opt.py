"""Nevergrad optimizers behind MANGO's batched ask/tell: a few named presets and ``ng:NAME`` for any of them.

The MANGO paper ran Nevergrad's optimizers on the discrete grid (``space="grid"``: a ``TransitionChoice``
per coordinate); the default here is the continuous box (``space="box"``: a bounded ``Array`` through
:class:`~mango.optimizers.continuous.Box`), which suits the continuous methods (CMA, DE, SPSA, ...) better.
"""
from __future__ import annotations

import difflib
import warnings
from collections import deque

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import OPTIMIZERS, Optimizer
from .continuous import Box, Losses
from .threads import single_threaded


def _registry() -> dict:
    import nevergrad as ng

    return ng.optimizers.registry


class NevergradOptimizer(Optimizer):
    """Nevergrad optimizer ``method`` (a name in ``nevergrad.optimizers.registry``), maximizing.

    * ``space="grid"``: ``ng.p.TransitionChoice(range(size), repetitions=dim)``, candidates are grid indices
      (the paper's set-up); ``space="box"`` (default): ``ng.p.Array`` bounded to the box (sigma = width / 6),
      candidates are floats (grid indices with ``grid=True``; codes for a categorical space).
    * ``ask(k)`` calls Nevergrad's ``ask`` ``k`` times; ``num_workers`` (how many candidates Nevergrad
      expects in flight) defaults to the first ``ask``'s ``k``, so it matches the loop's batch. The
      Nevergrad optimizer is built at that first ask (replay asks the same ``k``, so resume is exact).
      Methods that cannot run in parallel (SPSA) get ``num_workers=1`` and a preferred batch of 1: larger
      batches run, but each batch is proposed before any of it is told.
    * Nevergrad minimizes: it is told ``-value``; failed measurements get a finite penalty (:class:`Losses`).
    * Seeding: the parametrization's ``random_state`` is set before the optimizer is built (Nevergrad
      optimizers draw from it, sub-optimizers of portfolios share it), so equal seeds give equal asks.
    * ``budget`` is passed on: some methods (NGOpt, Portfolio) pick their sub-methods by it.
    """

    def __init__(self, latent: LatentSpace, seed: int = 0, method: str = "OnePlusOne", space: str = "box",
                 grid: bool = False, num_workers: int | None = None, budget: int | None = None) -> None:
        super().__init__(latent, seed)
        registry = _registry()
        if method not in registry:
            near = difflib.get_close_matches(method, list(registry), n=3)
            hint = f"did you mean {', '.join(near)}?" if near else "see nevergrad.optimizers.registry"
            raise MangoError(f"unknown Nevergrad optimizer {method!r}; {hint}")
        if space not in ("box", "grid"):
            raise MangoError(f"Nevergrad space must be 'box' or 'grid', got {space!r}")
        if (num_workers is not None and num_workers < 1) or (budget is not None and budget < 1):
            raise MangoError(f"num_workers and budget must be positive, got {num_workers} and {budget}")
        self.method, self.mode, self.budget, self.num_workers = method, space, budget, num_workers
        self.cls = registry[method]
        self.sequential = bool(getattr(self.cls, "no_parallelization", False))
        if self.sequential:
            self.num_workers = 1
        self.preferred_batch = 1 if self.sequential else (num_workers or 10)
        self.box = Box(latent, grid)
        self.losses = Losses()
        self.opt = None  # built at the first ask, once the batch size is known
        self._pending: deque = deque()  # Nevergrad candidates asked, not yet told (told in the same order)

    def _build(self, k: int) -> None:
        import nevergrad as ng

        if self.mode == "grid":
            param = ng.p.TransitionChoice(range(self.space.size), repetitions=self.space.dim)
        else:
            # = Array(...).set_bounds(low, high) with sigma = width / 6 and the start at the centre; sigma 1 on
            # [0, 1] (categorical codes) would be a poor scale (Nevergrad warns about it)
            param = ng.p.Array(shape=(self.space.dim,), lower=self.box.low, upper=self.box.high)
        param.random_state = np.random.RandomState(self.seed % 2**32)
        self.num_workers = self.num_workers or max(1, k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "inefficient settings" hints
            self.opt = self.cls(parametrization=param, budget=self.budget, num_workers=self.num_workers)

    @single_threaded
    def ask(self, k: int) -> torch.Tensor:
        if self.opt is None:
            self._build(k)
        cands = [self.opt.ask() for _ in range(k)]
        self._pending.extend(cands)
        if self.mode == "grid":
            return torch.tensor([list(c.value) for c in cands], dtype=torch.long).reshape(k, self.space.dim)
        return self.box.candidates(np.array([c.value for c in cands], dtype=np.float64).reshape(k, self.space.dim))

    @single_threaded
    def tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for loss in self.losses(values):
                self.opt.tell(self._pending.popleft(), float(loss))

    def hyperparameters(self) -> dict:
        box = self.box.describe() if self.mode == "box" else f"grid {self.space.size}^{self.space.dim}"
        return {"method": self.method, "space": self.mode, "grid": self.box.grid, "num_workers": self.num_workers,
                "budget": self.budget, "searches": box}


def _preset(name: str, method: str, doc: str) -> None:
    def factory(latent: LatentSpace, seed: int = 0, **kwargs) -> NevergradOptimizer:
        return NevergradOptimizer(latent, seed, method, **kwargs)

    factory.__doc__ = doc
    OPTIMIZERS.register(name)(factory)


_preset("ng-portfolio", "Portfolio", "Nevergrad Portfolio (CMA + DE + Hammersley); box (default) or space=grid.")
_preset("ng-oneplusone", "OnePlusOne", "Nevergrad (1+1)-ES; searches the box (default) or the grid (space=grid).")
_preset("ng-noisybandit", "NoisyBandit", "Nevergrad NoisyBandit (re-evaluates, for noisy units); box or space=grid.")
_preset("ng-spsa", "SPSA", "Nevergrad SPSA (sequential: preferred batch 1); box (default) or space=grid.")
_preset("ng-cma", "CMA", "Nevergrad CMA (pycma); searches the box (default) or the grid (space=grid).")


@OPTIMIZERS.register_prefix("ng:")
def _ng_any(method: str, latent: LatentSpace, seed: int = 0, **kwargs) -> NevergradOptimizer:
    """Any Nevergrad optimizer by name, e.g. ng:DE, ng:NGOpt; box (default) or space=grid."""
    return NevergradOptimizer(latent, seed, method, **kwargs)
