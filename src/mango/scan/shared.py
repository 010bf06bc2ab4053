"""Shared presentations (``mango scan --shared``): one stream of images serves the searches of every unit.

The living-network case: a rig that images hundreds of cells records every cell's response to every
image shown, so there is no reason for each cell's search to pay for its own images. Per seed, the
members' optimizers take turns (round robin in layer and unit order) proposing a batch; every batch
is measured once for every member (one forward pass per layer, only the units asked for); the
proposer is *told* its values and every other member's optimizer is *injected* them
(:meth:`~mango.optimizers.Optimizer.inject`: CMA-ES admits good foreign points into its next
generation, the GA into its parent pool, the (1+1)-ES adopts a better one as parent; a method without
``_inject`` keeps searching alone, and still scores every image for its unit's best). ``budget`` is
the total number of presentations per seed.

Each member's run folder holds the whole stream with its own unit's responses (so ``mango show``, the
analyses and :func:`~mango.scan.load_scan` read it like any run), marked ``shared`` in its store. A
rerun replays the stream: the proposer's asks must match the record, members lacking a batch (a crash
between two members' commits) have it measured, and every optimizer is told and injected exactly what
it was before, so a resumed scan equals an uninterrupted one.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError
from ..experiment.config import RunConfig
from ..experiment.finish import finish
from ..experiment.history import latents
from ..experiment.loop import RunInterrupted
from ..experiment.measure import evaluate, noise_key
from ..experiment.search import history
from ..experiment.store import RunStore, encode_latent
from ..generators import Generator, make_generator
from ..optimizers import Optimizer
from ..targets import Target
from .group import finished, layer_target, open_member, view
from .plan import Member, ScanConfig


@dataclass
class _Member:
    m: Member
    cfg: RunConfig
    opt: Optimizer
    store: RunStore
    own: Target
    col: torch.Tensor
    rows: dict[int, pd.DataFrame]  # recorded batches by batch number


def run_shared(cfg: ScanConfig, ms: list[Member], root: Path, progress: bool = True) -> None:
    """Run (or resume) one shared stream of ``cfg.budget`` presentations per seed for all ``ms``."""
    gen = make_generator(cfg.generator, cfg.generator_weights)
    bar: Any = nullcontext(None)
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]shared scan"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with bar as b:
        task = b.add_task("shared", total=cfg.budget * cfg.seeds) if b else None
        for seed in range(cfg.seeds):
            stream = [m for m in ms if m.seed == seed]
            if all(finished(cfg, m, root) for m in stream):
                if b:
                    b.advance(task, cfg.budget)
                continue
            run_stream(cfg, stream, gen, root, (lambda k: b.advance(task, k)) if b else None)


def run_stream(cfg: ScanConfig, stream: list[Member], gen: Generator, root: Path,
               step: Callable[[int], None] | None = None) -> None:
    """One seed's stream: every member proposes in turn, every batch is measured for every member."""
    with ExitStack() as stack:
        measure = _Measure(cfg, stream, gen, root, stack)
        members, elapsed = [], 0.0
        for m in stream:
            run_cfg, opt, own, store = open_member(cfg, m, gen, root, stack, partial(measure.own, m),
                                                   shared={"scan": str(root)})
            df = history(store)
            elapsed = max(elapsed, float(df["elapsed_s"].max()) if len(df) else 0.0)
            members.append(_Member(m, run_cfg, opt, store, own, measure.cols.get(m, torch.ones(1)),
                                   dict(iter(df.groupby("batch")))))
        if measure.rig is not None:  # the session's trials (every channel) are recorded in the first unit's store
            from ..rig.record import RigRecord

            measure.record = RigRecord(members[0].store)
            measure.rig.attach(measure.record)
        start = time.perf_counter() - elapsed
        try:
            _replay_and_run(cfg, members, gen, measure, start, step)
        except KeyboardInterrupt:
            done = min(x.store.count() for x in members)
            raise RunInterrupted(root, done, cfg.budget) from None
        for x in members:
            finish(x.m.run_dir(root), x.cfg, gen, x.own, x.store, time.perf_counter() - start)


