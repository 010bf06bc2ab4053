"""Generators: latent candidates -> images."""
from .base import GENERATORS, Generator, TorchGenerator
from .space import LatentSpace
from . import sngan  # noqa: F401  (registers "mnist-sngan")

__all__ = ["GENERATORS", "Generator", "LatentSpace", "TorchGenerator"]
