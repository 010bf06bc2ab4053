"""Batched neurons: the runs of many units of one layer advance together and share every forward pass.

Each member is an ordinary run (its own optimizer, run store and folder). At each step every member
proposes its next batch; all their images go through the generator and the network at once, the
network computing only the units asked for (a multi-unit target); each member gets its own unit's
column back. A unit's response does not depend on the other images or units in the pass (the
targets are built to be bit-identical), so every run equals the run of its unit alone.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Generator as Coroutine
from contextlib import ExitStack
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch

from ..experiment.config import RunConfig
from ..experiment.finish import finish
from ..experiment.loop import RunInterrupted, describe, noisy
from ..experiment.measure import evaluate, noise_key, responses
from ..experiment.result import RESULT_NAME, load_run
from ..experiment.search import Loop, Request
from ..experiment.session import open_run
from ..experiment.store import RunStore
from ..generators import Generator, make_generator
from ..imagespace import adapter
from ..optimizers import Optimizer
from ..optimizers.auto import AUTO, default_batch, resolve
from ..optimizers.options import create
from ..targets import Target, TorchTarget, make_target
from ..targets.base import AdaptedTarget
from ..targets.objective import WeightedTarget, parse_objective
from .plan import Member, ScanConfig

log = logging.getLogger("mango")


class Column(Target):
    """One member's view of the shared multi-unit target: its weighted column(s), for its own finish."""

    def __init__(self, inner: Target, weights: torch.Tensor, spec: str) -> None:
        self.inner, self.w, self.spec = inner, weights, spec
        self.name, self.input_shape, self._input_space = inner.name, inner.input_shape, inner.input_space

    def responses(self, images: torch.Tensor) -> torch.Tensor:
        return (responses(self.inner, images) @ self.w)[:, None]

    def reseed(self, key: int) -> None:
        self.inner.reseed(key)


def finished(cfg: ScanConfig, m: Member, root: Path) -> bool:
    """A member whose run holds its whole budget and its result: nothing left to measure."""
    run_dir = m.run_dir(root)
    if not (run_dir / RESULT_NAME).is_file():
        return False
    try:
        return load_run(run_dir).config.budget >= cfg.budget
    except Exception:  # a damaged run is resumed (and its damage reported) by the group
        return False


def run_group(cfg: ScanConfig, group: list[Member], root: Path, step: Callable[[int], None] | None = None) -> None:
    """Run (or resume) every member of ``group`` (one layer) to its budget, sharing each forward pass."""
    todo = [m for m in group if not finished(cfg, m, root)]
    if not todo:
        return
    gen = make_generator(cfg.generator, cfg.generator_weights)
    tgt, cols = layer_target(cfg, todo, gen)
    with ExitStack() as stack:
        loops: list[tuple[Member, Loop, RunConfig]] = []
        for m in todo:
            run_cfg, opt, own, store = open_member(cfg, m, gen, root, stack, partial(view, tgt, cols[m]))
            loops.append((m, Loop(run_cfg, gen, own, opt, store, m.run_dir(root)), run_cfg))
        try:
            _lockstep([(loop, cols[m]) for m, loop, _ in loops], gen, tgt, step)
        except KeyboardInterrupt:
            done = sum(loop.store.count() for _, loop, _ in loops)
            raise RunInterrupted(root, done, cfg.budget * len(loops)) from None
        for _, loop, run_cfg in loops:
            finish(loop.run_dir, run_cfg, gen, loop.tgt, loop.store, loop.wall())


def member_optimizer(cfg: ScanConfig, m: Member, gen: Generator) -> tuple[RunConfig, Optimizer]:
    """A member's run settings (optimizer ``auto`` resolved, batch defaulted) and its optimizer."""
    run_cfg = RunConfig.from_dict(cfg.run_settings(m.layer, m.unit, m.seed))
    auto = run_cfg.optimizer == AUTO
    run_cfg = replace(run_cfg, optimizer=resolve(run_cfg.optimizer, gen, noisy(run_cfg), scan=True))
    opt = create(run_cfg.optimizer, gen, m.seed, run_cfg.optimizer_options)
    rig = auto and run_cfg.model.startswith("rig:")
    return replace(run_cfg, batch=run_cfg.batch or default_batch(opt.preferred_batch, run_cfg.budget, rig)[0]), opt


def open_member(cfg: ScanConfig, m: Member, gen: Generator, root: Path, stack: ExitStack,
                own: Callable[[RunConfig], Target],
                shared: dict | None = None) -> tuple[RunConfig, Optimizer, Target, RunStore]:
    """A member's settings, optimizer (closed with ``stack``), recorded target and open run store."""
    run_cfg, opt = member_optimizer(cfg, m, gen)
    stack.callback(opt.close)
    tgt = own(run_cfg)
    run_dir = m.run_dir(root)
    store = stack.enter_context(open_run(run_dir, run_cfg, (run_dir / "config.json").exists(), gen.space.dim,
                                        describe(gen, tgt, opt), [], shared=shared))
    return run_cfg, opt, tgt, store


