"""The activation-maximization loop: ask -> decode -> measure -> tell -> record.

Every measured batch is appended to ``history.csv`` before the next ask, so
a crash loses at most one batch. ``resume=True`` replays the recorded
batches through the optimizer (checking each replayed candidate equals the
recorded one) and continues: the result equals an uninterrupted run.
"""
from __future__ import annotations

import json
import re
import time
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import MangoError
from ..generators import Generator, make_generator
from ..imagespace import adapter
from ..optimizers import OPTIMIZERS, Optimizer
from ..targets import Target, make_target
from ..targets.base import AdaptedTarget
from . import artifacts
from .config import RunConfig
from .history import HistoryWriter, best_rows, latent_columns, latents, read_history, repair_history
from .result import RunResult, best_of


def build_components(cfg: RunConfig, generator: Generator | None = None,
                     target: Target | None = None) -> tuple[Generator, Target, Optimizer]:
    """Generator, target and optimizer for ``cfg``; objects given directly take precedence."""
    gen = generator or make_generator(cfg.generator, cfg.generator_weights)
    tgt = target or make_target(cfg.model, cfg.target, cfg.model_weights, cfg.readout, cfg.noise, cfg.steps)
    convert = adapter(gen.image_space, tgt.input_space, f"generator {gen.name!r}", f"target {tgt.name!r}")
    if convert is not None:
        tgt = AdaptedTarget(tgt, convert, gen.image_space)
    factory = OPTIMIZERS.get(cfg.optimizer)
    try:
        opt = factory(gen.space, seed=cfg.seed, **cfg.optimizer_options)
    except MangoError:
        raise
    except (TypeError, ValueError) as exc:  # unknown option name, or a value of the wrong type
        raise MangoError(f"bad options {cfg.optimizer_options} for optimizer {cfg.optimizer!r}: {exc}") from None
    return gen, tgt, opt


def _run_dir(out: str | Path | None, cfg: RunConfig) -> Path:
    if out is not None:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    model = re.sub(r"[^\w.-]+", "_", Path(cfg.model).name)  # a user module path or file name stays one folder
    return Path("runs") / f"{stamp}-{model}-{cfg.target.replace(':', '_')}-{cfg.optimizer.replace(':', '_')}-s{cfg.seed}"


def resolve_config(given: dict, out: str | Path | None, resume: bool) -> RunConfig:
    """Settings given (not None) over the defaults, or over the stored config when resuming."""
    if not resume:
        cfg = RunConfig(**given)
    else:
        if out is None:
            raise MangoError("resume needs the folder of the run to continue (--out DIR)")
        saved = Path(out) / "config.json"
        if not saved.is_file():
            raise MangoError(f"nothing to resume in {out}: it holds no config.json")
        stored = RunConfig.load(saved)
        cfg = replace(stored, **given)
        diff = stored.mismatches(cfg)
        if diff:
            raise MangoError(f"cannot resume {out} with other settings ({'; '.join(diff)})")
    cfg.validate()
    return cfg


