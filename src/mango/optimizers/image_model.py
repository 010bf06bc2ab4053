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

Where: a spatial mean fits a conv channel's rate but not a unit whose weights depend on where a feature is (a
class output's fully connected read-out; a living neuron's receptive field). A second ensemble adds to the mean a
weight per channel and cell of a ``grid`` x ``grid`` map (zero at first). Both are fitted; each told batch is
first predicted by both (a prequential score, as in model selection by held-out error), and the grid's models
steer the ascent once their summed error is below ``grid_gain`` (3/4) of the mean's: a clear win, not noise.
While the mean steers, the search is exactly the one without the grid (the grid's minibatches come from their
own stream). ``grid=0`` leaves it out (half the fitting). Trial-to-trial noise adds the same variance to both
errors, so under noise a real gain shows as a ratio nearer 1 (class outputs under Poisson counts: 0.66-0.91, against
about 1/2 noise-free); ``image-model-noisy`` (``grid_gain=1``, the default for a noisy target: :mod:`.auto`; the
models also average the trial-to-trial noise) lets the grid steer once its error is lower at all (docs/benchmarks.md,
"``image-model-noisy``: the noisy default").

Start: ``start=sepcma-2step`` takes the first ``init`` images from a ``sepcma-2step`` search (told as usual), then
fits the models on them (as many Adam steps as they would have had batch by batch) and goes on as above: sep-CMA-ES
is the best method measured at 250 queries noise-free, the models the best after. ``image-model-sepstart`` is that
with ``init=240``: ahead of ``sepcma-2step`` at 1,000 queries, not at 3,000, where a run whose models settle on a
poor image stays there (docs/benchmarks.md, "A sep-CMA-ES start for ``image-model``: five seeds, and 3,000 queries").

Alternate: with ``alternate=true`` the start's ``sepcma-2step`` search (a new one after a prior start) goes on after
the start, asking every other batch, told only its own images' values, while the models learn from every image and
take their parents from all of them. Left alone, that search finds a better region within a few hundred queries,
where neither a wider trust region nor a sep-CMA-ES restarted from the models' best image did (``lif2:25`` seed 0
at 3,000 queries: 0.828 against 0.609 without it; docs/benchmarks.md, "Alternating with the start's sep-CMA-ES").
``image-model-sepcma`` is ``image-model-sepstart`` with ``alternate=true``: the default for a noise-free target
(:mod:`.auto`; measured there).

Measured in issue 14's set-up (``benchmarks/efficiency.py --methods image-model --like-default image-model
--queries 1000``: mnist-snn units of draw 0, noise-free, told as the default runs; docs/benchmarks.md, "A trust
region, and goal 1 with ten seeds" and "Where a feature is"): on all four ``lif1`` units its median at 1,000
queries (10 seeds) is above the default's at 3,000 (``lif1:4``: 0.521 against 0.471; 0.423 at 1,000); with the
grid, ``class:9`` reaches 0.95 at 1,000 on 8 of 10 seeds (2 without it), and 10 of the 12 mnist units reach
Portfolio's 3,000-query median by 1,000 (the default: 7). It made ``lif2:22`` fire, which no other method nor the
white box had. It trails on the low-rate ``lif2:17`` and ``lif2:23``, and on the class outputs at 250 queries
(the grid steers only after about 300). It costs about 0.13 s of one CPU core per image (0.06 s with
``grid=0``), against well under a millisecond for sep-CMA-ES. About a fifth of it is softplus: this torch's CPU
``log1p`` is not vectorized (13 ms against 1.5 ms for ``log`` on a 128x8x28x28 tensor).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import MangoError
from ..generators.base import Generator, TorchGenerator
from ..generators.space import LatentSpace
from .base import Optimizer
from .options import register
from .routes import Routes
from .two_step import TwoStepSepCMA

#: how many of the best latents measured seed each batch's ascent
PARENTS = 8
#: default ``grid_gain``: the grid read-out's models steer once their held-out error is below this share of the mean's
GRID_GAIN = 0.75
#: the images ``image-model-sepstart`` and ``image-model-sepcma`` take from ``sepcma-2step`` before the models steer
SEPSTART = 240


def ascendable(generator: Generator | None) -> bool:
    """Whether image-model can ascend through ``generator``: a torch module over a continuous latent whose images
    carry a gradient back to the latent (one probe at the box's centre). A module that leaves torch (a renderer,
    ``.detach()``, numpy) would otherwise fail only at the first ascent, after ``init`` presentations."""
    if not isinstance(generator, TorchGenerator) or generator.space.bounds is None:
        return False
    low, high = generator.space.bounds
    z = torch.full((1, generator.space.dim), (low + high) / 2, requires_grad=True)
    with torch.inference_mode(False), torch.enable_grad():
        x = generator.module(z)
        if not isinstance(x, torch.Tensor) or not x.requires_grad:
            return False
        (grad,) = torch.autograd.grad(x.sum(), z, allow_unused=True)
    return grad is not None


