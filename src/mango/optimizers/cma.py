"""Continuous evolution strategies over the latent box: CMA-ES / sep-CMA-ES (``cmaes``) and a plain (1+1)-ES.

All three search the box of :class:`~mango.optimizers.continuous.Box` (``bounds^dim``; ``[0, 1]^dim`` for
categorical codes) and send floats, or grid indices with ``grid=True``.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import Optimizer
from .continuous import Box, Losses
from .options import register


class CMAES(Optimizer):
    """CMA-ES (or separable sep-CMA-ES) from the ``cmaes`` package over the latent box.

    * No ``bounds`` are passed to ``cmaes``: with bounds it resamples infeasible points, measured ~88 times
      per ask in 128-d when the optimum is near the edge. Candidates are clipped into the box instead, and
      ``cmaes`` is told the unclipped point with the clipped point's loss plus ``penalty`` times the squared
      distance outside (in box widths, scaled by the spread of the generation's losses), which pulls the mean
      back into the box.
    * ``cmaes`` must be told exactly ``popsize`` solutions: ``ask(k)`` serves points from a queue refilled a
      generation at a time, ``tell`` collects losses and updates once a generation is complete. A batch equal
      to ``popsize`` (the preferred batch) makes that exact.
    * Foreign points (:meth:`inject`, a shared scan's images proposed for other units) compete for the next
      generation's update: ``cmaes`` accepts any points in ``tell``, so the best ``popsize // 2`` injected
      since the last update join the generation and the best ``popsize`` of both are told, the way pycma's
      ``inject`` does it. As Hansen (2011, "Injecting external solutions into CMA-ES") advises, a foreign
      point is first pulled towards the mean to no farther than the generation's own farthest sample, so a
      far-away image moves the mean without blowing up the step size.
    """

    def __init__(self, space: LatentSpace, seed: int = 0, popsize: int | None = None, sigma: float | None = None,
                 grid: bool = False, separable: bool = False, penalty: float = 1.0) -> None:
        super().__init__(space, seed)
        from cmaes import CMA, SepCMA

        self.box = Box(space, grid)
        self.popsize = int(popsize or 4 + math.floor(3 * math.log(space.dim)))
        self.sigma = float(sigma or 0.3 * self.box.width)
        if self.popsize < 2 or self.sigma <= 0 or penalty < 0:
            raise MangoError(f"CMA-ES needs popsize >= 2, sigma > 0, penalty >= 0; got popsize={self.popsize}, "
                             f"sigma={self.sigma}, penalty={penalty}")
        self.separable, self.penalty, self.preferred_batch = bool(separable), float(penalty), self.popsize
        cls = SepCMA if separable else CMA
        self.es = cls(mean=np.full(space.dim, self.box.centre), sigma=self.sigma, population_size=self.popsize,
                      seed=self.seed % 2**32)  # numpy's RandomState takes 32 bits
        self.losses = Losses()
        self._queue: deque[np.ndarray] = deque()  # sampled, not yet served
        self._served: deque[np.ndarray] = deque()  # served, awaiting a value
        self._done: list[tuple[np.ndarray, float, float]] = []  # (x, loss, squared distance outside)
        self._foreign: list[tuple[np.ndarray, float]] = []  # injected since the last update: (x, loss)

    def _ask(self, k: int) -> torch.Tensor:
        while len(self._queue) < k:
            self._queue.extend(self.es.ask() for _ in range(self.popsize))
        x = np.stack([self._queue.popleft() for _ in range(k)])
        self._served.extend(x)
        return self.box.candidates(x)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        for loss in self.losses(values):
            x = self._served.popleft()
            if np.isnan(loss):  # left out: the generation is completed by later samples of the same distribution
                continue
            out = float((((x - self.box.clip(x)) / self.box.width) ** 2).sum())
            self._done.append((x, float(loss), out))
            if len(self._done) == self.popsize:
                gen, self._done = self._with_foreign(self._done), []
                ls = [g[1] for g in gen]
                scale = max(max(ls) - min(ls), 1e-12)
                self.es.tell([(g[0], g[1] + self.penalty * scale * g[2]) for g in gen])

    def _inject(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        x = self.box.points(candidates)
        self._foreign.extend(zip(x, (-values).tolist(), strict=True))
        self._foreign = sorted(self._foreign, key=lambda f: f[1])[: max(1, self.popsize // 2)]

    def _with_foreign(self, gen: list[tuple[np.ndarray, float, float]]) -> list[tuple[np.ndarray, float, float]]:
        """The generation to tell: the best ``popsize`` of its own samples and the injected points."""
        if not self._foreign:
            return gen
        mean = np.asarray(self.es.mean, dtype=np.float64)
        reach = max(float(np.linalg.norm(g[0] - mean)) for g in gen)
        pulled = []
        for x, loss in self._foreign:
            d = float(np.linalg.norm(x - mean))
            pulled.append((mean + (x - mean) * min(1.0, reach / d) if d > 0 else x, loss, 0.0))
        self._foreign = []
        return sorted(gen + pulled, key=lambda g: g[1])[: self.popsize]

    def hyperparameters(self) -> dict:
        return {"popsize": self.popsize, "sigma": self.sigma, "separable": self.separable, "grid": self.box.grid,
                "penalty": self.penalty}

    def searched_space(self) -> str:
        return self.box.describe()


class OnePlusOne(Optimizer):
    """(1+1)-ES with the 1/5th success rule over the latent box, batched as a (1+k)-ES.

    ``ask(k)`` proposes ``k`` Gaussian mutants of the parent (clipped into the box); ``tell`` replaces the
    parent by the best mutant when it is at least as good (ties move: plateaus of the grid mode are crossed),
    and multiplies the step size by ``exp((p - 1/5) / 2.4)`` for the batch's success rate ``p`` (per mutant
    the classic x e^(1/3) on success, x e^(-1/12) on failure). It exists beside ``ng-oneplusone``
    because it costs microseconds per query: no Nevergrad parameter objects, archive or pruning per query.

    Restarts: on a neuron the step size collapses (measured on the default unit: sigma fell to 1e-4 of
    the box width within 900 queries, far below the 1/63 of a grid cell that can change a spike count,
    and the best never moved again). When sigma drops below ``min_sigma`` (a fraction of the box
    width) the search restarts from a fresh uniform point with the initial step size; the run's best
    is kept by the loop's history. Median of 3 seeds on the default unit, best at 1k / 5k queries:
    0.83 / 0.83 without restarts, 0.86 / 0.95 with ``min_sigma=0.01`` (``min_sigma=0`` disables them).
    """

    def __init__(self, space: LatentSpace, seed: int = 0, sigma: float | None = None, grid: bool = False,
                 min_sigma: float = 1e-2) -> None:
        super().__init__(space, seed)
        self.box = Box(space, grid)
        self.sigma0 = float(sigma or 0.3 * self.box.width / math.sqrt(space.dim))
        if self.sigma0 <= 0:
            raise MangoError(f"(1+1)-ES needs sigma > 0, got {self.sigma0}")
        self.sigma = self.sigma0
        self.min_sigma, self.restarts = float(min_sigma) * self.box.width, 0
        self.rng = np.random.default_rng(self.seed)
        self.parent = self.box.uniform(self.rng, 1)[0]
        self.parent_value = -np.inf  # the start point is never measured: any finite mutant replaces it
        self._served: deque[np.ndarray] = deque()

    def _ask(self, k: int) -> torch.Tensor:
        x = self.box.clip(self.parent + self.sigma * self.rng.standard_normal((k, self.space.dim)))
        self._served.extend(x)
        return self.box.candidates(x)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        xs = [self._served.popleft() for _ in range(len(values))]
        measured = ~np.isnan(values.numpy())  # left-out candidates count neither as success nor failure
        if not measured.any():
            return
        xs, v = [x for x, m in zip(xs, measured, strict=True) if m], values.numpy()[measured]
        ok = np.isfinite(v) & (v >= self.parent_value)
        i = int(np.argmax(v))
        if ok[i]:
            self.parent, self.parent_value = xs[i], float(v[i])
        self.sigma *= math.exp((ok.mean() - 0.2) / 2.4)
        self.sigma = min(self.sigma, self.box.width)
        if self.sigma < self.min_sigma:
            self.parent, self.parent_value = self.box.uniform(self.rng, 1)[0], -np.inf
            self.sigma, self.restarts = self.sigma0, self.restarts + 1

    def _inject(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """A foreign point at least as good as the parent becomes the parent (the step size is kept)."""
        i = int(torch.argmax(values))
        if float(values[i]) >= self.parent_value:
            self.parent, self.parent_value = self.box.points(candidates[i : i + 1])[0], float(values[i])

    def hyperparameters(self) -> dict:
        return {"sigma": self.sigma0, "min_sigma": self.min_sigma / self.box.width, "grid": self.box.grid}

    def searched_space(self) -> str:
        return self.box.describe()


register("cma", CMAES, "CMA-ES (cmaes; popsize 4+3ln(d), sigma 0.3 box), searches the continuous box "
         "(grid=true: grid indices).")
register("sepcma", CMAES, "sep-CMA-ES (cmaes; diagonal covariance, cheap in high d), searches the continuous box "
         "(grid=true: indices).", fixed={"separable": True})
register("oneplusone", OnePlusOne, "(1+1)-ES with the 1/5th rule, no Nevergrad overhead; searches the continuous box "
         "(grid=true: indices).")
