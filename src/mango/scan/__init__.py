"""Many neurons at once: ``mango scan`` and :func:`scan` search every unit of some layers, with many seeds.

Each (layer, unit, seed) is an ordinary run folder under the scan folder; ``scan.json`` holds the
settings. A rerun skips finished runs and resumes partial ones, so running the same command on a
finished scan measures nothing. Units of one layer advance together and share every forward pass
(:mod:`.group`); ``shared=True`` serves all units from one stream of presentations (:mod:`.shared`);
``workers``/``scheduler`` spread groups of units over a Dask cluster (:mod:`.distributed`).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import MangoError
from ..optimizers.auto import DRIVE, DRIVE_WHY
from .plan import MANIFEST, Member, ScanConfig, members, read_manifest, resolve_units, write_manifest

__all__ = ["ScanConfig", "load_scan", "scan"]
log = logging.getLogger("mango")


def groups(cfg: ScanConfig, ms: list[Member], size: int | None = None) -> list[list[Member]]:
    """Members split into groups of units of one layer (every seed of a unit in the same group)."""
    out: list[list[Member]] = []
    for layer in cfg.layers:
        units = sorted({m.unit for m in ms if m.layer == layer})
        step = size or len(units) or 1
        for i in range(0, len(units), step):
            chunk = set(units[i:i + step])
            out.append([m for m in ms if m.layer == layer and m.unit in chunk])
    return [g for g in out if g]


def scan(out: str | Path, config: ScanConfig | None = None, *, workers: int | None = None,
         scheduler: str | None = None, progress: bool = True, **settings: Any) -> pd.DataFrame:
    """Search every unit of ``layers`` (fields of :class:`ScanConfig`); returns :func:`load_scan` of ``out``."""
    base = config.to_dict() if config is not None else {}
    unknown = sorted(set(settings) - set(ScanConfig().to_dict()))
    if unknown:
        raise MangoError(f"unknown scan settings {unknown}; allowed: {', '.join(ScanConfig().to_dict())}")
    cfg = ScanConfig(**{**base, **{k: v for k, v in settings.items() if v is not None}}).validate()
    if cfg.shared and (workers or scheduler):
        raise MangoError("--shared runs each seed's one stream of presentations in this process: leave out "
                         "--workers/--scheduler (they spread independent searches)")
    units = resolve_units(cfg)
    if not any(units.values()):
        raise MangoError(f"empty unit set: --units {cfg.units} selects no unit of {', '.join(cfg.layers)}")
    if cfg.objective and not cfg.model.startswith("rig:"):  # every member's objective is checked before anything runs
        from ..targets import make_target
        from ..targets.objective import parse_objective

        for layer, us in units.items():
            n = len(make_target(cfg.model, f"{layer}:*", cfg.model_weights, steps=cfg.steps).units or ())
            for u in us:
                parse_objective(cfg.objective, n, u)
    cfg = _default_readout(cfg, units, progress)
    _check_optimizer(cfg, units)  # before scan.json is written: a typo must not tie the folder to it
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise MangoError(f"--out {root} is a file, not a folder")
    write_manifest(root, cfg, units)
    ms = members(cfg, units)
    if cfg.shared:
        from .shared import run_shared

        run_shared(cfg, ms, root, progress)
    elif workers or scheduler:
        from .distributed import run_distributed

        run_distributed(cfg, groups(cfg, ms), root, workers=workers, scheduler=scheduler, progress=progress)
    else:
        _run_local(cfg, groups(cfg, ms), root, progress)
    return load_scan(root)


def _default_readout(cfg: ScanConfig, units: dict[str, tuple[int, ...]], say: bool) -> ScanConfig:
    """The readout each member's run would choose by itself (:func:`mango.experiment.loop.drive_by_default`),
    so a scan's unit equals its run alone: ``rate+drive`` when every layer's units qualify."""
    if cfg.readout is not None or cfg.model.startswith("rig:"):
        return cfg
    from ..experiment.config import RunConfig
    from ..experiment.loop import drive_by_default
    from ..targets import make_target

    for layer, us in units.items():
        if us and not drive_by_default(RunConfig.from_dict(cfg.run_settings(layer, us[0], 0)),
                                       make_target(cfg.model, f"{layer}:{us[0]}", cfg.model_weights,
                                                   steps=cfg.steps)):
            return cfg
    if say:
        log.warning(f"readout {DRIVE} (auto: {DRIVE_WHY})")
    return replace(cfg, readout=DRIVE)


def _check_optimizer(cfg: ScanConfig, units: dict[str, tuple[int, ...]]) -> None:
    """The members' optimizer and its options, checked once (an unknown name or option: one line)."""
    from ..generators import make_generator
    from .group import member_optimizer

    layer = next(layer for layer, us in units.items() if us)
    _, opt = member_optimizer(cfg, Member(layer, units[layer][0], 0), make_generator(cfg.generator,
                                                                                   cfg.generator_weights))
    opt.close()


def _run_local(cfg: ScanConfig, gs: list[list[Member]], root: Path, progress: bool) -> None:
    from contextlib import nullcontext

    from .group import run_group

    total = cfg.budget * sum(len(g) for g in gs)
    bar: Any = nullcontext(None)
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]scan"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with bar as b:
        task = b.add_task("scan", total=total) if b else None
        for g in gs:
            run_group(cfg, g, root, (lambda k: b.advance(task, k)) if b else None)


def load_scan(out: str | Path) -> pd.DataFrame:
    """One row per (layer, unit, seed): ``layer, unit, seed, best_response, n_queries, finished, run_dir``."""
    root = Path(out)
    if not (root / MANIFEST).is_file():
        raise MangoError(f"{root} is not a MANGO scan folder: {MANIFEST} is missing")
    data = read_manifest(root)
    cfg = ScanConfig(**data["settings"])
    units = {k: tuple(v) for k, v in data.get("units", {}).items()}
    rows = []
    for m in members(cfg, units):
        row: dict[str, Any] = {"layer": m.layer, "unit": m.unit, "seed": m.seed, "best_response": float("nan"),
                               "n_queries": 0, "finished": False, "run_dir": str(m.run_dir(root))}
        if (m.run_dir(root) / "config.json").is_file():
            from ..experiment.result import load_run

            try:
                r = load_run(m.run_dir(root), unfinished=True)
                row.update(best_response=r.best_response, n_queries=r.n_queries, finished=r.finished)
            except MangoError:
                pass  # started, nothing measured yet
        rows.append(row)
    return pd.DataFrame(rows, columns=["layer", "unit", "seed", "best_response", "n_queries", "finished", "run_dir"])


def summary(out: str | Path) -> pd.DataFrame:
    """Per layer: units done, the distribution of best responses, silent units (best response 0)."""
    df = load_scan(out)
    best = df.groupby(["layer", "unit"], sort=False)["best_response"].max()
    rows = []
    for layer, b in best.groupby(level=0, sort=False):
        done = df[(df["layer"] == layer)].groupby("unit")["finished"].all()
        rows.append({"layer": layer, "units": len(b), "done": int(done.sum()), "median": b.median(),
                     "q25": b.quantile(0.25), "q75": b.quantile(0.75), "max": b.max(),
                     "silent": int((b.fillna(0) <= 0).sum())})
    return pd.DataFrame(rows)
