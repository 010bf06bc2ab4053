"""The activation-maximization loop: ask -> decode -> measure -> tell -> record.

Every measured batch is one transaction in the run store before the next ask, so a crash loses at
most one batch. A fresh run and a resumed one are the same loop: at each batch the optimizer asks,
candidates already recorded are checked to equal the record and their values told again, and only
the missing ones are measured. So a resumed run equals an uninterrupted one, and a damaged record
set aside is measured again in its own place.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..errors import MangoError
from ..generators import Generator, make_generator
from ..imagespace import adapter
from ..optimizers import OPTIMIZERS, Optimizer
from ..targets import Target, make_target
from ..targets.base import AdaptedTarget
from .config import SETTINGS, RunConfig
from .finish import finish
from .history import latents
from .measure import measure, noise_key
from .result import CONFIG_NAME, RunResult
from .session import open_run
from .store import RunStore, encode_latent

log = logging.getLogger("mango")


def build_components(cfg: RunConfig, generator: Generator | None = None, target: Target | None = None,
                     session: str | None = None) -> tuple[Generator, Target, Optimizer]:
    """Generator, target and optimizer for ``cfg``; objects given directly take precedence. ``session``
    names this run to a rig (the same after a restart)."""
    gen = generator or make_generator(cfg.generator, cfg.generator_weights)
    if target is None and cfg.model.startswith("rig:"):
        from ..rig.target import RigTarget

        target = RigTarget(cfg.model[4:], cfg.target, gen.image_shape, timeout=cfg.timeout, reshows=cfg.reshows,
                           references=cfg.references, session=session)
    tgt = target or make_target(cfg.model, cfg.target, cfg.model_weights, cfg.readout, cfg.noise, cfg.steps)
    if _is_rig(tgt):
        tgt.open()  # type: ignore[attr-defined]  # a missing folder, no rig, a channel out of range: one line, now
    convert = None if _is_rig(tgt) else adapter(gen.image_space, tgt.input_space, f"generator {gen.name!r}",
                                                 f"target {tgt.name!r}")
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


def _is_rig(tgt: Target) -> bool:
    """A living neuron behind a rig: shown plain pixels, answers per presentation (see :mod:`mango.rig`)."""
    return hasattr(tgt, "show") and hasattr(tgt, "attach")


def _run_dir(out: str | Path | None, cfg: RunConfig) -> Path:
    if out is not None:
        return Path(out)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    model = re.sub(r"[^\w.-]+", "_", Path(cfg.model).name)  # a user module path or file name stays one folder
    target, optimizer = cfg.target.replace(":", "_"), cfg.optimizer.replace(":", "_")
    return Path("runs") / f"{stamp}-{model}-{target}-{optimizer}-s{cfg.seed}"


def resolve_config(given: dict, out: str | Path | None, resume: bool) -> RunConfig:
    """Settings given (not None) over the defaults, or over the stored config when resuming."""
    unknown = sorted(set(given) - set(SETTINGS))
    if unknown:
        raise MangoError(f"unknown run settings {unknown}; allowed: {', '.join(SETTINGS)}")
    if not resume:
        return RunConfig.from_dict(given)
    if out is None:
        raise MangoError("resume needs the folder of the run to continue (--out DIR)")
    saved = Path(out) / CONFIG_NAME
    if not saved.is_file():
        raise MangoError(f"nothing to resume in {out}: it holds no {CONFIG_NAME}")
    stored = RunConfig.load(saved)
    cfg = RunConfig.from_dict({**stored.to_dict(), **given})
    diff = stored.mismatches(cfg)
    if diff:
        raise MangoError(f"cannot resume {out} with other settings ({'; '.join(diff)})")
    return cfg


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("best [green]{task.fields[best]}"), TimeElapsedColumn())


def describe(gen: Generator, tgt: Target, opt: Optimizer) -> dict:
    """Each plug-in's effective settings, recorded in the store and ``result.json``."""
    opt_desc = opt.describe() if hasattr(opt, "describe") else {"class": type(opt).__name__, **opt.hyperparameters()}
    return {"optimizer": opt_desc, "generator": gen.describe(), "target": tgt.describe()}


