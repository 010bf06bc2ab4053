"""Layer-wise distributions of MEI responses for several generators (the paper's Figure 11).

One value per neuron and generator: the best response any run (method, seed) found for it, so a neuron
searched by five methods counts once. Drawn per layer as violins (where a layer has two or more distinct
values) with a box and the neurons as dots, one colour per generator side by side.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .plots import Analysis, colours, figures, save
from .study import Run, as_runs, group, ordered_layers


def distribution_table(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per (neuron, generator): layer, best response over its runs, number of runs, the best run."""
    rows = []
    for rs in group(runs, lambda r: f"{r.neuron} / {r.config.generator}").values():
        best = max(rs, key=lambda r: r.best_response)
        rows.append({"neuron": best.neuron, "generator": best.config.generator, "layer": best.layer,
                     "target": best.config.target, "best_response": best.best_response, "runs": len(rs),
                     "best_run": str(best.run_dir), "best_method": best.method})
    return pd.DataFrame(rows)


def plot_distributions(table: pd.DataFrame, layers: list[str], path: Path) -> Path:
    """Violin + box + dots per layer and generator."""
    plt = figures()
    gens = list(dict.fromkeys(table["generator"]))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(layers) * len(gens)) + 2, 4))
    width = 0.8 / len(gens)
    rng = np.random.default_rng(0)
    for g, (gname, colour) in enumerate(zip(gens, colours(len(gens)), strict=True)):
        label = gname  # on the generator's first dots only
        for k, layer in enumerate(layers):
            v = table.loc[(table["layer"] == layer) & (table["generator"] == gname), "best_response"].to_numpy()
            if not len(v):
                continue
            x = k + (g - (len(gens) - 1) / 2) * width
            if len(np.unique(v)) > 1:
                parts = ax.violinplot([v], positions=[x], widths=0.9 * width, showextrema=False)
                for body in parts["bodies"]:
                    body.set(facecolor=colour, alpha=0.3)
            ax.boxplot([v], positions=[x], widths=0.3 * width, showfliers=False, manage_ticks=False,
                       medianprops={"color": "black"})
            ax.scatter(x + rng.uniform(-0.25, 0.25, len(v)) * width, v, s=10, color=colour, alpha=0.8, label=label)
            label = None
    ax.legend(title="generator", fontsize=8, title_fontsize=8)
    ax.set_xticks(np.arange(len(layers)), layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("MEI response (best over runs, per neuron)")
    ax.set_title("MEI responses per layer and generator", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save(fig, path)


def distributions(runs: str | Path | Iterable[Run], out: str | Path | None = None,
                  layers: list[str] | None = None) -> Analysis:
    """MEI responses per layer and generator (see the module docstring); with ``out``: ``distributions.csv``
    and ``distributions.png``."""
    runs = as_runs(runs)
    table = distribution_table(runs)
    result = Analysis({"distributions": table})
    if out is not None:
        result.figures.append(plot_distributions(table, ordered_layers(runs, layers), Path(out) / "distributions.png"))
        result.write_tables(Path(out), "distributions")
    return result
