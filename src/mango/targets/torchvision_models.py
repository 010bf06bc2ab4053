"""torchvision ImageNet classifiers as targets: alexnet, vgg16, vgg19, densenet121, resnet18.

Each is the torchvision module itself (layer names as in torchvision, e.g.
``features.8:17`` in AlexNet, ``layer2.0.conv1:5`` in ResNet18) with
``input_space`` declared: 224x224 ImageNet-normalized, resizing any input, so
a 64x64 or 32x32 generator plugs in through the adapter.

Weights: torchvision's ImageNet weights by default (downloaded once into the
torch hub cache; a cached copy works offline), ``"none"`` for a random
initialization seeded 0 (reproducible, offline), or a local ``.pth`` state_dict /
``.safetensors`` file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoints import load_state
from ..errors import MangoError
from ..imagespace import IMAGENET_MEAN, IMAGENET_STD, ImageSpace
from .base import MODELS

ARCHS = {"alexnet": "AlexNet", "vgg16": "VGG-16", "vgg19": "VGG-19", "densenet121": "DenseNet-121",
         "resnet18": "ResNet-18"}
IMAGENET_SPACE = ImageSpace((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, resize=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def _pretrained(arch: str) -> nn.Module:
    """torchvision's default ImageNet weights, from the hub cache or downloaded into it."""
    import torchvision  # here, not at the top: importing it costs a second on every ``mango`` call
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    try:
        return torchvision.models.get_model(arch, weights=weights, progress=False)
    except OSError as exc:  # URLError, HTTPError, socket errors: offline or blocked
        raise MangoError(f"cannot download torchvision's ImageNet weights for {arch} ({_one_line(exc)}); offline? "
                         f"pass weights 'none' (random init, seeded 0) or a local .pth/.safetensors file, or put "
                         f"{weights.url} at {cached}") from None
    except RuntimeError as exc:  # hash mismatch, truncated cache file
        raise MangoError(f"cannot read torchvision's ImageNet weights for {arch} ({_one_line(exc)}); delete "
                         f"{cached} to download them again, or pass weights 'none' or a local file") from None


def torchvision_model(arch: str, weights: str | None = None) -> nn.Module:
    """The torchvision classifier ``arch`` with ``input_shape``/``input_space`` declared, in eval mode."""
    if arch not in ARCHS:
        raise MangoError(f"unknown torchvision model {arch!r}; allowed: {', '.join(ARCHS)}")
    import torchvision
    if weights is None:
        model = _pretrained(arch)
    else:
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's random state
            torch.manual_seed(0)
            model = torchvision.models.get_model(arch, weights=None)
        if weights != "none":
            load_state(model, weights)
    # plain attributes on the module (nn.Module types attribute assignment as tensors or submodules)
    model.input_space, model.input_shape = IMAGENET_SPACE, IMAGENET_SPACE.shape  # type: ignore[assignment]
    return model.eval()


def _register(arch: str, title: str) -> None:
    def factory(weights: str | None = None) -> nn.Module:
        return torchvision_model(arch, weights)

    factory.__doc__ = (f"torchvision {title}, ImageNet weights (224x224 normalized, resizes any input; "
                       f"weights 'none' = random init)")
    factory.__name__ = arch
    # default weights come from the internet (torch hub cache); "none" works offline (read with getattr)
    factory.downloads = True  # type: ignore[attr-defined]
    MODELS.register(arch)(factory)


for _arch, _title in ARCHS.items():
    _register(_arch, _title)