def run(config: RunConfig | None = None, *, out: str | Path | None = None, resume: bool = False,
        progress: bool = True, generator: str | Generator | None = None, target: str | Target | None = None,
        **settings: Any) -> RunResult:
    """Find the most exciting input of one unit; returns a :class:`RunResult`.

    Settings are the fields of :class:`RunConfig` (``optimizer``, ``budget``, ``seed``, ...), given as
    a ``config`` or as keywords; those left out take the embedded default, or, with ``resume=True``,
    the values stored in ``out/config.json`` (the budget may be raised to extend a run).
    ``generator`` and ``target`` take registered names (a target spec such as ``lif2:12``) or objects
    implementing :class:`Generator` / :class:`Target`.
    """
    gen_obj = generator if isinstance(generator, Generator) else None
    tgt_obj = target if isinstance(target, Target) else None
    given = {**(config.to_dict() if config is not None else {}), **settings,
             "generator": gen_obj.name if gen_obj else generator,
             "model": tgt_obj.name if tgt_obj else settings.get("model"),
             "target": str(getattr(tgt_obj, "spec", None) or tgt_obj.name) if tgt_obj else target}
    cfg = resolve_config({k: v for k, v in given.items() if v is not None}, out, resume)
    run_dir, notes = _run_dir(out, cfg), list[str]()
    session = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
    gen, tgt, opt = build_components(cfg, gen_obj, tgt_obj, session)
    try:
        if cfg.batch is None:
            cfg = replace(cfg, batch=min(opt.preferred_batch, cfg.budget))
        with open_run(run_dir, cfg, resume, gen.space.dim, describe(gen, tgt, opt), notes) as store:
            for note in notes:
                log.warning(note)
            loop = Loop(cfg, gen, tgt, opt, store, run_dir)
            loop.search(progress)
            try:
                return finish(run_dir, cfg, gen, tgt, store, loop.wall())
            except KeyboardInterrupt:
                raise RunInterrupted(run_dir, store.count(), cfg.budget, finishing=True) from None
    finally:
        opt.close()
        if _is_rig(tgt):
            tgt.close()  # type: ignore[attr-defined]


