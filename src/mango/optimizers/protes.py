"""PROTES: probabilistic optimization with tensor-train sampling (Batsheva et al., 2023).

Our own implementation instead of the reference package: torch-native (no JAX/optax dependency),
float64, sampling walks whole coordinates at a time through a precomputed tree of core products,
and the log-likelihood uses log-depth matmul scans instead of a Python loop over the modes.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import OPTIMIZERS, Optimizer

_F = torch.float64


def to_bits(z: torch.Tensor, q: int) -> torch.Tensor:
    """Grid indices ``[B, dim]`` in ``[0, 2**q)`` -> binary modes ``[B, dim * q]``, most significant bit first."""
    shifts = torch.arange(q - 1, -1, -1, device=z.device)
    return ((z.long().unsqueeze(-1) >> shifts) & 1).reshape(z.shape[0], -1)


def from_bits(bits: torch.Tensor, q: int) -> torch.Tensor:
    """Inverse of :func:`to_bits`: binary modes ``[B, dim * q]`` -> grid indices ``[B, dim]``."""
    weights = 2 ** torch.arange(q - 1, -1, -1, device=bits.device)
    return (bits.long().reshape(bits.shape[0], -1, q) * weights).sum(-1)


def _scan(m: torch.Tensor) -> torch.Tensor:
    """Inclusive prefix products of ``r x r`` matrices along dim -3: Hillis-Steele, log2(d) batched matmuls.

    Partial products are rescaled by detached factors: every probability is invariant to the scale of
    every partial product, so values and gradients are unchanged.
    """
    d, s = m.shape[-3], 1
    while s < d:
        new = m[..., :-s, :, :] @ m[..., s:, :, :]
        m = torch.cat([m[..., :s, :, :], new / new.detach().abs().amax((-2, -1), keepdim=True).clamp_min(1e-300)], -3)
        s *= 2
    return m


def _rows(m: torch.Tensor, s: int = 8) -> torch.Tensor:
    """Row 0 of the prefix products ``M_0 ... M_k`` (each up to scale) for ``m [..., d, r, r]`` -> ``[..., d, r]``.

    Two levels: plain products inside chunks of ``s``, a log-depth scan over the chunk totals.
    """
    *batch, d, r, _ = m.shape
    nb = -(-d // s)
    if nb * s > d:
        m = torch.cat([m, torch.eye(r, dtype=m.dtype).expand(*batch, nb * s - d, r, r)], -3)
    m = m.reshape(*batch, nb, s, r, r)
    within = [m[..., 0, :, :]]
    for j in range(1, s):
        within.append(within[-1] @ m[..., j, :, :])
    w = torch.stack(within, -3)
    w = w / w.detach().abs().amax((-2, -1), keepdim=True).clamp_min(1e-300)
    e0 = torch.eye(r, dtype=m.dtype)[0].expand(*batch, 1, r)
    enter = torch.cat([e0, _scan(w[..., -1, :, :])[..., :-1, 0, :]], -2)  # row entering each chunk
    return torch.einsum("...cp,...cjpq->...cjq", enter, w).reshape(*batch, nb * s, r)[..., :d, :]


def _suffix_cols(S: torch.Tensor) -> torch.Tensor:
    """``Z [d, r]`` with Z_k = S_{k+1} ... S_{d-1} e_0 (up to scale) and Z_{d-1} = e_0."""
    e0 = torch.eye(S.shape[-1], dtype=S.dtype)[:1]
    if S.shape[0] == 1:
        return e0
    return torch.cat([_rows(S[1:].flip(0).mT).flip(0), e0])


def interfaces(Y: torch.Tensor) -> torch.Tensor:
    """Interface vectors ``Z [d, r]`` of the reference: Z_k ~ (sum_i Y_{k+1}[:, i, :]) ... (sum_i Y_{d-1}[:, i, :]) e_0.

    The TT-tensor is stored padded as ``Y [d, r, n, r]``: first core ``Y[0, 0]``, last core ``Y[d-1, ..., 0]``.
    """
    return _suffix_cols(Y.sum(2))


def log_likelihood(Y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Log-probability ``[B]`` of multi-indices ``idx [B, d]`` under PROTES's sequential sampler.

    p_k(i) = |Q_k Y_k[:, i, :] Z_k| / sum_j |Q_k Y_k[:, j, :] Z_k|, Q_k = e_0^T Y_0[:, i_0, :] ... Y_{k-1}[:, i_{k-1}, :].
    Differentiable in ``Y``, the gradient flowing through Z as in the reference.
    """
    d, r = Y.shape[0], Y.shape[1]
    W = torch.einsum("kriq,kq->kri", Y, interfaces(Y))
    Q = torch.eye(r, dtype=Y.dtype)[:1].expand(idx.shape[0], 1, r)
    if d > 1:
        Q = torch.cat([Q, _rows(Y[torch.arange(d - 1), :, idx[:, :-1], :])], 1)
    G = torch.einsum("bkr,kri->bki", Q, W).abs()
    return (G.gather(-1, idx.unsqueeze(-1)).squeeze(-1).log() - G.sum(-1).log()).sum(-1)