class _Measure:
    """Measures a batch for the members that lack it: one forward pass per layer, or one block of a rig."""

    def __init__(self, cfg: ScanConfig, stream: list[Member], gen: Generator, root: Path, stack: ExitStack) -> None:
        self.cfg, self.gen, self.seed = cfg, gen, stream[0].seed
        self.targets: dict[str, Target] = {}
        self.cols: dict[Member, torch.Tensor] = {}
        self.rig: Any = None
        self.record: Any = None
        if cfg.model.startswith("rig:"):
            from ..rig.target import RigTarget

            key = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:12]
            units = ",".join(str(m.unit) for m in stream)
            self.rig = RigTarget(cfg.model[4:], f"ch:{units}", gen.image_shape, timeout=cfg.timeout,
                                 session=f"scan-{key}-s{self.seed}")
            self.rig.open()
            stack.callback(self.rig.close)
            return
        layers = {layer: [m for m in stream if m.layer == layer] for layer in dict.fromkeys(m.layer for m in stream)}
        for layer, ms in layers.items():
            self.targets[layer], c = layer_target(cfg, ms, gen)
            self.cols.update(c)

    def own(self, m: Member, run_cfg: RunConfig) -> Target:
        """What a member's run records as its target."""
        return self.rig if self.rig is not None else view(self.targets[m.layer], self.cols[m], run_cfg)

    def next_k(self, batch: int, done: int) -> int:
        """Candidates in a new batch: the budget counts queries, or a rig's presentations."""
        if self.rig is None:
            return min(batch, self.cfg.budget - done)
        return min(batch, self.cfg.budget - self.record.presented() - self.rig.references)

    def __call__(self, members: list[_Member], z: torch.Tensor, n: int,
                 queries: list[int]) -> dict[Member, tuple[torch.Tensor, torch.Tensor]]:
        """(responses, values) of batch ``n`` for each of ``members``."""
        if self.rig is not None:
            shown = self.rig.show(self.gen.pixels(z), [f"q{q:06d}" for q in queries], queries, n, 1, self.cfg.budget)
            out = {}
            for x in members:  # NaN: never answered, left out (never told as a value)
                r = torch.from_numpy(np.ascontiguousarray(shown.channels[:, x.m.unit], dtype=np.float64))
                out[x.m] = (r, r)
            return out
        images, measured = self.gen.decode(z), {}
        for layer in {x.m.layer for x in members}:
            self.targets[layer].reseed(noise_key(self.seed, n))
            measured[layer] = evaluate(self.targets[layer], images)
        out = {}
        for x in members:
            rr, vv = measured[x.m.layer]
            r, v = rr @ x.col, vv @ x.col
            # a failed measurement (NaN or inf) is the worst value, as in a run of its own
            out[x.m] = (r, torch.where(torch.isfinite(r) & torch.isfinite(v), v, torch.full_like(v, -torch.inf)))
        return out


def _replay_and_run(cfg: ScanConfig, members: list[_Member], gen: Generator, measure: _Measure, start: float,
                    step: Callable[[int], None] | None) -> None:
    done, n = 0, 0
    while True:
        p = members[n % len(members)]
        recorded = [x.rows.get(n) for x in members]
        asked = next((int(r["asked"].iloc[0]) for r in recorded if r is not None and len(r)), None)
        k = asked if asked is not None else measure.next_k(p.cfg.batch or 1, done)
        if k <= 0:
            return
        t0 = time.perf_counter()
        z = p.opt.ask(k)
        t1 = time.perf_counter()
        for r in recorded:
            if r is not None and len(r) and not torch.equal(latents(r, gen.space.dim).to(z.dtype), z[
                    torch.from_numpy(r["query"].to_numpy() - done)]):
                raise MangoError(f"cannot resume the shared scan: member {p.m.layer}:{p.m.unit} proposed other "
                                 f"candidates than recorded in batch {n} (different library versions or settings?)")
        lacking = [x for x, r in zip(members, recorded, strict=True) if r is None or len(r) != k]
        new = measure(lacking, z, n, list(range(done, done + k))) if lacking else {}
        now = time.perf_counter()
        zs = z.numpy()
        for x, rec in zip(members, recorded, strict=True):
            if x.m in new:
                resp, val = new[x.m]
                x.store.append([(done + j, n, k, float(resp[j]), 0.0, float(val[j]), now - start, now - t1,
                                 t1 - t0 if x is p else 0.0, *encode_latent(zs[j])) for j in range(k)])
            else:
                assert rec is not None
                val = torch.from_numpy(rec.sort_values("query")["value"].to_numpy(dtype=np.float64))
            if x is p:
                x.opt.tell(z, val, missing=val.isnan())
            else:
                x.opt.inject(z, val)
        done, n = done + k, n + 1
        if step is not None:
            step(k)
