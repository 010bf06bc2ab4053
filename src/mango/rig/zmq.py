"""The ZeroMQ transport (``rig:zmq:tcp://HOST:PORT``): MANGO's DEALER socket connects to the rig's ROUTER.

Every message is a JSON header frame (``{"v": 1, "type": ...}``), a trial adds one frame of image bytes.
MANGO sends ``hello`` on open, ``ping`` every ``heartbeat`` seconds while it is waiting, and ``trial``s; the
rig answers ``hello`` / ``pong`` (with its session id and channel count) and one ``answer`` per trial.
ZeroMQ reconnects by itself after either side restarts; a new session id in a pong tells MANGO the rig
restarted (what it was showing is lost: those trials go missing and the caller shows them again).
Trials sent while no rig is connected are dropped at once (``IMMEDIATE``), not queued for a rig that may
come back in another state. Details: docs/rig-protocol.md.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid

import numpy as np
import zmq

from ..errors import MangoError
from .images import decode_png, decode_raw, encode_png, encode_raw
from .protocol import Answer, Transport, Trial

log = logging.getLogger("mango")

PROTOCOL = 1
ADDRESS_RE = re.compile(r"^tcp://(?P<host>\*|[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d{1,5})$")
FORMATS = ("raw", "png")


def check_address(address: str) -> str:
    """``tcp://HOST:PORT`` or a one-line MangoError saying what is wrong."""
    m = ADDRESS_RE.match(address.strip()) if isinstance(address, str) else None
    if m is None or not 0 < int(m["port"]) < 65536:
        raise MangoError(f"malformed rig address {address!r}; expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:5555")
    return address.strip()


def pack(kind: str, **fields: object) -> bytes:
    """A header frame: ``{"v": 1, "type": kind, ...fields}`` as UTF-8 JSON."""
    return json.dumps({"v": PROTOCOL, "type": kind, **fields}, separators=(",", ":")).encode()


def trial_frames(trial: Trial, fmt: str = "raw") -> list[bytes]:
    """The two frames of a trial: header and image bytes (raw C-order uint8 with its shape, or PNG)."""
    if fmt == "png":
        data, extra = encode_png(trial.image), {}
    else:
        data, shape = encode_raw(trial.image)
        extra = {"shape": shape, "dtype": "uint8"}
    return [pack("trial", trial=trial.trial_id, image=trial.image_id, block=int(trial.block), index=int(trial.index),
                 format=fmt, **extra), data]


def decode_trial(header: dict, frames: list[bytes]) -> np.ndarray:
    """The image of a ``trial`` message (the rig's side); MangoError when it cannot be decoded."""
    if len(frames) != 1:
        raise MangoError(f"a trial carries one image frame, got {len(frames)}")
    for key, kind in (("trial", str), ("image", str), ("block", int), ("index", int)):
        if not isinstance(header.get(key), kind) or isinstance(header.get(key), bool):
            raise MangoError(f"a trial needs {key!r} ({kind.__name__}), got {header.get(key)!r}")
    fmt = header.get("format")
    if fmt == "png":
        return decode_png(frames[0])
    if fmt == "raw":
        return decode_raw(frames[0], header.get("shape"))
    raise MangoError(f"unknown image format {fmt!r}; allowed: {', '.join(FORMATS)}")


def send_quietly(sock: zmq.Socket, frames: list[bytes]) -> bool:
    """Send without blocking; False when ZeroMQ cannot take it now (no peer connected, peer gone, queue full)."""
    try:
        sock.send_multipart(frames, zmq.NOBLOCK)
        return True
    except zmq.ZMQError as exc:
        log.debug(f"not sent ({exc})")
        return False


def parse_header(frame: bytes) -> dict:
    """A header frame as a dict with a ``type``; MangoError when it is not one."""
    try:
        header = json.loads(frame)
    except (UnicodeDecodeError, ValueError):
        raise MangoError(f"not JSON: {frame[:80]!r}") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise MangoError(f"not a JSON object with a 'type': {frame[:80]!r}")
    if header.get("v", PROTOCOL) != PROTOCOL:
        raise MangoError(f"protocol version {header.get('v')!r}, MANGO speaks {PROTOCOL}")
    return header


