"""The XDream genetic algorithm (Xiao & Kreiman 2020, PLoS Comput Biol; github.com/willwx/XDream, ``Genetic``).

Our own implementation of its semantics, on a box instead of XDream's unbounded N(0, 1) codes:

* a population of real-valued genomes; every member of a generation is scored once;
* fitness is XDream's softmax of z-scores: ``exp((s - s_top) / kT)`` with ``kT = std(s) / selectivity``, after
  clipping the scores at their 95th percentile (so one outlier cannot take all the offspring);
* the ``n_conserve`` best members pass unchanged (and are scored again, as in XDream);
* each child takes every gene from parent 1 with probability ``heritability``, else from parent 2, both parents
  drawn by fitness (roulette); then each gene mutates with probability ``mutation_rate`` by Gaussian noise.

Search space: the box ``[lo, hi]^dim`` of a space with bounds (candidates are float64 points in the box, or, with
``grid=True``, the nearest grid indices), or ``[0, 1]^dim`` for a categorical space (candidate code
``floor(x * size)``). ``mutation_size`` is in XDream's units, where codes are ~N(0, 1) and live roughly in
[-4, 4]: noise std is ``mutation_size * (hi - lo) / 8``, so on SN-GAN's [-4, 4] box it is exactly XDream's.

Deviations: failed measurements (``-inf``) are never parents nor conserved (XDream re-scores NaN codes instead);
fitness that underflows is zero (XDream floors it at the smallest positive fitness, which makes selection uniform
at very high selectivity); the first generation is uniform in the box. ``start="normal"`` draws it as XDream
does, N(0, 1) codes in its units (box centre + N(0, 1) * width / 8, clipped; exactly N(0, 1) on SN-GAN's box),
but it is not the default: on the 11 mnist-snn units of ``benchmarks/efficiency.py`` that fire (5 seeds) its
mean median is 0.551 / 0.600 / 0.616 at 250 / 1,000 / 3,000 queries against the uniform start's 0.560 / 0.602 /
0.622 noise-free, and 0.470 / 0.496 / 0.525 against 0.474 / 0.505 / 0.521 under living-like noise. Codes have
no centre: on a categorical space both starts are uniform. If the loop asks for more candidates than
the current generation has left while some are still unscored, the generation grows by extra children of the
same parents (or more first-generation draws), so ``ask(k)`` always returns exactly ``k``.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import Optimizer
from .continuous import Box
from .options import register


class Genetic(Optimizer):
    """XDream's genetic algorithm over the latent box (or ``[0, 1]^dim`` codes for categorical spaces)."""

    def __init__(self, space: LatentSpace, seed: int = 0, population: int = 20, mutation_rate: float = 0.5,
                 mutation_size: float = 0.5, selectivity: float = 2.0, heritability: float = 0.5,
                 n_conserve: int = 1, grid: bool = False, start: Literal["normal", "uniform"] = "uniform") -> None:
        super().__init__(space, seed)
        if not (population >= 2 and 0 <= n_conserve < population and 0 <= mutation_rate <= 1
                and mutation_size >= 0 and selectivity > 0 and 0 <= heritability <= 1):
            raise MangoError("the genetic algorithm needs population >= 2, 0 <= n_conserve < population, "
                             "0 <= mutation_rate <= 1, mutation_size >= 0, selectivity > 0, 0 <= heritability <= 1; "
                             f"got population={population}, n_conserve={n_conserve}, mutation_rate={mutation_rate}, "
                             f"mutation_size={mutation_size}, selectivity={selectivity}, heritability={heritability}")
        self.population, self.n_conserve = int(population), int(n_conserve)
        self.mutation_rate, self.mutation_size = float(mutation_rate), float(mutation_size)
        self.selectivity, self.heritability, self.grid = float(selectivity), float(heritability), bool(grid)
        self.start = start
        self.preferred_batch = self.population
        self.box = Box(space, grid)
        self.lo, self.hi = self.box.low, self.box.high
        self.unit = (self.hi - self.lo) / 8.0  # one XDream code unit (its codes are ~N(0, 1) in [-4, 4])
        self.sigma = self.mutation_size * self.unit
        self.rng = np.random.default_rng(self.seed)
        self._parents: tuple[np.ndarray, np.ndarray] | None = None  # (genomes, selection probabilities)
        self._genes = self._spawn(self.population)  # current generation [n, dim]
        self._scores: list[float] = []  # values of members 0..len-1 (told in ask order)
        self._served = 0  # members handed out by ask
        self._foreign: list[tuple[np.ndarray, float]] = []  # injected since the last generation: (x, value)

    def _spawn(self, n: int) -> np.ndarray:
        """``n`` new members: the first generation's draws (``start``) before any scores, else mated and mutated
        children."""
        if self._parents is None:
            if self.start == "normal" and not self.box.categorical:
                return self.box.clip(self.box.centre + self.unit * self.rng.normal(0.0, 1.0, (n, self.space.dim)))
            return self.lo + (self.hi - self.lo) * self.rng.random((n, self.space.dim))
        pool, prob = self._parents
        cdf = np.cumsum(prob)
        cdf /= cdf[-1]
        p1, p2 = (np.minimum(np.searchsorted(cdf, self.rng.random(n), side="right"), len(pool) - 1) for _ in "12")
        from_p1 = self.rng.random((n, self.space.dim)) < self.heritability
        children = np.where(from_p1, pool[p1], pool[p2])
        mutate = self.rng.random(children.shape) < self.mutation_rate
        noise = self.rng.normal(0.0, 1.0, children.shape) * self.sigma
        return np.clip(children + np.where(mutate, noise, 0.0), self.lo, self.hi)

    def _ask(self, k: int) -> torch.Tensor:
        missing = self._served + k - len(self._genes)
        if missing > 0:
            self._genes = np.concatenate([self._genes, self._spawn(missing)])
        out = self._genes[self._served : self._served + k]
        self._served += k
        return self.box.candidates(out)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        self._scores.extend(values.tolist())
        if len(self._scores) >= self.population and len(self._scores) == len(self._genes):
            self._breed()

    def selection(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """XDream's selection: order of the finite scores (best first) and their parent probabilities."""
        valid = np.flatnonzero(np.isfinite(scores))
        if len(valid) == 0:  # every measurement failed: all members equally likely
            return np.arange(len(scores)), np.full(len(scores), 1.0 / len(scores))
        order = valid[np.argsort(-scores[valid], kind="stable")]
        s = scores[order]
        kT = max(float(np.std(s)) / self.selectivity, 1e-8)
        s = np.minimum(s, np.percentile(s, 95))  # XDream: clip outliers before the softmax
        fit = np.exp((s - s[0]) / kT)
        return order, fit / fit.sum()

    def _inject(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Foreign images join the next selection as members of the generation (XDream admits natural images to
        its pool the same way); the best ``population`` of them since the last generation are kept."""
        self._foreign.extend(zip(self.box.points(candidates), values.tolist(), strict=True))
        self._foreign = sorted(self._foreign, key=lambda f: -f[1])[: self.population]

    def _breed(self) -> None:
        """Whole generation scored: conserve the best, the rest of the next generation are children."""
        genes, scores = self._genes, np.asarray(self._scores)
        if self._foreign:
            genes = np.concatenate([genes, np.stack([f[0] for f in self._foreign])])
            scores = np.concatenate([scores, [f[1] for f in self._foreign]])
            self._foreign = []
        order, prob = self.selection(scores)
        self._parents = (genes[order], prob)
        keep = order[np.isfinite(scores[order])][: self.n_conserve]
        self._genes = np.concatenate([genes[keep], self._spawn(self.population - len(keep))])
        self._scores, self._served = [], 0

    def hyperparameters(self) -> dict:
        return {"population": self.population, "mutation_rate": self.mutation_rate,
                "mutation_size": self.mutation_size, "selectivity": self.selectivity,
                "heritability": self.heritability, "n_conserve": self.n_conserve, "grid": self.grid,
                "start": self.start}

    def searched_space(self) -> str:
        return self.box.describe()


register("ga", Genetic, "XDream genetic algorithm (population 20, mutation 0.5 x 0.5, selectivity 2), "
         "searches the continuous box.")
register("ga-ponce", Genetic, "XDream genetic algorithm, Ponce-lab preset (population 40, mutation 0.25 x 0.75), "
         "searches the continuous box.", population=40, mutation_rate=0.25, mutation_size=0.75)
