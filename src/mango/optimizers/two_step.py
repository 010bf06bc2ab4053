"""``sepcma-2step``: sep-CMA-ES that picks its first step size by trying two, one generation each.

Why: a unit that answers best *near* the generator's typical latents is climbed from a poor start by a
sep-CMA-ES whose first images are all far from them; a unit that answers best far out is reached slowly by
one that starts small. On mnist-snn ``lif2:17`` (the efficiency benchmark's draw) ``sepcma`` (first step 0.3
box widths) trailed Nevergrad's Portfolio, which starts with small steps, at every budget: 0.097 / 0.106 /
0.125 against 0.113 / 0.125 / 0.134 at 250 / 1,000 / 3,000 queries (median of 5 seeds); a first step of
1/16 box fixes it (0.122 / 0.128 / 0.141) but costs 0.07 at 250 on ``lif1:9`` (3 seeds).

So the first generation is sep-CMA-ES with a large step (``sigma``: 0.2 box widths), the second a separate
sep-CMA-ES with a small one (``small``, in box widths: 1/16), and the search continues with the one whose best
image so far is better (the large one on a tie). The cost is one generation (``popsize`` queries) for the
step not taken.

The large step is 0.2 box widths, not ``sepcma``'s 0.3: measured as the default runs over the 18 mnist-snn
units of both efficiency draws that fire (``benchmarks/efficiency.py --as-default``, docs/benchmarks.md),
0.2 raises the mean median at 250 queries from 0.497 to 0.512 (0.562 / 0.599 at 1,000 / 3,000 against 0.560 /
0.597), and leaves 1 point behind a baseline beyond the seed spread (``lif1:8`` at 3,000) against 0.3's 2
(``lif2:25`` and ``class:1`` at 250) and 0.25's 1 (``lif2:25`` at 250). On the default neuron (``lif2:12``,
5 seeds) it reaches 0.856 / 0.922 / 0.984 at 250 / 500 / 1,000 against 0.803 / 0.916 / 0.975.
It shows the first 240 images of the noise-free default, ``image-model-sepcma``, and every other batch after
them; it is the default itself for a scan's units and for a generator whose images carry no gradient
(:mod:`.auto`).
"""
from __future__ import annotations

import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import Optimizer
from .cma import CMAES
from .continuous import Box
from .options import register
from .routes import Routes

#: the large first step, in box widths (``sepcma``'s is 0.3; see the module note)
LARGE = 0.2


class TwoStepSepCMA(Optimizer):
    """Two sep-CMA-ES searches (first step ``sigma``, default :data:`LARGE` box widths, and ``small`` box
    widths), one generation each, then the better one alone (see the module note)."""

    def __init__(self, space: LatentSpace, seed: int = 0, popsize: int | None = None, sigma: float | None = None,
                 small: float = 1 / 16, grid: bool = False, penalty: float = 1.0) -> None:
        super().__init__(space, seed)
        sigma = sigma or LARGE * Box(space, grid).width
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
        self._routes: Routes[int] = Routes()  # which search asked the candidates awaiting a value

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
            self._routes.add(i, n)
            self.asked, k = self.asked + n, k - n
        return torch.cat(parts)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        for i, part in self._routes.split(len(values)):
            v = values[part]
            ok = v[~v.isnan()]
            if len(ok):
                self.best[i] = max(self.best[i], float(ok.max()))
            self.searches[i].tell(candidates[part], v)

    def _inject(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Both searches learn from foreign candidates; one arriving during the trial ends it for the large
        search, so a shared scan searches as that sep-CMA-ES alone does (``benchmarks/scan_shared.py``)."""
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


register("sepcma-2step", TwoStepSepCMA, "sep-CMA-ES trying a large (0.2 box) and a small (1/16 box) first step, one "
         "generation each, then the better (the default for a continuous latent); searches the continuous box.")
