"""The generator interface: latent candidates in, images out."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from ..registry import Registry
from .space import LatentSpace


class Generator(ABC):
    """Turns latent candidates into images on the target's input scale.

    ``space`` is what optimizers search; ``image_shape`` is ``(C, H, W)`` of
    every image; images are in [0, 1] unless the generator declares otherwise.
    """

    name: str = "generator"
    space: LatentSpace
    image_shape: tuple[int, int, int]

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Candidates ``[B, dim]`` (indices or box values) -> images ``[B, C, H, W]``, no grad."""

    def describe(self) -> dict:
        return {"name": self.name, "space": self.space.to_dict(), "image_shape": list(self.image_shape)}


class TorchGenerator(Generator):
    """Any torch module that maps latent *values* ``[B, dim]`` to images."""

    def __init__(self, module: nn.Module, space: LatentSpace, image_shape: tuple[int, int, int],
                 name: str = "torch-module") -> None:
        self.module = module.eval()
        self.space, self.image_shape, self.name = space, tuple(image_shape), name

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.module(self.space.values(self.space.check(z)))


GENERATORS: Registry[Generator] = Registry("generator")
