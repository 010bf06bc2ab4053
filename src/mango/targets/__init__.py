"""Targets: networks (or neurons) whose unit responses we maximize."""
from __future__ import annotations

from torch import nn

from .base import MODELS, Target
from .spec import TargetSpec
from .torch_target import TorchTarget
from . import spiking_cnn  # noqa: F401  (registers "mnist-snn")


def make_target(model: str | nn.Module, spec: str | TargetSpec, weights: str | None = None) -> TorchTarget:
    """A target from a registered model name (or a module) and a spec like ``lif2:5``."""
    if isinstance(model, str):
        factory = MODELS.get(model)
        module = factory(weights) if weights else factory()
        return TorchTarget(module, spec, name=model)
    return TorchTarget(model, spec)


__all__ = ["MODELS", "Target", "TargetSpec", "TorchTarget", "make_target"]
