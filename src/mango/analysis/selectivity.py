"""Selectivity of MEIs (the paper's Figure 9): which class does the classifier see in a neuron's MEI?

Each MEI is shown ``repeats`` times to the classifier (the run's model, read at its class outputs) with
injected spike variability (the target noise options: ``poisson`` rate-coded input, ``membrane:SD``,
``input:SD``; seeded, so an analysis repeats exactly). Per presentation the class probabilities are the
softmax of the class *logits*: logits for classic networks, spike *counts* (rate x T) for MANGO's snnTorch
networks, the quantity their training loss treats as logits (:func:`mango.training.targets.class_logits`).
Why not normalized spike counts: a silent output layer has no distribution (0 / 0), and counts / sum
ignores how many spikes back a vote; the softmax is the probability model the network was trained to
output. The probabilities are averaged over the presentations, and the selectivity is their entropy
normalized by ``log(n_classes)``: 0 = one class for certain, 1 = uniform over the classes.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..errors import MangoError
from ..generators import Generator
from ..imagespace import adapter
from ..targets import Noise, TorchTarget, make_target
from ..targets.sequential import SpikingSequential
from .plots import Analysis, figures, save
from .study import Generators, Run, as_runs, ordered_layers

#: presentations per forward call (memory stays small for large networks)
CHUNK = 100


def normalized_entropy(p: np.ndarray | torch.Tensor) -> np.ndarray:
    """Entropy of class probabilities ``[..., K]`` divided by ``log K``: 0 for one class, 1 for uniform."""
    p = np.asarray(p, dtype=float)
    k = p.shape[-1]
    if k < 2:
        return np.zeros(p.shape[:-1])
    p = p / p.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(-1)
    return np.clip(h / math.log(k), 0.0, 1.0)


def class_logits(model: nn.Module, x: torch.Tensor, noise: Noise | None, rng: torch.Generator) -> torch.Tensor:
    """Class logits ``[B, K]`` of one noisy presentation of each image (spike counts for snnTorch networks)."""
    if isinstance(model, SpikingSequential):
        return model.simulate(x, noise=noise, rng=rng).sum(0).float()
    if noise is not None and noise.input_sd > 0:
        x = x + noise.input_sd * torch.randn(x.shape, generator=rng, dtype=x.dtype)
    return model(x).float()


@torch.inference_mode()
def class_probabilities(model: nn.Module, images: torch.Tensor, repeats: int = 100, noise: str | None = "poisson",
                        seed: int = 0) -> torch.Tensor:
    """Mean class probabilities ``[B, K]`` over ``repeats`` noisy presentations of each image ``[B, C, H, W]``
    (in the model's input space). The noise is seeded with ``seed`` for every image (common random numbers:
    two MEIs are compared under the same noise draws); without noise one presentation is made."""
    if not isinstance(repeats, int) or repeats < 1:
        raise MangoError(f"repeats must be a positive integer, got {repeats!r}")
    parsed = Noise.parse(noise)
    if parsed is not None and parsed.per_step and not isinstance(model, SpikingSequential):
        raise MangoError(f"noise {parsed} needs a network simulated step by step by MANGO (mnist-snn, cifar-snn); "
                         f"{type(model).__name__} supports input:SD only")
    repeats = repeats if parsed is not None else 1
    rng = torch.Generator()
    out = []
    for image in images:
        rng.manual_seed(seed)
        total: torch.Tensor | None = None
        for start in range(0, repeats, CHUNK):
            x = image[None].expand(min(CHUNK, repeats - start), *image.shape).contiguous()
            p = class_logits(model, x, parsed, rng).double().softmax(1).sum(0)
            total = p if total is None else total + p
        assert total is not None  # repeats >= 1
        out.append(total / repeats)
    return torch.stack(out)


class Classifiers:
    """The classifier of each run (its model and weights at the class outputs), built once per analysis."""

    def __init__(self, given: Mapping[str, nn.Module] | None = None, steps: int | None = None) -> None:
        self.given, self.steps = dict(given or {}), steps
        self._built: dict[tuple[str, str | None, int | None], TorchTarget] = {}

    def get(self, run: Run) -> TorchTarget:
        c = run.config
        steps = self.steps or c.steps  # the classifier may read out over more steps than the search did
        key = (c.model, c.model_weights, steps)
        if key not in self._built:
            model = self.given.get(c.model, c.model)  # a module object: as given (its own weights)
            self._built[key] = make_target(model, "class:0", c.model_weights if isinstance(model, str) else None,
                                           steps=steps)
        return self._built[key]


def selectivity_table(runs: Iterable[Run], repeats: int = 100, noise: str | None = "poisson", seed: int = 0,
                      generators: Generators | None = None, classifiers: Classifiers | None = None) -> pd.DataFrame:
    """One row per run: its MEI's preferred class, max probability, normalized entropy and every probability."""
    generators, classifiers = generators or Generators(), classifiers or Classifiers()
    rows = []
    for run in runs:
        gen, clf = generators.get(run.config), classifiers.get(run)
        image = generators.decode(run)[None]
        convert = adapter(gen.image_space, clf.input_space, f"generator {gen.name!r}", f"classifier {clf.name!r}")
        p = class_probabilities(clf.model, convert(image) if convert else image, repeats, noise, seed)[0].numpy()
        rows.append({"run": str(run.run_dir), "neuron": run.neuron, "layer": run.layer, "target": run.config.target,
                     "generator": run.config.generator, "method": run.method, "seed": run.seed,
                     "best_response": run.best_response, "preferred_class": int(p.argmax()), "p_max": float(p.max()),
                     "entropy": float(normalized_entropy(p)), **{f"p{k}": float(v) for k, v in enumerate(p)}})
    return pd.DataFrame(rows)


