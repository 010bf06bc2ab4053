"""Declared image spaces, and the adapter between a generator's and a target's.

A generator says what its images are (shape, and the normalization they are
in: ``mean``/``std`` per channel, or plain [0, 1] pixels); a target network
says what it expects, and whether it resizes any input to its own size
(torchvision ImageNet classifiers). The adapter converts between the two
exactly as declared; anything it cannot convert without guessing (a channel
count or size mismatch the target does not declare it resizes) is a
one-line error naming both sides.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import SupportsFloat, SupportsIndex, cast

import torch
import torch.nn.functional as F

from .errors import MangoError

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _count(v: object) -> bool:
    """A positive integer (Python, numpy or torch), not a bool."""
    return not isinstance(v, bool) and hasattr(type(v), "__index__") and int(cast(SupportsIndex, v)) > 0


def _number(v: object) -> bool:
    """A finite real number (Python, numpy or torch scalar), not a bool or a string."""
    if isinstance(v, (bool, str, bytes)):
        return False
    try:
        return math.isfinite(float(cast(SupportsFloat, v)))  # anything else: TypeError below
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class ImageSpace:
    """Images ``[C, H, W]``; pixel = unit value (in [0, 1]) normalized by ``mean``/``std`` if given."""

    shape: tuple[int, int, int]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    #: a target that resizes any H x W to ``shape`` (bilinear), e.g. ImageNet classifiers
    resize: bool = False

    def __post_init__(self) -> None:
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list, torch.Size)) else None
        if shape is None or len(shape) != 3 or not all(_count(s) for s in shape):
            raise MangoError(f"image space shape must be three positive integers (C, H, W), got {self.shape!r}")
        object.__setattr__(self, "shape", tuple(int(s) for s in shape))
        if (self.mean is None) != (self.std is None):
            raise MangoError(f"image space needs both mean and std or neither, got mean={self.mean}, std={self.std}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None:
                if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__") or not all(_number(x) for x in v):
                    raise MangoError(f"image space {name} must be a list of finite numbers, one per channel, got {v!r}")
                v = tuple(float(x) for x in v)
                if len(v) != self.shape[0]:
                    raise MangoError(f"image space {name} {v} has {len(v)} values for {self.shape[0]} channels")
                if name == "std" and min(v) <= 0:
                    raise MangoError(f"image space std must be > 0 in every channel, got {v}")
                object.__setattr__(self, name, v)
        if not isinstance(self.resize, bool):
            raise MangoError(f"image space resize must be true or false, got {self.resize!r}")

    @property
    def normalized(self) -> bool:
        return self.mean is not None

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1)
        return (torch.tensor(self.mean, dtype=x.dtype).view(shape), torch.tensor(self.std, dtype=x.dtype).view(shape))

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Images in this space -> plain pixels (nominally [0, 1]; for pictures and conversion)."""
        if not self.normalized:
            return x
        m, s = self._stats(x)
        return x * s + m

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Plain pixels -> images in this space."""
        if not self.normalized:
            return x
        m, s = self._stats(x)
        return (x - m) / s

    def describe(self) -> str:
        norm = (f"normalized mean={list(self.mean)} std={list(self.std)}"
                if self.mean is not None and self.std is not None else "pixels in [0, 1]")
        return f"{'x'.join(map(str, self.shape))} {norm}" + (" (resizes any input)" if self.resize else "")

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "mean": list(self.mean) if self.mean else None,
                "std": list(self.std) if self.std else None, "resize": self.resize}


def adapter(src: ImageSpace, dst: ImageSpace, src_name: str = "generator",
            dst_name: str = "target") -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The conversion from ``src`` images to ``dst`` inputs; ``None`` when they are the same space."""
    if src.shape[0] != dst.shape[0]:
        raise MangoError(f"{src_name} makes {src.shape[0]}-channel images ({src.describe()}) but {dst_name} "
                         f"expects {dst.shape[0]} channels ({dst.describe()})")
    resize = src.shape[1:] != dst.shape[1:]
    if resize and not dst.resize:
        raise MangoError(f"{src_name} makes images of shape {list(src.shape)} but {dst_name} expects "
                         f"{list(dst.shape)} and does not resize its input")
    same_norm = (src.mean, src.std) == (dst.mean, dst.std)
    if same_norm and not resize:
        return None

    def convert(x: torch.Tensor) -> torch.Tensor:
        if not same_norm:
            x = src.to_unit(x)
        if resize:
            x = F.interpolate(x, size=dst.shape[1:], mode="bilinear", align_corners=False, antialias=True)
        return dst.from_unit(x) if not same_norm else x

    return convert
