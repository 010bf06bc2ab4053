"""``mango analyze compare | selectivity | diversity | distributions | ceiling | evolution | report``.

Each command calls one function of :mod:`mango.analysis` and lists the files it wrote (PNG figures, CSV
tables); the analysis modules are imported inside the commands, so ``mango --help`` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app: typer.Typer = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Analyses of finished runs: figures (PNG) and tables (CSV), and an HTML report.")
from .main import out, user_errors  # noqa: E402  (after app: main.py imports this module to register it)

RUNS = typer.Argument(..., help="folder holding run folders (searched recursively), or one run folder")
OUT = typer.Option(None, "--out", help="output folder (default: RUNS_DIR/analysis)")
LAYERS = typer.Option(None, help="layer order and subset for per-layer figures, comma-separated (default: all, "
                      "natural order)")


def _layers(text: Optional[str]) -> Optional[list[str]]:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _written(result) -> None:
    for path in [*result.figures, *result.files]:
        out.print(f"wrote {path}", highlight=False, soft_wrap=True)


@app.callback()
def _group() -> None:
    """Analyses of finished runs: figures (PNG) and tables (CSV), and an HTML report."""


@app.command()
def compare(runs_dir: Path = RUNS, out_dir: Optional[Path] = OUT) -> None:
    """Convergence (median and 25-75 % band over seeds, full and zoomed) and MEIs of each optimizer, per neuron."""
    from ..analysis import compare as run_analysis

    with user_errors():
        _written(run_analysis(runs_dir, out_dir or runs_dir / "analysis"))


@app.command()
def selectivity(
    runs_dir: Path = RUNS,
    repeats: int = typer.Option(100, help="noisy presentations of each MEI to the classifier"),
    noise: str = typer.Option("poisson", help="spike variability: poisson, membrane:SD, input:SD (comma-separated), "
                              "or none"),
    seed: int = typer.Option(0, help="seed of the noise"),
    steps: Optional[int] = typer.Option(None, help="time steps of a spiking classifier (default: the run's)"),
    layers: Optional[str] = LAYERS,
    out_dir: Optional[Path] = OUT,
) -> None:
    """Class entropy of each MEI under spike variability (0 = one class, 1 = uniform), per-layer histograms."""
    from ..analysis import selectivity as run_analysis

    with user_errors():
        _written(run_analysis(runs_dir, repeats, noise, seed, out_dir or runs_dir / "analysis", _layers(layers),
                              steps=steps))


@app.command()
def diversity(runs_dir: Path = RUNS, layers: Optional[str] = LAYERS, out_dir: Optional[Path] = OUT) -> None:
    """Pairwise latent and image distances between the MEIs found for each neuron, per layer."""
    from ..analysis import diversity as run_analysis

    with user_errors():
        _written(run_analysis(runs_dir, out_dir or runs_dir / "analysis", _layers(layers)))


@app.command()
def distributions(runs_dir: Path = RUNS, layers: Optional[str] = LAYERS, out_dir: Optional[Path] = OUT) -> None:
    """MEI responses per layer, one colour per generator (best over runs, one value per neuron)."""
    from ..analysis import distributions as run_analysis

    with user_errors():
        _written(run_analysis(runs_dir, out_dir or runs_dir / "analysis", _layers(layers)))


@app.command()
def ceiling(
    runs_dir: Path = RUNS,
    steps: int = typer.Option(150, help="Adam steps of the white-box search"),
    restarts: int = typer.Option(8, help="latents optimized per neuron (the best counts)"),
    seed: int = typer.Option(0, help="seed of the white-box search"),
    out_dir: Optional[Path] = OUT,
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Each run's best response as a fraction of its neuron's white-box MEI (gradients through generator and
    spiking network); neurons no image can make fire are reported as not reachable."""
    from rich.progress import Progress

    from ..analysis import ceiling as run_analysis

    with user_errors(), Progress(disable=quiet, transient=True) as bar:
        task = bar.add_task("white-box MEIs", total=None)
        result = run_analysis(runs_dir, out_dir or runs_dir / "analysis", steps, restarts, seed,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
        _written(result)
        neurons = result.tables["neurons"]
        unreachable = neurons.loc[~neurons["reachable"], "neuron"].tolist()
        out.print(f"median best / ceiling: {result.table['ratio'].median():.3f}; not reachable with this generator: "
                  f"{', '.join(unreachable) if unreachable else 'none'}", highlight=False)


@app.command()
def evolution(
    ckpt_dir: Path = typer.Argument(..., help="folder written by `mango train target` (epoch_NNN.safetensors, "
                                    "metrics.csv)"),
    neurons: str = typer.Option(..., help="target specs, comma-separated, e.g. lif2:0,lif2:5"),
    generator: str = typer.Option("mnist-sngan", help="generator (`mango list generators`)"),
    model: str = typer.Option("mnist-snn", help="the architecture of the checkpoints (`mango list targets`)"),
    budget: int = typer.Option(300, help="queries per MEI search (a larger one extends stored runs)"),
    optimizer: str = typer.Option("sepcma", help="optimizer of every MEI search"),
    seed: int = typer.Option(0, help="seed of every MEI search and of the selectivity noise"),
    epochs: Optional[str] = typer.Option(None, help="checkpoints to use, comma-separated (default: all)"),
    repeats: int = typer.Option(100, help="noisy presentations of each MEI to the classifier"),
    noise: str = typer.Option("poisson", help="spike variability for the selectivity, or none"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: CKPT_DIR/evolution)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """MEIs of NEURONS in every checkpoint: grid neurons x epochs with accuracy, selectivity, class switches."""
    from ..analysis import evolution as run_analysis
    from ..errors import MangoError

    with user_errors():
        try:
            picked = [int(e) for e in epochs.split(",")] if epochs else None
        except ValueError:
            raise MangoError(f"bad --epochs {epochs!r}: expected epoch numbers, e.g. 1,5,10") from None
        result = run_analysis(ckpt_dir, neurons, generator, model, budget, optimizer, seed, picked, repeats, noise,
                              out_dir, progress=not quiet)
        _written(result)
        switched = result.table.loc[result.table["switched"], "neuron"].unique()
        out.print(f"neurons whose preferred class changed: {', '.join(switched) if len(switched) else 'none'}",
                  highlight=False)


@app.command()
def report(
    folder: Path = typer.Argument(..., help="a run folder, or a folder of runs and analyses"),
    out_file: Optional[Path] = typer.Option(None, "--out", help="HTML file (default: FOLDER/report.html)"),
) -> None:
    """One self-contained HTML file with every figure (PNG) and table (CSV) under FOLDER, and its runs."""
    from ..analysis import report as run_analysis

    with user_errors():
        out.print(f"wrote {run_analysis(folder, out_file)}", highlight=False, soft_wrap=True)
