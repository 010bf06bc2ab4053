"""The files transport (``rig:files:DIR``), compatible with XDream's ``EPhysScorer``.

MANGO writes block N's images as ``block{N:03d}_{i:03d}_{image_id}.png`` into DIR (each written under a
hidden temporary name, then renamed, so the stimulus program never sees half an image) plus a manifest
``block{N:03d}.json``; the rig answers with ``block{N:03d}.mat`` (MATLAB v7.3: ``stimulusID`` and
``tEvokedResp``) or ``block{N:03d}.h5`` (``scores``, optional ``indices``), laid out as XDream reads them
(:mod:`mango.rig.answers`). Unlike XDream, an answer file is not trusted after a fixed sleep: it is read
only when it parses completely; one that stays unparsable is reported as malformed and moved aside,
never deleted. Answered images move to ``DIR/shown/`` so the stimulus folder holds only what to show.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MangoError
from .answers import Unreadable, read_answer
from .images import encode_png
from .protocol import Answer, Transport, Trial

log = logging.getLogger("mango")

ANSWER_RE = re.compile(r"^block(\d{3,})\.(mat|h5)$")
IMAGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
SHOWN = "shown"


def image_name(block: int, index: int, image_id: str, fmt: str = "png") -> str:
    """XDream's ``BlockWriter`` file name of the image at ``index`` of ``block``."""
    return f"block{block:03d}_{index:03d}_{image_id}.{fmt}"


def loose_id(name: str) -> str:
    """XDream's loose matching: the file name without extension and without ``blockNNN_III_``."""
    stem = os.path.splitext(name)[0]
    if stem.startswith("block"):
        stem = stem[stem.find("_") + 1:]
        stem = stem[stem.find("_") + 1:]
    return stem


@dataclass
class _Block:
    trials: list[Trial]
    names: list[str]  # the image file names, one per trial
    answered_by: str | None = None

    def __post_init__(self) -> None:
        self.by_name = dict(zip(self.names, self.trials, strict=True))


@dataclass
class _Watch:
    """An answer file that did not parse yet: its signature, when first seen and when it last changed."""

    sig: tuple
    first: float
    changed: float


