"""Generators: latent candidates -> images."""
from . import (
    sngan,  # noqa: F401  (registers "mnist-sngan")
    sngan32,  # noqa: F401  (registers "cifar-sngan", "cifar-sngan-lite")
    user_module,  # noqa: F401  (your own: "pkg.mod:factory", "file.py:factory", "gen.pt")
    vqvae,  # noqa: F401  (registers "cifar-vqvae")
)
from .base import GENERATORS, Generator, TorchGenerator
from .space import LatentSpace


def make_generator(name: str, weights: str | None = None) -> Generator:
    """A registered (or user) generator by name, with its default weights unless ``weights`` is given."""
    factory = GENERATORS.get(name)
    return factory(weights) if weights else factory()


__all__ = ["GENERATORS", "Generator", "LatentSpace", "TorchGenerator", "make_generator"]
