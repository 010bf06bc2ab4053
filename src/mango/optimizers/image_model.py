"""``image-model``: a CNN model of the neuron in image space, searched through the (white-box) generator.

Why: in-vivo MEI work fits a CNN to a neuron's responses and ascends the model's gradient through the image
(the "inception loop": Walker et al. 2019, Bashivan et al. 2019). The generator is always MANGO's own torch
module, even when the neuron is a living one, so the loop can be closed every batch, as a search. Every
(sep-)CMA-ES variant, TuRBO, lq-CMA-ES and the GA reach about the same score at 1,000 queries on mnist-snn's
hidden units (docs/benchmarks.md, "Query efficiency"); this search is not one of them: its model has a
convolutional network's prior over *images*, where TuRBO's GP sees the 64 latent numbers only.

How: an ensemble of small CNNs (5x5 conv, softplus, ``pool`` x ``pool`` max-pooling, 5x5 conv, softplus, a
spatial mean -- a channel's rate --, a linear read-out: LeNet's shape), each refitted for ``steps`` Adam steps on
minibatches of every (image, told value) pair so far (warm-started; values standardized), scores images; a batch
is proposed by ``ascent`` Adam steps on the latent, through the generator, maximising the ensemble's mean +
``kappa`` x spread, from copies of the 8 best latents measured, perturbed by N(0, ``sigma``^2). The first
``init`` latents are the generator's prior N(0, 1).

Measured (``benchmarks/image_surrogate.py``; the 12 mnist-snn hidden units of both efficiency draws that fire,
seeds 0-2, noise-free, told as the default runs; docs/benchmarks.md, "A model of the unit in image space"): mean
of the medians 0.377 / 0.448 at 250 / 1,000 queries against the default's 0.346 / 0.415 (0.458 at 3,000). On
the six ``lif1`` units and ``lif2:25`` and ``lif2:8`` it reaches at 1,000 what the default reaches at 3,000
or more (``lif1:4``: 0.504 against 0.458); on the low-rate ``lif2:17`` and ``lif2:23`` it trails (0.119 and
0.113 against 0.134 and 0.125 at 1,000), and on ``lif2:27`` at 250 (0.391 against 0.562). The pooling layer
is worth 0.026 at 1,000 (``pool=1``: 0.422). It costs about 0.07 s of one CPU core per image, against well
under a millisecond for sep-CMA-ES. Measured at 3,000 queries on one seed of four units only (it keeps its
lead on ``lif1:4`` and ``lif1:7``) and not under noise: not the default.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import MangoError
from ..generators.base import Generator, TorchGenerator
from ..generators.space import LatentSpace
from .base import Optimizer
from .options import register

#: how many of the best latents measured seed each batch's ascent
PARENTS = 8


class Net(nn.Module):
    """A neuron model with a CNN's prior: two conv layers, a spatial mean (a channel's rate), a read-out."""

    def __init__(self, in_channels: int, channels: int, pool: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, channels, 5, padding=2), nn.Softplus(),
                                      nn.MaxPool2d(pool, ceil_mode=True),
                                      nn.Conv2d(channels, channels, 5, padding=2), nn.Softplus())
        self.out = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x).mean((2, 3))).squeeze(1)


class ImageModel(Optimizer):
    """Model-based search through the generator (see the module note). Needs a torch generator over a
    continuous latent; the loop passes it."""

    needs_generator = True
    preferred_batch = 20

    def __init__(self, space: LatentSpace, seed: int = 0, generator: Generator | None = None, init: int = 40,
                 kappa: float = 1.0, sigma: float = 1.0, ascent: int = 30, steps: int = 20, ensemble: int = 2,
                 channels: int = 8, pool: int = 2) -> None:
        super().__init__(space, seed)
        if space.bounds is None:
            raise MangoError(f"image-model searches a continuous latent; this one is categorical ({space.dim} codes "
                             f"of {space.size}): use codes")
        if not isinstance(generator, TorchGenerator):
            raise MangoError("image-model searches through the generator's torch module; got "
                             f"{type(generator).__name__}, not a mango.TorchGenerator")
        for name, value, low in (("init", init, 2), ("ascent", ascent, 0), ("steps", steps, 1),
                                 ("ensemble", ensemble, 2), ("channels", channels, 1), ("pool", pool, 1)):
            if value < low:
                raise MangoError(f"image-model needs {name} >= {low}, got {name}={value}")
        if kappa < 0 or sigma < 0:
            raise MangoError(f"image-model needs kappa >= 0 and sigma >= 0, got kappa={kappa}, sigma={sigma}")
        self.module, self.pool = generator.module, pool
        self.init, self.kappa, self.sigma, self.ascent, self.steps = init, kappa, sigma, ascent, steps
        self.low, self.high = space.bounds
        with torch.random.fork_rng(devices=[]):  # the models' first weights from this seed, not the global stream
            torch.manual_seed(self.seed)
            self.models = [Net(generator.image_shape[0], channels, pool) for _ in range(ensemble)]
        self.opts = [torch.optim.Adam(m.parameters(), lr=3e-3) for m in self.models]
        self.z = torch.empty(0, space.dim, dtype=torch.float64)
        self.y = torch.empty(0, dtype=torch.float64)
        self.x: torch.Tensor | None = None  # the images measured, standardized by the first ones' pixels
        self.scale: tuple[float, float] | None = None

    def _images(self, z: torch.Tensor) -> torch.Tensor:
        x = self.module(z.float().clamp(self.low, self.high))
        if self.scale is None:
            self.scale = float(x.mean()), float(x.std()) + 1e-6
        return (x - self.scale[0]) / self.scale[1]

    def _ask(self, k: int) -> torch.Tensor:
        if len(self.y) < self.init:
            return torch.randn(k, self.space.dim, generator=self.generator, dtype=torch.float64).clamp(self.low,
                                                                                                      self.high)
        self._fit()
        top = self.z[torch.argsort(self.y, descending=True, stable=True)[:PARENTS]]
        start = top[torch.randint(len(top), (k,), generator=self.generator)]
        start = start + self.sigma * torch.randn(k, self.space.dim, generator=self.generator, dtype=torch.float64)
        z = start.float().clamp(self.low, self.high).requires_grad_()
        opt = torch.optim.Adam([z], lr=0.05)
        with torch.inference_mode(False), torch.enable_grad():
            for _ in range(self.ascent):
                p = torch.stack([m(self._images(z)) for m in self.models])
                # the gradient for z alone: the generator's and the models' weights collect none
                (z.grad,) = torch.autograd.grad(-(p.mean(0) + self.kappa * p.std(0)).sum(), z)
                opt.step()
        return z.detach().double().clamp(self.low, self.high)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Measured values join the model's data; missing (NaN) and failed (-inf) ones are left out."""
        keep = torch.isfinite(values)
        if bool(keep.any()):
            with torch.inference_mode(False), torch.no_grad():  # plain tensors: the fit records gradients on them
                z = candidates[keep].double().clone()
                x = self._images(z)
            self.x = x if self.x is None else torch.cat([self.x, x])
            self.z, self.y = torch.cat([self.z, z]), torch.cat([self.y, values[keep].clone()])

    _inject = _tell  # another unit's images and this unit's responses to them are data like any other

    def _fit(self) -> None:
        assert self.x is not None
        y = ((self.y - self.y.mean()) / (self.y.std() + 1e-9)).float()
        with torch.inference_mode(False), torch.enable_grad():
            for m, opt in zip(self.models, self.opts, strict=True):
                for _ in range(self.steps):
                    i = torch.randint(len(self.x), (min(128, len(self.x)),), generator=self.generator)
                    loss = ((m(self.x[i]) - y[i]) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()

    def hyperparameters(self) -> dict:
        return {"init": self.init, "kappa": self.kappa, "sigma": self.sigma, "ascent": self.ascent,
                "steps": self.steps, "ensemble": len(self.models), "channels": self.models[0].out.in_features,
                "pool": self.pool}

    def searched_space(self) -> str:
        return f"box [{self.low}, {self.high}]^{self.space.dim}, through the generator"


register("image-model", ImageModel, "a CNN ensemble fitted to the neuron's responses, ascended through the "
         "generator each batch (an inception loop as a search); continuous latents of a torch generator.")
