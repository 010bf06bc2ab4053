"""``mango scan``: every unit of some layers, with many seeds, in one command (a thin layer on mango.scan)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..scan.plan import ScanConfig

D = ScanConfig()


def scan(
    model: str = typer.Option(D.model, help="target network (`mango list targets`)"),
    layers: str = typer.Option(",".join(D.layers), help="layers to scan, comma-separated (`mango layers MODEL`)"),
    units: str = typer.Option(D.units, help="all, A-B (inclusive) or i,j,k"),
    budget: int = typer.Option(D.budget, help="queries per unit and seed (--shared: presentations in all, per seed)"),
    seeds: int = typer.Option(D.seeds, help="seeds per unit (0..S-1)"),
    optimizer: str = typer.Option(D.optimizer, help="optimizer (`mango list optimizers`)"),
    opt: list[str] = typer.Option([], "--opt", help="optimizer hyperparameter KEY=VALUE, repeatable"),
    generator: str = typer.Option(D.generator, help="generator (`mango list generators`)"),
    generator_weights: Optional[str] = typer.Option(None, help="weights file for the generator"),
    model_weights: Optional[str] = typer.Option(None, help="weights file for the target network"),
    steps: Optional[int] = typer.Option(None, help="time steps of a spiking target (default: the network's own)"),
    batch: Optional[int] = typer.Option(None, help="queries per optimizer step (default: the optimizer's own)"),
    out_dir: Path = typer.Option(..., "--out", help="scan folder: scan.json, one run folder per (layer, unit, seed)"),
    shared: bool = typer.Option(False, help="one stream of presentations serves every unit (a recorded population)"),
    workers: Optional[int] = typer.Option(None, help="start a local Dask cluster of N workers"),
    scheduler: Optional[str] = typer.Option(None, help="use the Dask scheduler at ADDRESS (e.g. tcp://host:8786)"),
    objective: Optional[str] = typer.Option(None, help="per unit u, a weighted sum of its layer's units, "
                                            "e.g. 'u - mean(*)' (a selective stimulus)"),
    timeout: float = typer.Option(D.timeout, help="rig models: seconds of live rig to wait for a block's answers"),
    quiet: bool = typer.Option(False, help="no progress bar"),
) -> None:
    """Search the most exciting input of every unit of LAYERS (a rerun skips finished runs, resumes the others)."""
    from ..scan import scan as scan_api
    from ..scan import summary
    from .main import _options, err, scan_table, user_errors
    from .signals import exit_code

    with user_errors():
        if workers is not None and scheduler is not None:
            from ..errors import MangoError

            raise MangoError("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
        try:
            scan_api(out_dir, model=model, layers=[s.strip() for s in layers.split(",") if s.strip()], units=units,
                     budget=budget, seeds=seeds, optimizer=optimizer, optimizer_options=_options(opt),
                     generator=generator, generator_weights=generator_weights, model_weights=model_weights,
                     steps=steps, batch=batch, shared=shared, objective=objective, workers=workers,
                     scheduler=scheduler, timeout=timeout, progress=not quiet)
        except KeyboardInterrupt as exc:
            err.print(str(exc) if type(exc).__name__ == "RunInterrupted" else "interrupted", highlight=False)
            err.print("every measured batch is kept; continue with the same command", highlight=False)
            raise typer.Exit(exit_code()) from None
        scan_table(summary(out_dir), out_dir)
