"""Targets: networks (or neurons) whose unit responses we maximize."""
from __future__ import annotations

from torch import nn

from ..errors import MangoError, first_line
from . import (
    spiking_cnn,  # noqa: F401  (registers "mnist-snn", "cifar-snn")
    spiking_resnet,  # noqa: F401  (registers "cifar-spiking-resnet18")
    torchvision_models,  # noqa: F401  (registers "alexnet", "vgg16", "vgg19", "densenet121", "resnet18")
    user_module,  # noqa: F401  (your own network: "pkg.module:factory", "file.py:factory", "net.pt")
)
from .base import MODELS, AdaptedTarget, Target
from .noise import Noise
from .readout import Readout
from .sequential import SpikingSequential, positive_steps
from .spec import TargetSpec
from .torch_target import TorchTarget


def make_model(name: str, weights: str | None = None) -> nn.Module:
    """A registered (or user) network by name, with its default weights unless ``weights`` is given
    (``"none"``: the architecture untrained, initialized with seed 0)."""
    factory = MODELS.get(name)
    return factory(weights) if weights else factory()


def model_architecture(name: str, weights: str | None = None) -> tuple[nn.Module, str | None]:
    """The network ``name`` for listing its layers: with ``weights`` (or its default weights) when they load,
    else -- default weights that are unavailable here (a MANGO release checkpoint not downloaded, torchvision
    weights offline, none published) -- the untrained architecture (layer names and shapes do not depend on
    weights). Returns the model and, when it fell back, a one-line note saying why."""
    factory = MODELS.get(name)  # an unknown name fails here, not in the fallback
    if weights:
        return factory(weights), None
    try:
        return factory(), None
    except MangoError as exc:
        try:
            model = factory("none")
        except MangoError:
            raise exc from None
        reason = first_line(exc).rstrip(".")
        return model, f"default weights of {name} unavailable ({reason}); showing the untrained architecture " \
                      "(layer names and shapes do not depend on weights)"


def make_target(model: str | nn.Module, spec: str | TargetSpec, weights: str | None = None,
                readout: str | None = None, noise: str | None = None, steps: int | None = None) -> TorchTarget:
    """A target from a registered model name (or a module) and a spec like ``lif2:5``, or several units
    of one layer (``lif2:*``, ``lif2:3-7``, ``lif2:1,5,9``, ``class:*``; responses ``[B, U]``, see
    :mod:`mango.targets.spec`).

    ``readout`` (rate, count:A-B, latency, membrane, mean, relu, logit, prob), ``noise``
    (input:SD, membrane:SD, poisson) and ``steps`` (time steps of a spiking network) are optional.
    """
    name = model if isinstance(model, str) else type(model).__name__
    if isinstance(model, str):
        model = make_model(model, weights)
    if steps is not None:
        if not hasattr(model, "num_steps"):
            raise MangoError(f"steps={steps} given, but {name!r} is not a spiking network with time steps")
        model.num_steps = positive_steps(steps, "steps")  # type: ignore[assignment]  # a plain int on the module
    return TorchTarget(model, spec, name=name, readout=readout, noise=noise)


__all__ = ["MODELS", "AdaptedTarget", "Noise", "Readout", "SpikingSequential", "Target", "TargetSpec",
           "TorchTarget", "make_model", "make_target", "model_architecture"]
