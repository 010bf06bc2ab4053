"""MEI diversity (the paper's Figure 10): how far apart are the MEIs that methods and seeds found for one neuron?

Distances are taken between every pair of runs on the same neuron with the same generator (latents of two
generators live in different spaces). Latent distance: Euclidean between the latent *values* (grid indices
mapped to their grid points, so grid and box optimizers are comparable), divided by ``sqrt(dim)`` (an RMS per
coordinate, comparable across latent sizes); for categorical spaces (VQ-VAE codes) the fraction of codes
that differ. Image distance: RMS difference of the images as pixels in [0, 1]. Identical MEIs are at 0.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError
from ..generators import Generator
from .plots import Analysis, colours, figures, save
from .study import Generators, Run, as_runs, group, ordered_layers


def pairwise_distances(x: torch.Tensor | np.ndarray, metric: str = "rms") -> np.ndarray:
    """``[N, D]`` -> ``[N, N]``: ``rms`` = Euclidean / sqrt(D), ``hamming`` = fraction of differing coordinates."""
    x = torch.as_tensor(x).flatten(1)
    if metric == "hamming":
        return (x[:, None, :] != x[None, :, :]).double().mean(2).numpy()
    x = x.double()
    d = (x[:, None, :] - x[None, :, :]).pow(2).mean(2).sqrt()
    return d.numpy()


def latent_distances(gen: Generator, latents: list[torch.Tensor]) -> np.ndarray:
    """Pairwise distances between latents of ``gen`` (each ``[dim]``: grid indices or box values, mixed runs
    allowed; see the module docstring)."""
    if gen.space.bounds is None:
        return pairwise_distances(torch.stack([z.long() for z in latents]), "hamming")
    return pairwise_distances(torch.cat([gen.space.values(z[None]) for z in latents]))  # one by one: dtypes differ


def _setting(run: Run) -> str:
    return f"{run.neuron} / {run.config.generator}"


def diversity_table(runs: Iterable[Run], generators: Generators) -> tuple[pd.DataFrame, dict]:
    """One row per pair of runs on the same neuron and generator; and per setting its distance matrices."""
    rows, matrices = [], {}
    for setting, rs in group(runs, _setting).items():
        if len(rs) < 2:
            continue
        gen = generators.get(rs[0].config)
        lat = latent_distances(gen, [r.best_latent for r in rs])
        img = pairwise_distances(torch.stack([generators.pixels(r) for r in rs]))
        matrices[setting] = (rs, lat, img)
        for i in range(len(rs)):
            for j in range(i + 1, len(rs)):
                a, b = rs[i], rs[j]
                rows.append({"neuron": a.neuron, "generator": a.config.generator, "layer": a.layer,
                             "run_a": str(a.run_dir), "run_b": str(b.run_dir),
                             "method_a": a.method, "method_b": b.method,
                             "seed_a": a.seed, "seed_b": b.seed, "same_method": a.method == b.method,
                             "latent_distance": float(lat[i, j]), "image_distance": float(img[i, j])})
    cols = ["neuron", "generator", "layer", "run_a", "run_b", "method_a", "method_b", "seed_a", "seed_b",
            "same_method", "latent_distance", "image_distance"]
    return pd.DataFrame(rows, columns=cols), matrices


def plot_boxes(table: pd.DataFrame, layers: list[str], path: Path) -> Path:
    """Box plots of latent and image distances per layer, one colour per generator, pairs as dots."""
    plt = figures()
    gens = list(dict.fromkeys(table["generator"]))
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(layers) * len(gens)) + 4, 3.8))
    width = 0.8 / len(gens)
    rng = np.random.default_rng(0)
    for ax, col, name, unit in zip(axes, ("latent_distance", "image_distance"), ("latent", "image"),
                                   ("RMS per coordinate", "RMS, pixels in [0, 1]"), strict=True):
        for g, (gname, colour) in enumerate(zip(gens, colours(len(gens)), strict=True)):
            data = [table.loc[(table["layer"] == layer) & (table["generator"] == gname), col].to_numpy()
                    for layer in layers]
            pos = np.arange(len(layers)) + (g - (len(gens) - 1) / 2) * width
            keep = [k for k, d in enumerate(data) if len(d)]
            if not keep:
                continue
            bp = ax.boxplot([data[k] for k in keep], positions=pos[keep], widths=0.85 * width, patch_artist=True,
                            showfliers=False, manage_ticks=False)
            for box in bp["boxes"]:
                box.set(facecolor=colour, alpha=0.35)
            for k in keep:
                ax.scatter(pos[k] + rng.uniform(-0.2, 0.2, len(data[k])) * width, data[k], s=8, color=colour,
                           alpha=0.7, label=gname if k == keep[0] else None)
        ax.set_xticks(np.arange(len(layers)), layers)
        ax.set_xlabel("layer")
        ax.set_ylabel(f"{name} distance ({unit})")
        ax.set_title(f"{name} distance between MEIs of the same neuron (all pairs)", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, title="generator", title_fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_heatmaps(matrices: dict, path: Path, limit: int = 12) -> Path:
    """The latent distance matrix of each neuron (at most ``limit``), runs labelled method + seed."""
    plt = figures()
    items = list(matrices.items())[:limit]
    cols = min(3, len(items))
    rows = math.ceil(len(items) / cols)
    side = max(3.2, 0.28 * max(len(rs) for rs, _, _ in matrices.values()) + 1.5)
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols + 1.5, side * rows + 0.6), squeeze=False,
                             layout="constrained")
    vmax = max(float(lat.max()) for _, lat, _ in matrices.values()) or 1.0
    for ax, (setting, (rs, lat, _)) in zip(axes.flat, items, strict=False):  # the grid may have spare cells
        im = ax.imshow(lat, cmap="viridis", vmin=0, vmax=vmax)
        labels = [r.label() for r in rs]
        ax.set_xticks(range(len(rs)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(rs)), labels, fontsize=6)
        ax.set_title(setting, fontsize=8)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="latent distance")
    fig.suptitle("latent distance between MEIs (runs: method + seed)", fontsize=10)
    return save(fig, path)


def diversity(runs: str | Path | Iterable[Run], out: str | Path | None = None, layers: list[str] | None = None,
              generators: Mapping[str, Generator] | None = None) -> Analysis:
    """Pairwise distances between the MEIs found for each neuron (see the module docstring); with ``out``:
    ``diversity.csv``, ``diversity.png`` (box plots per layer) and ``diversity_heatmaps.png``."""
    runs = as_runs(runs)
    gens = Generators(generators or {})
    table, matrices = diversity_table(runs, gens)
    if table.empty:
        raise MangoError("no MEIs to compare: every neuron (with its generator) has a single run; diversity "
                         "needs two or more runs (methods or seeds) per neuron")
    result = Analysis({"diversity": table})
    if out is not None:
        out = Path(out)
        paired = set(table["layer"])
        result.figures.append(plot_boxes(table, [x for x in ordered_layers(runs, layers) if x in paired],
                                         out / "diversity.png"))
        result.figures.append(plot_heatmaps(matrices, out / "diversity_heatmaps.png"))
        result.write_tables(out, "diversity")
    return result
