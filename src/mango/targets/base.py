"""The target interface: images in, responses of the selected unit(s) out."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from ..errors import MangoError
from ..registry import Registry


class Target(ABC):
    """Something that responds to images: a network unit, or a living neuron."""

    name: str = "target"
    input_shape: tuple[int, int, int]

    @abstractmethod
    def responses(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> responses ``[B, U]`` of the selected unit(s)."""

    def describe(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape)}

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.input_shape):
            raise MangoError(f"target {self.name!r} expects images [batch, {', '.join(map(str, self.input_shape))}], "
                             f"got {list(images.shape)}")
        return images


#: name -> factory returning a torch model (with an ``input_shape`` attribute)
MODELS: Registry[nn.Module] = Registry("model")
