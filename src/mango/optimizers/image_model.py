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
``kappa`` x spread, from copies of the 8 best latents measured, perturbed by N(0, (r ``sigma``)^2), its Adam
steps scaled by r too. r is a trust region's radius (TuRBO's rule, Eriksson et al. 2019): 1 at first, halved
(down to 1/32) after ``patience`` batches in a row without a new best, so a search whose model no longer finds
better images far from the best ones refines near them. The first ``init`` latents are the generator's prior
N(0, 1).

Measured in issue 14's set-up (``benchmarks/efficiency.py --methods image-model --like-default image-model
--queries 1000``: every mnist-snn unit of draw 0, seeds 0-9, noise-free, told as the default runs;
docs/benchmarks.md, "A trust region, and goal 1 with ten seeds"): on all four ``lif1`` units its median at
1,000 queries is above the default's at 3,000 (``lif1:4``: 0.521 against 0.471; 0.423 at 1,000), and it
reaches Portfolio's 3,000-query median at 1,000 on 6 of the 8 hidden units against the default's 3. It made
``lif2:22`` fire, which no other method nor the white box had. It loses on the class outputs (``class:9``: 0.850
against 0.950 for every other method; the spatial-mean read-out cannot weigh where a feature is) and trails on
the low-rate ``lif2:17`` and ``lif2:23``. The trust region (``patience`` 6) is worth 0.04 on ``lif1:4``
(0.546 against 0.504, 3 seeds); the pooling layer 0.026 on the mean of 12 units. It costs about 0.06 s of one
CPU core per image, against well under a millisecond for sep-CMA-ES. Not measured at 3,000 with the trust
region, nor under noise: not the default.
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
                 channels: int = 8, pool: int = 2, patience: int = 6) -> None:
        super().__init__(space, seed)
        if space.bounds is None:
            raise MangoError(f"image-model searches a continuous latent; this one is categorical ({space.dim} codes "
                             f"of {space.size}): use codes")
        if not isinstance(generator, TorchGenerator):
            raise MangoError("image-model searches through the generator's torch module; got "
                             f"{type(generator).__name__}, not a mango.TorchGenerator")
        for name, value, low in (("init", init, 2), ("ascent", ascent, 0), ("steps", steps, 1),
                                 ("ensemble", ensemble, 2), ("channels", channels, 1), ("pool", pool, 1),
                                 ("patience", patience, 0)):
            if value < low:
                raise MangoError(f"image-model needs {name} >= {low}, got {name}={value}")
        if kappa < 0 or sigma < 0:
            raise MangoError(f"image-model needs kappa >= 0 and sigma >= 0, got kappa={kappa}, sigma={sigma}")
        self.module, self.pool = generator.module, pool
        self.init, self.kappa, self.sigma, self.ascent, self.steps = init, kappa, sigma, ascent, steps
        # a trust region (TuRBO's rule): after `patience` batches without a new best the step halves
        self.patience, self.radius, self.fails, self.best = patience, 1.0, 0, -float("inf")
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
        self._adapt()
        top = self.z[torch.argsort(self.y, descending=True, stable=True)[:PARENTS]]
        start = top[torch.randint(len(top), (k,), generator=self.generator)]
        step = self.radius * self.sigma
        start = start + step * torch.randn(k, self.space.dim, generator=self.generator, dtype=torch.float64)
        start, r = start.float().clamp(self.low, self.high), float(self.radius)
        u = torch.zeros_like(start, requires_grad=True)  # z = start + r * u: Adam's step in z scales with r
        opt = torch.optim.Adam([u], lr=0.05)
        with torch.inference_mode(False), torch.enable_grad():
            for _ in range(self.ascent):
                x = self._images(start + r * u)
                p = torch.stack([m(x) for m in self.models])
                # the gradient for u alone: the generator's and the models' weights collect none
                (u.grad,) = torch.autograd.grad(-(p.mean(0) + self.kappa * p.std(0)).sum(), u)
                opt.step()
        z = start + r * u
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

    def _adapt(self) -> None:
        best = float(self.y.max())
        if best > self.best:
            self.best, self.fails = best, 0
        elif self.patience:
            self.fails += 1
            if self.fails >= self.patience:
                self.radius, self.fails = max(self.radius / 2, 1 / 32), 0

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
                "pool": self.pool, "patience": self.patience}

    def searched_space(self) -> str:
        return f"box [{self.low}, {self.high}]^{self.space.dim}, through the generator"


register("image-model", ImageModel, "a CNN ensemble fitted to the neuron's responses, ascended through the "
         "generator each batch (an inception loop as a search); continuous latents of a torch generator.")
