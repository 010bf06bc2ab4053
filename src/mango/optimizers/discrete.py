"""``codes``: a (1+lambda) evolutionary search over categorical codes, with mutations shaped by the code grid.

A categorical latent (the VQ-VAE's 8x8 grid of 512 codebook indices) has no order between its values: a
continuous or grid optimizer's notion of "nearby" (index 17 is close to 18) means nothing there, and a
uniform random code is as good a step as any other. What *is* structured is the grid: neighbouring cells
make neighbouring image regions, and images are made of regions of repeated texture. :class:`CodeSearch`
keeps one parent (the best candidate so far) and proposes mutations of it that respect that structure:
a few scattered cells, a rectangle filled with one code, or a patch of the parent tiled over the grid.
It searches any space through its indices (a bounded grid space too, treating the indices as categories).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import Optimizer
from .options import register


def heavy_tail(n: int, beta: float) -> np.ndarray:
    """Probabilities of 1..n proportional to ``k^-beta``: mostly small changes, now and then a large one."""
    k = np.arange(1, n + 1, dtype=np.float64)
    p = k ** -beta
    return p / p.sum()


class CodeSearch(Optimizer):
    """(1+lambda) evolutionary search over categorical codes laid out on a grid (``side x side`` when ``dim``
    is a square, else one row).

    **Start.** The first ``start`` candidates are *flat* images (every cell the same code, distinct codes in a
    seeded order; ``flat_start=False``: uniform random codes): one texture each, a cheap survey of what the
    codebook's entries do to the unit.

    **Parent.** The best candidate told so far (``ties=True``: a later one of equal value replaces it, so
    the search drifts across plateaus such as a silent unit's zeros instead of stalling). NaN (never
    measured) is ignored; failed measurements (-inf) lose to everything.

    **Mutations** of the parent, one per candidate, chosen with weights ``point``, ``block``, ``tile``:

    * point: ``k`` random cells get a new code, ``k`` heavy-tailed (``P(k) ~ k^-beta``);
    * block: an ``h x w`` rectangle (heavy-tailed sides) is filled with one new code;
    * tile: a patch of the parent (at most half the grid each way) is repeated over the whole grid.

    A new code is, with probability ``reuse``, one already in the parent (regions of the image extend, as
    textures do), else uniform over the codebook. A candidate asked before is re-drawn (up to 20 times), so
    a budget is not spent on images already measured.

    **Foreign candidates** (:meth:`inject`, another unit's images in a shared scan): the best becomes the
    parent when it beats the current one, and the next asks are its mutations (an adoption ends the flat
    start: there is already a better place to start from than an untried texture).

    **Restarts while nothing responds** (``restart``: a patience, in asks; 0 = never). A silent unit answers
    at most 0 (with readout ``rate+drive``: how far below threshold its membrane stayed), and a (1+1) search
    climbing that membrane can sit on a local peak of it for the rest of the budget. While the best value told
    is still <= 0 and the parent has not strictly improved for ``restart`` asks, the search starts over from the
    next ``start`` flat codes. Once any value > 0 is told it never restarts, so a unit that has fired is
    searched exactly as without restarts. Measured on the 12 cifar-snn ``spiking1``/``spiking2`` units the
    search left silent after 1,000 queries though the white-box search makes them fire
    (``benchmarks/silent.py``, seed 0): restart 200 made 2 of them fire, 100 made 4, 50 made 5, 25 made 6 (a
    longer flat start, ``start=64``: 3; ``reuse=0.1``: 3; the GA: 0). Over all 160 reachable units of both
    layers, restart 25 made 154 fire within 1,000 queries, against 148 without restarts.

    **Kicks** (``kick``: every ``kick``-th restart; 0 = never). A restart from flat codes throws the climb
    away; iterated local search keeps it: every other restart (``kick=2``), the survey is ``start`` strong
    perturbations of the best image so far (8 random cells and one block of at least 2x2 get new codes),
    so the next climb starts near where the best one ended. Only where silent values are graded (readout
    ``rate+drive``: below 0, by how far the membrane stayed from threshold). With plain rates every silent
    image is 0 and "the best so far" is just the first one: kicking it cost 0.03 on average at 1,000 and
    3,000 queries over the 26 plain-rate runs of the efficiency benchmark that could restart (noisy targets,
    class outputs; 5-6 down, 2 up), so there restarts stay flat. Measured on the 14 cifar-snn units that fire
    late or not with some seed (``benchmarks/silent_search.py``, 1,000 queries): 30 of 70 searches fired
    against 29 without kicks on seeds 0-4, where it was chosen among 10 variants, then 60 of 140 against
    45 on seeds 5-14, held out (one-sided Fisher test p = 0.04).

    **Re-showing the parent** (``resample``: every ``resample``-th mutation ask; 0 = never). Under noise the
    parent is the luckiest measurement so far and stays one: a (1+1) search then climbs the noise. With
    ``resample`` the parent is shown again regularly and judged by the mean of its measurements, so a lucky
    parent loses to a child that is truly better. ``codes-noisy`` (``resample=4``) is the default for a noisy
    target; measured with Poisson counts and drift (``benchmarks/efficiency.py``, 12 cifar-snn units, 3
    seeds): see docs/benchmarks.md, "Query efficiency on many neurons".

    Every ask of a batch mutates the same parent (the (1+lambda) scheme: lambda = the batch); ``batch`` is
    the preferred batch, 1 by default (a (1+1) EA: each tell can move the parent).
    """

    def __init__(self, space: LatentSpace, seed: int = 0, batch: int = 1, start: int = 8, point: float = 1.0,
                 block: float = 1.0, tile: float = 0.5, reuse: float = 0.5, beta: float = 1.5, ties: bool = True,
                 flat_start: bool = True, restart: int = 25, resample: int = 0, kick: int = 2) -> None:
        super().__init__(space, seed)
        if batch < 1 or start < 1:
            raise MangoError(f"codes needs batch >= 1 and start >= 1, got batch={batch}, start={start}")
        if min(point, block, tile) < 0 or point + block + tile <= 0:
            raise MangoError(f"codes needs mutation weights point, block, tile >= 0 with a positive sum, got "
                             f"point={point}, block={block}, tile={tile}")
        if not 0 <= reuse <= 1 or beta < 0 or restart < 0 or resample < 0 or resample == 1 or kick < 0:
            raise MangoError(f"codes needs 0 <= reuse <= 1, beta >= 0, restart >= 0, kick >= 0 and resample 0 or >= 2 "
                             f"(1 would only re-show the parent), got reuse={reuse}, beta={beta}, restart={restart}, "
                             f"kick={kick}, resample={resample}")
        self.preferred_batch = int(batch)
        self.start, self.reuse, self.beta, self.ties, self.flat_start = int(start), float(reuse), float(beta), \
            bool(ties), bool(flat_start)
        self.restart, self.resample, self.kick = int(restart), int(resample), int(kick)
        self.restarts, self.kicking = 0, False  # restarts so far; whether this survey kicks the elite
        self.elite: np.ndarray | None = None  # the candidate of ``best``, kept across restarts
        self.mutations = 0  # asks that were not part of a survey
        self.parent_sum, self.parent_n = 0.0, 0  # the parent's measurements: its value is their mean
        self.weights = np.array([point, block, tile], dtype=np.float64)
        self.weights /= self.weights.sum()
        dim = space.dim
        side = math.isqrt(dim)
        self.rows, self.cols = (side, side) if side * side == dim else (1, dim)
        self.rng = np.random.default_rng(self.seed)
        self.p_k = heavy_tail(dim, self.beta)
        self.p_r = heavy_tail(self.rows, self.beta)
        self.p_c = heavy_tail(self.cols, self.beta)
        self.parent: np.ndarray | None = None
        self.value = -math.inf
        self.seen: set[bytes] = set()
        self.asked = 0
        self.surveying = True  # the flat start: until ``start`` are asked, or a foreign candidate is adopted
        self.survey_end = self.start  # the current survey ends when this many have been asked
        self.flat = 0  # flat codes asked so far (the next one is ``_start_codes[flat]``)
        self.stale = 0  # asks since the parent last strictly improved
        self.best = -math.inf  # the best value told so far (or injected)
        self._start_codes = self.rng.permutation(space.size)

    def hyperparameters(self) -> dict:
        point, block, tile = (float(w) for w in self.weights)
        return {"batch": self.preferred_batch, "start": self.start, "point": point, "block": block, "tile": tile,
                "reuse": self.reuse, "beta": self.beta, "ties": self.ties, "flat_start": self.flat_start,
                "restart": self.restart, "resample": self.resample, "kick": self.kick}

    def _new_code(self, parent: np.ndarray) -> int:
        if self.rng.random() < self.reuse:
            return int(parent[self.rng.integers(parent.size)])
        return int(self.rng.integers(self.space.size))

    def _mutate(self, parent: np.ndarray) -> np.ndarray:
        child = parent.copy()
        op = self.rng.choice(3, p=self.weights)
        if op == 0:
            for i in self._cells(1 + int(self.rng.choice(len(self.p_k), p=self.p_k))):
                child[i] = self._new_code(parent)
        elif op == 1:
            h = 1 + int(self.rng.choice(self.rows, p=self.p_r))
            w = 1 + int(self.rng.choice(self.cols, p=self.p_c))
            r0 = int(self.rng.integers(self.rows - h + 1))
            c0 = int(self.rng.integers(self.cols - w + 1))
            grid = child.reshape(self.rows, self.cols)
            grid[r0:r0 + h, c0:c0 + w] = self._new_code(parent)
        else:
            grid = parent.reshape(self.rows, self.cols)
            ph = int(self.rng.integers(1, max(2, self.rows // 2 + 1)))
            pw = int(self.rng.integers(1, max(2, self.cols // 2 + 1)))
            o_r = int(self.rng.integers(self.rows - ph + 1))
            o_c = int(self.rng.integers(self.cols - pw + 1))
            patch = grid[o_r:o_r + ph, o_c:o_c + pw]
            reps = np.tile(patch, (self.rows // ph + 1, self.cols // pw + 1))[: self.rows, : self.cols]
            child = reps.reshape(-1).copy()
        return child

    def _cells(self, k: int) -> np.ndarray:
        """The ``k`` distinct cells a point mutation changes: uniform (a subclass may weigh them)."""
        return self.rng.choice(self.space.dim, k, replace=False)

    def _survey_image(self) -> np.ndarray:
        """The next image of a survey (the start, or a restart while silent): the next flat code, or uniform
        random codes with ``flat_start=False``; in a kicking restart, a kick of the best image so far. The one
        place a start is made, so another start (encoded natural images, say) is one override."""
        if self.kicking:
            return self._kick()
        if not self.flat_start:
            return self.rng.integers(self.space.size, size=self.space.dim)
        self.flat += 1
        return np.full(self.space.dim, self._start_codes[(self.flat - 1) % self.space.size], dtype=np.int64)

    def _kick(self) -> np.ndarray:
        """A strong perturbation of the elite: 8 random cells and one block (at least 2x2, at most half the grid
        each way) get new uniform codes."""
        assert self.elite is not None
        z = self.elite.copy()
        for i in self.rng.choice(z.size, min(8, z.size), replace=False):
            z[i] = self.rng.integers(self.space.size)
        h, w = (int(self.rng.integers(2, max(3, n // 2 + 1))) for n in (self.rows, self.cols))
        h, w = min(h, self.rows), min(w, self.cols)
        r0, c0 = int(self.rng.integers(self.rows - h + 1)), int(self.rng.integers(self.cols - w + 1))
        z.reshape(self.rows, self.cols)[r0:r0 + h, c0:c0 + w] = self.rng.integers(self.space.size)
        return z

    def _ask(self, k: int) -> torch.Tensor:
        out = []
        for _ in range(k):
            if self.restart and not self.surveying and self.stale >= self.restart and self.best <= 0:
                self._start_over()
            self.surveying = self.surveying and self.asked < self.survey_end
            if self.surveying or self.parent is None:
                z = self._survey_image()
            else:
                if self.resample and self.mutations % self.resample == self.resample - 1:
                    z = self.parent.copy()  # shown again: a lucky measurement does not stay the parent for long
                else:
                    for _ in range(20):
                        z = self._mutate(self.parent)
                        if z.tobytes() not in self.seen:
                            break
                self.stale, self.mutations = self.stale + 1, self.mutations + 1
            self.seen.add(z.tobytes())
            self.asked += 1
            out.append(z)
        return torch.from_numpy(np.stack(out).astype(np.int64))

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        for z, v in zip(candidates.numpy(), values.tolist(), strict=True):
            if math.isnan(v):
                continue
            if v > self.best:
                self.best, self.elite = v, z.astype(np.int64).copy()
            if self.parent is not None and self.resample and np.array_equal(z, self.parent):
                self.parent_sum, self.parent_n = self.parent_sum + v, self.parent_n + 1
                self.value = self.parent_sum / self.parent_n
                continue
            if self.parent is None or v > self.value:
                self.stale = 0
            if self.parent is None or v > self.value or (self.ties and v == self.value):
                self.parent, self.value, self.parent_sum, self.parent_n = z.astype(np.int64).copy(), v, v, 1

    def _start_over(self) -> None:
        """A restart while nothing has responded (see ``restart`` in the class note): the next ``start`` flat
        codes (or, every ``kick``-th restart, kicks of the elite) are surveyed and the best of them becomes
        the new parent."""
        self.surveying, self.survey_end, self.stale = True, self.asked + self.start, 0
        self.parent, self.value = None, -math.inf
        self.restarts += 1
        graded = self.elite is not None and self.best < 0  # silent values that rank images (the drive)
        self.kicking = graded and self.kick > 0 and self.restarts % self.kick == 0


    def _inject(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """The best foreign candidate becomes the parent if it beats the current one (strictly: a tie keeps
        this search's own parent); every foreign candidate counts as seen, so it is not asked again."""
        z = self._indices(candidates)
        for row in z:
            self.seen.add(row.tobytes())
        i = int(np.argmax(values.numpy()))  # the first of equal best values
        v = float(values[i])
        if v > self.best:
            self.best, self.elite = v, z[i].copy()
        if self.parent is None or v > self.value:
            self.parent, self.value, self.surveying = z[i].copy(), v, False
            self.parent_sum, self.parent_n = v, 1

    def _indices(self, candidates: torch.Tensor) -> np.ndarray:
        """Candidates as int64 indices ``[n, dim]``: codes as they are; float points of a bounded space (a
        continuous method's) at their nearest grid index."""
        if not torch.is_floating_point(candidates):
            return candidates.numpy().astype(np.int64)
        lo, hi = self.space.bounds or (0.0, float(self.space.size - 1))
        idx = ((candidates.double() - lo) / (hi - lo) * (self.space.size - 1)).round()
        return idx.clamp(0, self.space.size - 1).numpy().astype(np.int64)


register("codes", CodeSearch, "(1+lambda) EA over categorical codes (VQ-VAE grids): flat-texture start, then point, "
         "block and tile mutations of the best so far; searches the discrete codes.")
register("codes-noisy", CodeSearch, "codes for a noisy target: every 4th mutation ask shows the parent again, which is "
         "judged by its mean (the default on codes with noise or a rig); searches the discrete codes.", resample=4)
