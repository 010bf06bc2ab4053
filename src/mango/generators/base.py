"""The generator interface: latent candidates in, images out."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from ..errors import MangoError
from ..imagespace import ImageSpace
from ..registry import Registry
from .space import LatentSpace


class Generator(ABC):
    """Turns latent candidates into images on the target's input scale.

    ``space`` is what optimizers search; ``image_shape`` is ``(C, H, W)`` of
    every image; ``image_space`` declares their normalization (default: plain
    pixels in [0, 1]) so the loop can adapt them to any target's input.
    """

    name: str = "generator"
    space: LatentSpace
    image_shape: tuple[int, int, int]

    @property
    def image_space(self) -> ImageSpace:
        return getattr(self, "_image_space", None) or ImageSpace(self.image_shape)

    def pixels(self, z: torch.Tensor) -> torch.Tensor:
        """Candidates -> images as plain pixels in [0, 1], for pictures."""
        return self.image_space.to_unit(self.decode(z)).clamp(0, 1)

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Candidates ``[B, dim]`` (indices or box values) -> images ``[B, C, H, W]``, no grad."""

    def describe(self) -> dict:
        return {"name": self.name, "space": self.space.to_dict(), "image_space": self.image_space.to_dict()}


class TorchGenerator(Generator):
    """Any torch module that maps latent *values* ``[B, dim]`` to images."""

    def __init__(self, module: nn.Module, space: LatentSpace, image_shape: tuple[int, int, int],
                 name: str = "torch-module", image_space: ImageSpace | None = None) -> None:
        self.module = module.eval()
        self.space, self.image_shape, self.name = space, tuple(image_shape), name
        if image_space is not None and tuple(image_space.shape) != self.image_shape:
            raise MangoError(f"image_space shape {list(image_space.shape)} differs from image_shape {list(image_shape)}")
        self._image_space = image_space

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(self.space.values(self.space.check(z)))


GENERATORS: Registry[Generator] = Registry("generator")
