"""Shared plumbing for optimizers that search a continuous box instead of the grid.

Continuous methods (CMA-ES, (1+1)-ES, most of Nevergrad) want real vectors; MANGO's latent spaces are a grid
(``size`` evenly spaced points per coordinate of ``bounds``) or categorical codes. :class:`Box` fixes, in one
place, which box they search and how a box point becomes a candidate, so every continuous optimizer sends the
loop the same kind of candidates:

* a space with bounds: the box is ``[low, high]^dim``; candidates are the points themselves (float64,
  clipped into the box), or, with ``grid=True``, the index of the nearest grid point (``LongTensor``: the
  paper's discrete set-up, where only the grid is ever measured);
* a categorical space (``bounds is None``): the box is ``[0, 1]^dim``; coordinate ``x`` stands for code
  ``floor(x * size)`` (clipped to ``size - 1``), so every code owns an interval of equal width.

The mappings are pure functions of the point (no randomness, no state): resuming a run replays the history
and must get bit-identical candidates. :class:`Losses` turns MANGO's values (maximized, ``-inf`` for a failed
measurement) into finite losses for minimizers that cannot take infinities.
"""
from __future__ import annotations

import numpy as np
import torch

from ..generators.space import LatentSpace


class Box:
    """The box a continuous optimizer searches for ``space``, and the map from box points to candidates."""

    def __init__(self, space: LatentSpace, grid: bool = False) -> None:
        self.space, self.dim = space, space.dim
        self.categorical = space.bounds is None
        self.grid = bool(grid) and not self.categorical  # categorical candidates are indices anyway
        bounds = (0.0, 1.0) if space.bounds is None else space.bounds
        self.low, self.high = float(bounds[0]), float(bounds[1])
        self.width = self.high - self.low
        self.centre = (self.low + self.high) / 2

    def clip(self, x: np.ndarray) -> np.ndarray:
        """``x`` clipped into the box (float64)."""
        return np.clip(np.asarray(x, dtype=np.float64), self.low, self.high)

    def candidates(self, x: np.ndarray) -> torch.Tensor:
        """Box points ``[k, dim]`` -> candidates for the loop: float64 values, grid indices or codes."""
        x = self.clip(np.asarray(x, dtype=np.float64).reshape(-1, self.dim))
        if self.categorical:
            idx = np.minimum(np.floor(x * self.space.size), self.space.size - 1)
        elif self.grid:
            idx = np.rint((x - self.low) / self.width * (self.space.size - 1))
        else:
            return torch.from_numpy(x.copy())
        return torch.from_numpy(idx.astype(np.int64))

    def points(self, candidates: torch.Tensor) -> np.ndarray:
        """Candidates of the loop ``[k, dim]`` -> box points (the inverse of :meth:`candidates`): values as
        they are, grid indices to their grid points, codes to the centre of their interval. For points
        proposed elsewhere (a shared scan's foreign candidates)."""
        z = torch.as_tensor(candidates)
        if torch.is_floating_point(z):
            return self.clip(z.double().numpy().reshape(-1, self.dim))
        idx = z.long().numpy().reshape(-1, self.dim).astype(np.float64)
        if self.categorical:
            return (idx + 0.5) / self.space.size
        return self.low + idx / (self.space.size - 1) * self.width

    def uniform(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """``k`` points drawn uniformly from the box."""
        return rng.uniform(self.low, self.high, (k, self.dim))

    def describe(self) -> str:
        """Which box is searched and what is sent, for docs and hyperparameters."""
        if self.categorical:
            return f"[0, 1]^{self.dim} -> codes floor(x * {self.space.size})"
        what = "nearest grid index" if self.grid else "float values"
        return f"[{self.low:g}, {self.high:g}]^{self.dim} -> {what}"


class Losses:
    """MANGO values (maximize, ``-inf``/NaN = failed) -> finite losses to minimize.

    A failed measurement gets the worst finite loss seen so far plus a margin (``1e9`` before any finite
    value): worse than every real point, yet on the scale of the real losses, so gradient- or
    model-based methods are not thrown off by a huge outlier. Depends only on the values told so far, so it
    is deterministic under replay.
    """

    def __init__(self) -> None:
        self.worst: float | None = None

    def __call__(self, values: torch.Tensor | np.ndarray) -> np.ndarray:
        """Losses; NaN (a candidate left out, never measured) stays NaN for the caller to drop."""
        v = np.asarray(torch.as_tensor(values, dtype=torch.float64).reshape(-1).numpy(), dtype=np.float64)
        loss = -v
        ok = np.isfinite(loss)
        if ok.any():
            top = float(loss[ok].max())
            self.worst = top if self.worst is None else max(self.worst, top)
        failed = ~ok & ~np.isnan(loss)
        if failed.any():
            fill = 1e9 if self.worst is None else self.worst + max(1.0, abs(self.worst))
            loss = np.where(failed, fill, loss)
        return loss
