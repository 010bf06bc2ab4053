"""What the one generator training loop (:mod:`mango.training.gan`) needs to know about each architecture.

A recipe builds the models and optimizers, performs one training step on real batches, draws a preview
for the sample grids, and exports the generator with its card. Two families:

* :class:`HingeGAN` -- the SN-GANs (``sngan28``: the embedded 28x28 model; ``sngan32`` /
  ``sngan32-lite``: the Miyato et al. 2018 CIFAR ResNet). Hinge loss, Adam 2e-4 with betas (0, 0.9),
  ``n_dis`` discriminator updates per generator update, latents *uniform on the box* [-4, 4]^dim that the
  optimizers search (a Gaussian prior would leave the box's corners out of distribution).
* :class:`VQVAERecipe` -- the VQ-VAE (``vqvae``): reconstruction MSE + commitment loss, EMA codebook,
  Adam 1e-3, trained in the normalized CIFAR-10 space that the ``cifar-vqvae`` generator declares.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..checkpoints import fits_default
from ..errors import MangoError, first_line, unknown
from ..generators.sngan import SNGANDiscriminator, SNGANGenerator
from ..generators.sngan32 import BOUNDS, SIZES, SPACE, SNGAN32Discriminator, SNGAN32Generator
from ..generators.vqvae import VQVAE
from ..imagespace import CIFAR10_MEAN, CIFAR10_STD, ImageSpace


def gflop_per_image(fn: Callable[..., torch.Tensor], *example: torch.Tensor) -> float:
    """GFLOP (2 x multiply-adds of convolutions and matrix products) of ``fn`` on one example."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*example)
    return round(counter.get_total_flops() / len(example[0]) / 1e9, 4)


