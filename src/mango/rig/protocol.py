"""What travels between MANGO and a rig: trials out, answers back, through a :class:`Transport`.

A *trial* is one presentation of one image. Its ``trial_id`` is unique in the session (a re-show of
the same image is a new trial with a new id); its ``image_id`` names the image (``q000123`` for the
candidate of query 123, ``ref003`` for reference image 3). A *block* is one round trip: the trials
sent together and answered together (XDream's block). An answer names the trial it answers (ZeroMQ)
or the image file (files), carries one response per recorded channel, and is checked by the
transport: what cannot be parsed is ``malformed``, never a number.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

#: statuses of a presentation: answered in time, never answered in time (``missing``), answered after
#: its block was closed (``late``, logged, not used), answered twice (``duplicate``, the second is
#: logged, not used), or an answer that could not be read (``malformed``)
STATUSES = ("ok", "missing", "late", "duplicate", "malformed")


@dataclass
class Trial:
    """One presentation to send: ``image`` is ``uint8 [H, W, C]`` (C = 1 or 3) as the rig shows it."""

    trial_id: str
    image_id: str
    block: int
    index: int  # position in its block (XDream file names: block{N:03d}_{index:03d}_{image_id}.png)
    image: np.ndarray


@dataclass
class Answer:
    """What the transport received for one trial (or what it could make of a bad answer).

    ``trial_id`` is the trial answered when the transport can tell (ZeroMQ always; files by file
    name); ``responses`` is ``float64 [channels]``, or None when ``problem`` says why it is unusable
    (malformed file or message, unknown image id, wrong number of channels).
    """

    trial_id: str | None
    image_id: str | None
    block: int | None
    responses: np.ndarray | None
    received: float  # time.time() when it arrived
    problem: str | None = None
    raw: dict = field(default_factory=dict)  # what arrived, for the log of a bad answer


class Transport(ABC):
    """A channel to one rig. Implementations: files (XDream-compatible) and ZeroMQ.

    ``open`` fails with a one-line :class:`~mango.errors.MangoError` when the rig cannot be reached
    at all (missing folder, bad address); after that, a rig going silent or restarting is not an
    error: ``receive`` returns nothing until it is back, and ``alive`` says whether it has been heard
    from lately (heartbeats).
    """

    #: channels per answer, once known (from the rig's hello or its first answer)
    channels: int | None = None

    @abstractmethod
    def open(self) -> None:
        """Connect (or check the folder); one-line MangoError when that is impossible."""

    @abstractmethod
    def send(self, trials: list[Trial]) -> list[str] | None:
        """Send one block of trials (all with the same ``block``) before returning; the ids of trials that
        could not go out (the rig is not connected) may be returned: they are not waited for."""

    @abstractmethod
    def receive(self, timeout: float) -> list[Answer]:
        """Answers that arrived, for any block, waiting at most ``timeout`` seconds for the first."""

    def alive(self) -> bool:
        """True if the rig was heard from recently (a heartbeat or an answer)."""
        return True

    def describe(self) -> dict:
        return {"transport": type(self).__name__}

    def close(self) -> None:  # noqa: B027  (optional hook: most transports hold something to release)
        """Release sockets and files; idempotent."""
