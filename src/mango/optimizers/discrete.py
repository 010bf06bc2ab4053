"""Prototype: (1+lambda) EA over categorical codes with structured mutations."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import Optimizer
from .options import register


def heavy_tail(n: int, beta: float) -> np.ndarray:
    k = np.arange(1, n + 1, dtype=np.float64)
    p = k ** -beta
    return p / p.sum()


class CodeSearch(Optimizer):
    """(1+lambda) evolutionary search over codes."""

    def __init__(self, space: LatentSpace, seed: int = 0, batch: int = 1, start: int = 8, point: float = 1.0,
                 block: float = 1.0, tile: float = 0.5, reuse: float = 0.5, beta: float = 1.5, ties: bool = True,
                 flat_start: bool = True) -> None:
        super().__init__(space, seed)
        if batch < 1 or start < 1:
            raise MangoError(f"codes needs batch >= 1 and start >= 1, got batch={batch}, start={start}")
        self.preferred_batch = int(batch)
        self.start, self.reuse, self.beta, self.ties, self.flat_start = int(start), float(reuse), float(beta), \
            bool(ties), bool(flat_start)
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
        self._start_codes = self.rng.permutation(space.size)

    def _new_code(self, parent: np.ndarray) -> int:
        if self.rng.random() < self.reuse:
            return int(parent[self.rng.integers(parent.size)])
        return int(self.rng.integers(self.space.size))

    def _mutate(self, parent: np.ndarray) -> np.ndarray:
        child = parent.copy()
        op = self.rng.choice(3, p=self.weights)
        if op == 0:
            k = 1 + int(self.rng.choice(len(self.p_k), p=self.p_k))
            pos = self.rng.choice(parent.size, k, replace=False)
            for i in pos:
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

    def _ask(self, k: int) -> torch.Tensor:
        out = []
        for _ in range(k):
            if self.asked < self.start or self.parent is None:
                if self.flat_start:
                    z = np.full(self.space.dim, self._start_codes[self.asked % self.space.size], dtype=np.int64)
                else:
                    z = self.rng.integers(self.space.size, size=self.space.dim)
            else:
                for _ in range(20):
                    z = self._mutate(self.parent)
                    if z.tobytes() not in self.seen:
                        break
            self.seen.add(z.tobytes())
            self.asked += 1
            out.append(z)
        return torch.from_numpy(np.stack(out).astype(np.int64))

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        for z, v in zip(candidates.numpy(), values.tolist(), strict=True):
            if math.isnan(v):
                continue
            if self.parent is None or v > self.value or (self.ties and v == self.value):
                self.parent, self.value = z.astype(np.int64).copy(), v


register("codes", CodeSearch, "prototype")
