"""Method comparison on one neuron (the paper's Figures 5-7): convergence curves and the MEIs side by side.

Curves are the best response after each query; a method's curve is the median over its seeds with the
25-75 % band, drawn in full and zoomed on the top where the methods separate. Seeds of one method are
aligned on the shortest run (a median needs every seed at every query).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..generators import Generator
from .plots import Analysis, colours, figures, save, show_image
from .study import Generators, Run, as_runs, group, slug


def _setting(run: Run) -> str:
    """What must be equal for runs to be compared: the neuron and the generator (the search space)."""
    return f"{run.neuron} / {run.config.generator}"


def curves_by_method(runs: Iterable[Run]) -> dict[str, np.ndarray]:
    """Method -> best-so-far curves ``[seeds, queries]`` (truncated to the method's shortest run)."""
    out = {}
    for method, rs in group(runs, lambda r: r.method).items():
        n = min(len(r.curve) for r in rs)
        out[method] = np.stack([r.curve[:n] for r in rs])
    return out


def _queries_to(curves: np.ndarray, level: float) -> float:
    """Median number of queries the seeds need to reach ``level`` (NaN unless most seeds reach it)."""
    hit = [int(np.argmax(c >= level)) + 1 for c in curves if (c >= level).any()]
    return float(np.median(hit)) if 2 * len(hit) > len(curves) else float("nan")


def convergence_tables(runs: Iterable[Run]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per neuron, generator and method: the median/quartile curve (one row per query) and a summary row."""
    long, summary = [], []
    for rs in group(runs, _setting).values():
        neuron, generator = rs[0].neuron, rs[0].config.generator
        curves = curves_by_method(rs)
        overall = max(float(np.max(c)) for c in curves.values())
        for method, c in curves.items():
            med, lo, hi = np.median(c, 0), np.percentile(c, 25, 0), np.percentile(c, 75, 0)
            key = {"neuron": neuron, "generator": generator, "method": method}
            long.append(pd.DataFrame({**key, "query": np.arange(1, c.shape[1] + 1), "median": med, "q25": lo,
                                      "q75": hi, "seeds": len(c)}))
            walls = [float(r.history["elapsed_s"].iloc[-1]) for r in rs if r.method == method]
            summary.append({**key, "seeds": len(c), "queries": c.shape[1], "median_best": med[-1],
                            "q25_best": lo[-1], "q75_best": hi[-1], "max_best": float(c[:, -1].max()),
                            "queries_to_90pct": _queries_to(c, 0.9 * overall) if overall > 0 else float("nan"),
                            "median_wall_s": float(np.median(walls))})
    return pd.concat(long, ignore_index=True), pd.DataFrame(summary)


def plot_convergence(curves: Mapping[str, np.ndarray], path: Path, title: str) -> Path:
    """Median best response vs queries with the 25-75 % band over seeds, full (left) and zoomed on the top
    (right); ``curves`` maps a method to its ``[seeds, queries]`` best-so-far curves."""
    plt = figures()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    tops = []
    for colour, (name, best) in zip(colours(len(curves)), curves.items(), strict=True):
        q = np.arange(1, best.shape[1] + 1)
        med, lo, hi = np.median(best, 0), np.percentile(best, 25, 0), np.percentile(best, 75, 0)
        tops.append(med[-1])
        for ax in axes:
            ax.plot(q, med, label=f"{name} (n={len(best)})", lw=1.5, color=colour)
            ax.fill_between(q, lo, hi, alpha=0.15, color=colour, lw=0)
    fig.suptitle(title, fontsize=10)
    axes[0].set_title("best response so far (median, 25-75 % band)", fontsize=9)
    axes[1].set_title("zoom on the top", fontsize=9)
    finite = [t for t in tops if np.isfinite(t)]
    if finite:
        top, low = max(finite), min(finite)
        span = max(top - low, 0.05 * abs(top), 1e-6)
        axes[1].set_ylim(low - 0.5 * span, top + 0.25 * span)
    for ax in axes:
        ax.set_xlabel("number of queries")
        ax.set_ylabel("best response")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save(fig, path)


def plot_meis(runs: list[Run], generators: Generators, path: Path, title: str) -> Path:
    """The MEIs of every method (rows) and seed (columns), each titled with its best response."""
    plt = figures()
    by_method = group(runs, lambda r: r.method)
    cols = max(len(rs) for rs in by_method.values())
    fig, axes = plt.subplots(len(by_method), cols, figsize=(1.5 * cols + 1.2, 1.6 * len(by_method) + 0.6),
                             squeeze=False)
    for row, (method, rs) in zip(axes, by_method.items(), strict=True):
        for j, ax in enumerate(row):
            if j >= len(rs):
                ax.axis("off")
                continue
            show_image(ax, generators.pixels(rs[j]))
            ax.set_title(f"s{rs[j].seed}: {rs[j].best_response:.3f}", fontsize=8)
        row[0].set_ylabel(method, fontsize=8)
    fig.suptitle(f"{title}\nMEI per method (rows) and seed; title = best response", fontsize=9)
    fig.tight_layout()
    return save(fig, path)


def compare(runs: str | Path | Iterable[Run], out: str | Path | None = None,
            generators: Mapping[str, Generator] | None = None) -> Analysis:
    """Compare the optimizers that ran on the same neuron(s) with the same generator.

    Tables: ``convergence`` (median and quartiles of the best response after each query, per neuron, generator
    and method) and ``summary`` (final values, queries to 90 % of the best, wall time). With ``out``:
    ``compare.csv``, ``compare_summary.csv`` and, per neuron and generator, ``compare_convergence_<...>.png``
    and ``compare_meis_<...>.png`` (MEIs decoded with the generator named in each run's config; pass
    ``generators={name: obj}`` for generator objects the registry does not know)."""
    runs = as_runs(runs)
    long, summary = convergence_tables(runs)
    result = Analysis({"convergence": long, "summary": summary})
    if out is None:
        return result
    out = Path(out)
    gens = Generators(generators or {})
    for title, rs in group(runs, _setting).items():
        result.figures.append(plot_convergence(curves_by_method(rs), out / f"compare_convergence_{slug(title)}.png",
                                               title))
        result.figures.append(plot_meis(rs, gens, out / f"compare_meis_{slug(title)}.png", title))
    result.write_tables(out, "compare")
    return result
