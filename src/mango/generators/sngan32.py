"""SN-GAN for 32x32 RGB images: the ResNet architecture of Miyato et al. (2018) for CIFAR-10.

Generator: Linear(latent -> 4x4xwidth), three up-sampling residual blocks (BN-ReLU-up-conv3x3-BN-ReLU-conv3x3,
1x1-conv shortcut), BN, ReLU, conv3x3 -> 3 channels, tanh mapped to [0, 1] (plain pixels, the default image
space). Discriminator: spectrally-normalized residual blocks (down, down, plain, plain), ReLU, global sum
pooling, SN linear; hinge loss (``mango.training``). The latent is 128-d on a 64-point grid over [-4, 4]; like
the 28x28 ``sngan`` model it is trained with ``z`` *uniform on the box*, so every grid point the optimizers
search is in-distribution.

Two sizes. Generator cost per image (GFLOP = 2 x multiply-adds, counted with ``FlopCounterMode``) and
throughput measured at batch 64 on one CPU thread (PyTorch 2.14, shared 2-core machine, median of 7); a
training step is one generator update with ``n_dis`` = 5 discriminator updates, batch 64, one thread:

================  =====  =======  ===========  ====================  ================
arch              width  D width  GFLOP/image  images/s (1 thread)   CPU training step
================  =====  =======  ===========  ====================  ================
``sngan32``       256    128      3.36         ~29                   ~27 s
``sngan32-lite``  64     64       0.21         ~285                  ~4.8 s
================  =====  =======  ===========  ====================  ================

The full model is the paper's (train it on a GPU: the paper's 50k steps are weeks on one CPU thread); the
lite one keeps the layout at a quarter of the width for users without a GPU: 16x cheaper per query (~10x
faster). No pretrained weights ship: ``cifar-sngan`` / ``cifar-sngan-lite`` load a ``.safetensors`` written
by ``mango train gen --arch sngan32[-lite]`` (its JSON card gives architecture, latent space, image space).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..checkpoints import build, build_from_card, card_where, load_weights, read_card, untrained
from ..errors import MangoError
from ..imagespace import ImageSpace
from .base import GENERATORS, TorchGenerator
from .sngan import latent_space_from_card
from .space import LatentSpace

#: the declared latent space: 128 coordinates, each on a 64-point grid over the box [-4, 4]
BOUNDS: tuple[float, float] = (-4.0, 4.0)
SPACE = LatentSpace(128, 64, BOUNDS)
#: architecture keyword arguments of the two trainer archs (generator, discriminator)
SIZES = {"sngan32": ({"width": 256}, {"width": 128}), "sngan32-lite": ({"width": 64}, {"width": 64})}

_Layer = TypeVar("_Layer", nn.Conv2d, nn.Linear)


def _init(conv: _Layer, gain: float) -> _Layer:
    nn.init.xavier_uniform_(conv.weight, gain)
    if conv.bias is not None:  # every layer here has one
        nn.init.zeros_(conv.bias)
    return conv


class GBlock(nn.Module):
    """Up-sampling residual block: BN-ReLU-up-conv3x3-BN-ReLU-conv3x3 plus an up-sampled 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = _init(nn.Conv2d(cin, cout, 3, padding=1), math.sqrt(2))
        self.conv2 = _init(nn.Conv2d(cout, cout, 3, padding=1), math.sqrt(2))
        self.shortcut = _init(nn.Conv2d(cin, cout, 1), 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.interpolate(F.relu(self.bn1(x)), scale_factor=2))
        h = self.conv2(F.relu(self.bn2(h)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2))


class SNGAN32Generator(nn.Module):
    """Latent ``[B, dim]`` -> image ``[B, 3, 32, 32]`` in [0, 1] (4x4 -> 8 -> 16 -> 32)."""

    def __init__(self, dim: int = 128, width: int = 256) -> None:
        super().__init__()
        if dim < 1 or width < 1:
            raise MangoError(f"SNGAN32Generator needs dim >= 1 and width >= 1, got dim={dim}, width={width}")
        self.dim, self.width = dim, width
        self.fc = _init(nn.Linear(dim, 4 * 4 * width), 1.0)
        self.blocks = nn.Sequential(*(GBlock(width, width) for _ in range(3)))
        self.bn = nn.BatchNorm2d(width)
        self.out = _init(nn.Conv2d(width, 3, 3, padding=1), 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.fc(z).view(-1, self.width, 4, 4))
        return (torch.tanh(self.out(F.relu(self.bn(h)))) + 1) / 2


