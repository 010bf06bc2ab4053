"""How far each black-box search got towards its neuron's white-box ceiling (``mango analyze ceiling``).

For every neuron of a study (run folders, or a scan), the white-box MEI of :func:`~mango.gradient_mei` is
computed once, and each run's best response is given as a fraction of it. A neuron whose white-box search
makes it fire no more than the runs did is at its ceiling; a neuron the white-box search cannot make fire
either is reported as not reachable with this generator (``reachable`` false), which tells a silent
neuron from a search that failed.

Spike rates only: a run that read something else (``membrane``, ``latency``, ``prob``) has no white-box
counterpart and is refused in one line. The ceiling is noise-free; a noisy run's recorded best may be
lucky, so its ratio can exceed 1.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch

from ..errors import MangoError
from ..targets import make_model
from .gradient import GradientMEI, gradient_mei
from .plots import Analysis, figures, save, show_image
from .study import Generators, Run, as_runs, group

RATES = (None, "rate", "rate+drive", "logit")  # logit: a spiking network's class output is its rate


def _setting(run: Run) -> str:
    c = run.config
    return "|".join(str(x) for x in (c.model, c.model_weights, c.steps, c.generator, c.generator_weights, c.target))


def white_box(run: Run, gens: Generators, **kw) -> GradientMEI:
    """The white-box MEI of ``run``'s neuron, for its generator, network weights and time steps."""
    c = run.config
    if c.readout not in RATES:
        raise MangoError(f"ceiling compares spike rates; run {run.run_dir} reads {c.readout!r} (allowed: rate, "
                         "rate+drive, or a spiking network's class output)")
    net = make_model(c.model, c.model_weights)
    if c.steps is not None and hasattr(net, "num_steps"):
        net.num_steps = c.steps  # type: ignore[assignment]  # the run's time steps, on a network built here
    return gradient_mei(gens.get(c), net, c.target, **kw)


def ceiling(runs: str | Path | Iterable[Run], out: str | Path | None = None, steps: int = 150,
            restarts: int = 8, seed: int = 0, progress=None) -> Analysis:
    """Each run's best response over its neuron's white-box ceiling. Tables: ``ceiling`` (one row per run)
    and ``neurons`` (one per neuron: ceiling, reachable); with ``out``: their CSVs and ``ceiling.png``
    (per neuron the white-box MEI above the best run's MEI). ``progress(done, total)`` after each neuron."""
    runs = as_runs(runs)
    gens = Generators()
    settings = group(runs, _setting)
    rows, neurons, pictures = [], [], []
    for k, rs in enumerate(settings.values()):
        mei = white_box(rs[0], gens, steps=steps, restarts=restarts, seed=seed)
        c = rs[0].config
        neurons.append({"neuron": rs[0].neuron, "model": c.model, "generator": c.generator, "ceiling": mei.response,
                        "reachable": mei.reachable, "best_run": max(r.best_response for r in rs)})
        for r in rs:
            ratio = r.best_response / mei.response if mei.reachable else math.nan
            rows.append({"neuron": r.neuron, "generator": c.generator, "layer": r.layer, "method": r.method,
                         "seed": r.seed, "n_queries": r.n_queries, "best_response": r.best_response,
                         "ceiling": mei.response, "ratio": ratio, "run_dir": str(r.run_dir)})
        best = max(rs, key=lambda r: r.best_response)
        pictures.append((rs[0].neuron, gens.get(c).pixels(mei.latent[None])[0], mei.response,
                         gens.pixels(best), best))
        if progress is not None:
            progress(k + 1, len(settings))
    result = Analysis({"ceiling": pd.DataFrame(rows), "neurons": pd.DataFrame(neurons)})
    if out is not None:
        result.figures.append(plot(pictures, Path(out) / "ceiling.png"))
        result.write_tables(Path(out), "ceiling")
    return result


def plot(pictures: list[tuple], path: Path, limit: int = 12) -> Path:
    """Per neuron (at most ``limit``): the white-box MEI (top) and the best run's MEI (bottom)."""
    plt = figures()
    items = pictures[:limit]
    fig, axes = plt.subplots(2, len(items), figsize=(1.9 * len(items) + 0.4, 4.4), squeeze=False)
    for j, (neuron, wb, response, image, run) in enumerate(items):
        show_image(axes[0, j], wb.to(torch.float32))
        axes[0, j].set_title(f"{neuron}\nwhite-box {response:.3f}", fontsize=7)
        show_image(axes[1, j], image.to(torch.float32))
        share = f" ({run.best_response / response:.0%})" if response > 0 else ""
        axes[1, j].set_title(f"{run.method} s{run.seed}: {run.best_response:.3f}{share}", fontsize=7)
    fig.suptitle("white-box ceiling (top) and the best black-box MEI (bottom)", fontsize=9)
    fig.tight_layout()
    return save(fig, path)
