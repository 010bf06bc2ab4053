"""One run's pass over its batches, as a coroutine: recorded batches are replayed, missing candidates measured.

:meth:`Loop.batches` yields a :class:`Request` whenever a batch has candidates to measure and receives
their ``(responses, spreads)``, or ``(responses, spreads, values)`` when the optimizer is to be told other
values than the responses recorded (readout ``rate+drive``, :mod:`mango.targets.drive`). A solo run
(:meth:`Loop.search`) measures them with its own target; a scan drives many loops at once and measures all
their requests in one forward pass of a multi-unit target, so every unit's run is exactly what it would be alone.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Generator as Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError
from ..generators import Generator
from ..optimizers import Optimizer
from ..targets import Target
from ..targets.drive import until_spike
from .config import RunConfig
from .history import latents
from .measure import measure_values, noise_key
from .store import RunStore, encode_latent

log = logging.getLogger("mango")


def is_rig(tgt: Target) -> bool:
    """A living neuron behind a rig: shown plain pixels, answers per presentation (see :mod:`mango.rig`)."""
    return hasattr(tgt, "show") and hasattr(tgt, "attach")


def history(store: RunStore) -> pd.DataFrame:
    """The store's intact records; damaged ones are set aside (reported, kept apart) to be measured again."""
    df, damage = store.history()
    if damage:
        store.append([], damage=damage, drop=[int(d.position.split()[-1]) for d in damage])
        first = damage[0]
        text = (f"{len(damage)} damaged records set aside in {store.path} (table damaged; first: "
                f"{first.position}, {first.reason}); they are measured again")
        store.log("damaged", text)
        log.warning(text)
    return df


