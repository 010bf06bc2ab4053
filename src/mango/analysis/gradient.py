"""The ceiling: a white-box MEI per unit, by gradient ascent on the latent through generator and network.

MANGO's optimizers see only responses. When a unit stays silent, is that the optimizer, or can no image
of this generator make the unit fire? :func:`gradient_mei` answers with the gradients a black-box search
does not have: Adam on the latent, through the generator, the image conversion and the spiking network
(snnTorch's surrogate gradient of each ``Leaky`` layer: the fast sigmoid the networks were trained with).

* **Continuous latents** (SN-GAN, bounds [-4, 4]): the latent is ``center + half * tanh(w)``, always
  inside the box; the answer is that point (float32 values, as the generator computes them).
* **Categorical latents** (the VQ-VAE's 64 codes of 512): one logit per code and cell; the image is
  decoded from the *argmax* codes (straight-through: the forward pass shows exactly the discrete image,
  the gradient flows through the softmax over the codebook embeddings). The answer is the argmax codes.

The objective of one image, for its unit: the surrogate spike rate plus, while the membrane has not
reached the threshold by a margin, its soft peak over steps and positions (the drive of
:mod:`mango.targets.drive`, so a silent unit still has a slope). Every ``check`` steps each latent is
measured *exactly* (the real, non-surrogate simulation of :class:`~mango.targets.TorchTarget`, readout
``rate+drive``), and the best measured latent of each unit over all restarts and steps is kept: its
``response`` is the spike rate MANGO reports for that latent (``mango.make_target(...).responses``).

Restarts start from the best of ``pool`` random latents of the generator (by the drive value), one
restart each. A unit whose best response is 0 is *unreachable for this generator*, as far as a white-box
search can tell: no image the search found makes it fire (:attr:`GradientMEI.reachable`).

Supported: :class:`~mango.targets.SpikingSequential` networks (mnist-snn, cifar-snn, your own), a spiking
layer's units (one position or all) and class outputs (``class:N``: the last spiking layer's rate);
generators: a :class:`~mango.generators.TorchGenerator` with bounds and the VQ-VAE. Several units of one
layer (``spiking1:0,5,9``) are searched together by :func:`gradient_meis`, one forward and backward pass per
step for all of them.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import snntorch as snn
import torch
from torch import nn

from ..errors import MangoError
from ..generators import Generator, make_generator
from ..generators.base import TorchGenerator
from ..generators.vqvae import VQVAEGenerator
from ..imagespace import adapter
from ..targets import SpikingSequential, TargetSpec, TorchTarget, make_model


@dataclass
class GradientMEI:
    """The white-box MEI of one unit: ``latent`` (``[dim]``: box values, float64, or codes, int64), its exact
    ``response`` (spike rate), its drive ``value`` (:mod:`mango.targets.drive`), and each restart's best."""

    layer: str
    unit: int
    response: float
    value: float
    latent: torch.Tensor
    restarts: list[float] = field(default_factory=list)
    steps: int = 0

    @property
    def reachable(self) -> bool:
        """Some image of the generator makes the unit fire (the white-box search found one)."""
        return self.response > 0

    def to_dict(self) -> dict:
        return {"layer": self.layer, "unit": self.unit, "response": self.response, "value": self.value,
                "reachable": self.reachable, "restarts": self.restarts, "steps": self.steps,
                "latent": self.latent.tolist()}


def gradient_mei(generator: str | Generator, model: str | nn.Module, spec: str, steps: int = 150,
                 restarts: int = 8, seed: int = 0, **kw) -> GradientMEI:
    """The white-box MEI of one unit (``lif2:12``, ``spiking1:7@3,3``); see :func:`gradient_meis`."""
    parsed = TargetSpec.parse(spec)
    if parsed.multi:
        raise MangoError(f"gradient_mei takes one unit (LAYER:UNIT), got {spec!r}; use gradient_meis for several")
    return gradient_meis(generator, model, spec, steps=steps, restarts=restarts, seed=seed, **kw)[0]


