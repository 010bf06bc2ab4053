"""A simulated recording rig: every unit of one layer of a MANGO model is one channel, and it misbehaves
the way real rigs do (dropped, repeated, garbled and late answers, Poisson spike counts, slow drift,
crashes), seeded, with a JSON-lines log of every answer so a test can check none went to the wrong image.

It serves either transport: ``files`` (watches a folder for XDream-style blocks, answers with ``.mat`` or
``.h5`` files) or ``zmq`` (binds a ROUTER socket and answers trial by trial). ``mango rig simulate`` runs it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import nn

from ..errors import MangoError, unknown
from ..imagespace import ImageSpace, adapter
from ..targets.layers import LayerInfo
from .answers import write_answer
from .images import decode_png, image_sha1, to_pixels

log = logging.getLogger("mango")
IMAGE_RE = re.compile(r"^block(\d{3,})_(\d{3,})_(.+)\.png$")


def layer_responses(model: nn.Module | str, layer: str, images: list[np.ndarray]) -> np.ndarray:
    """Each channel's response of ``layer`` to ``uint8 [H, W, C]`` images (plain pixels): ``[B, channels]``.

    The response is what ``make_target(model, f"{layer}:{u}")`` gives for unit u (spike count / T for a
    spiking layer, the mean activation otherwise, averaged over positions). The one place to switch to a
    multi-unit target spec once it exists.
    """
    from ..targets import TorchTarget, make_model
    from ..targets.sequential import SpikingSequential

    model = make_model(model) if isinstance(model, str) else model
    space, info = _layer(model, layer)
    pixels = torch.from_numpy(to_pixels(images))
    c, h, w = pixels.shape[1:]
    convert = adapter(ImageSpace((c, h, w)), space, "the rig's images", "the model")
    x = convert(pixels) if convert else pixels
    with torch.inference_mode():
        if isinstance(model, SpikingSequential) and layer in model.order:  # all channels in one simulation
            trace = model.eval().simulate(x, layer).float()  # [T, B, C, ...]
            trace = trace.flatten(3).mean(3) if trace.ndim > 3 else trace
            return trace.mean(0).numpy().astype(np.float64)
        units = [TorchTarget(model, f"{layer}:{u}", name=type(model).__name__) for u in range(info.units)]
        return torch.cat([t.responses(x) for t in units], 1).numpy().astype(np.float64)


def _layer(model: nn.Module, layer: str) -> tuple[ImageSpace, LayerInfo]:
    """The model's input space and ``layer``'s description (a one-line MangoError for an unknown layer)."""
    from ..targets.torch_target import declared_shape, layers_of

    space = getattr(model, "input_space", None) or ImageSpace(declared_shape(model, None, type(model).__name__))
    assert isinstance(space, ImageSpace)
    infos = {i.name: i for i in layers_of(model, space.shape)}
    if layer not in infos:
        raise unknown(f"layer of {type(model).__name__}", layer, infos)
    return space, infos[layer]


@dataclass
class Faults:
    """Misbehaviour, each a probability per trial (``malformed`` per answer file in files mode); checked by the
    command line (``mango rig simulate``)."""

    drop: float = 0.0
    duplicate: float = 0.0
    malformed: float = 0.0
    latency: float = 0.0  # seconds before an answer (files: before a block's answer file)
    jitter: float = 0.0  # plus uniform [0, jitter) seconds
    crash_every: int | None = None  # os._exit after this many presentations



class SimulatedRig:
    """The model, the faults, the noise and drift, the log: everything but the transport."""

    def __init__(self, model: str, layer: str, faults: Faults, weights: str | None = None, steps: int | None = None,
                 noise: str | None = None, count_scale: float = 20.0, drift: float = 0.0,
                 drift_period: int = 3000, seed: int = 0, log_file: str | Path | None = None) -> None:
        from ..targets import make_model

        if noise not in (None, "none", "poisson"):
            raise MangoError(f"unknown rig noise {noise!r}; allowed: none, poisson")
        if count_scale <= 0 or drift_period < 1 or not 0 <= drift < 1:
            raise MangoError("--count-scale must be > 0, --drift-period >= 1 and --drift in [0, 1)")
        self.model = make_model(model, weights)
        if steps is not None:
            self.model.num_steps = steps  # type: ignore[assignment]
        self.model_name, self.layer, self.faults = model, layer, faults
        self.channels = _layer(self.model, layer)[1].units
        self.poisson, self.count_scale = noise == "poisson", float(count_scale)
        self.drift, self.drift_period = float(drift), int(drift_period)
        self.rng = np.random.default_rng(seed)  # faults and delays
        self.noise_rng = np.random.default_rng([seed, 1])
        self.session = uuid.uuid4().hex[:12]
        self.presented = 0
        self.stop = threading.Event()
        self._log: IO[str] | None = open(log_file, "a", buffering=1) if log_file else None

    def respond(self, images: list[np.ndarray]) -> np.ndarray:
        """Responses ``[B, channels]``: the layer's rates x drift gain, as Poisson counts / scale if noisy."""
        rates = layer_responses(self.model, self.layer, images)
        n = self.presented + np.arange(1, len(images) + 1)
        rates = rates * (1 + self.drift * np.sin(2 * math.pi * n / self.drift_period))[:, None]
        if self.poisson:
            rates = self.noise_rng.poisson(np.clip(rates, 0, None) * self.count_scale) / self.count_scale
        return rates

    def draw(self, p: float) -> bool:
        return bool(p > 0 and self.rng.random() < p)

    def delay(self) -> float:
        return self.faults.latency + (self.rng.random() * self.faults.jitter if self.faults.jitter else 0.0)

    def record(self, image: np.ndarray, trial: str | None, image_id: str, block: int, index: int,
               responses: np.ndarray | None, fault: str | None) -> None:
        """One log line per trial answered (or dropped), then the crash if it is due."""
        self.presented += 1
        if self._log is not None:
            self._log.write(json.dumps({
                "t": time.time(), "session": self.session, "trial": trial, "image": image_id, "block": block,
                "index": index, "sha1": image_sha1(image), "fault": fault,
                "responses": None if responses is None else [float(v) for v in responses]}) + "\n")

    def crash_if_due(self, pending: int = 0) -> None:
        """After ``crash_every`` presentations (``pending``: processed, not logged yet) die as a crashed rig does:
        ``os._exit``, no cleanup, no goodbye (the log is line-buffered, so it is complete up to here)."""
        if self.faults.crash_every is not None and self.presented + pending >= self.faults.crash_every:
            os._exit(3)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