def plot_selectivity(table: pd.DataFrame, path: Path, layers: list[str], title: str) -> Path:
    """Per-layer histograms of the normalized entropy (left: selective, right: unselective)."""
    plt = figures()
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers) + 0.6, 3.2), squeeze=False, sharey=True)
    bins = np.linspace(0, 1, 21)
    for ax, layer in zip(axes[0], layers, strict=True):
        h = table.loc[table["layer"] == layer, "entropy"].to_numpy()
        ax.hist(h, bins=bins, color="tab:blue", alpha=0.8, edgecolor="white", label=f"{len(h)} MEIs")
        ax.axvline(np.median(h), color="tab:red", ls="--", lw=1.2, label=f"median {np.median(h):.2f}")
        ax.set_title(f"layer {layer}", fontsize=9)
        ax.set_xlabel("normalized class entropy")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("number of MEIs")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def selectivity(runs: str | Path | Iterable[Run], repeats: int = 100, noise: str | None = "poisson", seed: int = 0,
                out: str | Path | None = None, layers: list[str] | None = None,
                generators: Mapping[str, Generator] | None = None,
                models: Mapping[str, nn.Module] | None = None, steps: int | None = None) -> Analysis:
    """Selectivity of every run's MEI (see the module docstring); with ``out``: ``selectivity.csv`` and
    ``selectivity.png`` (per-layer histograms of the normalized entropy; ``layers`` sets their order).
    ``generators`` / ``models`` map names recorded in configs to objects the registries do not know; ``steps``
    sets the classifier's time steps (default: the run's), e.g. 100 for a sharper spike-count readout."""
    runs = as_runs(runs)
    table = selectivity_table(runs, repeats, noise, seed, Generators(generators or {}), Classifiers(models, steps))
    result = Analysis({"selectivity": table})
    if out is not None:
        title = f"selectivity of MEIs: {repeats if Noise.parse(noise) else 1} presentations, noise {noise or 'none'}"
        title += f", T={steps}" if steps else ""
        result.figures.append(plot_selectivity(table, Path(out) / "selectivity.png", ordered_layers(runs, layers),
                                               title))
        result.write_tables(Path(out), "selectivity")
    return result