class FilesTransport(Transport):
    """Blocks out as PNG files, answers back as ``.mat`` / ``.h5`` files, in one folder.

    ``match``: ``strict`` (a ``stimulusID`` must be the exact file name sent) or ``loose`` (XDream's: the
    image id after ``blockNNN_III_``). ``settle``: seconds an unparsable answer file must stay unchanged
    before it counts as malformed (a rig writing in place, without a rename, is given that long to
    finish); ``block_timeout``: seconds after which a file that keeps changing and never parses counts as
    malformed all the same. ``poll``: seconds between looks at the folder.
    """

    def __init__(self, folder: str | Path, match: str = "strict", block_timeout: float = 30.0,
                 settle: float = 1.0, poll: float = 0.01) -> None:
        if match not in ("strict", "loose"):
            raise MangoError(f"unknown rig file match {match!r}; allowed: strict, loose")
        self.folder, self.match = Path(folder), match
        self.block_timeout, self.settle, self.poll = float(block_timeout), float(settle), float(poll)
        self.channels: int | None = None
        self._blocks: dict[int, _Block] = {}
        self._seen: dict[str, tuple] = {}  # answer file -> signature of the version already handled
        self._watch: dict[str, _Watch] = {}
        self._opened = False

    def open(self) -> None:
        if not self.folder.is_dir():
            raise MangoError(f"rig folder {self.folder} not found: create it or start the rig first")
        before = {} if self._opened else {e.name: _sig(e) for e in os.scandir(self.folder) if ANSWER_RE.match(e.name)}
        self._seen.update(before)
        self._opened = True
        if before:
            log.info(f"rig folder {self.folder}: {len(before)} answer files from before are not read again")

    def send(self, trials: list[Trial]) -> None:
        block = _one_block(trials)
        if block in self._blocks:
            raise MangoError(f"block {block} was already sent to {self.folder}: every block needs a new number")
        names = [image_name(block, t.index, _safe_id(t.image_id)) for t in trials]
        try:
            self._set_aside_stale(block)
            for t, name in zip(trials, names, strict=True):
                _write_atomic(self.folder / name, encode_png(t.image))
            listed = [{"file": n, "trial": t.trial_id, "image": t.image_id, "index": t.index}
                      for t, n in zip(trials, names, strict=True)]
            manifest = {"protocol": 1, "block": block, "images": listed}
            _write_atomic(self.folder / f"block{block:03d}.json", json.dumps(manifest, indent=1).encode())
        except OSError as exc:
            raise MangoError(f"cannot write block {block} into rig folder {self.folder} "
                             f"({exc.strerror or type(exc).__name__}): check the folder and free space") from None
        self._blocks[block] = _Block(list(trials), names)

    def expect(self, trials: list[Trial]) -> None:
        """Trials sent by an earlier process (before a crash): read their blocks' answer files, old or new."""
        for block in sorted({t.block for t in trials}):
            mine = sorted((t for t in trials if t.block == block), key=lambda t: t.index)
            self._blocks[block] = _Block(mine, [image_name(block, t.index, t.image_id) for t in mine])
            for ext in ("mat", "h5"):
                self._seen.pop(f"block{block:03d}.{ext}", None)

    def receive(self, timeout: float) -> list[Answer]:
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            answers = self._scan()
            left = deadline - time.monotonic()
            if answers or left <= 0:
                return answers
            time.sleep(min(self.poll, left))

    def alive(self) -> bool:
        return self.folder.is_dir()

    def describe(self) -> dict:
        return {"transport": "files", "folder": str(self.folder), "match": self.match, "image_format": "png"}

    def close(self) -> None:
        """Nothing to release: the folder stays as it is."""

    def cancel(self, block: int) -> None:
        """Move an unanswered block's images to ``shown/``, so the stimulus program stops showing them."""
        if block in self._blocks:
            self._retire(self._blocks[block])

    # -- reading answers ------------------------------------------------------------------------
    def _scan(self) -> list[Answer]:
        try:
            entries = [e for e in os.scandir(self.folder) if ANSWER_RE.match(e.name)]
        except OSError:
            return []  # the folder vanished (an unmounted share): alive() says so, nothing to read
        answers: list[Answer] = []
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                sig = _sig(entry)
            except OSError:
                continue  # renamed away between listing and stat
            if self._seen.get(entry.name) != sig:
                answers += self._handle(entry.name, sig)
        return answers

    def _handle(self, name: str, sig: tuple) -> list[Answer]:
        block, path, now = int(ANSWER_RE.match(name)[1]), self.folder / name, time.monotonic()  # type: ignore[index]
        blk = self._blocks.get(block)
        try:
            stim, resp = read_answer(path, blk.names if blk else None)
        except Unreadable as exc:
            w = self._watch.get(name)
            if w is None or w.sig != sig:
                self._watch[name] = _Watch(sig, w.first if w else now, now)
                return []
            if now - w.changed < self.settle and now - w.first < self.block_timeout:
                return []
            return self._malformed(name, sig, block, blk, str(exc))
        self._watch.pop(name, None)
        self._seen[name] = sig
        if blk is None or blk.answered_by is not None:
            which = "was never sent" if blk is None else f"was already answered by {blk.answered_by}"
            log.warning(f"rig answer file {name} is for block {block}, which {which}: not used")
            return [self._answer(None, s, block, None, f"answer for block {block}, which {which}", name, k)
                    for k, s in enumerate(stim)]
        return self._match(name, blk, block, stim, resp)

    def _match(self, name: str, blk: _Block, block: int, stim: list[str], resp: np.ndarray) -> list[Answer]:
        channels, wrong = resp.shape[1], None  # resp: [rows, channels]
        self.channels = self.channels or (channels if stim else None)
        if stim and channels != self.channels:
            wrong = f"wrong number of channels: {name} has {channels}, earlier answers had {self.channels}"
        blk.answered_by = name
        taken: set[str] = set()
        answers = []
        for k, s in enumerate(stim):
            t = self._find(blk, s, taken)
            if t is None:
                answers.append(self._answer(None, s, block, None, f"unknown image id {s!r}: block {block} showed "
                                            f"{len(blk.names)} other images ({self.match} match)", name, k))
                continue
            taken.add(t.trial_id)
            r = None if wrong else resp[k].astype(np.float64)
            answers.append(self._answer(t, s, block, r, wrong, name, k))
        self._retire(blk)
        return answers

    def _find(self, blk: _Block, stim: str, taken: set[str]) -> Trial | None:
        t = blk.by_name.get(stim)
        if t is not None or self.match == "strict":
            return t
        candidates = [t for t in blk.trials if t.image_id == loose_id(stim)]
        fresh = [t for t in candidates if t.trial_id not in taken]
        return (fresh or candidates)[0] if candidates else None

    def _malformed(self, name: str, sig: tuple, block: int, blk: _Block | None, why: str) -> list[Answer]:
        self._watch.pop(name, None)
        aside = _unused(self.folder / f"{name}.malformed")
        try:
            os.replace(self.folder / name, aside)
        except OSError:
            self._seen[name] = sig  # reported once, even where it cannot be moved
        log.warning(f"rig answer file {name} is malformed ({why}); moved to {aside.name}")
        problem = f"malformed: {why} ({name}, moved to {aside.name})"
        if blk is None or blk.answered_by is not None:
            return [self._answer(None, None, block, None, problem, name, None)]
        return [self._answer(t, n, block, None, problem, name, None)
                for t, n in zip(blk.trials, blk.names, strict=True)]

    def _answer(self, trial: Trial | None, stim: str | None, block: int, responses: np.ndarray | None,
                problem: str | None, file: str, row: int | None) -> Answer:
        image = trial.image_id if trial else (loose_id(stim) if stim else None)
        return Answer(trial.trial_id if trial else None, image, block, responses, time.time(), problem,
                      {"file": file, "row": row, "stimulusID": stim})

    # -- the folder -----------------------------------------------------------------------------
    def _retire(self, blk: _Block) -> None:
        """Answered (or cancelled) images leave the stimulus folder for ``shown/`` (kept, not deleted)."""
        block = blk.trials[0].block if blk.trials else None
        try:
            (self.folder / SHOWN).mkdir(exist_ok=True)
        except OSError as exc:
            log.warning(f"cannot create {self.folder / SHOWN} ({exc.strerror}): block {block}'s images stay")
            return
        for n in blk.names + ([f"block{block:03d}.json"] if block is not None else []):
            try:
                os.replace(self.folder / n, self.folder / SHOWN / n)
            except OSError:
                pass  # already moved, or removed by the rig

    def _set_aside_stale(self, block: int) -> None:
        """Files of an earlier session named like ``block`` would be taken for this one's: move them."""
        prefix = f"block{block:03d}"
        stale = [e.name for e in os.scandir(self.folder) if e.name.startswith(prefix)
                 and (e.name[len(prefix):][:1] in (".", "_")) and e.is_file()]
        if stale:
            aside = self.folder / "stale"
            aside.mkdir(exist_ok=True)
            for n in stale:
                os.replace(self.folder / n, _unused(aside / n))
            log.warning(f"rig folder {self.folder}: {len(stale)} files of an earlier block {block} moved to stale/")
            for n in stale:
                self._seen.pop(n, None)


def _sig(entry: os.DirEntry) -> tuple:
    st = entry.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _one_block(trials: list[Trial]) -> int:
    if not trials:
        raise MangoError("a block needs at least one trial")
    blocks = {t.block for t in trials}
    if len(blocks) != 1:
        raise MangoError(f"one block at a time: these trials belong to blocks {sorted(blocks)}")
    return blocks.pop()


def _safe_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not IMAGE_ID_RE.match(image_id):
        raise MangoError(f"image id {image_id!r} cannot be part of a file name: use letters, digits, '_', '-', "
                         "'.', '+' (not starting with '.')")
    return image_id


def _write_atomic(path: Path, data: bytes) -> None:
    """Write under a hidden temporary name (ignored by stimulus programs), then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _unused(path: Path) -> Path:
    """``path``, or ``path.1``, ``path.2``... if taken: moving aside never overwrites a kept file."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate
