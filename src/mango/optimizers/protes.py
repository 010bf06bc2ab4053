"""PROTES: probabilistic optimization with tensor-train sampling (Batsheva et al., 2023).

Our own rather than the reference package: torch-native (no JAX/optax dependency), float64; sampling
steps a whole coordinate at a time through a precomputed tree of core products, and the likelihood
uses log-depth scans of batched matmuls instead of a Python loop over the modes.
"""
from __future__ import annotations

from typing import cast

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import Optimizer
from .options import register

_F = torch.float64


def to_bits(z: torch.Tensor, q: int) -> torch.Tensor:
    """Grid indices ``[B, dim]`` in ``[0, 2**q)`` -> binary modes ``[B, dim * q]``, most significant bit first."""
    shifts = torch.arange(q - 1, -1, -1, device=z.device)
    return ((z.long().unsqueeze(-1) >> shifts) & 1).reshape(z.shape[0], -1)


def from_bits(bits: torch.Tensor, q: int) -> torch.Tensor:
    """Inverse of :func:`to_bits`: binary modes ``[B, dim * q]`` -> grid indices ``[B, dim]``."""
    weights = 2 ** torch.arange(q - 1, -1, -1, device=bits.device)
    return (bits.long().reshape(bits.shape[0], -1, q) * weights).sum(-1)


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched matmul of ``r x r`` matrices stored batch-last ``[r, r, ...]`` (vectorizes far better than bmm)."""
    return (a.unsqueeze(2) * b.unsqueeze(0)).sum(1)


def _rescale(m: torch.Tensor) -> torch.Tensor:
    """Divide each matrix by a detached positive factor: every probability is invariant to the scale of
    every partial product, so values and gradients are unchanged; it only keeps float64 in range."""
    return m / m.detach().abs().amax((0, 1), keepdim=True).clamp_min(1e-300)


def _scan(m: torch.Tensor) -> torch.Tensor:
    """Inclusive prefix products along the last dim of ``m [r, r, ..., d]``: Hillis-Steele, log2(d) steps."""
    d, s = m.shape[-1], 1
    while s < d:
        m = torch.cat([m[..., :s], _rescale(_mm(m[..., :-s], m[..., s:]))], -1)
        s *= 2
    return m


def _rows(m: torch.Tensor, s: int = 8) -> torch.Tensor:
    """Row 0 of the prefix products ``M_0 ... M_k`` (each up to scale) of ``m [r, r, ..., d]`` -> ``[r, ..., d]``.

    Two levels: plain products inside chunks of ``s``, a log-depth scan over the chunk totals.
    """
    r, d = m.shape[0], m.shape[-1]
    nb = -(-d // s)
    eye = torch.eye(r, dtype=m.dtype).reshape(r, r, *[1] * (m.dim() - 2))
    if nb * s > d:
        m = torch.cat([m, eye.expand(*m.shape[:-1], nb * s - d)], -1)
    within = list(m.reshape(*m.shape[:-1], nb, s).unbind(-1))
    for j in range(1, s):
        within[j] = _mm(within[j - 1], within[j])
    w = _rescale(torch.stack(within, -1))
    enter = torch.cat([eye[0].expand(*w.shape[1:-2], 1), _scan(w[..., -1])[0, ..., :-1]], -1)  # row entering each chunk
    return (enter.unsqueeze(1).unsqueeze(-1) * w).sum(0).flatten(-2)[..., :d]


def _suffix_cols(S: torch.Tensor) -> torch.Tensor:
    """``S [r, r, d]`` -> ``Z [r, d]``: Z_k = S_{k+1} ... S_{d-1} e_0 (up to scale), Z_{d-1} = e_0."""
    e0 = torch.eye(S.shape[0], dtype=S.dtype)[:, :1]
    if S.shape[-1] == 1:
        return e0
    return torch.cat([_rows(S[..., 1:].flip(-1).transpose(0, 1)).flip(-1), e0], -1)


def interfaces(Y: torch.Tensor) -> torch.Tensor:
    """Interface vectors ``Z [d, r]`` of the reference: Z_k ~ (sum_i Y[k+1, i]) ... (sum_i Y[d-1, i]) e_0.

    The TT-tensor is stored as ``Y [d, n, r, r]`` (``Y[k, i]`` = the reference's ``Y_k[:, i, :]``), padded:
    first core = row 0 of ``Y[0, i]``, last core = column 0 of ``Y[d-1, i]``.
    """
    return _suffix_cols(Y.sum(1).permute(1, 2, 0)).T


def log_likelihood(Y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Log-probability ``[B]`` of multi-indices ``idx [B, d]`` under PROTES's sequential sampler.

    p_k(i) = |Q_k Y[k, i] Z_k| / sum_j |Q_k Y[k, j] Z_k|, Q_k = e_0^T Y[0, i_0] ... Y[k-1, i_{k-1}].
    Differentiable in ``Y``, the gradient flowing through Z as in the reference.
    """
    (B, d), n, r = idx.shape, Y.shape[1], Y.shape[2]
    Z = interfaces(Y)
    W = cast(torch.Tensor, sum(y * z[:, None, None] for y, z in zip(Y.unbind(-1), Z.unbind(-1), strict=True)))
    # W: [d, n, r]
    Q = torch.eye(r, dtype=Y.dtype)[:1].expand(B, 1, r)
    if d > 1:
        flat = (torch.arange(d - 1) * n + idx[:, :-1]).reshape(-1)
        M = Y.reshape(d * n, r * r).index_select(0, flat).T.reshape(r, r, B, d - 1)  # selected cores
        Q = torch.cat([Q, _rows(M).permute(1, 2, 0)], 1)
    G = cast(torch.Tensor, sum(q.unsqueeze(-1) * w for q, w in zip(Q.unbind(-1), W.unbind(-1), strict=True)))
    G = G.abs()  # [B, d, n]
    return (G.gather(-1, idx.unsqueeze(-1)).squeeze(-1).log() - G.sum(-1).log()).sum(-1)


def _products(Yb: torch.Tensor) -> torch.Tensor:
    """``Yb [D, b, n, r, r]`` -> products ``Y[i_1] ... Y[i_b]`` of all ``n**b`` leaves ``[D, r, n**b, r]``,
    each block scaled to max-abs 1."""
    D, b, r = Yb.shape[0], Yb.shape[1], Yb.shape[-1]
    if b == 1:
        x = Yb[:, 0].transpose(1, 2)
    else:
        x = (_products(Yb[:, : b // 2]).reshape(D, -1, r) @ _products(Yb[:, b // 2:]).reshape(D, r, -1))
    x = x.reshape(D, r, -1, r)
    return x / x.abs().amax((1, 2, 3), keepdim=True).clamp_min(1e-300)


@torch.no_grad()
def prepare(Y: torch.Tensor, b: int) -> tuple:
    """Precompute the sampler for blocks of ``b`` consecutive modes (one grid coordinate each).

    The choices inside a block form a tree; node (i_1..i_j) gets u = Y[i_1] ... Y[i_j] Z (the sum of its
    leaves' vectors), so every conditional weight of a block is |Q u| for the one vector Q entering it.
    Returns ``U [D, r, N]`` (nodes level by level), leaf products ``[D, r, L * r]`` (L = n**b, entries
    at most r), the path-nodes index ``[b, L]`` of the leaves (None if b == 1) and n.
    """
    d, n, r = Y.shape[:3]
    D = d // b
    Yb = Y.reshape(D, b, n, r, r)
    left = _products(Yb[:, : (b + 1) // 2])  # leaves = (left half, right half) of the block's modes
    right = _products(Yb[:, (b + 1) // 2:]) if b > 1 else torch.eye(r, dtype=Y.dtype)[:, None].expand(D, r, 1, r)
    Z = _suffix_cols((left.sum(2) @ right.sum(2)).permute(1, 2, 0)).T  # interface after each block [D, r]
    right_z = (right.reshape(D, -1, r) @ Z.unsqueeze(-1)).reshape(D, r, -1)
    levels = [(left.reshape(D, -1, r) @ right_z).reshape(D, r, -1)]
    for _ in range(b - 1):
        # torch sums tiny last dims slowly
        levels.append(cast(torch.Tensor, sum(levels[-1].reshape(D, r, -1, n).unbind(-1))))
    U = torch.cat(levels[::-1], -1).numpy()
    P = left.reshape(D, -1, r) @ right.reshape(D, r, -1) if b > 1 else left
    leaf = np.arange(n**b)
    path = np.stack([sum(n**t for t in range(1, j)) + leaf // n ** (b - j) for j in range(1, b + 1)])
    return U, P.reshape(D, r, -1).numpy(), path if b > 1 else None, n


def sample(prepared: tuple, m: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``m`` samples ``[m, D]`` of leaf indices per block: exact, by inverse CDF with one uniform each.

    A leaf's probability is the product of the conditionals on its path. numpy in the loop: its
    per-call overhead on these tiny arrays is several times lower than torch's.
    """
    U, leaves, path, n = prepared
    D, r, N = U.shape
    L = leaves.shape[2] // r
    u = torch.rand(D, m, 1, dtype=_F, generator=generator).numpy()
    out = np.empty((D, m), dtype=np.int64)
    Q, rows = np.eye(1, r).repeat(m, 0), np.arange(m)
    for c in range(D):
        g = np.abs(Q @ U[c])
        if path is not None:  # conditionals (siblings normalized), then products along the paths
            g = g.reshape(m, -1, n)
            s = g[:, :, :1]
            for i in range(1, n):  # (numpy reduces tiny axes slowly)
                s = s + g[:, :, i:i + 1]
            g = (g / s).reshape(m, N)
            g = np.take(g, path, axis=1).prod(1)
        cdf = g.cumsum(1)
        leaf = out[c] = (cdf >= u[c] * cdf[:, -1:]).argmax(1)
        Q = (Q @ leaves[c]).reshape(m, L, r)[rows, leaf]
        if c % 4 == 3:  # |Q| grows at most r^2-fold per block (leaf products have entries <= r)
            Q /= np.abs(Q).max(1, keepdims=True)
    return torch.from_numpy(out.T.copy())


class Protes(Optimizer):
    """PROTES over the grid: a rank-``rank`` TT distribution, sharpened by Adam on the log-likelihood of the elites."""

    def __init__(self, space: LatentSpace, seed: int = 0, k: int = 10, k_top: int = 1, k_gd: int = 1,
                 lr: float = 5e-2, rank: int = 5, quantize: bool | None = None) -> None:
        super().__init__(space, seed)
        if not (k >= 1 and 1 <= k_top <= k and k_gd >= 0 and lr > 0 and rank >= 1):
            raise MangoError(f"PROTES needs k >= 1, 1 <= k_top <= k, k_gd >= 0, lr > 0, rank >= 1; "
                             f"got k={k}, k_top={k_top}, k_gd={k_gd}, lr={lr}, rank={rank}")
        if quantize and not space.is_binary_quantizable:
            raise MangoError(f"quantized PROTES (TT-s/TT-b) needs a power-of-two grid size, got size={space.size}")
        self.quantize = space.is_binary_quantizable if quantize is None else bool(quantize)
        self.k, self.k_top, self.k_gd, self.lr, self.rank = k, k_top, k_gd, lr, rank
        self.preferred_batch = k
        self.q = space.size.bit_length() - 1 if self.quantize else 1  # modes per coordinate
        self.n = 2 if self.quantize else space.size  # values per mode
        shape = (space.dim * self.q, self.n, rank, rank)
        self.Y = torch.rand(shape, generator=self.generator, dtype=_F).requires_grad_()
        self.opt = torch.optim.Adam([self.Y], lr=lr)
        self._cand, self._vals = torch.empty(0, space.dim, dtype=torch.long), torch.empty(0, dtype=_F)  # buffer
        self._prepared: tuple | None = None

    def _ask(self, k: int) -> torch.Tensor:
        if self._prepared is None:
            self._prepared = prepare(self.Y.detach(), self.q)
        return sample(self._prepared, k, self.generator)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        self._cand = torch.cat([self._cand, candidates.long().reshape(-1, self.space.dim)])
        self._vals = torch.cat([self._vals, torch.where(values.isnan(), -torch.inf, values)])  # left out: never elite
        while len(self._vals) >= self.k:
            self._update(self._cand[: self.k], self._vals[: self.k])
            self._cand, self._vals = self._cand[self.k:], self._vals[self.k:]

    def _update(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        top = torch.sort(values, descending=True, stable=True).indices[: self.k_top]
        top = top[values[top] > -torch.inf]  # failed measurements are never elites
        if len(top) == 0 or self.k_gd == 0:
            return
        idx = to_bits(candidates[top], self.q) if self.quantize else candidates[top]
        for _ in range(self.k_gd):
            self.opt.zero_grad(set_to_none=True)
            (-log_likelihood(self.Y, idx).mean()).backward()
            self.opt.step()
        self._prepared = None

    def hyperparameters(self) -> dict:
        return {"k": self.k, "k_top": self.k_top, "k_gd": self.k_gd, "lr": self.lr, "rank": self.rank,
                "quantize": self.quantize}


register("protes", Protes, "PROTES (k=10, k_top=1): learned tensor-train distribution, searches the discrete "
         "grid.", k=10, k_top=1, quantize=False)
register("tt-s", Protes, "TT-s: quantized PROTES (k=5, k_top=1, binary modes; size must be 2^q), searches the "
         "discrete grid.", k=5, k_top=1, quantize=True)
register("tt-b", Protes, "TT-b: quantized PROTES (k=25, k_top=5, binary modes; size must be 2^q), searches the "
         "discrete grid.", k=25, k_top=5, quantize=True)
