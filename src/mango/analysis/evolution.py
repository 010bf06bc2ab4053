"""MEI evolution during training: the MEIs of the same neurons in every checkpoint of a training run.

Input: a folder written by ``mango train target`` (``epoch_NNN.safetensors`` + JSON cards, ``metrics.csv``
with the held-out accuracy per epoch). For each checkpoint and neuron one MEI search is made
(:func:`mango.run` with ``model_weights=`` the epoch file, the same optimizer, budget and seed everywhere)
into ``OUT/runs/epoch_NNN/<neuron>``: a finished run is reused, an unfinished one resumed, so the analysis
can be stopped, repeated or extended (a larger budget continues the stored runs). Each MEI's selectivity
comes from that epoch's classifier (:mod:`.selectivity`); a neuron whose preferred class differs from the
previous checkpoint's is flagged: the paper saw some deep neurons switch the concept they prefer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError, first_line, unknown
from ..experiment import run as mango_run
from ..experiment.config import RunConfig
from ..generators import Generator
from ..targets.spec import TargetSpec
from .plots import Analysis, figures, save, show_image
from .selectivity import Classifiers, selectivity_table
from .study import Generators, Run, read_run, slug

_EPOCH = re.compile(r"^epoch_(\d+)\.safetensors$")


@dataclass
class EvolutionAnalysis(Analysis):
    """:class:`Analysis` plus the MEIs as pixels, ``[neurons, epochs, C, H, W]`` (the grid's cells)."""

    images: torch.Tensor | None = None


def checkpoints(ckpt_dir: str | Path, epochs: list[int] | None = None) -> pd.DataFrame:
    """The checkpoints of a training folder: ``epoch``, ``weights`` (path) and ``heldout_accuracy`` (NaN
    where ``metrics.csv`` has no row for it), sorted by epoch; ``epochs`` picks a subset."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise MangoError(f"checkpoint folder not found: {ckpt_dir}")
    found = {int(m[1]): p for p in ckpt_dir.iterdir() if (m := _EPOCH.match(p.name))}
    if not found:
        raise MangoError(f"no checkpoints in {ckpt_dir}: expected epoch_NNN.safetensors files "
                         "(written by `mango train target`)")
    metrics = ckpt_dir / "metrics.csv"
    if not metrics.is_file():
        raise MangoError(f"{metrics} is missing: it gives the held-out accuracy per epoch "
                         "(written by `mango train target`)")
    try:
        acc = pd.read_csv(metrics)
    except Exception as exc:  # empty file, torn rows, bad encoding: several pandas error types
        raise MangoError(f"cannot read {metrics}: {first_line(exc)}") from None
    missing = [c for c in ("epoch", "heldout_accuracy") if c not in acc.columns]
    if missing or not all(pd.api.types.is_numeric_dtype(acc[c]) for c in ("epoch", "heldout_accuracy")):
        raise MangoError(f"{metrics} is corrupt: expected numeric columns epoch and heldout_accuracy"
                         + (f" ({missing} missing)" if missing else ""))
    acc = acc.dropna(subset=["epoch"])
    acc = dict(zip(acc["epoch"].astype(int), acc["heldout_accuracy"].astype(float), strict=True))
    if epochs:
        bad = [e for e in epochs if e not in found]
        if bad:
            raise unknown(f"epoch in {ckpt_dir}", bad[0], sorted(found))
        found = {e: found[e] for e in epochs}
    return pd.DataFrame([{"epoch": e, "weights": str(found[e]), "heldout_accuracy": acc.get(e, float("nan"))}
                         for e in sorted(found)])


def _mei_run(run_dir: Path, settings: dict, progress: bool) -> Run:
    """The MEI run in ``run_dir``: reused if finished with at least the budget, else resumed or started."""
    budget = settings["budget"]
    if (run_dir / "config.json").is_file():
        stored = RunConfig.load(run_dir / "config.json")
        wanted = {k: getattr(v, "name", v) for k, v in settings.items()}  # a generator object by its name
        diff = [f"{k}: stored {getattr(stored, k)!r}, wanted {v!r}" for k, v in wanted.items()
                if k not in ("budget", "model_weights") and getattr(stored, k) != v]
        if Path(stored.model_weights or "").name != Path(settings["model_weights"]).name:
            diff.append(f"model_weights: stored {stored.model_weights!r}, wanted {settings['model_weights']!r}")
        if diff:
            raise MangoError(f"{run_dir} holds a run with other settings ({'; '.join(diff)}); "
                             "choose another --out")
        if not (run_dir / "result.json").is_file() or stored.budget < budget:
            gen = settings["generator"] if isinstance(settings["generator"], Generator) else None
            mango_run(budget=max(budget, stored.budget), generator=gen, out=run_dir, resume=True, progress=progress)
    else:
        mango_run(**settings, out=run_dir, progress=progress)
    return read_run(run_dir)


def _flag_changes(table: pd.DataFrame) -> pd.DataFrame:
    """``changed``: preferred class differs from the neuron's previous responsive checkpoint; ``switched``:
    ever changed. ``silent``: no candidate made the neuron respond (its "MEI" is an arbitrary image, so its
    class says nothing and is not compared)."""
    table = table.sort_values(["neuron_order", "epoch"]).reset_index(drop=True)
    table["silent"] = ~(table["best_response"] > 0)
    live = table["preferred_class"].where(~table["silent"])
    prev = live.groupby(table["neuron_order"]).transform(lambda s: s.ffill().shift())
    table["changed"] = ~table["silent"] & prev.notna() & (prev != live)
    table["switched"] = table.groupby("neuron_order")["changed"].transform("any")
    return table


def plot_grid(table: pd.DataFrame, images: torch.Tensor, neurons: list[str], path: Path, title: str) -> Path:
    """Neurons (rows) x checkpoints (columns) of MEIs; column titles: epoch and held-out accuracy; under each
    MEI its preferred class, normalized entropy and response; a red frame where the preferred class changed."""
    plt = figures()
    n, m = images.shape[:2]
    fig, axes = plt.subplots(n, m, figsize=(1.55 * m + 1.4, 2.1 * n + 1.0), squeeze=False, layout="constrained")
    epochs = sorted(table["epoch"].unique())
    for i in range(n):
        for j in range(m):
            ax, row = axes[i][j], table[(table["neuron_order"] == i) & (table["epoch"] == epochs[j])].iloc[0]
            show_image(ax, images[i, j])
            label = "silent" if row.silent else f"class {row.preferred_class}, H {row.entropy:.2f}"
            ax.set_xlabel(f"{label}\nr {row.best_response:.3f}", fontsize=7,
                          color="tab:red" if row.changed else "tab:gray" if row.silent else "black")
            if row.changed:
                for spine in ax.spines.values():
                    spine.set(color="tab:red", linewidth=2.5)
            if i == 0:
                acc = row.heldout_accuracy
                ax.set_title(f"epoch {row.epoch}\nacc {acc:.1%}" if np.isfinite(acc) else f"epoch {row.epoch}",
                             fontsize=8)
        switched = bool(table.loc[table["neuron_order"] == i, "switched"].any())
        axes[i][0].set_ylabel(neurons[i] + ("\n(class switched)" if switched else ""), fontsize=8,
                              color="tab:red" if switched else "black")
    fig.suptitle(title + "\nred frame: preferred class changed since the previous responsive checkpoint; "
                 "silent: no response found", fontsize=9)
    return save(fig, path)


def plot_curves(table: pd.DataFrame, neurons: list[str], path: Path) -> Path:
    """Normalized entropy of each neuron's MEI per epoch (preferred class annotated) beside held-out accuracy."""
    plt = figures()
    from matplotlib.ticker import MaxNLocator

    fig, (ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, name in enumerate(neurons):
        t = table[table["neuron_order"] == i]
        line, = ax.plot(t["epoch"], t["entropy"], marker="o", label=name)
        for e, h, c in zip(t["epoch"], t["entropy"], t["preferred_class"], strict=True):
            ax.annotate(str(c), (e, h), textcoords="offset points", xytext=(0, 5), fontsize=7, color=line.get_color())
    ax.set(xlabel="epoch", ylabel="normalized class entropy of the MEI", ylim=(0, 1.05),
           title="selectivity per checkpoint (numbers: preferred class)")
    ax.legend(fontsize=7)
    acc = table.drop_duplicates("epoch").sort_values("epoch")
    acc_ax.plot(acc["epoch"], acc["heldout_accuracy"], marker="o", color="black")
    acc_ax.set(xlabel="epoch", ylabel="held-out accuracy", title="classifier accuracy per checkpoint")
    for a in (ax, acc_ax):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        a.title.set_fontsize(9)
    fig.tight_layout()
    return save(fig, path)


def evolution(ckpt_dir: str | Path, neurons: list[str] | str, generator: str | Generator = "mnist-sngan",
              model: str = "mnist-snn", budget: int = 300, optimizer: str = "sepcma", seed: int = 0,
              epochs: list[int] | None = None, repeats: int = 100, noise: str | None = "poisson",
              out: str | Path | None = None, progress: bool = False) -> EvolutionAnalysis:
    """MEIs of ``neurons`` (e.g. ``["lif2:0", "lif2:5"]`` or ``"lif2:0,lif2:5"``) in every checkpoint of
    ``ckpt_dir`` (see the module docstring). Writes ``evolution.csv`` (one row per neuron and epoch: held-out
    accuracy, MEI response, preferred class, entropy, ``changed``, ``switched``), ``evolution_grid.png``
    (neurons x epochs) and ``evolution_selectivity.png`` into ``out`` (default ``CKPT_DIR/evolution``)."""
    neurons = [s.strip() for s in neurons.split(",")] if isinstance(neurons, str) else list(neurons)
    if not neurons or not all(neurons):
        raise MangoError(f"no neurons given; expected specs like lif2:0,lif2:5 (got {neurons!r})")
    for spec in neurons:
        TargetSpec.parse(spec)
    ckpts = checkpoints(ckpt_dir, epochs)
    out = Path(out) if out is not None else Path(ckpt_dir) / "evolution"
    gens = Generators({generator.name: generator} if isinstance(generator, Generator) else {})
    rows, runs = [], []
    for i, spec in enumerate(neurons):
        for ck in ckpts.itertuples():
            settings = dict(generator=generator, model=model, target=spec, optimizer=optimizer, budget=budget,
                            seed=seed, model_weights=ck.weights)
            runs.append(_mei_run(out / "runs" / f"epoch_{ck.epoch:03d}" / slug(spec), settings, progress))
            rows.append({"neuron": spec, "neuron_order": i, "epoch": ck.epoch, "heldout_accuracy": ck.heldout_accuracy})
    sel = selectivity_table(runs, repeats, noise, seed, gens, Classifiers())
    table = pd.concat([pd.DataFrame(rows), sel.drop(columns=["neuron", "layer", "target", "generator", "method",
                                                             "seed"])], axis=1)
    table = _flag_changes(table)
    order = {(r["neuron_order"], r["epoch"]): k for k, r in enumerate(rows)}
    pix = [gens.pixels(runs[order[(i, e)]]) for i in range(len(neurons)) for e in ckpts["epoch"]]
    images = torch.stack(pix).view(len(neurons), len(ckpts), *pix[0].shape)
    first = ["neuron", "epoch", "heldout_accuracy", "preferred_class", "silent", "changed", "switched", "entropy",
             "p_max", "best_response", "run"]
    table = table[first + [c for c in table.columns if c not in first]]
    result = EvolutionAnalysis({"evolution": table.drop(columns="neuron_order")}, images=images)
    title = (f"MEI evolution: {model} checkpoints in {Path(ckpt_dir).name}, {getattr(generator, 'name', generator)}, "
             f"{optimizer} budget {budget} seed {seed}")
    result.figures.append(plot_grid(table, images, neurons, out / "evolution_grid.png", title))
    result.figures.append(plot_curves(table, neurons, out / "evolution_selectivity.png"))
    result.write_tables(out, "evolution")
    return result