@dataclass
class Loop:
    """One pass over the run's batches: recorded ones are replayed, missing ones measured."""

    cfg: RunConfig
    gen: Generator
    tgt: Target
    opt: Optimizer
    store: RunStore
    run_dir: Path

    def __post_init__(self) -> None:
        df, damage = self.store.history()
        if damage:
            self.store.append([], damage=damage, drop=[int(d.position.split()[-1]) for d in damage])
            first = damage[0]
            text = (f"{len(damage)} damaged records set aside in {self.store.path} (table damaged; first: "
                    f"{first.position}, {first.reason}); they are measured again")
            self.store.log("damaged", text)
            log.warning(text)
        self.df = df
        self.start = time.perf_counter() - (float(df["elapsed_s"].iloc[-1]) if len(df) else 0.0)
        self.rig: Any = cast(Any, self.tgt) if _is_rig(self.tgt) else None  # a RigTarget (mango.rig is optional)
        if self.rig is not None:
            from ..rig.record import RigRecord

            self.record = RigRecord(self.store)
            if self.rig.references:
                refs = torch.randint(0, self.gen.space.size, (self.rig.references, self.gen.space.dim),
                                     generator=torch.Generator().manual_seed(2**31 - 1))  # the same in every run
                pix = (self.gen.pixels(refs) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
                self.rig.reference_images = [(f"ref{i:03d}", p) for i, p in enumerate(pix)]
            self.rig.attach(self.record)

    def next_k(self, done: int) -> int:
        """Candidates in the next new batch: the budget counts queries, or a rig's presentations."""
        batch = self.cfg.batch or 1  # set by run() before the loop starts
        if self.rig is None:
            return min(batch, self.cfg.budget - done)
        left = self.cfg.budget - self.record.presented() - self.rig.references
        return min(batch, left // self.cfg.repeats)

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def search(self, progress: bool) -> None:
        cfg, df = self.cfg, self.df
        q, b, asked = (df[c].to_numpy() for c in ("query", "batch", "asked"))
        values = torch.tensor(df["value"].to_numpy(dtype=float))
        zrec = latents(df, self.gen.space.dim) if len(df) else None
        done, batch_id, pos, best = 0, 0, 0, float(np.nanmax(values.numpy(), initial=-np.inf))
        try:
            with _progress(progress) as bar:
                task = bar.add_task(f"{cfg.optimizer} -> {self.tgt.name} {cfg.target}", total=cfg.budget,
                                    completed=0, best=f"{best:.4g}") if bar else None
                while True:
                    end = pos
                    while end < len(q) and b[end] == batch_id:
                        end += 1
                    if end > pos:
                        k = int(asked[pos])
                    else:  # no record of this batch: a new one, or one whose records were all set aside
                        k = min(self.next_k(done), int(q[pos]) - done if pos < len(q) else cfg.budget)
                        if k <= 0:
                            break
                    have = torch.from_numpy(q[pos:end] - done)
                    if len(have) and (int(have.min()) < 0 or int(have.max()) >= k):
                        raise MangoError(f"cannot resume {self.run_dir}: batch {batch_id} holds query numbers "
                                         f"outside {done}..{done + k - 1}; the record does not fit this run")
                    best = max(best, self._batch(batch_id, done, k, have, values[pos:end],
                                                 zrec[pos:end] if zrec is not None else None))
                    done, batch_id, pos = done + k, batch_id + 1, end
                    if bar:
                        shown = self.record.presented() if self.rig is not None else done
                        bar.update(task, completed=shown, best=f"{best:.4g}")
        except KeyboardInterrupt:
            raise RunInterrupted(self.run_dir, self.store.count(), cfg.budget) from None

    def _batch(self, batch_id: int, first: int, k: int, have: torch.Tensor, recorded: torch.Tensor,
               zrec: torch.Tensor | None) -> float:
        """Ask ``k``; check the recorded candidates (positions ``have``), measure the others; tell; record."""
        t0 = time.perf_counter()
        z = self.opt.ask(k)
        t1 = time.perf_counter()
        if len(have) and (zrec is None or z.dtype != zrec.dtype or not torch.equal(z[have], zrec)):
            raise MangoError(f"cannot resume {self.run_dir}: the optimizer proposed other candidates than recorded "
                             f"in batch {batch_id} (different library versions or thread settings?)")
        values = torch.full((k,), -torch.inf, dtype=torch.float64)
        values[have] = recorded
        todo = torch.from_numpy(np.setdiff1d(np.arange(k), have.numpy()))
        rows = []
        if len(todo) and self.rig is not None:
            queries = [first + i for i in todo.tolist()]
            shown = self.rig.show(self.gen.pixels(z[todo]), [f"q{n:06d}" for n in queries], queries, batch_id,
                                  self.cfg.repeats, self.cfg.budget)
            resp, sd = torch.from_numpy(shown.mean), torch.from_numpy(shown.sd)
            values[todo] = torch.where(torch.isfinite(resp) | resp.isnan(), resp, torch.full_like(resp, -torch.inf))
        elif len(todo):
            self.tgt.reseed(noise_key(self.cfg.seed, batch_id))
            resp, sd = measure(self.tgt, self.gen.decode(z[todo]), self.cfg.repeats)
            values[todo] = torch.where(torch.isfinite(resp), resp, torch.full_like(resp, -torch.inf))
        t2 = time.perf_counter()
        self.opt.tell(z, values, missing=values.isnan())  # NaN: left out (a rig that never answered)
        now = time.perf_counter()
        if len(todo):
            zs = z[todo].numpy()
            for j, i in enumerate(todo.tolist()):
                rows.append((first + i, batch_id, k, float(resp[j]), float(sd[j]), float(values[i]), now - self.start,
                             now - t0, (t1 - t0) + (now - t2), *encode_latent(zs[j])))
            self.store.append(rows)
        return float(np.nanmax(values.numpy(), initial=-np.inf))


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM/SIGHUP) mid-run: what was measured is on disk, and how to continue."""

    def __init__(self, run_dir: Path, done: int, budget: int, finishing: bool = False) -> None:
        where = (f"while writing the run's pictures: all {done} queries are measured and kept" if finishing else
                 f"after {done} of {budget} queries; every measured batch is kept in {run_dir / 'run.db'}")
        super().__init__(f"interrupted {where}; continue with: mango run --resume --out {run_dir}")
        self.run_dir = run_dir


__all__ = ["RunInterrupted", "build_components", "resolve_config", "run"]
