"""One block round trip with a rig: send trials, collect answers, give every trial exactly one status.

Why a round has a deadline that only runs while the rig is alive: a rig that goes silent or
restarts loses nothing MANGO measured and costs no re-shows; once it is back, what it did not
answer in ``timeout`` seconds is ``missing`` and shown again by the caller.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .protocol import Answer, Transport, Trial

log = logging.getLogger("mango")


@dataclass
class Outcome:
    """The status of one trial once its block closed, with its responses when ``ok``."""

    trial: Trial
    status: str
    answered: float | None = None
    responses: np.ndarray | None = None
    problem: str | None = None


@dataclass
class Verdict:
    """What was made of one answer received (kept in the store's ``answers`` table, as it came)."""

    answer: Answer
    verdict: str  # ok, duplicate, late, malformed, unknown
    trial: str | None = None  # the trial it answers, when known


@dataclass
class Ledger:
    """Every trial sent this session and what became of it, so a late or repeated answer is recognised."""

    status: dict[str, str] = field(default_factory=dict)  # trial id -> sent / ok / missing / malformed / late
    by_image: dict[tuple[int, str], str] = field(default_factory=dict)  # (block, image id) -> trial id

    def add(self, trials: list[Trial]) -> None:
        for t in trials:
            self.status[t.trial_id] = "sent"
            self.by_image[(t.block, t.image_id)] = t.trial_id

    def trial_of(self, a: Answer) -> str | None:
        if a.trial_id is not None:
            return a.trial_id
        if a.block is not None and a.image_id is not None:
            return self.by_image.get((a.block, a.image_id))
        return None


def run_block(transport: Transport, trials: list[Trial], ledger: Ledger, timeout: float, channels: int | None,
              sent_before: bool = False, wait_all: bool = False, meanwhile: Callable[[], None] | None = None,
              silence_note: float = 10.0) -> tuple[list[Outcome], list[Verdict]]:
    """Send ``trials`` (one block) and wait until each is answered or ``timeout`` s of live rig passed.

    Answers for trials of earlier blocks are ``late`` (their trial's status becomes late; the value is
    not used), a second answer to a trial is a ``duplicate``, an unreadable one ``malformed``. Returns
    this block's outcomes (in trial order) and every answer's verdict. ``sent_before``: the trials
    went out before a restart; only wait for their answers. ``wait_all``: wait the whole ``timeout``.
    ``meanwhile`` runs once right after sending, while the rig shows the images (work off the critical path).
    """
    mine = {t.trial_id: t for t in trials}
    done: dict[str, Outcome] = {}
    verdicts: list[Verdict] = []
    if not sent_before:
        ledger.add(trials)
        for tid in transport.send(trials) or []:  # never left MANGO: missing at once, nobody to wait for
            ledger.status[tid] = "missing"
            done[tid] = Outcome(mine[tid], "missing", problem="not sent: the rig was not connected")
    if meanwhile is not None:
        meanwhile()
    live, last, silent_since = 0.0, time.monotonic(), None
    while (wait_all or len(done) < len(trials)) and live < timeout:
        answers = transport.receive(timeout=min(0.05, max(timeout - live, 0.001)))
        now = time.monotonic()
        if transport.alive():
            live += now - last
            silent_since = None
        elif silent_since is None:
            silent_since = now
            log.warning("the rig went silent: waiting for it (nothing measured is lost)")
        elif now - silent_since > silence_note:
            log.warning(f"the rig has been silent for {now - silent_since:.0f} s: still waiting")
            silent_since = now
        last = now
        for a in answers:
            verdicts.append(_judge(a, ledger, mine, done, channels))
    for t in trials:
        if t.trial_id not in done:
            ledger.status[t.trial_id] = "missing"
            done[t.trial_id] = Outcome(t, "missing")
    return [done[t.trial_id] for t in trials], verdicts


def _judge(a: Answer, ledger: Ledger, mine: dict[str, Trial], done: dict[str, Outcome],
           channels: int | None) -> Verdict:
    tid = ledger.trial_of(a)
    if tid is None or tid not in ledger.status:
        if a.problem is not None and a.trial_id is None and a.image_id is None:
            log.warning(f"malformed answer naming no trial: {a.problem}; logged, ignored")
            return Verdict(a, "malformed", None)
        log.warning(f"answer for an unknown trial or image ({a.trial_id or a.image_id!r}, block {a.block}): ignored")
        return Verdict(a, "unknown", tid)
    state = ledger.status[tid]
    if tid not in mine:  # a trial of a block already closed
        if state in ("missing", "sent"):
            ledger.status[tid] = "late"
            log.warning(f"late answer for trial {tid} (its block had closed): logged, not used")
            return Verdict(a, "late", tid)
        return Verdict(a, "duplicate" if state == "ok" else "late", tid)
    if tid in done and done[tid].status == "ok":
        log.warning(f"duplicate answer for trial {tid}: logged, the first one is kept")
        return Verdict(a, "duplicate", tid)
    problem = a.problem
    if problem is None and a.responses is not None:
        r = np.asarray(a.responses, dtype=np.float64).reshape(-1)
        if channels is not None and len(r) != channels:
            problem = f"{len(r)} channels, the rig has {channels}"
        elif not np.isfinite(r).all():
            problem = "non-finite response"
    elif problem is None:
        problem = "no responses"
    if problem is not None:
        log.warning(f"malformed answer for trial {tid}: {problem}")
        ledger.status[tid] = "malformed"
        done[tid] = Outcome(mine[tid], "malformed", a.received, None, problem)
        return Verdict(a, "malformed", tid)
    ledger.status[tid] = "ok"
    done[tid] = Outcome(mine[tid], "ok", a.received, np.asarray(a.responses, dtype=np.float64).reshape(-1))
    return Verdict(a, "ok", tid)
