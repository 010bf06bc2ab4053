"""Showing images to a target: the objective, repeats, seeded noise, and re-measuring the best."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError
from ..generators import Generator
from ..targets import Target
from .history import best_rows, latents


def noise_key(seed: int, batch: int) -> int:
    """The target-noise seed of one batch: fixed by (run seed, batch), so a resumed run draws the same noise."""
    return (seed * 1_000_003 + batch + 1) % 2**63


def responses(target: Target, images: torch.Tensor) -> torch.Tensor:
    """The target's responses ``[B, U]`` as float64, checked: a target of the user's own may return a
    tensor, a numpy array or a list, ``[B]`` or ``[B, U]``; anything else is a one-line error."""
    return _checked(target, target.responses(images), images)


def evaluate(target: Target, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Responses and the values the optimizer is told, both ``[B, U]`` float64 and checked as :func:`responses`.

    The values are the responses unless the target's ``evaluate`` says otherwise (readout ``rate+drive``:
    the rate is recorded, and a silent unit's drive is told, see :mod:`mango.targets.drive`); a target
    without ``evaluate`` (a duck-typed one) gives its responses as values."""
    ev = getattr(target, "evaluate", None)
    if ev is None:
        r = responses(target, images)
        return r, r
    r, v = ev(images)
    return _checked(target, r, images), _checked(target, v, images)


def _checked(target: Target, out: object, images: torch.Tensor) -> torch.Tensor:
    try:
        r = torch.as_tensor(np.asarray(out) if not isinstance(out, torch.Tensor) else out).double()
    except (TypeError, ValueError, RuntimeError):
        raise MangoError(f"target {target.name!r} returned {type(out).__name__}, not numbers: responses must be "
                         f"a tensor or array of shape [{len(images)}] or [{len(images)}, units]") from None
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] != len(images) or r.shape[1] < 1:
        raise MangoError(f"target {target.name!r} returned responses of shape {list(r.shape)} for {len(images)} "
                         f"images; expected [{len(images)}] or [{len(images)}, units]")
    return r


def measure(target: Target, images: torch.Tensor, repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread over ``repeats`` presentations of each image (one batch); objective = mean over units."""
    mean, sd, _ = measure_values(target, images, repeats)
    return mean, sd


def measure_values(target: Target, images: torch.Tensor,
                   repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`measure` and the optimizer's value of each image: the mean over units and presentations of the
    target's values (:func:`evaluate`; the mean response itself unless the readout is e.g. ``rate+drive``)."""
    if repeats > 1:
        images = images.repeat_interleave(repeats, 0)
    r, v = evaluate(target, images)
    r, v = r.mean(1).view(-1, repeats), v.mean(1).view(-1, repeats)
    return r.mean(1), (r.std(1, correction=0) if repeats > 1 else torch.zeros(len(r), dtype=r.dtype)), v.mean(1)


def remeasure_top(df: pd.DataFrame, gen: Generator, tgt: Target, n: int, top: int = 5,
                  seed: int = 0) -> pd.DataFrame:
    """Measure the ``top`` best distinct candidates ``n`` more times each, so a lucky single
    measurement of a noisy neuron is not reported as the answer."""
    rows = best_rows(df, top, gen.space.dim)
    tgt.reseed(noise_key(seed, -1))
    mean, sd = measure(tgt, gen.decode(latents(rows, gen.space.dim)), n)
    return pd.DataFrame({"query": rows["query"].to_numpy(), "recorded": rows["response"].to_numpy(),
                         "mean": mean.numpy(), "sd": sd.numpy(), "n": n})
