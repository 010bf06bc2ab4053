"""Generators: latent candidates -> images."""
from .base import GENERATORS, Generator, TorchGenerator
from .space import LatentSpace
from . import sngan  # noqa: F401  (registers "mnist-sngan")
from . import vqvae  # noqa: F401  (registers "cifar-vqvae")
from . import sngan32  # noqa: F401  (registers "cifar-sngan", "cifar-sngan-lite")

__all__ = ["GENERATORS", "Generator", "LatentSpace", "TorchGenerator"]
