"""The target interface: images in, responses of the selected unit(s) out."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from ..errors import MangoError
from ..imagespace import ImageSpace
from ..registry import Registry


class Target(ABC):
    """Something that responds to images: a network unit, or a living neuron."""

    name: str = "target"
    input_shape: tuple[int, int, int]

    @property
    def input_space(self) -> ImageSpace:
        """What the target expects; default: plain pixels in [0, 1] of ``input_shape``."""
        return getattr(self, "_input_space", None) or ImageSpace(self.input_shape)

    def reseed(self, key: int) -> None:  # noqa: B027  (an optional hook: a no-op unless overridden)
        """Seed the target's trial-to-trial noise for the next batch (no-op when noiseless)."""

    @abstractmethod
    def responses(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> responses ``[B, U]`` of the selected unit(s)."""

    def evaluate(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Responses ``[B, U]`` (recorded and reported) and the values ``[B, U]`` the optimizer is told.

        The values are the responses, unless a readout tells the optimizer more than it reports (``rate+drive``:
        the rate, and a silent unit's sub-threshold drive, see :mod:`mango.targets.drive`)."""
        r = self.responses(images)
        return r, r

    def describe(self) -> dict:
        return {"name": self.name, "input_space": self.input_space.to_dict()}

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.input_shape):
            raise MangoError(f"target {self.name!r} expects images [batch, {', '.join(map(str, self.input_shape))}], "
                             f"got {list(images.shape)}")
        return images


#: name -> factory(weights=None) returning a torch model with an ``input_shape`` attribute and
#: optionally ``input_space`` (:class:`ImageSpace`; default plain [0, 1] pixels)
MODELS: Registry[nn.Module] = Registry("model")


def model_input_space(model: nn.Module) -> ImageSpace:
    """What a target network declares it takes: its ``input_space``, else plain pixels of its ``input_shape``."""
    space = getattr(model, "input_space", None)
    if space is not None:
        return space
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise MangoError(f"model {type(model).__name__} declares neither input_space nor input_shape")
    return ImageSpace(shape)


class AdaptedTarget(Target):
    """A target shown a generator's images converted to its declared input space."""

    def __init__(self, inner: Target, convert, source: ImageSpace) -> None:
        self.inner, self.convert = inner, convert
        self.name, self.input_shape, self._input_space = inner.name, source.shape, source
        self.spec = getattr(inner, "spec", None)

    def responses(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.responses(self.convert(self.check_images(images)))

    def evaluate(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner.evaluate(self.convert(self.check_images(images)))

    def reseed(self, key: int) -> None:
        self.inner.reseed(key)

    def describe(self) -> dict:
        return {**self.inner.describe(), "adapted_from": self._input_space.to_dict()}
