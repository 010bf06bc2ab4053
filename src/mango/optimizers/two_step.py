"""``sepcma-2step``: sep-CMA-ES that picks its first step size by trying two, one generation each.

Why: sep-CMA-ES's first step (0.3 box widths, ``sepcma``) sends every image of its first generations far
from the generator's typical latents. Most units answer those images strongly, and the large step is what
reaches them; but a unit that answers best *near* the typical latents is then climbed from a poor start.
On mnist-snn ``lif2:17`` (the efficiency benchmark's draw) ``sepcma`` trailed Nevergrad's Portfolio, which
starts with small steps, at every budget: 0.097 / 0.106 / 0.125 against 0.113 / 0.125 / 0.134 at 250 /
1,000 / 3,000 queries (median of 5 seeds); no single first step fixed it without losing elsewhere (1/8 of
the box: 0.103 / 0.113 / 0.122; 1/16: 0.122 / 0.128 / 0.141 there, but 0.280 against 0.351 at 250 on
``lif1:9``, 3 seeds).

So the first generation is sep-CMA-ES with the large step, the second a separate sep-CMA-ES with a small
one (``small``, in box widths: 1/16), and the search continues with the one whose best image so far is
better (the large one on a tie). The cost is one generation (``popsize`` queries) for the step not taken.
Measured as the default runs (``benchmarks/efficiency.py``, docs/benchmarks.md): ``lif2:17`` 0.116 / 0.128 /
0.141, no longer behind Portfolio beyond the seed spread at any budget; on the other 20 mnist units of both
draws the medians move by at most 0.012 at 250 (one output spike in 20, 0.05, on ``class:1``), 0.019 at
1,000 (``lif2:25``) and 0.001 at 3,000. On the default neuron (``lif2:12``) the medians are sepcma's.
"""
from __future__ import annotations

from collections import deque

import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import Optimizer
from .cma import CMAES
from .options import register


class TwoStepSepCMA(Optimizer):
    """Two sep-CMA-ES searches (first step ``sigma``, default 0.3 box widths, and ``small`` box widths), one
    generation each, then the better one alone (see the module note)."""

    def __init__(self, space: LatentSpace, seed: int = 0, popsize: int | None = None, sigma: float | None = None,
                 small: float = 1 / 16, grid: bool = False, penalty: float = 1.0) -> None:
        super().__init__(space, seed)
        large = CMAES(space, seed, popsize=popsize, sigma=sigma, grid=grid, separable=True, penalty=penalty)
        if not 0 < small * large.box.width < large.sigma:
            raise MangoError(f"sepcma-2step needs 0 < small (box widths) below the first step "
                             f"{large.sigma / large.box.width:g}, got small={small}")
        # the small search draws from its own stream: its images are not the large one's scaled down
        self.searches = (large, CMAES(space, seed + 7919, popsize=popsize, sigma=small * large.box.width, grid=grid,
                                      separable=True, penalty=penalty))
        self.small, self.popsize = float(small), large.popsize
        self.preferred_batch = self.popsize
        self.best = [float("-inf"), float("-inf")]
        self.asked = 0
        self.chosen: int | None = None  # set when a foreign candidate ends the trial (see _inject)
        self._route: deque[tuple[int, int]] = deque()  # (search, count) of asked candidates awaiting a value

    def _ask(self, k: int) -> torch.Tensor:
        """The first generation from the large search, the second from the small one, then from the better
        (the large one while the trial's values are not all told: the choice depends on told values only)."""
        parts = []
        while k:
            if self.chosen is not None:
                i, n = self.chosen, k
            elif self.asked < 2 * self.popsize:
                i = int(self.asked >= self.popsize)
                n = min(k, (i + 1) * self.popsize - self.asked)
            else:
                i, n = int(self.best[1] > self.best[0]), k
            parts.append(self.searches[i].ask(n))
            self._route.append((i, n))
            self.asked, k = self.asked + n, k - n
        return torch.cat(parts)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        done = 0
        while done < len(values):
            i, n = self._route[0]
            m = min(n, len(values) - done)
            v = values[done:done + m]
            ok = v[~v.isnan()]
            if len(ok):
                self.best[i] = max(self.best[i], float(ok.max()))
            self.searches[i].tell(candidates[done:done + m], v)
            done += m
            if m == n:
                self._route.popleft()
            else:
                self._route[0] = (i, n - m)

    def _inject(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Both searches learn from foreign candidates; one arriving during the trial ends it for the large
        search, so a shared scan searches as ``sepcma`` does (``benchmarks/scan_shared.py``)."""
        for search in self.searches:
            search.inject(candidates, values)
        if self.chosen is None and self.asked < 2 * self.popsize:
            self.chosen = 0

    def hyperparameters(self) -> dict:
        large = self.searches[0]
        return {"popsize": self.popsize, "sigma": large.sigma, "small": self.small, "grid": large.box.grid,
                "penalty": large.penalty}

    def searched_space(self) -> str:
        return self.searches[0].box.describe()

    def _close(self) -> None:
        for search in self.searches:
            search.close()


register("sepcma-2step", TwoStepSepCMA, "sep-CMA-ES trying a large (0.3 box) and a small (1/16 box) first step, one "
         "generation each, then the better (the default for a continuous latent); searches the continuous box.")
