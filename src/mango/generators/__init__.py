"""Generators: latent candidates -> images."""
from .base import GENERATORS, Generator, TorchGenerator
from .space import LatentSpace
from . import sngan  # noqa: F401  (registers "mnist-sngan")
from . import vqvae  # noqa: F401  (registers "cifar-vqvae")
from . import sngan32  # noqa: F401  (registers "cifar-sngan", "cifar-sngan-lite")
from . import user_module  # noqa: F401  (your own: "pkg.mod:factory", "file.py:factory", "gen.pt")

__all__ = ["GENERATORS", "Generator", "LatentSpace", "TorchGenerator"]