# -- files ----------------------------------------------------------------------------------------
def serve_files(rig: SimulatedRig, folder: str | Path, answer_format: str = "mat", settle: float = 0.3,
                poll: float = 0.02) -> None:
    """Answer every complete block in ``folder`` until ``rig.stop`` is set."""
    folder = Path(folder)
    if not folder.is_dir() or answer_format not in ("mat", "h5"):
        raise MangoError(f"rig folder {folder} not found: create it first" if answer_format in ("mat", "h5") else
                         f"unknown answer format {answer_format!r}; allowed: mat, h5")
    seen: dict[int, tuple[float, tuple]] = {}  # block -> (since, listing) while it may still grow
    due: list[tuple] = []  # (when, block, files, trial ids, images, responses) waiting for their latency
    done: set[int] = set()
    while not rig.stop.is_set():
        blocks: dict[int, list[tuple[int, str, str]]] = {}
        for e in os.scandir(folder):
            if m := IMAGE_RE.match(e.name):
                blocks.setdefault(int(m[1]), []).append((int(m[2]), m[3], e.name))
        now = time.monotonic()
        for block, files in sorted(blocks.items()):
            answered = any((folder / f"block{block:03d}.{x}").exists() for x in ("mat", "h5"))
            trials = None if block in done or answered else _ready(folder, block, files, seen, now, settle)
            if trials is None:
                continue
            done.add(block)
            try:
                images = [decode_png((folder / name).read_bytes()) for _, _, name in sorted(files)]
            except (OSError, MangoError) as exc:
                log.warning(f"block {block}: cannot read its images ({exc}); not answered")
                continue
            due.append((now + rig.delay(), block, sorted(files), trials, images, rig.respond(images)))
        for item in [d for d in due if d[0] <= time.monotonic()]:
            due.remove(item)
            _answer_block(rig, folder / f"block{item[1]:03d}.{answer_format}", *item[1:])
        rig.stop.wait(poll)


def _ready(folder: Path, block: int, files: list, seen: dict, now: float, settle: float) -> dict | None:
    """File name -> trial id once the block is complete (every file its manifest lists is there; without a
    manifest, XDream's way: the block's files stopped changing for ``settle`` s); None until then."""
    manifest = folder / f"block{block:03d}.json"
    if manifest.exists():
        try:
            trials = {i["file"]: i.get("trial") for i in json.loads(manifest.read_text())["images"]}
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return trials if set(trials) <= {f[2] for f in files} else None
    listing = tuple(sorted(f[2] for f in files))
    since, before = seen.get(block, (now, None))
    if before != listing:
        seen[block] = (now, listing)
        return None
    return {} if now - since >= settle else None


