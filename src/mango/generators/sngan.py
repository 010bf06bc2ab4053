"""A small spectrally-normalized GAN for 28x28 images (the embedded default).

The generator maps a latent ``z`` in the box [-4, 4]^dim to an image in
[0, 1]. It is trained with ``z`` uniform on that box (not Gaussian), so every
point of the 64-point grid the optimizers search is in-distribution and MEIs
stay image-like. Spectral normalization on the discriminator and the hinge
loss follow Miyato et al. (2018); the layout is DCGAN-sized to keep a query
cheap on a CPU (about 15 MFLOP per image).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..checkpoints import WEIGHTS_DIR, build, build_from_card, card_where, load_weights, read_card, untrained
from ..errors import MangoError
from .base import GENERATORS, TorchGenerator
from .space import LatentSpace


class SNGANGenerator(nn.Module):
    """Latent ``[B, dim]`` -> image ``[B, channels, 28, 28]`` in [0, 1]."""

    def __init__(self, dim: int = 64, channels: int = 1, width: int = 64) -> None:
        super().__init__()
        if dim < 1 or channels < 1 or width < 4:  # the last convs have width // 4 channels
            raise MangoError(f"SNGANGenerator needs dim >= 1, channels >= 1 and width >= 4, got dim={dim}, "
                             f"channels={channels}, width={width}")
        self.dim, self.width, self.channels = dim, width, channels
        self.fc = nn.Sequential(nn.Linear(dim, width * 7 * 7), nn.BatchNorm1d(width * 7 * 7), nn.ReLU())
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width // 2, 3, padding=1),
            nn.BatchNorm2d(width // 2),
            nn.ReLU(),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width // 2, width // 4, 3, padding=1),
            nn.BatchNorm2d(width // 4),
            nn.ReLU(),
            nn.Conv2d(width // 4, channels, 3, padding=1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.width, 7, 7)
        return torch.sigmoid(self.up(h))


class SNGANDiscriminator(nn.Module):
    """Image in [0, 1] -> unbounded realness score (hinge loss)."""

    def __init__(self, channels: int = 1, width: int = 64) -> None:
        super().__init__()
        act = nn.LeakyReLU(0.1)
        self.net = nn.Sequential(
            spectral_norm(nn.Conv2d(channels, width, 3, padding=1)), act,
            spectral_norm(nn.Conv2d(width, width, 4, stride=2, padding=1)), act,
            spectral_norm(nn.Conv2d(width, 2 * width, 3, padding=1)), act,
            spectral_norm(nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1)), act,
            nn.Flatten(),
            spectral_norm(nn.Linear(2 * width * 7 * 7, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1).squeeze(1)



EMBEDDED = WEIGHTS_DIR / "mnist_sngan.safetensors"


def latent_space_from_card(path: str | Path, card: dict) -> LatentSpace:
    """The card's ``latent_space`` ``{dim, size, bounds}``; a one-line MangoError naming the card if malformed."""
    if "latent_space" not in card:
        raise MangoError(f"{card_where(path)} does not describe a LatentSpace: it has no 'latent_space' entry")
    return build(LatentSpace, card["latent_space"], card_where(path))


@GENERATORS.register("mnist-sngan")
def mnist_sngan(weights: str | None = None) -> TorchGenerator:
    """Embedded SN-GAN for 28x28 digits: 64-d latent, 64-point grid on [-4, 4]."""
    path: str | Path
    if weights == "none":  # the embedded architecture, untrained
        card = read_card(EMBEDDED)
        module = untrained(SNGANGenerator, **card["architecture"])
        path = EMBEDDED
    else:
        path = weights or EMBEDDED
        card = read_card(path)
        module = load_weights(build_from_card(SNGANGenerator, path, card), path)
    space = latent_space_from_card(path, card)
    if space.dim != module.dim:
        raise MangoError(f"{card_where(path)} does not describe its generator: latent_space dim {space.dim} differs "
                         f"from the architecture's dim {module.dim}")
    return TorchGenerator(module, space, (module.channels, 28, 28), "mnist-sngan")
