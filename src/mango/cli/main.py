"""``mango run | layers | list | show``: typer commands calling the public API.

User errors (:class:`~mango.errors.MangoError`) print one line and exit 2;
an interrupted run says how to resume it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import MangoError
from ..experiment.config import RunConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, help="MANGO: most exciting inputs of neurons.")


@app.callback()
def _process_settings() -> None:
    """MANGO: most exciting inputs of neurons."""
    from ..perf import tune_allocator

    tune_allocator()  # measured, see mango.perf; the CLI owns its process, a library user chooses
out = Console()
err = Console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except MangoError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _options(pairs: list[str]) -> dict:
    """``--opt k=v`` pairs; values parsed as JSON when possible (numbers, booleans)."""
    from ..optimizers.base import parse_option_value

    result = {}
    for p in pairs:
        if "=" not in p:
            raise MangoError(f"malformed --opt {p!r}; expected KEY=VALUE, e.g. --opt lr=0.1")
        k, v = p.split("=", 1)
        result[k] = parse_option_value(v)
    return result


D = RunConfig()  # the defaults, shown in --help; None below means "default, or the stored value on --resume"


@app.command()
def run(
    optimizer: Optional[str] = typer.Option(None, help=f"optimizer (`mango list optimizers`) (default: {D.optimizer})"),
    budget: Optional[int] = typer.Option(None, help=f"number of candidates measured; each is shown --repeats times (default: {D.budget})"),
    batch: Optional[int] = typer.Option(None, help="queries per optimizer step (default: the optimizer's own)"),
    seed: Optional[int] = typer.Option(None, help=f"seed of the optimizer (default: {D.seed})"),
    target: Optional[str] = typer.Option(None, help=f"class:N, LAYER:UNIT or LAYER:UNIT@ROW,COL (default: {D.target})"),
    model: Optional[str] = typer.Option(None, help=f"target network (`mango list targets`) (default: {D.model})"),
    generator: Optional[str] = typer.Option(None, help=f"generator (`mango list generators`) (default: {D.generator})"),
    opt: list[str] = typer.Option([], "--opt", help="optimizer hyperparameter KEY=VALUE, repeatable"),
    model_weights: Optional[str] = typer.Option(None, help="safetensors file for the target network"),
    generator_weights: Optional[str] = typer.Option(None, help="safetensors file for the generator"),
    repeats: Optional[int] = typer.Option(None, help="presentations per candidate, for noisy targets; they multiply the images shown (default: 1)"),
    remeasure: Optional[int] = typer.Option(None, help="re-measure the 5 best this many times at the end (default: 0)"),
    readout: Optional[str] = typer.Option(None, help="rate, count:A-B, latency, membrane, mean, relu, logit, prob "
                                          "(default: rate for spiking layers, mean otherwise, logit for class:N)"),
    noise: Optional[str] = typer.Option(None, help="injected noise: input:SD, membrane:SD, poisson (comma-separated)"),
    steps: Optional[int] = typer.Option(None, help="time steps of a spiking target (default: the network's own)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="run folder (default: runs/<time>-...)"),
    resume: bool = typer.Option(False, help="continue the run in --out (settings come from its config.json)"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Find the most exciting image of one unit and write a run folder."""
    from .. import run as run_api

    with user_errors():
        try:
            result = run_api(optimizer=optimizer, budget=budget, batch=batch, seed=seed, target=target, model=model,
                             generator=generator, optimizer_options=_options(opt) or None,
                             model_weights=model_weights, generator_weights=generator_weights, repeats=repeats,
                             remeasure=remeasure, readout=readout, noise=noise, steps=steps, out=out_dir,
                             resume=resume, progress=not quiet)
        except KeyboardInterrupt as exc:
            err.print(str(exc) or "interrupted", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        _summary(result.summary())


def _summary(s: dict) -> None:
    t = Table(title="MANGO run", show_header=False)
    for key in ("target", "model", "generator", "optimizer", "seed", "n_queries", "best_response", "best_query",
                "wall_time_s", "run_dir"):
        value = s[key]
        t.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(t)


@app.command()
def layers(model: str = typer.Argument("mnist-snn", help="a registered target network, or your own (see README)"),
           weights: Optional[str] = typer.Option(None, help="weights file for MODEL (\"none\": untrained, where allowed)"),
           ) -> None:
    """List the addressable layers of MODEL: unit count, output shape, spiking or not."""
    from ..targets import make_model
    from ..targets.layers import probe_layers

    with user_errors():
        net = make_model(model, weights)
        space = getattr(net, "input_space", None)
        t = Table(title=f"layers of {model}")
        for col in ("layer", "type", "units", "output shape", "spiking", "calls/forward"):
            t.add_column(col)
        infos = probe_layers(net, space.shape if space is not None else net.input_shape)
        for info in infos:
            t.add_row(info.name, info.kind, str(info.units), "x".join(map(str, info.shape)),
                      "yes" if info.spiking else "", str(info.calls))
        out.print(t)
        if space is not None:
            out.print(f"input: {space.describe()}", highlight=False)
        if getattr(net, "num_steps", None):
            out.print(f"time steps: {net.num_steps} (change with --steps)", highlight=False)
        spiking = next((i.name for i in infos if i.spiking), infos[-1].name if infos else "LAYER")
        out.print(f"address units as LAYER:UNIT (e.g. {spiking}:0), one position as LAYER:UNIT@ROW,COL, "
                  "class outputs as class:N", highlight=False)


class Family(str, Enum):
    optimizers = "optimizers"
    generators = "generators"
    targets = "targets"


@app.command("list")
def list_(family: Family = typer.Argument(..., help="optimizers, generators or targets")) -> None:
    """List the registered plug-ins of one family."""
    from ..generators import GENERATORS
    from ..optimizers import OPTIMIZERS
    from ..targets import MODELS

    registry = {"optimizers": OPTIMIZERS, "generators": GENERATORS, "targets": MODELS}[family.value]
    t = Table(title=family.value)
    t.add_column("name")
    t.add_column("description")
    for name, doc in registry.describe().items():
        t.add_row(name, doc)
    out.print(t)


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run folder written by `mango run`")) -> None:
    """Summarize a finished run."""
    from ..experiment import load_run

    with user_errors():
        s = load_run(run_dir)
        _summary(s)
        out.print(f"history: {len(s['history'])} queries; pictures: "
                  f"{', '.join(p.name for p in sorted(Path(run_dir).glob('*.png')) + sorted(Path(run_dir).glob('*.gif')))}")


from . import check, train  # noqa: E402  (sub-apps; they import user_errors from this module)
app.add_typer(train.app, name="train")
app.add_typer(check.app, name="check")
from . import analyze  # noqa: E402
app.add_typer(analyze.app, name="analyze")