def gradient_meis(generator: str | Generator, model: str | nn.Module, spec: str, steps: int = 150,
                  restarts: int = 8, seed: int = 0, lr: float | None = None, pool: int | None = None,
                  check: int = 10, margin: float = 0.5, temperature: float = 0.05, slope: float | None = None,
                  model_weights: str | None = None, generator_weights: str | None = None,
                  progress: Callable[[int, list[float]], None] | None = None) -> list[GradientMEI]:
    """White-box MEIs of the units of ``spec`` (one or several of one spiking layer), one per unit in order.

    ``restarts`` latents per unit are optimized for ``steps`` Adam steps (``lr``: 0.05 on the tanh
    parametrization of a box, 0.1 on code logits), starting from the best of ``pool`` random latents
    (default ``16 * restarts``); exact measurements every ``check`` steps and at the end. ``margin``: the
    drive term stops pulling once the soft peak is this far above the threshold (in threshold units);
    ``temperature``: of the soft peak (threshold units). ``progress(step, best responses)`` is called after
    each check. Deterministic for a given ``seed`` (on one machine and thread count)."""
    gen = make_generator(generator, generator_weights) if isinstance(generator, str) else generator
    net = make_model(model, model_weights) if isinstance(model, str) else model
    name = model if isinstance(model, str) else type(model).__name__
    if not isinstance(net, SpikingSequential):
        raise MangoError(f"gradient_mei needs a network simulated by MANGO (a SpikingSequential: mnist-snn, "
                         f"cifar-snn), got {name!r}")
    parsed = TargetSpec.parse(spec)
    if parsed.layer is None and net.order and isinstance(getattr(net, net.order[-1]), snn.Leaky):
        spec = net.order[-1] + str(parsed)[len("class"):]  # class:N is the rate of the last spiking layer's unit N
    exact = TorchTarget(net, spec, name=name, readout="rate+drive")
    layer = exact.spec.layer
    if layer is None or not isinstance(getattr(net, layer), snn.Leaky):
        raise MangoError(f"gradient_mei needs units of a spiking layer, got {spec!r}")
    if not (isinstance(steps, int) and steps >= 0 and isinstance(restarts, int) and restarts >= 1
            and isinstance(check, int) and check >= 1):
        raise MangoError(f"gradient_mei needs steps >= 0, restarts >= 1 and check >= 1, got steps={steps!r}, "
                         f"restarts={restarts!r}, check={check!r}")
    pool = 16 * restarts if pool is None else pool
    if not (isinstance(pool, int) and pool >= restarts and temperature > 0):
        raise MangoError(f"gradient_mei needs pool >= restarts (the starts are the best of the pool) and "
                         f"temperature > 0, got pool={pool!r}, restarts={restarts!r}, temperature={temperature!r}")
    latent = _Latent.of(gen)
    convert = adapter(gen.image_space, exact.input_space, f"generator {gen.name!r}", f"target {name!r}")
    units = exact.units
    n_units = len(units)
    own = torch.arange(n_units).repeat_interleave(restarts)  # image i serves unit own[i]
    rows = torch.arange(n_units * restarts)
    rng = torch.Generator().manual_seed(seed)

    def measure(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact rate and drive value ``[N, U]`` of discrete latents (the real simulation, no surrogate)."""
        x = gen.decode(z)
        return exact.evaluate(convert(x) if convert is not None else x)

    # starts: the best `restarts` of a random pool for each unit, by the drive value
    candidates = latent.random(pool, rng)
    _, v = torch.cat([torch.stack(measure(c)) for c in candidates.split(64)], 1).unbind(0)
    starts = v.argsort(dim=0, descending=True, stable=True)[:restarts].T.reshape(-1)  # [U * R], unit-major
    params = latent.params(candidates[starts])
    opt = torch.optim.Adam([params], lr=lr or latent.lr)
    best_v = torch.full((n_units * restarts,), -math.inf, dtype=torch.float64)
    best_r = torch.zeros(n_units * restarts, dtype=torch.float64)
    best_z = candidates[starts].clone()
    theta, leaky = exact._theta, getattr(net, layer)
    scale = abs(theta) or 1.0
    frozen = [p for p in list(net.parameters()) + list(latent.module_parameters(gen)) if p.requires_grad]
    lifs = [m for m in net.modules() if isinstance(m, snn.Leaky)]
    surrogates = [m.spike_grad for m in lifs]
    try:
        for p in frozen:
            p.requires_grad_(False)
        if slope is not None:
            for m in lifs:
                m.spike_grad = snn.surrogate.fast_sigmoid(slope=slope)
        for step in range(steps + 1):
            if step % check == 0 or step == steps:
                with torch.no_grad():
                    z = latent.discrete(params)
                    r, v = (t[rows, own] for t in measure(z))
                better = v > best_v
                best_v, best_r = torch.where(better, v, best_v), torch.where(better, r, best_r)
                best_z[better] = z[better]
                if progress is not None:
                    progress(step, best_r.view(n_units, restarts).amax(1).tolist())
            if step == steps:
                break
            x = latent.images(params, gen)
            x = convert(x) if convert is not None else x
            mem = net.simulate(x, layer, units, membrane=True)[:, rows, own]  # [T, N, ...] each image's unit
            if exact.spec.position is not None:
                mem = mem[:, :, exact.spec.position[0], exact.spec.position[1]]
            spikes = leaky.fire(mem)  # exact spikes forward, the layer's surrogate gradient backward
            rate = spikes.flatten(2).mean(2).mean(0) if mem.ndim > 2 else spikes.mean(0)
            flat = mem.transpose(0, 1).reshape(len(rows), -1) / scale
            peak = temperature * torch.logsumexp(flat / temperature, 1)
            objective = rate + peak.clamp(max=theta / scale + margin)
            opt.zero_grad()
            (-objective.sum()).backward()
            opt.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
        for m, g in zip(lifs, surrogates, strict=True):
            m.spike_grad = g
    out = []
    for i, u in enumerate(units):
        mine = slice(i * restarts, (i + 1) * restarts)
        j = i * restarts + int(best_v[mine].argmax())
        out.append(GradientMEI(layer, u, float(best_r[j]), float(best_v[j]), latent.answer(best_z[j]),
                               best_r[mine].tolist(), steps))
    return out


class _Latent:
    """How a generator's latent is optimized: random draws, parameters, differentiable images, the answer."""

    lr = 0.05

    @staticmethod
    def of(gen: Generator) -> _Latent:
        if isinstance(gen, VQVAEGenerator):
            return _Codes(gen)
        if isinstance(gen, TorchGenerator) and gen.space.bounds is not None and isinstance(gen.module, nn.Module):
            return _Box(gen)
        raise MangoError(f"gradient_mei supports generators with a box latent (a TorchGenerator with bounds, e.g. "
                         f"mnist-sngan) and the VQ-VAE (cifar-vqvae), got {gen.name!r}")

    def random(self, n: int, rng: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def params(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def images(self, params: torch.Tensor, gen: Generator) -> torch.Tensor:
        raise NotImplementedError

    def discrete(self, params: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def answer(self, z: torch.Tensor) -> torch.Tensor:
        return z.clone()

    def module_parameters(self, gen: Generator) -> list[torch.Tensor]:
        raise NotImplementedError


class _Box(_Latent):
    """``z = center + half * tanh(w)``: inside the box at every step; the answer is z in float32 values."""

    def __init__(self, gen: TorchGenerator) -> None:
        lo, hi = gen.space.bounds or (0.0, 1.0)
        self.dim, self.center, self.half = gen.space.dim, (lo + hi) / 2, (hi - lo) / 2

    def random(self, n: int, rng: torch.Generator) -> torch.Tensor:
        u = torch.rand(n, self.dim, generator=rng) * 2 - 1
        return (self.center + self.half * u).double()

    def params(self, z: torch.Tensor) -> torch.Tensor:
        u = ((z.float() - self.center) / self.half).clamp(-1 + 1e-6, 1 - 1e-6)
        return torch.atanh(u).requires_grad_(True)

    def _values(self, params: torch.Tensor) -> torch.Tensor:
        return self.center + self.half * torch.tanh(params)

    def images(self, params: torch.Tensor, gen: Generator) -> torch.Tensor:
        module = gen.module  # type: ignore[attr-defined]  # a TorchGenerator (checked in of())
        return module(gen.space.values(self._values(params)))

    def discrete(self, params: torch.Tensor) -> torch.Tensor:
        return self._values(params.detach()).double()  # float32 values, exactly what decode computes with

    def module_parameters(self, gen: Generator) -> list[torch.Tensor]:
        return list(gen.module.parameters())  # type: ignore[attr-defined]


class _Codes(_Latent):
    """One logit per code and cell; images from the argmax codes, gradients through the softmax (straight-through)."""

    lr = 0.1

    def __init__(self, gen: VQVAEGenerator) -> None:
        self.dim, self.size = gen.space.dim, gen.space.size
        self.vq = gen.model

    def random(self, n: int, rng: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.size, (n, self.dim), generator=rng)

    def params(self, z: torch.Tensor) -> torch.Tensor:
        return (2.0 * nn.functional.one_hot(z.long(), self.size).float()).requires_grad_(True)

    def images(self, params: torch.Tensor, gen: Generator) -> torch.Tensor:
        p = params.softmax(-1)
        hard = nn.functional.one_hot(p.argmax(-1), self.size).to(p.dtype)
        weights = hard + p - p.detach()  # forward: one-hot (the discrete codes); backward: the softmax
        codebook = self.vq._vq_vae._embedding.weight
        side = math.isqrt(self.dim)
        q = (weights @ codebook).view(len(params), side, side, -1).permute(0, 3, 1, 2).contiguous()
        return self.vq._decoder(q)

    def discrete(self, params: torch.Tensor) -> torch.Tensor:
        return params.detach().argmax(-1)

    def module_parameters(self, gen: Generator) -> list[torch.Tensor]:
        return list(self.vq.parameters())