class ZmqTransport(Transport):
    """Trials over ZeroMQ to a rig that binds a ROUTER socket at ``address``.

    ``heartbeat``: seconds between pings while MANGO waits; the rig counts as not alive after 3 unanswered
    periods. ``connect_timeout``: how long :meth:`open` waits for the rig's hello. ``image_format``: ``raw``
    (default) or ``png``, which costs MANGO ~3 ms more per block of 40 (benchmarks/rig_transport.py).
    """

    def __init__(self, address: str, heartbeat: float = 0.25, connect_timeout: float = 10.0,
                 image_format: str = "raw", hwm: int = 10000, session: str | None = None) -> None:
        if image_format not in FORMATS:
            raise MangoError(f"unknown rig image format {image_format!r}; allowed: {', '.join(FORMATS)}")
        self.address, self.heartbeat, self.connect_timeout = address, float(heartbeat), float(connect_timeout)
        self.image_format, self.hwm = image_format, int(hwm)
        # MANGO's side; also its ZeroMQ routing id. A run passes one derived from its folder, so after a restart
        # (a crash, --resume) answers the rig sends for trials of the stopped process reach the new one
        self.session = session or uuid.uuid4().hex[:12]
        self.channels: int | None = None
        self.rig_session: str | None = None
        self.restarts = 0
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._sent: dict[str, tuple[str, int]] = {}  # trial id -> (image id, block)
        self._buffer: list[Answer] = []
        self._last_ping = 0.0
        self._asked: float | None = None  # first ping not answered yet

    # -- Transport ------------------------------------------------------------------------------
    def open(self) -> None:
        if self._sock is not None:
            return
        check_address(self.address)
        self._ctx = zmq.Context()
        sock = self._sock = self._ctx.socket(zmq.DEALER)
        ms = max(int(self.heartbeat * 1000), 1)
        for opt, value in ((zmq.LINGER, 0), (zmq.SNDHWM, self.hwm), (zmq.RCVHWM, self.hwm), (zmq.IMMEDIATE, 1),
                           (zmq.RECONNECT_IVL, 100), (zmq.RECONNECT_IVL_MAX, 1000), (zmq.HEARTBEAT_IVL, ms),
                           (zmq.HEARTBEAT_TIMEOUT, 3 * ms), (zmq.HEARTBEAT_TTL, 3 * ms), (zmq.TCP_KEEPALIVE, 1),
                           (zmq.ROUTING_ID, self.session.encode())):
            sock.setsockopt(opt, value)
        try:
            sock.connect(self.address)
        except zmq.ZMQError as exc:
            self.close()
            raise MangoError(f"cannot connect to rig address {self.address!r} ({exc}); "
                             "expected tcp://HOST:PORT") from None
        deadline, again = time.monotonic() + self.connect_timeout, 0.0
        while self.rig_session is None and time.monotonic() < deadline:
            if time.monotonic() >= again:  # before the connection is up IMMEDIATE refuses to queue: say it again
                sent = self._try_send([pack("hello", session=self.session)])
                again = time.monotonic() + (0.5 if sent else 0.02)
            if sock.poll(20):
                self._drain()
        if self.rig_session is None:
            self.close()
            raise MangoError(f"no rig answers at {self.address}: start it (mango rig simulate ...) or check the "
                             "address")
        log.info(f"rig at {self.address}: session {self.rig_session}, {self.channels} channels")

    def send(self, trials: list[Trial]) -> list[str]:
        """Send the block; returns the ids of the trials that could not go out (the rig is not connected):
        the rig then counts as not alive until it is heard from again."""
        self._require_open()
        for k, t in enumerate(trials):
            self._sent[t.trial_id] = (t.image_id, int(t.block))
            if not self._try_send(trial_frames(t, self.image_format)):
                log.warning(f"rig at {self.address} not connected: {len(trials) - k} trials of block {t.block} not "
                            "sent (they will be shown again once it is back)")
                self._asked = time.monotonic() - 10 * self.heartbeat  # not alive until the rig speaks again
                return [u.trial_id for u in trials[k:]]
        return []

    def expect(self, trials: list[Trial]) -> None:
        """Trials sent by an earlier process: their answers are recognised if they still come."""
        for t in trials:
            self._sent[t.trial_id] = (t.image_id, int(t.block))

    def receive(self, timeout: float) -> list[Answer]:
        self._require_open()
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            self._ping_if_due()
            self._drain()
            left = deadline - time.monotonic()
            if self._buffer or left <= 0:
                out, self._buffer = self._buffer, []
                return out
            assert self._sock is not None
            self._sock.poll(max(1, int(1000 * min(left, self.heartbeat))))

    def alive(self) -> bool:
        if self._sock is None:
            return False
        self._drain()
        self._ping_if_due()
        return self._asked is None or time.monotonic() - self._asked <= 3 * self.heartbeat

    def describe(self) -> dict:
        return {"transport": "zmq", "address": self.address, "image_format": self.image_format,
                "heartbeat_s": self.heartbeat, "protocol": PROTOCOL, "rig_session": self.rig_session,
                "channels": self.channels, "restarts": self.restarts}

    def close(self) -> None:
        if self._sock is not None:
            self._try_send([pack("bye", session=self.session)])
            self._sock.close(linger=0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # -- internals ------------------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._sock is None:
            raise MangoError(f"rig transport {self.address} is not open: call open() first")

    def _try_send(self, frames: list[bytes]) -> bool:
        return self._sock is not None and send_quietly(self._sock, frames)

    def _ping_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_ping >= self.heartbeat:
            self._last_ping = now
            self._try_send([pack("ping", session=self.session, t=time.time())])
            if self._asked is None:
                self._asked = now

    def _drain(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                answer = self._on_message(frames)
            except Exception as exc:  # whatever a rig sends, receive() never raises
                answer = _bad(f"malformed message: {type(exc).__name__}: {exc}", {"frames": len(frames)})
            if answer is not None:
                self._buffer.append(answer)

    def _on_message(self, frames: list[bytes]) -> Answer | None:
        self._asked = None  # anything from the rig, even garbled, shows it is there
        try:
            header = parse_header(frames[0])
        except MangoError as exc:
            return _bad(f"malformed message: {exc}", {"frames": [f[:200].decode(errors="replace") for f in frames]})
        kind = header["type"]
        if kind in ("hello", "pong"):
            self._heard(header)
            return None
        if kind != "answer":
            return _bad(f"malformed message: unknown type {kind!r}", header)
        return self._answer(header)

    def _heard(self, header: dict) -> None:
        session, channels = header.get("session"), header.get("channels")
        if isinstance(channels, int) and not isinstance(channels, bool) and channels > 0:
            self.channels = channels
        if not isinstance(session, str):
            return
        if self.rig_session is not None and session != self.rig_session:
            self.restarts += 1
            log.warning(f"the rig at {self.address} restarted (session {self.rig_session} -> {session}): trials it "
                        "had not answered are lost and will be shown again")
        self.rig_session = session

    def _answer(self, h: dict) -> Answer:
        trial, image, block = h.get("trial"), h.get("image"), h.get("block")
        if not isinstance(trial, str) or not isinstance(image, str) or not isinstance(block, int) \
                or isinstance(block, bool):
            return _bad("malformed message: an answer needs 'trial' and 'image' (strings) and 'block' (integer)", h)
        sent = self._sent.get(trial)
        problem = None
        if isinstance(h.get("problem"), str):
            problem = f"rig: {h['problem']}"
        elif sent is None:
            problem = f"answer for trial {trial}, which was never sent"
        elif sent != (image, block):
            problem = f"answer for trial {trial} names image {image} of block {block}, but it showed {sent[0]} " \
                      f"of block {sent[1]}"
        responses = None if problem else _responses(h.get("responses"), self.channels)
        if isinstance(responses, str):
            problem, responses = f"malformed message: {responses}", None
        return Answer(trial, image, int(block), responses, time.time(), problem, h)


def _responses(values: object, channels: int | None) -> np.ndarray | str:
    """One float per channel, or what is wrong with them (JSON ``null`` is read as NaN: no value)."""
    if not isinstance(values, list) or not values:
        return f"'responses' must be a non-empty list of numbers, got {type(values).__name__}"
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values):
        return "'responses' holds something other than numbers"
    if channels is not None and len(values) != channels:
        return f"wrong number of channels: {len(values)} responses, the rig said it records {channels}"
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def _bad(problem: str, raw: dict) -> Answer:
    return Answer(None, None, None, None, time.time(), problem, raw)