class Recipe(ABC):
    """One generator architecture: models, optimizers, one training step, preview, export."""

    arch: str
    image_space: ImageSpace  # the space the model's images live in; training data are converted into it
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    batches_per_step: int = 1
    losses: tuple[str, ...]
    allowed: tuple[str, ...] = ()

    def __init__(self, options: dict | None) -> None:
        options = dict(options or {})
        for key in options:
            if key not in self.allowed:
                raise unknown(f"option for arch {self.arch!r}", key, self.allowed)
        self.options = options

    #: smallest value of an integer option (layers of ``width // 4`` channels need ``width >= 4``)
    minimum: dict[str, int] = {}

    def option(self, key: str, default: int | float) -> int | float:
        """Architecture option ``key`` (``--opt KEY=VALUE``): a positive value of the default's type."""
        value = self.options.get(key, default)
        low = self.minimum.get(key, 1)
        if not fits_default(value, default) or not value > 0 or (isinstance(default, int) and value < low):
            expected = (f"an integer >= {low}" if isinstance(default, int) and low > 1 else "a positive integer"
                        if isinstance(default, int) else "a positive finite number")
            raise MangoError(f"option {key} for arch {self.arch!r} must be {expected}, got {value!r} "
                             f"(e.g. --opt {key}={default})")
        return value

    def build_checked(self) -> dict[str, nn.Module]:
        """:meth:`build`, a constructor's refusal of the options (e.g. a width too small) as a one-line error."""
        try:
            return self.build()
        except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:  # MangoError is a ValueError
            given = ", ".join(f"{k}={v}" for k, v in self.options.items()) or "defaults"
            raise MangoError(f"arch {self.arch!r} cannot be built with options {given}: {first_line(exc)}") from None

    @abstractmethod
    def build(self) -> dict[str, nn.Module]: ...

    def optimizers(self, models: dict[str, nn.Module], lr: float) -> dict[str, torch.optim.Optimizer]:
        """One Adam per model, over its trainable parameters."""
        return {k: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr, betas=self.betas)
                for k, m in models.items()}

    @abstractmethod
    def step(self, models: dict, opts: dict, reals: list[torch.Tensor], rng: torch.Generator) -> dict[str, float]:
        """One update from ``batches_per_step`` real batches (in ``image_space``); returns the losses."""

    @abstractmethod
    def preview(self, models: dict, real: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] for a sample grid (8 per row)."""

    @abstractmethod
    def export(self, models: dict) -> tuple[nn.Module, dict]:
        """The generator module (eval mode) and its card fields."""


class HingeGAN(Recipe):
    """SN-GAN trained with the hinge loss; ``reals`` holds one real batch per discriminator update."""

    lr, betas = 2e-4, (0.0, 0.9)
    losses = ("loss_d", "loss_g", "d_gap")
    allowed = ("dim", "width", "d_width", "n_dis")

    def __init__(self, arch: str, g_cls: type, d_cls: type, g_kwargs: dict, d_kwargs: dict,
                 shape: tuple[int, int, int], n_dis: int, options: dict | None) -> None:
        self.arch = arch
        self.minimum = {"width": 4} if g_cls is SNGANGenerator else {}  # its last convs have width // 4 channels
        super().__init__(options)
        self.g_cls, self.d_cls = g_cls, d_cls
        self.g_kwargs = g_kwargs | {"dim": int(self.option("dim", g_kwargs["dim"])),
                                    "width": int(self.option("width", g_kwargs["width"]))}
        self.d_kwargs = d_kwargs | {"width": int(self.option("d_width", d_kwargs["width"]))}
        self.batches_per_step = int(self.option("n_dis", n_dis))
        self.image_space = ImageSpace(shape)
        self.dim, self.bounds = self.g_kwargs["dim"], BOUNDS  # the box of SPACE
        self.fixed = self.latents(64, torch.Generator().manual_seed(1))

    def latents(self, n: int, rng: torch.Generator) -> torch.Tensor:
        """``n`` latents uniform on the box (drawn on the CPU, so every device sees the same ones)."""
        lo, hi = self.bounds
        return torch.rand(n, self.dim, generator=rng) * (hi - lo) + lo

    def build(self) -> dict[str, nn.Module]:
        return {"g": self.g_cls(**self.g_kwargs), "d": self.d_cls(**self.d_kwargs)}

    def step(self, models: dict, opts: dict, reals: list[torch.Tensor], rng: torch.Generator) -> dict[str, float]:
        g, d = models["g"], models["d"]
        device = reals[0].device
        for real in reals:
            with torch.no_grad():
                fake = g(self.latents(len(real), rng).to(device))
            d_real, d_fake = d(real), d(fake)
            loss_d = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            opts["d"].zero_grad(set_to_none=True)
            loss_d.backward()
            opts["d"].step()
        d.requires_grad_(False)  # the generator step needs no discriminator weight gradients
        loss_g = -d(g(self.latents(len(reals[0]), rng).to(device))).mean()
        opts["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        opts["g"].step()
        d.requires_grad_(True)
        gap = (d_real.mean() - d_fake.mean()).item()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "d_gap": gap}

    def preview(self, models: dict, real: torch.Tensor) -> torch.Tensor:
        g = models["g"].eval()
        with torch.no_grad():
            images = g(self.fixed.to(real.device))
        g.train()
        return images

    def export(self, models: dict) -> tuple[nn.Module, dict]:
        g = models["g"].eval()
        lo, hi = self.bounds
        shape = "x".join(map(str, self.image_space.shape))
        return g, {
            "model": type(g).__name__, "architecture": self.g_kwargs,
            "latent_space": {"dim": self.dim, "size": SPACE.size, "bounds": [lo, hi]},
            "latent_training_distribution": f"uniform on [{lo}, {hi}]^{self.dim}",
            "image_space": self.image_space.to_dict(), "normalization": "none: plain pixels in [0, 1]",
            "output": f"{shape} in [0, 1]",
            "discriminator": {"model": self.d_cls.__name__, "architecture": self.d_kwargs},
            "method": {"loss": "hinge", "n_dis": self.batches_per_step, "betas": list(self.betas)},
            "gflop_per_image": gflop_per_image(g, torch.zeros(1, self.dim, device=next(g.parameters()).device)),
        }


class VQVAERecipe(Recipe):
    """The VQ-VAE of ``mango.generators.vqvae`` (Oord et al. 2017, EMA codebook), in the normalized CIFAR-10 space."""

    arch, lr = "vqvae", 1e-3
    losses = ("loss", "recon", "perplexity")
    allowed = ("num_hiddens", "num_residual_layers", "num_residual_hiddens", "num_embeddings", "embedding_dim",
               "commitment_cost", "decay", "data_variance")
    image_space = ImageSpace((3, 32, 32), CIFAR10_MEAN, CIFAR10_STD)
    minimum = {"num_hiddens": 2}  # the encoder's first conv has num_hiddens // 2 channels

    def __init__(self, options: dict | None) -> None:
        super().__init__(options)
        defaults = {k: p.default for k, p in inspect.signature(VQVAE).parameters.items()} | {"data_variance": 1.0}
        for key in self.options:  # checked now, before any data is read
            self.option(key, defaults[key])

    def build(self) -> dict[str, nn.Module]:
        return {"vqvae": VQVAE(**{k: v for k, v in self.options.items() if k != "data_variance"})}

    def step(self, models: dict, opts: dict, reals: list[torch.Tensor], rng: torch.Generator) -> dict[str, float]:
        model, real = models["vqvae"], reals[0]
        loss, out = model.loss(real, float(self.option("data_variance", 1.0)))
        opts["vqvae"].zero_grad(set_to_none=True)
        loss.backward()
        opts["vqvae"].step()
        return {"loss": loss.item(), "recon": F.mse_loss(out.recon, real).item(), "perplexity": out.perplexity.item()}

    def preview(self, models: dict, real: torch.Tensor) -> torch.Tensor:
        """Rows of 8 originals, each followed by its reconstructions."""
        model = models["vqvae"].eval()
        with torch.no_grad():
            recon = model(real).recon
        model.train()
        rows = [t for i in range(0, len(real), 8) for t in (real[i:i + 8], recon[i:i + 8])]
        return self.image_space.to_unit(torch.cat(rows)).clamp(0, 1)

    def export(self, models: dict) -> tuple[nn.Module, dict]:
        model = models["vqvae"].eval()
        codes = torch.zeros(1, 64, dtype=torch.long, device=next(model.parameters()).device)
        return model, {
            "model": "VQVAE", "architecture": model.config,
            "latent_space": {"dim": 64, "size": model.num_embeddings, "bounds": None},
            "image_space": self.image_space.to_dict(),
            "normalization": "CIFAR-10 mean/std (the space the cifar-vqvae generator declares)",
            "output": "3x32x32, CIFAR-10-normalized",
            "method": {"loss": "reconstruction MSE / data_variance + commitment (EMA codebook)",
                       "data_variance": float(self.option("data_variance", 1.0)), "betas": list(self.betas)},
            "gflop_per_image": gflop_per_image(model.decode_codes, codes),
        }


def make_recipe(arch: str, options: dict | None = None) -> Recipe:
    """The recipe of generator arch ``arch`` (``ARCHS``), with architecture ``options`` (e.g. ``width``)."""
    if arch == "sngan28":
        return HingeGAN(arch, SNGANGenerator, SNGANDiscriminator, {"dim": 64, "channels": 1, "width": 64},
                        {"channels": 1, "width": 32}, (1, 28, 28), 1, options)
    if arch in SIZES:
        g_kwargs, d_kwargs = SIZES[arch]
        return HingeGAN(arch, SNGAN32Generator, SNGAN32Discriminator, {"dim": SPACE.dim} | g_kwargs, d_kwargs,
                        (3, 32, 32), 5, options)
    if arch == "vqvae":
        return VQVAERecipe(options)
    raise unknown("generator arch", arch, ARCHS)


ARCHS: tuple[str, ...] = ("sngan28", "sngan32", "sngan32-lite", "vqvae")

__all__ = ["ARCHS", "HingeGAN", "Recipe", "VQVAERecipe", "make_recipe"]