@dataclass
class Request:
    """Candidates of batch ``batch`` still to be measured (query numbers ``queries``)."""

    batch: int
    z: torch.Tensor
    queries: list[int]


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
        self.df = df = history(self.store)
        self.start = time.perf_counter() - (float(df["elapsed_s"].iloc[-1]) if len(df) else 0.0)
        self.rig: Any = cast(Any, self.tgt) if is_rig(self.tgt) else None  # a RigTarget (mango.rig is optional)
        self.done, self.best = 0, float(np.nanmax(df["value"].to_numpy(dtype=float), initial=-np.inf))
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
        """Run every batch, measuring with this run's own target."""
        from .loop import RunInterrupted, _progress

        cfg = self.cfg
        try:
            with _progress(progress) as bar:
                task = bar.add_task(f"{cfg.optimizer} -> {self.tgt.name} {cfg.target}", total=cfg.budget,
                                    completed=0, best=f"{self.best:.4g}") if bar else None
                steps = self.batches()
                request = next(steps, None)
                while request is not None:
                    answer = self.measure(request)
                    if bar:
                        bar.update(task, completed=self.presented(), best=f"{self.best:.4g}")
                    try:
                        request = steps.send(answer)
                    except StopIteration:
                        request = None
        except KeyboardInterrupt:
            raise RunInterrupted(self.run_dir, self.store.count(), cfg.budget) from None

    def presented(self) -> int:
        """What the budget counts so far: queries, or a rig's presentations."""
        return self.record.presented() if self.rig is not None else self.done

    def measure(self, req: Request) -> tuple[torch.Tensor, ...]:
        """Mean and spread of each requested candidate's response (NaN: a rig that never answered), and the
        value the optimizer is told (see :func:`~mango.experiment.measure.measure_values`)."""
        if self.rig is not None:
            shown = self.rig.show(self.gen.pixels(req.z), [f"q{n:06d}" for n in req.queries], req.queries,
                                  req.batch, self.cfg.repeats, self.cfg.budget)
            return torch.from_numpy(shown.mean), torch.from_numpy(shown.sd)
        self.tgt.reseed(noise_key(self.cfg.seed, req.batch))
        return measure_values(self.tgt, self.gen.decode(req.z), self.cfg.repeats)

    def batches(self) -> Coroutine[Request, tuple[torch.Tensor, ...], None]:
        """The run's batches in order; yields what needs measuring, receives its ``(responses, spreads)`` or
        ``(responses, spreads, values)`` (values: what the optimizer is told; default the responses)."""
        cfg, df = self.cfg, self.df
        q, b, asked = (df[c].to_numpy() for c in ("query", "batch", "asked"))
        values = torch.tensor(df["value"].to_numpy(dtype=float))
        zrec = latents(df, self.gen.space.dim) if len(df) else None
        batch_id, pos = 0, 0
        while True:
            end = pos
            while end < len(q) and b[end] == batch_id:
                end += 1
            if end > pos:
                k = int(asked[pos])
            else:  # no record of this batch: a new one, or one whose records were all set aside
                k = min(self.next_k(self.done), int(q[pos]) - self.done if pos < len(q) else cfg.budget)
                if k <= 0:
                    return
            have = torch.from_numpy(q[pos:end] - self.done)
            if len(have) and (int(have.min()) < 0 or int(have.max()) >= k):
                raise MangoError(f"cannot resume {self.run_dir}: batch {batch_id} holds query numbers "
                                 f"outside {self.done}..{self.done + k - 1}; the record does not fit this run")
            t0 = time.perf_counter()
            z = self.opt.ask(k)
            t1 = time.perf_counter()
            part = zrec[pos:end] if zrec is not None else None
            if len(have) and (part is None or z.dtype != part.dtype or not torch.equal(z[have], part)):
                raise MangoError(f"cannot resume {self.run_dir}: the optimizer proposed other candidates than "
                                 f"recorded in batch {batch_id} (different library versions or thread settings?)")
            todo = torch.from_numpy(np.setdiff1d(np.arange(k), have.numpy()))
            resp = sd = val = torch.empty(0, dtype=torch.float64)
            if len(todo):
                answer = yield Request(batch_id, z[todo], [self.done + i for i in todo.tolist()])
                resp, sd = answer[0], answer[1]
                val = answer[2] if len(answer) > 2 else resp
            self._complete(batch_id, k, z, have, values[pos:end], todo, resp, sd, val, t0, t1)
            self.done, batch_id, pos = self.done + k, batch_id + 1, end

    def _complete(self, batch_id: int, k: int, z: torch.Tensor, have: torch.Tensor, recorded: torch.Tensor,
                  todo: torch.Tensor, resp: torch.Tensor, sd: torch.Tensor, val: torch.Tensor, t0: float,
                  t1: float) -> None:
        """Tell the optimizer the batch's values (recorded or just measured: ``val``, the responses unless the
        readout says otherwise) and record the new ones."""
        values = torch.full((k,), -torch.inf, dtype=torch.float64)
        values[have] = recorded
        if len(todo):
            val = until_spike(resp, val, self.best > 0 or bool((recorded > 0).any()))
            # a rig's NaN: left out (never answered); a network's NaN or inf: a failed measurement (the worst)
            left_out = resp.isnan() if self.rig is not None else torch.zeros_like(resp, dtype=torch.bool)
            keep = (torch.isfinite(resp) & torch.isfinite(val)) | left_out
            values[todo] = torch.where(keep, val, torch.full_like(val, -torch.inf))
        t2 = time.perf_counter()
        self.opt.tell(z, values, missing=values.isnan())
        now = time.perf_counter()
        if len(todo):
            zs, first = z[todo].numpy(), self.done
            rows = [(first + i, batch_id, k, float(resp[j]), float(sd[j]), float(values[i]), now - self.start,
                     now - t0, (t1 - t0) + (now - t2), *encode_latent(zs[j])) for j, i in enumerate(todo.tolist())]
            self.store.append(rows)
        self.best = max(self.best, float(np.nanmax(values.numpy(), initial=-np.inf)))
