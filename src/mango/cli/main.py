"""``mango run | layers | list | show``: typer commands calling the public API.

User errors (:class:`~mango.errors.MangoError`) print one line and exit 2;
an interrupted run says how to resume it.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Any, Optional

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


def _run_command(**kw: Any) -> None:
    """Find the most exciting image of one unit and write a run folder."""
    from .signals import exit_code

    out_dir, resume, quiet, opt = kw.pop("out_dir"), kw.pop("resume"), kw.pop("quiet"), kw.pop("opt")
    with user_errors():
        try:
            from ..experiment.loop import run as run_api

            result = run_api(out=out_dir, resume=resume, progress=not quiet, optimizer_options=_options(opt) or None,
                             **kw)
        except KeyboardInterrupt as exc:
            if type(exc).__name__ == "RunInterrupted":
                err.print(str(exc), highlight=False, soft_wrap=True)
            else:
                again = resume or (out_dir is not None and (Path(out_dir) / "config.json").exists())
                err.print("interrupted before the search started: nothing new was measured"
                          + (f"; continue with: mango run --resume --out {out_dir}" if again else ""),
                          highlight=False, soft_wrap=True)
            raise typer.Exit(exit_code()) from None
        _summary(result.summary())


def _run_signature() -> inspect.Signature:
    """``mango run``'s options: one per :class:`RunConfig` field (its help and default), then the folder options."""
    kw = inspect.Parameter.KEYWORD_ONLY
    params = []
    defaults = RunConfig()
    for f in fields(RunConfig):
        if f.name == "optimizer_options":
            params.append(inspect.Parameter("opt", kw, annotation=list[str], default=typer.Option(
                [], "--opt", help=f.metadata["help"])))
            continue
        kind = Optional[float] if "float" in str(f.type) else Optional[int] if "int" in str(f.type) else Optional[str]
        default = getattr(defaults, f.name)
        shown = f" (default: {default})" if default is not None and "default" not in f.metadata["help"] else ""
        resume = "" if f.metadata["fixed"] else "; may change on --resume"
        params.append(inspect.Parameter(f.name, kw, annotation=kind, default=typer.Option(
            None, "--" + f.name.replace("_", "-"), help=f.metadata["help"] + shown + resume)))
    params += [
        inspect.Parameter("out_dir", kw, annotation=Optional[Path],
                          default=typer.Option(None, "--out", help="run folder (default: runs/<time>-...)")),
        inspect.Parameter("resume", kw, annotation=bool, default=typer.Option(
            False, help="continue the run in --out (settings come from its config.json)")),
        inspect.Parameter("quiet", kw, annotation=bool, default=typer.Option(False, help="no progress bar")),
    ]
    return inspect.Signature(params)


_run_command.__signature__ = _run_signature()  # type: ignore[attr-defined]
_run_command.__annotations__ = {p.name: p.annotation for p in _run_command.__signature__.parameters.values()}  # type: ignore[attr-defined]
app.command("run")(_run_command)


def _summary(s: dict) -> None:
    t = Table(title="MANGO run" + ("" if s.get("finished", True) else " (unfinished)"), show_header=False)
    for key in ("target", "model", "generator", "optimizer", "seed", "n_queries", "best_response", "best_query",
                "wall_time_s", "run_dir"):
        value = s[key]
        t.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(t)


