"""A recording rig as a MANGO target: ``rig:files:DIR`` or ``rig:zmq:tcp://HOST:PORT``, unit ``ch:K``.

The loop hands it a batch of candidate images; it shows them in blocks (with reference images
interleaved), re-shows what the rig did not answer (up to ``reshows`` times), and records every
trial in the run store before it is sent and again when its block closes. A candidate the rig never
answered is *left out* (NaN): the optimizer is told it was not measured, never a made-up value.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import MangoError
from ..targets.base import Target
from .blocks import Ledger, Outcome, run_block
from .protocol import Transport, Trial
from .record import RigRecord

log = logging.getLogger("mango")
_SPEC = re.compile(r"^ch:(?P<units>\d+(?:,\d+)*)$")


def parse_channels(spec: str) -> tuple[int, ...]:
    """``ch:K`` (one channel) or ``ch:i,j,...`` (their mean) -> channel indices."""
    m = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if m is None:
        raise MangoError(f"malformed rig target {spec!r}; expected ch:K (channel K) or ch:i,j,... (their mean)")
    units = tuple(int(u) for u in m["units"].split(","))
    if len(set(units)) != len(units):
        raise MangoError(f"rig target {spec!r} names a channel twice")
    return units


def make_transport(address: str, session: str | None = None) -> Transport:
    """``files:DIR`` or ``zmq:tcp://HOST:PORT`` (the part of ``rig:...`` after ``rig:``); ``session`` names
    MANGO's side to the rig the same way across restarts of one run."""
    kind, _, where = address.partition(":")
    if kind == "files" and where:
        from .files import FilesTransport

        return FilesTransport(where)
    if kind == "zmq" and where:
        from .zmq import ZmqTransport

        return ZmqTransport(where, session=session)
    raise MangoError(f"malformed rig address 'rig:{address}'; expected rig:files:DIR or rig:zmq:tcp://HOST:PORT")


@dataclass
class Shown:
    """What a batch's presentations gave: per candidate mean, spread and number of ok trials (of the objective:
    the target's channels averaged), and the mean of every channel ``[candidates, channels]`` (NaN rows: never
    answered; a shared scan reads each unit's channel from it)."""

    mean: np.ndarray
    sd: np.ndarray
    ok: np.ndarray
    channels: np.ndarray


