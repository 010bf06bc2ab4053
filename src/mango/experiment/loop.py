"""The activation-maximization loop: ask -> decode -> measure -> tell -> record.

Every measured batch is appended to ``history.csv`` before the next ask, so
a crash loses at most one batch. ``resume=True`` replays the recorded
batches through the optimizer (checking each replayed candidate equals the
recorded one) and continues: the result equals an uninterrupted run.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import MangoError
from ..generators import GENERATORS, Generator
from ..optimizers import OPTIMIZERS, Optimizer
from ..targets import Target, make_target
from . import artifacts
from .config import RunConfig
from .history import HistoryWriter, latent_columns, repair_history
from .result import RunResult, best_of


def build_components(cfg: RunConfig, generator: Generator | None = None,
                     target: Target | None = None) -> tuple[Generator, Target, Optimizer]:
    """Generator, target and optimizer for ``cfg``; objects given directly take precedence."""
    gen = generator or GENERATORS.create(cfg.generator)
    tgt = target or make_target(cfg.model, cfg.target)
    if tuple(gen.image_shape) != tuple(tgt.input_shape):
        raise MangoError(f"generator {gen.name!r} makes images of shape {list(gen.image_shape)} but target "
                         f"{tgt.name!r} expects {list(tgt.input_shape)}")
    factory = OPTIMIZERS.get(cfg.optimizer)
    try:
        opt = factory(gen.space, seed=cfg.seed, **cfg.optimizer_options)
    except TypeError as exc:
        raise MangoError(f"bad options {cfg.optimizer_options} for optimizer {cfg.optimizer!r}: {exc}") from None
    return gen, tgt, opt


def _run_dir(out: str | Path | None, cfg: RunConfig) -> Path:
    if out is not None:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.model}-{cfg.target.replace(':', '_')}-{cfg.optimizer}-s{cfg.seed}"


def _prepare_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> RunConfig:
    """Create the folder, or check a resumed one matches; return the config to use."""
    saved = run_dir / "config.json"
    if resume:
        if not saved.is_file():
            raise MangoError(f"nothing to resume in {run_dir}: it holds no config.json")
        old = RunConfig.load(saved)
        diff = old.mismatches(cfg)
        if diff:
            raise MangoError(f"cannot resume {run_dir} with other settings ({'; '.join(diff)})")
        return cfg
    if saved.exists():
        raise MangoError(f"{run_dir} already holds a run: pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    return cfg


def _replay(opt: Optimizer, df, dim: int, integer: bool) -> None:
    """Bring the optimizer to the state it had after the recorded batches."""
    zcols = latent_columns(dim)
    for b, rows in df.groupby("batch", sort=True):
        z = opt.ask(len(rows))
        recorded = torch.tensor(rows[zcols].to_numpy(), dtype=z.dtype)
        if not torch.equal(z, recorded):
            raise MangoError(f"cannot resume: the optimizer proposed other candidates than recorded in batch {b} "
                             "(different library versions or thread settings?)")
        opt.tell(z, torch.tensor(rows["value"].to_numpy(dtype=float)))


def _progress(enabled: bool):
    if not enabled:
        return nullcontext(None)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("best [green]{task.fields[best]}"), TimeElapsedColumn())


def run(optimizer: str = RunConfig.optimizer, budget: int = RunConfig.budget, batch: int | None = None,
        seed: int = 0, target: str | Target = RunConfig.target, model: str = RunConfig.model,
        generator: str | Generator = RunConfig.generator, optimizer_options: dict | None = None,
        out: str | Path | None = None, resume: bool = False, progress: bool = True) -> RunResult:
    """Find the most exciting input of one unit; returns a :class:`RunResult`.

    ``generator`` and ``target`` take registered names (with ``model``) or
    objects implementing :class:`Generator` / :class:`Target`.
    """
    gen_obj = generator if isinstance(generator, Generator) else None
    tgt_obj = target if isinstance(target, Target) else None
    cfg = RunConfig(
        generator=gen_obj.name if gen_obj else generator, model=tgt_obj.name if tgt_obj else model,
        target=str(getattr(tgt_obj, "spec", tgt_obj.name)) if tgt_obj else target, optimizer=optimizer,
        optimizer_options=dict(optimizer_options or {}), budget=budget, batch=batch, seed=seed)
    cfg.validate()
    gen, tgt, opt = build_components(cfg, gen_obj, tgt_obj)
    cfg.batch = cfg.batch or min(opt.preferred_batch, cfg.budget)
    run_dir = _run_dir(out, cfg)
    cfg = _prepare_dir(run_dir, cfg, resume)
    (run_dir / "config.json").write_text(cfg.to_json())

    dim, hist_path = gen.space.dim, run_dir / "history.csv"
    done, batch_id, elapsed0 = 0, 0, 0.0
    integer = True
    if resume and hist_path.exists():
        df = repair_history(hist_path, dim)
        if len(df):
            _replay(opt, df, dim, integer)
            done, batch_id, elapsed0 = len(df), int(df["batch"].iloc[-1]) + 1, float(df["elapsed_s"].iloc[-1])
            best_so_far = best_of(df)[1] if np.isfinite(df["response"]).any() else -np.inf
    writer = HistoryWriter(hist_path, dim)
    best = best_so_far if done else -np.inf
    start = time.perf_counter() - elapsed0
    with _progress(progress) as bar:
        task = bar.add_task(f"{cfg.optimizer} -> {tgt.name} {cfg.target}", total=cfg.budget, completed=done,
                            best=f"{best:.4g}") if bar else None
        while done < cfg.budget:
            k = min(cfg.batch, cfg.budget - done)
            t0 = time.perf_counter()
            z = opt.ask(k)
            integer = not torch.is_floating_point(z)
            resp = tgt.responses(gen.decode(z)).double().mean(1)
            values = torch.where(torch.isfinite(resp), resp, torch.full_like(resp, -np.inf))
            opt.tell(z, values)
            now = time.perf_counter()
            writer.append(done, batch_id, z, resp, values, now - start, now - t0)
            done, batch_id = done + k, batch_id + 1
            best = max(best, float(values.max()))
            if bar:
                bar.update(task, completed=done, best=f"{best:.4g}")
    return finish(run_dir, cfg, gen, time.perf_counter() - start, integer)


def finish(run_dir: Path, cfg: RunConfig, gen: Generator, wall: float, integer: bool) -> RunResult:
    """Write the MEI, plots, GIF and ``result.json`` from the history on disk."""
    import json

    from .history import read_history

    df = read_history(run_dir / "history.csv")
    i, best = best_of(df)
    z = torch.tensor(df[latent_columns(gen.space.dim)].to_numpy()[i : i + 1])
    z = z.long() if integer else z.float()
    image = gen.decode(z)[0]
    artifacts.to_pil(image).save(run_dir / "mei.png")
    artifacts.convergence_plot(df, run_dir / "convergence.png",
                               f"{cfg.optimizer} on {cfg.model} {cfg.target} (seed {cfg.seed})")
    artifacts.evolution_gif(df, gen.decode, run_dir / "evolution.gif", gen.space.dim, integer)
    artifacts.top_grid(df, gen.decode, run_dir / "top16.png", gen.space.dim, integer)
    result = RunResult(run_dir, best, z[0], image, int(df["query"].iloc[i]), len(df), wall,
                       json.loads(cfg.to_json()), df)
    (run_dir / "result.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result