@app.command()
def layers(model: str = typer.Argument("mnist-snn", help="a registered target network, or your own (see README)"),
           model_weights: Optional[str] = typer.Option(
               None, help="weights file for MODEL (\"none\": untrained; default: MODEL's own weights, or the "
                          "untrained architecture when those are unavailable)"),
           weights: Optional[str] = typer.Option(None, "--weights", hidden=True,
                                                 help="deprecated spelling of --model-weights"),
           ) -> None:
    """List the addressable layers of MODEL: unit count, output shape, spiking or not."""
    from ..targets import model_architecture
    from ..targets.layers import probe_layers

    with user_errors():
        if weights is not None and model_weights is not None and weights != model_weights:
            raise MangoError(f"--weights {weights!r} and --model-weights {model_weights!r} disagree; "
                             "give --model-weights only (--weights is its old spelling)")
        if weights is not None:
            err.print("note: --weights is deprecated; use --model-weights", highlight=False, soft_wrap=True)
        net, note = model_architecture(model, model_weights or weights)
        if note:
            err.print(f"note: {note}", highlight=False, soft_wrap=True)
        from ..targets.base import model_input_space

        space = model_input_space(net)
        t = Table(title=f"layers of {model}")
        for col in ("layer", "type", "units", "output shape", "spiking", "calls/forward"):
            t.add_column(col)
        infos = probe_layers(net, space.shape)
        for info in infos:
            t.add_row(info.name, info.kind, str(info.units), "x".join(map(str, info.shape)),
                      "yes" if info.spiking else "", str(info.calls))
        out.print(t)
        if space is not None:
            out.print(f"input: {space.describe()}", highlight=False)
        if getattr(net, "num_steps", None):
            out.print(f"time steps: {net.num_steps} (mango run --steps T changes them)", highlight=False)
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
    from ..registry import Registry
    from ..targets import MODELS

    registries: dict[str, Registry] = {"optimizers": OPTIMIZERS, "generators": GENERATORS, "targets": MODELS}
    registry = registries[family.value]
    t = Table(title=family.value)
    t.add_column("name")
    t.add_column("description")
    for name, doc in registry.describe().items():
        t.add_row(name, doc)
    out.print(t)


def scan_table(summary: Any, folder: Path) -> None:
    """Per layer: units done, the best responses' distribution, silent units."""
    t = Table(title=f"MANGO scan {folder}")
    for col in ("layer", "units", "done", "median", "q25", "q75", "max", "silent"):
        t.add_column(col, justify="left" if col == "layer" else "right")
    for r in summary.itertuples(index=False):
        t.add_row(r.layer, str(r.units), str(r.done), *(f"{v:.4f}" for v in (r.median, r.q25, r.q75, r.max)),
                  str(r.silent))
    out.print(t)


@app.command()
def show(run_dir: Path = typer.Argument(..., help="a run folder written by `mango run` (finished or not), or a "
                                                  "scan folder written by `mango scan`")) -> None:
    """Summarize a run or a scan; works while it runs."""
    from ..experiment import load_run

    with user_errors():
        if (run_dir / "scan.json").is_file():
            from ..scan import summary

            scan_table(summary(run_dir), run_dir)
            return
        r = load_run(run_dir, unfinished=True)
        _summary(r.summary())
        pictures = sorted(Path(run_dir).glob("*.png")) + sorted(Path(run_dir).glob("*.gif"))
        if r.finished:
            out.print(f"history: {r.n_queries} queries; pictures: {', '.join(p.name for p in pictures)}",
                      highlight=False)
        else:
            out.print(f"unfinished: {r.n_queries} of {r.config.budget} queries measured; continue with "
                      f"mango run --resume --out {run_dir}", highlight=False, soft_wrap=True)


class Format(str, Enum):
    csv = "csv"
    parquet = "parquet"
    nwb = "nwb"


@app.command()
def export(run_dir: Path = typer.Argument(..., help="a run folder"),
           fmt: Format = typer.Option(..., "--format", help="csv, parquet or nwb (Neurodata Without Borders)"),
           out_file: Path = typer.Option(..., "--out", help="file to write")) -> None:
    """Write a run's history, one row per presentation with its status, as CSV, Parquet or NWB."""
    from ..experiment import export_run

    with user_errors():
        out.print(f"wrote {export_run(run_dir, fmt.value, out_file)}", highlight=False, soft_wrap=True)


@app.command()
def convert(folders: list[Path] = typer.Argument(..., help="run folders of MANGO 0.1 (history.csv), or folders "
                                                           "holding them")) -> None:
    """Convert MANGO 0.1 run folders (history.csv) into run stores (run.db); the CSV is kept as history.v0.csv."""
    from ..experiment.convert import convert_folders

    with user_errors():
        for line in convert_folders(folders):
            out.print(line, highlight=False, soft_wrap=True)


# sub-apps last: they import user_errors, err and out from this module
from . import analyze, check, rig, train  # noqa: E402
from .monitor import monitor  # noqa: E402
from .scan import scan  # noqa: E402

app.add_typer(train.app, name="train")
app.add_typer(check.app, name="check")
app.add_typer(analyze.app, name="analyze")
app.add_typer(rig.app, name="rig")
app.command()(monitor)
app.command()(scan)