class RigTarget(Target):
    """Images in, the rig's responses out: one channel (or the mean of several) is the objective."""

    def __init__(self, address: str, spec: str, image_shape: tuple[int, int, int], transport: Transport | None = None,
                 timeout: float = 10.0, reshows: int = 3, references: int = 0, session: str | None = None) -> None:
        self.address, self.spec, self.units = address, spec, parse_channels(spec)
        self.name, self.input_shape = f"rig:{address}", image_shape
        self.transport = transport or make_transport(address, session)
        self.timeout, self.reshows, self.references = float(timeout), int(reshows), int(references)
        self.record: RigRecord | None = None
        self.ledger = Ledger()
        #: (image id, uint8 image) of the reference images interleaved in every block (set by the loop)
        self.reference_images: list[tuple[str, np.ndarray]] = []
        self._opened = False
        self._extra = 0  # images shown outside the search (re-measurements)
        #: seconds spent recording trials (fsynced) and in blocks (sending, waiting, answers), for benchmarks
        self.timing = {"record_s": 0.0, "block_s": 0.0, "blocks": 0}

    def open(self) -> None:
        """Reach the rig; a wrong address, a missing folder or a channel out of range is one line, at start."""
        if not self._opened:
            self.transport.open()
            self._opened = True
            self._check_channels(self.transport.channels)

    def _check_channels(self, channels: int | None) -> None:
        if channels is not None and max(self.units) >= channels:
            raise MangoError(f"channel {max(self.units)} out of range: the rig records {channels} channels "
                             f"(0..{channels - 1})")

    def close(self) -> None:
        self.transport.close()

    def attach(self, record: RigRecord) -> None:
        """Record every trial in this run's store; trials sent before a crash are expected again."""
        self.record = record
        self._extra = record.extra_images()
        pending = record.pending()
        if pending:
            self.open()
            self.ledger.add(pending)
            expect = getattr(self.transport, "expect", None)
            if expect is not None:
                expect(pending)
            log.warning(f"{len(pending)} trials were sent before the last stop: waiting {self.timeout:g} s for "
                        "their answers")
            outcomes, verdicts = run_block(self.transport, pending, self.ledger, self.timeout, self.transport.channels,
                                           sent_before=True)
            record.closed(outcomes, verdicts)

    def describe(self) -> dict:
        return {"name": self.name, "spec": self.spec, "channels": list(self.units), "timeout_s": self.timeout,
                "reshows": self.reshows, "references": self.references, **self.transport.describe()}

    def responses(self, images: torch.Tensor) -> torch.Tensor:
        """Show ``images`` once each (re-measuring the best at the end; recorded as kind ``remeasure``): the
        objective per image, NaN where the rig gave no answer."""
        start = self._extra
        self._extra += len(images)
        ids = [f"m{start + i:06d}" for i in range(len(images))]
        shown = self.show(images, ids, [None] * len(ids), batch=None, repeats=1, budget=None, kind="remeasure")
        return torch.from_numpy(shown.mean)[:, None]

    def show(self, images: torch.Tensor, image_ids: list[str], queries: list[int | None], batch: int | None,
             repeats: int, budget: int | None, kind: str = "search") -> Shown:
        """Show each image ``repeats`` times (re-showing what was not answered); ``budget`` caps presentations."""
        self.open()
        pix = _uint8(self.check_images(images))
        need = {i: repeats for i in range(len(image_ids))}
        got: dict[int, list[np.ndarray]] = {i: [] for i in need}
        if self.record is not None:  # answers already in the store (a block interrupted by a crash)
            self.record.keep_images(image_ids, pix, kind)
            for i, resp in self.record.answered(image_ids):
                got[i].append(resp)
                need[i] = max(need[i] - 1, 0)
        rounds, silent = 0, 0
        while rounds <= self.reshows:
            todo = [i for i, n in need.items() for _ in range(n)]
            if not todo:
                break
            self._wait_alive()
            if budget is not None:
                left = budget - (self.record.presented() if self.record else 0) - self.references
                todo = todo[: max(left, 0)]
                if not todo:
                    break
            block = self.record.next_block() if self.record else int(time.time() * 1000)
            trials = [Trial(f"b{block:06d}-{j:03d}", image_ids[i], block, j, pix[i]) for j, i in enumerate(todo)]
            trials = self._with_references(trials, block)
            t0 = time.perf_counter()
            if self.record:
                self.record.sent(trials, queries, image_ids, batch, kind)
            t1 = time.perf_counter()
            outcomes, verdicts = run_block(self.transport, trials, self.ledger, self.timeout, self.transport.channels,
                                           meanwhile=self.record.encode if self.record else None)
            t2 = time.perf_counter()
            self._check_channels(self.transport.channels)
            cancel = getattr(self.transport, "cancel", None)
            if cancel is not None and any(o.status != "ok" for o in outcomes):
                cancel(block)  # the files transport takes the block's unanswered images off the rig's folder
            if self.record:
                self.record.closed(outcomes, verdicts)
            self.timing["record_s"] += (t1 - t0) + (time.perf_counter() - t2)
            self.timing["block_s"] += t2 - t1
            self.timing["blocks"] += 1
            for o in outcomes:
                if o.status == "ok" and o.trial.image_id in image_ids and not o.trial.image_id.startswith("ref"):
                    i = image_ids.index(o.trial.image_id)
                    got[i].append(o.responses)  # type: ignore[arg-type]
                    need[i] -= 1
            heard = bool(verdicts) or any(o.status != "missing" for o in outcomes)
            if heard or len(trials) < 3 or silent >= self.SILENT_ROUNDS:
                rounds, silent = rounds + 1, 0
            else:  # no answer at all to 3 or more trials: the rig is down or restarting, not these images' fault
                silent += 1
                self._pause(min(self.timeout * 2**silent, 10.0))
        return self._summarize(got)

    #: rounds in a row with no answer at all that are not counted as re-shows (a rig restarting)
    SILENT_ROUNDS = 8

    def _pause(self, seconds: float) -> None:
        """Wait, still taking (and recording, as late) whatever the rig sends meanwhile."""
        log.warning(f"no answer at all from the rig at {self.address} for a whole block: waiting {seconds:.1f} s "
                    "before showing its images again")
        _, verdicts = run_block(self.transport, [], self.ledger, seconds, self.transport.channels, sent_before=True,
                                wait_all=True)
        if self.record is not None and verdicts:
            self.record.closed([], verdicts)

    def _wait_alive(self) -> None:
        """Send nothing into a rig that is down (a crash, a restart): wait for it, saying so now and then."""
        since = time.monotonic()
        while not self.transport.alive():
            self.transport.receive(0.1)
            if time.monotonic() - since > 10:
                log.warning(f"the rig at {self.address} is silent: waiting for it (nothing measured is lost)")
                since = time.monotonic()

    def _with_references(self, trials: list[Trial], block: int) -> list[Trial]:
        """Reference images spread evenly through the block (XDream tracks drift this way), kept apart."""
        if not self.references or not self.reference_images:
            return trials
        refs = self.reference_images[: self.references]
        step = max(len(trials) // self.references, 1)
        out = list(trials)
        for r, (image_id, img) in enumerate(refs):
            out.insert(min(r * (step + 1), len(out)), Trial("", image_id, block, 0, img))
        return [Trial(f"b{block:06d}-{j:03d}", t.image_id, block, j, t.image) for j, t in enumerate(out)]

    def _summarize(self, got: dict[int, list[np.ndarray]]) -> Shown:
        mean, sd, ok = (np.full(len(got), np.nan) for _ in range(3))
        width = max([len(r) for rs in got.values() for r in rs], default=self.transport.channels or max(self.units) + 1)
        channels = np.full((len(got), width), np.nan)
        for i, rs in got.items():
            ok[i] = len(rs)
            if rs:
                obj = np.array([r[list(self.units)].mean() for r in rs])
                mean[i], sd[i] = obj.mean(), obj.std()
                channels[i] = np.mean(np.stack(rs), 0)
        return Shown(mean, sd, ok, channels)


def _uint8(images: torch.Tensor) -> list[np.ndarray]:
    """Plain pixels in [0, 1] ``[B, C, H, W]`` -> what a stimulus program shows: ``uint8 [H, W, C]``."""
    arr = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return list(arr)


__all__ = ["Outcome", "RigTarget", "Shown", "make_transport", "parse_channels"]