def _answer_block(rig: SimulatedRig, path: Path, block: int, files: list, trials: dict, images: list,
                  responses: np.ndarray) -> None:
    position = {name: k for k, name in enumerate(sorted(f[2] for f in files))}  # XDream's h5 'indices'
    rows: list[tuple[str, np.ndarray, int]] = []  # (stimulusID, responses, index) of the answer file
    logged: list[tuple] = []
    for (index, image_id, name), image, r in zip(files, images, responses, strict=True):
        fault = "drop" if rig.draw(rig.faults.drop) else "duplicate" if rig.draw(rig.faults.duplicate) else None
        logged.append((image, trials.get(name), image_id, index, r, fault))
        rows += [(name, r, position[name])] * {"drop": 0, "duplicate": 2}.get(fault or "", 1)
        rig.crash_if_due(len(logged))  # mid-block: this block's answer file is never written
    corrupt = rig.rng.choice(["truncated", "rows", "text"]) if rig.draw(rig.faults.malformed) else None
    indices = [row[2] for row in rows]  # XDream: no 'indices' = one row per image, in sorted order
    write_answer(path, [row[0] for row in rows], np.array([row[1] for row in rows]).reshape(len(rows), rig.channels),
                 indices if indices != list(range(len(files))) else None, corrupt)
    for image, trial, image_id, index, r, fault in logged:
        fault = f"malformed:{corrupt}" if corrupt else fault
        rig.record(image, trial, image_id, block, index, None if fault == "drop" else r, fault)


# -- ZeroMQ ---------------------------------------------------------------------------------------
def serve_zmq(rig: SimulatedRig, address: str, poll: float = 0.02) -> None:
    """Bind a ROUTER at ``address`` and answer every trial (after its delay) until ``rig.stop`` is set."""
    import zmq

    from .zmq import check_address

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    for opt, value in ((zmq.LINGER, 0), (zmq.ROUTER_MANDATORY, 1), (zmq.SNDHWM, 10000), (zmq.RCVHWM, 10000)):
        sock.setsockopt(opt, value)
    try:
        sock.bind(check_address(address))
        queue: list[tuple[float, bytes, dict, np.ndarray]] = []  # (due, peer, header, image)
        while not rig.stop.is_set():
            wait = min([poll] + [max(q[0] - time.monotonic(), 0.0) for q in queue])
            if sock.poll(max(int(wait * 1000), 0)):
                while sock.poll(0):
                    _on_frames(rig, sock, sock.recv_multipart(zmq.NOBLOCK), queue)
            now = time.monotonic()
            if ready := [q for q in queue if q[0] <= now]:
                queue[:] = [q for q in queue if q[0] > now]
                _answer_trials(rig, sock, ready)
    except zmq.ZMQError as exc:
        raise MangoError(f"cannot serve {address} ({exc}): is another rig bound there?") from None
    finally:
        sock.close(linger=0)
        ctx.term()


def _on_frames(rig: SimulatedRig, sock, frames: list[bytes], queue: list) -> None:
    from .zmq import decode_trial, pack, parse_header, send_quietly

    if len(frames) < 2:
        return
    peer, rest = frames[0], frames[2:]
    try:
        h = parse_header(frames[1])
    except MangoError as exc:
        log.warning(f"ignored a message that is not ours: {exc}")
        return
    if h["type"] in ("hello", "ping"):
        send_quietly(sock, [peer, pack("hello" if h["type"] == "hello" else "pong", session=rig.session,
                                channels=rig.channels, model=rig.model_name, layer=rig.layer)])
    elif h["type"] == "trial":
        try:
            queue.append((time.monotonic() + rig.delay(), peer, h, decode_trial(h, rest)))
        except MangoError as exc:
            send_quietly(sock, [peer, pack("answer", trial=h.get("trial"), image=h.get("image"), block=h.get("block"),
                                    responses=None, problem=f"cannot show the image: {exc}")])


def _answer_trials(rig: SimulatedRig, sock, ready: list) -> None:
    from .zmq import pack, send_quietly

    responses: list = [None] * len(ready)
    for shape in {q[3].shape for q in ready}:  # same-shape images are measured together
        ks = [k for k, q in enumerate(ready) if q[3].shape == shape]
        for k, r in zip(ks, rig.respond([ready[k][3] for k in ks]), strict=True):
            responses[k] = r
    for (_, peer, h, image), r in zip(ready, responses, strict=True):
        fields = {"trial": h.get("trial"), "image": h.get("image"), "block": h.get("block"), "index": h.get("index")}
        fault = ("drop" if rig.draw(rig.faults.drop) else "duplicate" if rig.draw(rig.faults.duplicate)
                 else f"malformed:{rig.rng.choice(['json', 'channels', 'text'])}" if rig.draw(rig.faults.malformed)
                 else None)
        values: list = [float(v) for v in r]
        if fault == "malformed:channels":
            values = values[:-1]
        elif fault == "malformed:text":
            values[0] = "NaN"
        frame = pack("answer", responses=values, **fields)
        for _ in range({"drop": 0, "duplicate": 2}.get(fault or "", 1)):
            send_quietly(sock, [peer, frame[: len(frame) // 2] if fault == "malformed:json" else frame])
        rig.record(image, fields["trial"], str(fields["image"]), int(fields["block"] or 0), int(fields["index"] or 0),
                   None if fault == "drop" else r, fault)
        rig.crash_if_due()