class Net(nn.Module):
    """A neuron model with a CNN's prior: two conv layers, a spatial mean (a channel's rate), a read-out; with
    ``grid``, plus weights on where a feature is."""

    def __init__(self, in_channels: int, channels: int, pool: int, grid: int = 0) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, channels, 5, padding=2), nn.Softplus(),
                                      nn.MaxPool2d(pool, ceil_mode=True),
                                      nn.Conv2d(channels, channels, 5, padding=2), nn.Softplus())
        self.out = nn.Linear(channels, 1)
        self.grid = grid  # > 0: plus a weight per channel and cell of a grid x grid map, zero at first
        if grid:
            self.where = nn.Linear(channels * grid * grid, 1, bias=False)
            nn.init.zeros_(self.where.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        y = self.out(f.mean((2, 3)))
        if self.grid:
            y = y + self.where(nn.functional.adaptive_avg_pool2d(f, self.grid).flatten(1))
        return y.squeeze(1)


class ImageModel(Optimizer):
    """Model-based search through the generator (see the module note). Needs a torch generator over a
    continuous latent; the loop passes it."""

    needs_generator = True
    preferred_batch = 20

    def __init__(self, space: LatentSpace, seed: int = 0, generator: Generator | None = None, init: int = 40,
                 kappa: float = 1.0, sigma: float = 1.0, ascent: int = 30, steps: int = 20, ensemble: int = 2,
                 channels: int = 8, pool: int = 2, patience: int = 6, grid: int = 4, start: str = "prior",
                 alternate: bool = False, grid_gain: float = GRID_GAIN) -> None:
        super().__init__(space, seed)
        if space.bounds is None:
            raise MangoError(f"image-model searches a continuous latent; this one is categorical ({space.dim} codes "
                             f"of {space.size}): use codes")
        if not isinstance(generator, TorchGenerator):
            raise MangoError("image-model searches through the generator's torch module; got "
                             f"{type(generator).__name__}, not a mango.TorchGenerator")
        if not ascendable(generator):
            raise MangoError(f"image-model ascends through the generator, but generator {generator.name!r}'s images "
                             "carry no gradient to the latent (does its module leave torch or detach?); use sepcma")
        for name, value, low in (("init", init, 2), ("ascent", ascent, 0), ("steps", steps, 1),
                                 ("ensemble", ensemble, 2), ("channels", channels, 1), ("pool", pool, 1),
                                 ("patience", patience, 0), ("grid", grid, 0)):
            if value < low:
                raise MangoError(f"image-model needs {name} >= {low}, got {name}={value}")
        if start not in ("prior", "sepcma-2step"):
            raise MangoError(f"image-model's start is prior or sepcma-2step, got start={start!r}")
        # start=sepcma-2step: the batches asked before `init` images are a sep-CMA-ES's (see the module note)
        self.starter = TwoStepSepCMA(space, seed) if start == "sepcma-2step" else None
        self.asked = 0  # images asked so far
        if kappa < 0 or sigma < 0:
            raise MangoError(f"image-model needs kappa >= 0 and sigma >= 0, got kappa={kappa}, sigma={sigma}")
        if not 0 < grid_gain <= 1:
            raise MangoError(f"image-model needs 0 < grid_gain <= 1, got grid_gain={grid_gain}")
        self.grid_gain = grid_gain
        # alternate: after the start, a sepcma-2step search asks every other batch (the start's, going on)
        self.helper = (self.starter or TwoStepSepCMA(space, seed)) if alternate else None
        self.helper_turn = False
        self.routes: Routes[Optimizer | None] = Routes()  # whose search (None: the models') asked what awaits a value
        self.module, self.pool = generator.module, pool
        self.init, self.kappa, self.sigma, self.ascent, self.steps = init, kappa, sigma, ascent, steps
        # a trust region (TuRBO's rule): after `patience` batches without a new best the step halves
        self.patience, self.radius, self.fails, self.best = patience, 1.0, 0, -float("inf")
        self.low, self.high = space.bounds
        with torch.random.fork_rng(devices=[]):  # the models' first weights from this seed, not the global stream
            torch.manual_seed(self.seed)
            # read-out families: the spatial mean, and the mean plus a grid's weights; each an ensemble
            self.families = [[Net(generator.image_shape[0], channels, pool, g) for _ in range(ensemble)]
                             for g in (0, grid)[: 1 + bool(grid)]]
        self.opts = [[torch.optim.Adam(m.parameters(), lr=3e-3) for m in f] for f in self.families]
        # the grid models' minibatches from a stream of their own: while the mean steers, the search is the same
        self.grid_draws = torch.Generator().manual_seed(self.seed + 1)
        self.errors = [0.0] * len(self.families)  # each family's error on batches it had not been fitted on
        self.fitted: tuple[float, float] | None = None  # the values' mean and spread at the last fit
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
        search = None  # the models' batch, unless the start's or the alternating search's
        if self.starter is not None and self.asked < self.init:
            search = self.starter
        elif self.helper is not None and self.helper_turn:
            search, self.helper_turn = self.helper, False
        self.asked += k
        self.routes.add(search, k)
        if search is not None:
            return search.ask(k)
        if len(self.y) < self.init:
            return torch.randn(k, self.space.dim, generator=self.generator, dtype=torch.float64).clamp(self.low,
                                                                                                      self.high)
        self._fit()
        self._adapt()
        self.helper_turn = self.helper is not None
        models = self.families[1 if len(self.families) > 1 and self.errors[1] < self.grid_gain * self.errors[0] else 0]
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
                p = torch.stack([m(x) for m in models])
                # the gradient for u alone: the generator's and the models' weights collect none
                (u.grad,) = torch.autograd.grad(-(p.mean(0) + self.kappa * p.std(0)).sum(), u)
                opt.step()
        z = start + r * u
        return z.detach().double().clamp(self.low, self.high)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Measured values join the models' data; a sep-CMA-ES's (the start's, the alternating one's) also go to it."""
        for search, part in self.routes.split(len(values)):
            if search is not None:
                search.tell(candidates[part], values[part])
        self._learn(candidates, values)

    def _inject(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Another unit's images and this unit's responses to them are data like any other (the start's too, while
        it asks, and the alternating search's)."""
        for search in self._searches(self.starter if self.asked < self.init else None, self.helper):
            search.inject(candidates, values)
        self._learn(candidates, values)

    def _learn(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Measured values join the model's data; missing (NaN) and failed (-inf) ones are left out."""
        keep = torch.isfinite(values)
        if bool(keep.any()):
            with torch.inference_mode(False), torch.no_grad():  # plain tensors: the fit records gradients on them
                z = candidates[keep].double().clone()
                x = self._images(z)
                if self.fitted is not None and len(self.families) > 1:  # prequential: predicted before fitted
                    y = ((values[keep] - self.fitted[0]) / self.fitted[1]).float()
                    for i, family in enumerate(self.families):
                        self.errors[i] += float(((torch.stack([m(x) for m in family]).mean(0) - y) ** 2).sum())
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

    def _fit(self) -> None:
        assert self.x is not None
        # the models' first fit after a sep-CMA-ES start: as many steps as they would have had batch by batch
        rounds = 1 if self.starter is None or self.fitted is not None else max(1, len(self.y) // self.preferred_batch)
        self.fitted = float(self.y.mean()), float(self.y.std()) + 1e-9
        y = ((self.y - self.fitted[0]) / self.fitted[1]).float()
        with torch.inference_mode(False), torch.enable_grad():
            for m, opt in zip(sum(self.families, []), sum(self.opts, []), strict=True):
                draws = self.grid_draws if m.grid else self.generator
                for _ in range(self.steps * rounds):
                    i = torch.randint(len(self.x), (min(128, len(self.x)),), generator=draws)
                    loss = ((m(self.x[i]) - y[i]) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()

    def _close(self) -> None:
        for search in self._searches(self.starter, self.helper):
            search.close()

    @staticmethod
    def _searches(*searches: TwoStepSepCMA | None) -> list[TwoStepSepCMA]:
        """The sep-CMA-ES searches given, each once (the start's is also the alternating one)."""
        return list(dict.fromkeys(s for s in searches if s is not None))

    def hyperparameters(self) -> dict:
        out: dict[str, object] = {
            "init": self.init, "kappa": self.kappa, "sigma": self.sigma, "ascent": self.ascent, "steps": self.steps,
            "ensemble": len(self.families[0]), "channels": self.families[0][0].out.in_features, "pool": self.pool,
            "patience": self.patience, "grid": self.families[-1][0].grid}
        # start and alternate only when set: a run recorded before the options existed resumes with the same settings
        if self.starter is not None:
            out["start"] = "sepcma-2step"
        if self.grid_gain != GRID_GAIN:
            out["grid_gain"] = self.grid_gain
        return {**out, "alternate": True} if self.helper is not None else out

    def searched_space(self) -> str:
        return f"box [{self.low}, {self.high}]^{self.space.dim}, through the generator"


register("image-model", ImageModel, "a CNN ensemble fitted to the neuron's responses, ascended through the "
         "generator each batch (an inception loop as a search); continuous latents of a torch generator.")
register("image-model-sepstart", ImageModel, f"image-model whose first {SEPSTART} images come from sepcma-2step "
         "(then the models, fitted on them, take over): ahead of sepcma-2step at 1,000 queries noise-free, not at "
         "3,000.", start="sepcma-2step", init=SEPSTART)
register("image-model-sepcma", ImageModel, "image-model-sepstart whose sep-CMA-ES goes on after the start, "
         "asking every other batch (alternate=true); the default for a noise-free target.", start="sepcma-2step",
         init=SEPSTART, alternate=True)
register("image-model-noisy", ImageModel, "image-model whose grid read-out steers once its held-out error is lower "
         "at all (grid_gain=1; noise pushes the errors' ratio towards 1); the default for a noisy target.",
         grid_gain=1.0)