def measure(target: Target, images: torch.Tensor, repeats: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread over ``repeats`` presentations of each image (one batch); objective = mean over units."""
    if repeats > 1:
        images = images.repeat_interleave(repeats, 0)
    r = target.responses(images).double().mean(1).view(-1, repeats)
    return r.mean(1), (r.std(1, correction=0) if repeats > 1 else torch.zeros(len(r), dtype=r.dtype))


def _replay(opt: Optimizer, df: pd.DataFrame, dim: int) -> None:
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


def run(optimizer: str | None = None, budget: int | None = None, batch: int | None = None,
        seed: int | None = None, target: str | Target | None = None, model: str | None = None,
        generator: str | Generator | None = None, optimizer_options: dict | None = None,
        model_weights: str | None = None, generator_weights: str | None = None, repeats: int | None = None,
        remeasure: int | None = None, readout: str | None = None, noise: str | None = None,
        steps: int | None = None, out: str | Path | None = None, resume: bool = False, progress: bool = True) -> RunResult:
    """Find the most exciting input of one unit; returns a :class:`RunResult`.

    Settings left ``None`` take the embedded default (:class:`RunConfig`),
    or, with ``resume=True``, the values stored in ``out/config.json`` (the
    budget may be raised to extend a run). ``repeats`` measures each candidate
    several times (noisy targets); ``remeasure`` re-measures the 5 best at
    the end and reports the best mean. ``generator`` and ``target`` take
    registered names or objects implementing :class:`Generator` / :class:`Target`.
    """
    gen_obj = generator if isinstance(generator, Generator) else None
    tgt_obj = target if isinstance(target, Target) else None
    given = dict(generator=gen_obj.name if gen_obj else generator, model=tgt_obj.name if tgt_obj else model,
                 target=str(getattr(tgt_obj, "spec", tgt_obj.name)) if tgt_obj else target, optimizer=optimizer,
                 optimizer_options=optimizer_options, budget=budget, batch=batch, seed=seed,
                 model_weights=model_weights, generator_weights=generator_weights, repeats=repeats,
                 remeasure=remeasure, readout=readout, noise=noise, steps=steps)
    cfg = resolve_config({k: v for k, v in given.items() if v is not None}, out, resume)
    gen, tgt, opt = build_components(cfg, gen_obj, tgt_obj)
    cfg.batch = cfg.batch or min(opt.preferred_batch, cfg.budget)
    run_dir = _run_dir(out, cfg)
    if not resume and (run_dir / "config.json").exists():
        raise MangoError(f"{run_dir} already holds a run: pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.to_json())

    dim, hist_path = gen.space.dim, run_dir / "history.csv"
    done, batch_id, elapsed0, best = 0, 0, 0.0, -np.inf
    if resume and hist_path.exists():
        df = repair_history(hist_path, dim)
        if len(df):
            _replay(opt, df, dim)
            done, batch_id, elapsed0 = len(df), int(df["batch"].iloc[-1]) + 1, float(df["elapsed_s"].iloc[-1])
            best = float(df["value"].max())
    writer = HistoryWriter(hist_path, dim)
    start = time.perf_counter() - elapsed0
    try:
        with _progress(progress) as bar:
            task = bar.add_task(f"{cfg.optimizer} -> {tgt.name} {cfg.target}", total=cfg.budget, completed=done,
                                best=f"{best:.4g}") if bar else None
            while done < cfg.budget:
                k = min(cfg.batch, cfg.budget - done)
                t0 = time.perf_counter()
                z = opt.ask(k)
                t1 = time.perf_counter()
                tgt.reseed(noise_key(cfg.seed, batch_id))
                resp, sd = measure(tgt, gen.decode(z), cfg.repeats)
                values = torch.where(torch.isfinite(resp), resp, torch.full_like(resp, -np.inf))
                t2 = time.perf_counter()
                opt.tell(z, values)
                now = time.perf_counter()
                writer.append(done, batch_id, z, resp, sd, values, now - start, now - t0, (t1 - t0) + (now - t2))
                done, batch_id = done + k, batch_id + 1
                best = max(best, float(values.max()))
                if bar:
                    bar.update(task, completed=done, best=f"{best:.4g}")
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir, done, cfg.budget) from None
    return finish(run_dir, cfg, gen, tgt, time.perf_counter() - start)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a kill) mid-run: what was measured is on disk, and how to continue."""

    def __init__(self, run_dir: Path, done: int, budget: int) -> None:
        super().__init__(f"interrupted after {done} of {budget} queries; every measured batch is in "
                         f"{run_dir / 'history.csv'}; continue with: mango run --resume --out {run_dir}")
        self.run_dir = run_dir


def noise_key(seed: int, batch: int) -> int:
    """The target-noise seed of one batch: fixed by (run seed, batch), so a resumed run draws the same noise."""
    return (seed * 1_000_003 + batch + 1) % 2**63


def remeasure_top(df: pd.DataFrame, gen: Generator, tgt: Target, n: int, top: int = 5,
                  seed: int = 0) -> pd.DataFrame:
    """Measure the ``top`` best distinct candidates ``n`` more times each, so a lucky single
    measurement of a noisy neuron is not reported as the answer."""
    rows = best_rows(df, top, gen.space.dim)
    tgt.reseed(noise_key(seed, -1))
    mean, sd = measure(tgt, gen.decode(latents(rows, gen.space.dim)), n)
    return pd.DataFrame({"query": rows["query"].to_numpy(), "recorded": rows["response"].to_numpy(),
                         "mean": mean.numpy(), "sd": sd.numpy(), "n": n})


def finish(run_dir: Path, cfg: RunConfig, gen: Generator, tgt: Target, wall: float) -> RunResult:
    """Write the MEI, plots, GIF and ``result.json`` from the history on disk."""
    df = read_history(run_dir / "history.csv")
    dim = gen.space.dim
    i, best = best_of(df)
    remeasured = None
    if cfg.remeasure:
        rm = remeasure_top(df, gen, tgt, cfg.remeasure, seed=cfg.seed)
        rm.to_csv(run_dir / "remeasured.csv", index=False)
        j = int(np.nanargmax(np.where(np.isfinite(rm["mean"]), rm["mean"], np.nan)))
        i, best = int(rm["query"].iloc[j]), float(rm["mean"].iloc[j])
        remeasured = {"n": cfg.remeasure, "recorded_response": float(rm["recorded"].iloc[j]),
                      "sd": float(rm["sd"].iloc[j])}
    z = latents(df.iloc[i : i + 1], dim)
    image = gen.pixels(z)[0]
    artifacts.to_pil(image).save(run_dir / "mei.png")
    artifacts.convergence_plot(df, run_dir / "convergence.png",
                               f"{cfg.optimizer} on {cfg.model} {cfg.target} (seed {cfg.seed})")
    artifacts.evolution_gif(df, gen.pixels, run_dir / "evolution.gif", dim)
    artifacts.top_grid(df, gen.pixels, run_dir / "top16.png", dim)
    result = RunResult(run_dir, best, z[0], image, int(df["query"].iloc[i]), len(df), wall,
                       json.loads(cfg.to_json()), df, remeasured)
    (run_dir / "result.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result