class DBlock(nn.Module):
    """Discriminator residual block: [ReLU]-conv3x3-ReLU-conv3x3-[avgpool], 1x1-conv shortcut; all SN."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False) -> None:
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = spectral_norm(_init(nn.Conv2d(cin, cout, 3, padding=1), math.sqrt(2)))
        self.conv2 = spectral_norm(_init(nn.Conv2d(cout, cout, 3, padding=1), math.sqrt(2)))
        learnable = cin != cout or down
        self.shortcut = spectral_norm(_init(nn.Conv2d(cin, cout, 1), 1.0)) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        h = F.avg_pool2d(h, 2) if self.down else h
        if self.shortcut is None:
            return h + x
        if self.first:  # the "optimized" first block pools before its shortcut conv
            return h + self.shortcut(F.avg_pool2d(x, 2))
        s = self.shortcut(x)
        return h + (F.avg_pool2d(s, 2) if self.down else s)


class SNGAN32Discriminator(nn.Module):
    """Image in [0, 1] ``[B, 3, 32, 32]`` -> unbounded realness score (hinge loss)."""

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.blocks = nn.Sequential(DBlock(3, width, down=True, first=True), DBlock(width, width, down=True),
                                    DBlock(width, width, down=False), DBlock(width, width, down=False))
        self.fc = spectral_norm(_init(nn.Linear(width, 1), 1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.blocks(x * 2 - 1)).sum((2, 3))
        return self.fc(h).squeeze(1)


def generator_gflop(width: int, dim: int = 128) -> float:
    """Generator cost in GFLOP per image (2 x multiply-adds of the linear layer and the convolutions)."""
    macs = dim * 16 * width
    for side in (8, 16, 32):  # each block: two 3x3 convs and a 1x1 shortcut at its output size
        macs += side * side * width * width * (9 + 9 + 1)
    macs += 32 * 32 * width * 3 * 9
    return 2 * macs / 1e9


def load_trained(name: str, arch: str, weights: str | Path | None) -> TorchGenerator:
    """A generator written by ``mango train gen --arch ARCH``: architecture, latent space, image space from its card.

    ``weights="none"``: the architecture of ``arch`` untrained (seeded 0), for listing and tests, not for MEIs.
    """
    if weights is None:
        raise MangoError(f"no pretrained weights ship for {name}; train them with `mango train gen --arch {arch} "
                         f"--dataset cifar10 --out DIR` and pass DIR/generator.safetensors as the generator weights")
    if weights == "none":
        module = untrained(SNGAN32Generator, dim=SPACE.dim, **SIZES[arch][0])
        return TorchGenerator(module, SPACE, (3, 32, 32), name, ImageSpace((3, 32, 32)))
    card = read_card(weights)
    if card.get("arch") != arch:
        raise MangoError(f"weights {weights} were trained as arch {card.get('arch')!r}, not {arch!r} (the {name} "
                         f"generator); use the generator that matches the card")
    module = load_weights(build_from_card(SNGAN32Generator, weights, card, required=False), weights)
    space = latent_space_from_card(weights, card) if "latent_space" in card else SPACE
    if space.dim != module.dim:
        raise MangoError(f"{card_where(weights)} does not describe its generator: latent_space dim {space.dim} "
                         f"differs from the architecture's dim {module.dim}")
    images = build(ImageSpace, card.get("image_space", {"shape": [3, 32, 32]}), card_where(weights))
    if images.shape != (3, 32, 32):
        raise MangoError(f"{card_where(weights)} does not describe a {name} generator: image_space shape "
                         f"{list(images.shape)}, but it makes 3x32x32 images")
    return TorchGenerator(module, space, (3, 32, 32), name, images)


@GENERATORS.register("cifar-sngan")
def cifar_sngan(weights: str | Path | None = None) -> TorchGenerator:
    """SN-GAN (Miyato 2018 ResNet, width 256) for 32x32 RGB: 128-d latent, 64-point grid on [-4, 4]; train it first."""
    return load_trained("cifar-sngan", "sngan32", weights)


@GENERATORS.register("cifar-sngan-lite")
def cifar_sngan_lite(weights: str | Path | None = None) -> TorchGenerator:
    """Lighter SN-GAN for 32x32 RGB (width 64, 16x fewer FLOPs): 128-d latent on [-4, 4]; train it first."""
    return load_trained("cifar-sngan-lite", "sngan32-lite", weights)
