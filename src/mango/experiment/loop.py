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
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import MangoError
from ..generators import Generator, make_generator
from ..imagespace import adapter
from ..optimizers import Optimizer
from ..optimizers.auto import AUTO, DRIVE, DRIVE_WHY, REMEASURE, choose, default_batch, resolve
from ..optimizers.options import create
from ..targets import Target, TorchTarget, make_target
from ..targets.base import AdaptedTarget
from ..targets.drive import threshold
from .config import SETTINGS, RunConfig
from .finish import finish
from .result import CONFIG_NAME, RunResult
from .search import Loop, is_rig
from .session import open_run

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
    if target is not None and cfg.readout is not None and not is_rig(target):
        raise MangoError(f"readout {cfg.readout!r} applies to a named model; a target object reads out what it was "
                         "built with: pass readout= to make_target (or TorchTarget) instead")
    tgt = target or (objective_target(cfg) if cfg.objective else
                     make_target(cfg.model, cfg.target, cfg.model_weights, cfg.readout, cfg.noise, cfg.steps))
    if is_rig(tgt):
        tgt.open()  # type: ignore[attr-defined]  # a missing folder, no rig, a channel out of range: one line, now
    convert = None if is_rig(tgt) else adapter(gen.image_space, tgt.input_space, f"generator {gen.name!r}",
                                                 f"target {tgt.name!r}")
    if convert is not None:
        tgt = AdaptedTarget(tgt, convert, gen.image_space)
    try:
        opt = create(resolve(cfg.optimizer, gen, noisy(cfg, tgt)), gen, cfg.seed, cfg.optimizer_options)
    except MangoError:
        raise
    except (TypeError, ValueError) as exc:  # unknown option name, or a value of the wrong type
        raise MangoError(f"bad options {cfg.optimizer_options} for optimizer {cfg.optimizer!r}: {exc}") from None
    return gen, tgt, opt


def drive_by_default(cfg: RunConfig, tgt: Target) -> bool:
    """Whether the default reads the unit's rate with its drive (:data:`~mango.optimizers.auto.DRIVE`): optimizer
    ``auto``, neither a readout nor an objective given, a noise-free model, and a spiking unit read as a rate
    whose layer has a firing threshold MANGO can read. Runs and scans both decide here."""
    inner = tgt.inner if isinstance(tgt, AdaptedTarget) else tgt
    if (cfg.optimizer != AUTO or cfg.readout is not None or cfg.objective or noisy(cfg, tgt)
            or not isinstance(inner, TorchTarget) or inner.readout.kind != "rate" or inner.spec.layer is None):
        return False
    try:
        threshold(inner._module, inner.spec.layer)
    except MangoError:  # a layer without one number as its threshold: the rate alone
        return False
    return True


def noisy(cfg: RunConfig, tgt: Target | None = None) -> bool:
    """A target whose responses vary from trial to trial: injected noise, or a rig (a living neuron)."""
    return cfg.noise is not None or cfg.model.startswith("rig:") or (tgt is not None and is_rig(tgt))


def objective_target(cfg: RunConfig) -> Target:
    """The target of a run with an ``objective``: the units it names, from one forward, weighted."""
    from ..targets.objective import WeightedTarget, parse_objective
    from ..targets.spec import TargetSpec

    spec = TargetSpec.parse(cfg.target)
    if spec.layer is None or spec.unit is None:
        raise MangoError(f"an objective needs a target unit LAYER:UNIT (its layer and 'u'), got {cfg.target!r}")
    inner = make_target(cfg.model, f"{spec.layer}:*", cfg.model_weights, cfg.readout, cfg.noise, cfg.steps)
    units = tuple(inner.units or ())
    expr = cfg.objective or ""
    return WeightedTarget(inner, parse_objective(expr, len(units), spec.unit), units, expr)


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
    given = {k: v for k, v in given.items() if v is not None}
    cfg = resolve_config(given, out, resume)
    run_dir, notes = _run_dir(out, cfg), list[str]()
    session = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
    gen, tgt, opt = build_components(cfg, gen_obj, tgt_obj, session)
    chosen = []
    if tgt_obj is None and drive_by_default(cfg, tgt):  # recorded in config.json: a resume reads the same
        opt.close()
        cfg = replace(cfg, readout=DRIVE)
        gen, tgt, opt = build_components(cfg, gen, None, session)  # the target again, with the drive
        chosen.append(f"readout {DRIVE} (auto: {DRIVE_WHY})")
    auto = cfg.optimizer == AUTO
    if auto:  # recorded as the method that runs: config.json, result and resume name it
        name, why = choose(gen, noisy(cfg, tgt))
        cfg = replace(cfg, optimizer=name)
        chosen.append(f"optimizer {name} (auto: {why})")
    if cfg.batch is None:  # recorded too, so a resume keeps it
        batch, batch_why = default_batch(opt.preferred_batch, cfg.budget, auto and is_rig(tgt))
        cfg = replace(cfg, batch=batch)
        if batch_why:
            chosen.append(f"batch {batch} (auto: {batch_why})")
    # injected noise only: a rig's budget counts presentations, and re-measuring would show images beyond it
    if not resume and "remeasure" not in given and cfg.noise is not None:
        cfg = replace(cfg, remeasure=REMEASURE)
        chosen.append(f"remeasure {REMEASURE} (auto: a noisy target; the reported MEI is the best mean of the 5 "
                      "best re-measured)")
    if progress:
        for line in chosen:
            log.warning(line)
    try:
        with open_run(run_dir, cfg, resume, gen.space.dim, describe(gen, tgt, opt), notes) as store:
            for note in notes:
                log.warning(note)
            for line in chosen:
                store.log("auto", line)
            loop = Loop(cfg, gen, tgt, opt, store, run_dir)
            loop.search(progress)
            try:
                return finish(run_dir, cfg, gen, tgt, store, loop.wall())
            except KeyboardInterrupt:
                raise RunInterrupted(run_dir, store.count(), cfg.budget, finishing=True) from None
    finally:
        opt.close()
        if is_rig(tgt):
            tgt.close()  # type: ignore[attr-defined]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM/SIGHUP) mid-run: what was measured is on disk, and how to continue."""

    def __init__(self, run_dir: Path, done: int, budget: int, finishing: bool = False) -> None:
        where = (f"while writing the run's pictures: all {done} queries are measured and kept" if finishing else
                 f"after {done} of {budget} queries; every measured batch is kept in {run_dir / 'run.db'}")
        super().__init__(f"interrupted {where}; continue with: mango run --resume --out {run_dir}")
        self.run_dir = run_dir


__all__ = ["RunInterrupted", "build_components", "resolve_config", "run"]