def _leaf_products(Yb: torch.Tensor) -> torch.Tensor:
    """``Yb [D, b, r, n, r]`` -> products ``Y[i_1] ... Y[i_b]`` for all ``n**b`` leaves ``[D, n**b, r, r]`` (halving)."""
    D, b, r = Yb.shape[:3]
    if b == 1:
        return Yb[:, 0].transpose(1, 2)
    left, right = _leaf_products(Yb[:, : b // 2]), _leaf_products(Yb[:, b // 2:])
    return torch.einsum("dapr,dbrq->dabpq", left, right).reshape(D, -1, r, r)


@torch.no_grad()
def prepare(Y: torch.Tensor, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Precompute the sampler for blocks of ``b`` consecutive modes (one grid coordinate each).

    The choices inside a block form a tree; node (i_1..i_j) gets u = Y[i_1] ... Y[i_j] Z (the sum of its
    leaves' vectors), so every conditional weight of a block is |Q u| for the one vector Q entering it.
    Returns ``U [D, r, N]`` (nodes level by level) and the leaf products ``[D, r, n**b * r]``.
    """
    d, r, n = Y.shape[:3]
    D = d // b
    P = _leaf_products(Y.reshape(D, b, r, n, r))
    P = P / P.abs().amax((1, 2, 3), keepdim=True).clamp_min(1e-300)
    levels = [torch.einsum("dlpq,dq->dlp", P, _suffix_cols(P.sum(1)))]
    for _ in range(b - 1):
        levels.append(levels[-1].reshape(D, -1, n, r).sum(2))
    U = torch.cat(levels[::-1], 1).transpose(1, 2).contiguous().numpy()
    return U, P.permute(0, 2, 1, 3).reshape(D, r, -1).contiguous().numpy()


def sample(prepared: tuple, m: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Draw ``m`` samples ``[m, D]`` of leaf indices per block (exact, one uniform per block and sample).

    Leaf probability = product of the conditionals on its path; inverse-CDF pick. numpy in the loop:
    its per-call overhead on these tiny arrays is several times lower than torch's.
    """
    U, leaves = prepared
    D, r, N = U.shape
    L = leaves.shape[2] // r
    u = torch.rand(D, m, 1, dtype=_F, generator=generator).numpy()
    out = np.empty((D, m), dtype=np.int64)
    Q = np.zeros((m, r))
    Q[:, 0] = 1.0
    rows = np.arange(m)
    for c in range(D):
        g = np.abs(Q @ U[c])
        if L < N:  # binary tree: conditionals, then products down the levels
            g = g.reshape(m, -1, n)
            g /= g.sum(-1, keepdims=True)
            g = g.reshape(m, N)
            p, offset = g[:, :n], n
            while offset < N:
                width = p.shape[1] * n
                p = (p[:, :, None] * g[:, offset: offset + width].reshape(m, -1, n)).reshape(m, width)
                offset += width
            g = p
        cdf = np.cumsum(g, 1)
        leaf = out[c] = np.minimum((cdf < u[c] * cdf[:, -1:]).sum(1), L - 1)
        Q = (Q @ leaves[c]).reshape(m, L, r)[rows, leaf]
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
        shape = (space.dim * self.q, rank, self.n, rank)
        self.Y = torch.rand(shape, generator=self.generator, dtype=_F).requires_grad_()
        self.opt = torch.optim.Adam([self.Y], lr=lr)
        self._cand = torch.empty(0, space.dim, dtype=torch.long)
        self._vals = torch.empty(0, dtype=_F)
        self._prepared: tuple | None = None

    def ask(self, k: int) -> torch.Tensor:
        if self._prepared is None:
            self._prepared = prepare(self.Y.detach(), self.q)
        return sample(self._prepared, k, self.n, self.generator)

    def tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        values = torch.as_tensor(values, dtype=_F).reshape(-1)
        self._cand = torch.cat([self._cand, candidates.long().reshape(-1, self.space.dim)])
        self._vals = torch.cat([self._vals, values.nan_to_num(nan=-torch.inf)])
        while len(self._vals) >= self.k:
            self._update(self._cand[: self.k], self._vals[: self.k])
            self._cand, self._vals = self._cand[self.k:], self._vals[self.k:]

    def _update(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        top = torch.sort(values, descending=True, stable=True).indices[: self.k_top]
        top = top[torch.isfinite(values[top])]  # failed measurements are never elites
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


@OPTIMIZERS.register("protes")
def _protes(space: LatentSpace, seed: int = 0, **kwargs) -> Protes:
    """PROTES (k=10, k_top=1): learned tensor-train distribution, searches the discrete grid."""
    return Protes(space, seed, **{"k": 10, "k_top": 1, "quantize": False, **kwargs})


@OPTIMIZERS.register("tt-s")
def _tt_s(space: LatentSpace, seed: int = 0, **kwargs) -> Protes:
    """TT-s: quantized PROTES (k=5, k_top=1, binary modes; size must be 2^q), searches the discrete grid."""
    return Protes(space, seed, **{"k": 5, "k_top": 1, "quantize": True, **kwargs})


@OPTIMIZERS.register("tt-b")
def _tt_b(space: LatentSpace, seed: int = 0, **kwargs) -> Protes:
    """TT-b: quantized PROTES (k=25, k_top=5, binary modes; size must be 2^q), searches the discrete grid."""
    return Protes(space, seed, **{"k": 25, "k_top": 5, "quantize": True, **kwargs})
