"""The generator interface: latent candidates in, images out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, cast, runtime_checkable

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


@runtime_checkable
class Encoder(Protocol):
    """A generator that also maps images back to candidates (e.g. the VQ-VAE): ``encode`` is all it takes."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` in the generator's image space -> candidates ``[B, dim]``."""
        ...


class TorchGenerator(Generator):
    """Any torch module that maps latent *values* ``[B, dim]`` to images."""

    def __init__(self, module: nn.Module, space: LatentSpace, image_shape: tuple[int, int, int],
                 name: str = "torch-module", image_space: ImageSpace | None = None) -> None:
        if not callable(module):
            raise MangoError(f"generator {name!r}: module must be a torch nn.Module, got a {type(module).__name__}")
        if not isinstance(space, LatentSpace):
            raise MangoError(f"generator {name!r}: space must be a mango.LatentSpace, got a {type(space).__name__}")
        self.module = module.eval() if hasattr(module, "eval") else module
        # tuple(): a list or array works too; ImageSpace checks it is three positive integers
        shape = ImageSpace(cast("tuple[int, int, int]", tuple(image_shape))).shape
        self.space, self.image_shape, self.name = space, shape, name
        if image_space is not None and tuple(image_space.shape) != self.image_shape:
            raise MangoError(f"image_space shape {list(image_space.shape)} differs from image_shape "
                             f"{list(image_shape)}")
        self._image_space = image_space

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z = self.space.check(z)
        return check_images(self.module(self.space.values(z)), len(z), self.image_shape, self.name)


def check_images(images: object, batch: int, shape: tuple[int, ...], name: str) -> torch.Tensor:
    """A generator module's output checked to be images ``[batch, *shape]`` (a one-line MangoError if not)."""
    want = f"a torch.Tensor of images [batch, {', '.join(map(str, shape))}] = [{batch}, {', '.join(map(str, shape))}]"
    if not isinstance(images, torch.Tensor):
        t = type(images)
        kind = t.__name__ if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}.{t.__qualname__}"
        raise MangoError(f"generator {name!r} returned a {kind}; expected {want}")
    if tuple(images.shape) != (batch, *shape):
        raise MangoError(f"generator {name!r} returned images of shape {list(images.shape)} for {batch} latents; "
                         f"expected {want}")
    return images


GENERATORS: Registry[Generator] = Registry("generator")
