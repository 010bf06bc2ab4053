"""The latent space a generator exposes to optimizers."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..errors import MangoError


@dataclass(frozen=True)
class LatentSpace:
    """``dim`` coordinates, each taking one of ``size`` values.

    Grid optimizers search the integer indices ``0..size-1`` of every
    coordinate. ``bounds`` is set when index ``j`` stands for the ``j``-th of
    ``size`` evenly spaced points on ``[low, high]`` (SN-GAN: 64 points on
    [-4, 4]); then continuous optimizers may search the box and send floats.
    ``bounds is None`` means the indices are categorical (VQ-VAE codes).
    """

    dim: int
    size: int
    bounds: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        def integer(v: object) -> bool:
            return not isinstance(v, bool) and hasattr(type(v), "__index__")

        if not (integer(self.dim) and integer(self.size)) or self.dim < 1 or self.size < 2:
            raise MangoError(f"latent space needs integers dim >= 1 and size >= 2, got dim={self.dim!r}, "
                             f"size={self.size!r}")
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "size", int(self.size))
        if self.bounds is not None:
            b = self.bounds
            ok = not isinstance(b, (str, bytes)) and hasattr(b, "__len__") and len(b) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in b)
            if not ok or not b[0] < b[1]:
                raise MangoError(f"latent space bounds must be two finite numbers low < high (or null for "
                                 f"categorical codes), got {b!r}")
            object.__setattr__(self, "bounds", (b[0], b[1]))

    @property
    def is_binary_quantizable(self) -> bool:
        """True when ``size`` is a power of two (QTT modes of size 2 apply)."""
        return self.size & (self.size - 1) == 0

    def grid(self) -> torch.Tensor:
        """Values of the grid points (only for spaces with bounds)."""
        if self.bounds is None:
            raise MangoError("this latent space is categorical: it has no grid values")
        return torch.linspace(self.bounds[0], self.bounds[1], self.size)

    def values(self, z: torch.Tensor) -> torch.Tensor:
        """Latent values for candidates: indices map to grid points, floats pass (clipped to the box)."""
        if z.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
            return self.grid()[z.long()]
        lo, hi = self.bounds if self.bounds is not None else (None, None)
        if lo is None:
            raise MangoError("continuous latents need a space with bounds; this one is categorical")
        return z.float().clamp(lo, hi)

    def check(self, z: torch.Tensor) -> torch.Tensor:
        """Validate a batch of candidates ``[B, dim]``; return it unchanged."""
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise MangoError(f"latents must have shape [batch, {self.dim}], got {list(z.shape)}")
        if not torch.is_floating_point(z) and z.numel() and (int(z.min()) < 0 or int(z.max()) >= self.size):
            raise MangoError(f"latent indices must lie in [0, {self.size - 1}], got [{int(z.min())}, {int(z.max())}]")
        return z

    def to_dict(self) -> dict:
        return asdict(self)