def layer_target(cfg: ScanConfig, ms: list[Member], gen: Generator) -> tuple[Target, dict[Member, torch.Tensor]]:
    """One multi-unit target for members of one layer (their units, and those their objectives name), and each
    member's weights over its columns (its unit alone, or its objective)."""
    layer = ms[0].layer
    n_units = len(make_target(cfg.model, f"{layer}:*", cfg.model_weights, steps=cfg.steps).units or ())
    weights = {m: parse_objective(cfg.objective, n_units, m.unit) if cfg.objective else {m.unit: 1.0} for m in ms}
    units = sorted({m.unit for m in ms} | {u for w in weights.values() for u in w})
    tgt: Target = make_target(cfg.model, f"{layer}:{','.join(map(str, units))}", cfg.model_weights, cfg.readout,
                              steps=cfg.steps)
    convert = adapter(gen.image_space, tgt.input_space, f"generator {gen.name!r}", f"target {tgt.name!r}")
    if convert is not None:
        tgt = AdaptedTarget(tgt, convert, gen.image_space)
    return tgt, {m: torch.tensor([weights[m].get(u, 0.0) for u in units], dtype=torch.float64) for m in ms}


def view(tgt: Target, w: torch.Tensor, cfg: RunConfig) -> Target:
    """What a member's own run records as its target (a unit alone, or its objective)."""
    view = Column(tgt, w, cfg.target)
    if cfg.objective:
        return WeightedTarget(view, {0: 1.0}, (0,), cfg.objective)
    return view


def _torch_inner(tgt: Target) -> TorchTarget | None:
    """The noise-free multi-unit torch target under ``tgt``, whose units can be chosen per call, or None."""
    inner = tgt.inner if isinstance(tgt, AdaptedTarget) else tgt
    if isinstance(inner, TorchTarget) and inner.units is not None and not inner.noise:
        return inner
    return None


def _weighted(r: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Responses and values weighted by ``w`` over the columns it weighs (another unit's NaN stays out)."""
    keep = torch.nonzero(w).flatten()
    return r[:, keep] @ w[keep], v[:, keep] @ w[keep]


def _own_columns(tgt: Target, images: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One member's weighted responses and values for its images, computing only the units it weighs. A
    unit's column is bit-identical to the one of a forward of all units (the multi-unit targets are built
    so), so every run stays equal to its unit's run alone."""
    inner = _torch_inner(tgt)
    keep = torch.nonzero(w).flatten()
    if inner is None or len(keep) == len(w):
        return _weighted(*evaluate(tgt, images), w)
    every = inner.units
    inner._set_units(tuple(every[j] for j in keep.tolist()))
    try:
        r, v = evaluate(tgt, images)
    finally:
        inner._set_units(every)
    return r @ w[keep], v @ w[keep]


class Ways:
    """How a step's images are measured: *together* (one forward of every member's images, computing every
    member's unit) or *apart* (each member's images in their own forward, computing only its unit).

    Which is faster depends on the hardware: on this project's 2-core CPU (cifar-snn ``spiking1``, T=20, one
    thread) apart costs 4.2 ms per image even one image at a time, together 7.6 ms for 32 images of 32 units
    (a CPU convolution is no cheaper per image in a bigger batch, and together computes every member's
    channel); a GPU, mostly idle at small batches, should favour together (not measured: no GPU was lent). So
    the scan measures it: after one untimed warm-up step apart, one step each way, then the cheaper per image, the
    other tried again every ``probe`` steps in case the load changed. Both ways give bit-identical columns,
    so the choice changes speed, never a history. A target with noise or outside torch (a rig) is always
    measured apart, member by member: its noise and presentations are drawn in that order.
    """

    def __init__(self, adaptive: bool, probe: int = 200) -> None:
        self.adaptive, self.probe = adaptive, probe
        self.cost: dict[bool, float] = {}  # seconds per image, by way (True: together)
        self.steps = 0

    def together(self) -> bool:
        if not self.adaptive or self.steps == 0:  # the first step is the untimed warm-up, apart
            return False
        for way in (False, True):
            if way not in self.cost:
                return way
        best = self.cost[True] <= self.cost[False]
        return (not best) if self.steps % self.probe == 0 else best

    def record(self, together: bool, seconds: float, images: int) -> None:
        if self.adaptive and self.steps > 0 and images:
            self.cost[together] = seconds / images
        self.steps += 1


def _lockstep(members: list[tuple[Loop, torch.Tensor]], gen, tgt: Target,
              step: Callable[[int], None] | None) -> None:
    """Advance every member's batches together: one decode and one forward per step for all their requests."""
    active: dict[int, tuple[Loop, Coroutine[Request, tuple[torch.Tensor, ...], None], Request]] = {}
    for i, (loop, _) in enumerate(members):
        steps = loop.batches()
        req = next(steps, None)
        if req is not None:
            active[i] = (loop, steps, req)
    n, ways = 0, Ways(_torch_inner(tgt) is not None)
    while active:
        order = sorted(active)
        reqs = [active[i][2] for i in order]
        z = torch.cat([r.z for r in reqs])
        tgt.reseed(noise_key(members[order[0]][0].cfg.seed, n))  # noise (if any) is seeded per step
        images = gen.decode(z)  # one decode for every request
        together, t0 = ways.together(), time.perf_counter()
        if together:
            r, v = evaluate(tgt, images)
        pos, parts = 0, []
        for i, req in zip(order, reqs, strict=True):
            k, w = len(req.z), members[i][1]
            parts.append(_weighted(r[pos:pos + k], v[pos:pos + k], w) if together
                         else _own_columns(tgt, images[pos:pos + k], w))
            pos += k
        ways.record(together, time.perf_counter() - t0, len(images))
        for i, req, (mine, told) in zip(order, reqs, parts, strict=True):
            loop, steps, _ = active[i]
            k = len(req.z)
            try:
                nxt = steps.send((mine, torch.zeros_like(mine), told))
                active[i] = (loop, steps, nxt)
            except StopIteration:
                del active[i]
            if step is not None:
                step(k)
        n += 1
