"""What a run showed: its trials and their images, read alike for rig and in-silico runs.

A rig run records every presentation (store table ``presentations``) and every image shown
(``images``, PNG). An in-silico run records one row per query; its image is the generator's
decoding of the query's latent, made again here on demand. The NWB export and the live monitor both
read runs through this module, so they agree on image ids (``q000123``, ``ref003``), statuses and
pixels. Everything here only reads: a run may be writing while it is read.
"""
from __future__ import annotations

import io
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError, first_line
from .history import latents

#: columns of :func:`rig_presentations`, as stored (times are Unix seconds)
PRESENTATION_COLUMNS = ("trial", "query", "image", "kind", "batch", "block", "idx", "status", "sent", "answered",
                        "responses", "problem")


@dataclass
class Trials:
    """A run's trials for export, one row per presentation: the table, its 2-D columns, how its times were made."""

    table: pd.DataFrame
    latent: np.ndarray
    clock: str
    responses: np.ndarray | None = None


class Picture(NamedTuple):
    """One image of the file; ``pixels()`` makes it when the writer gets to it (memory: a chunk, not the run)."""

    name: str
    description: str
    shape: tuple[int, ...]
    dtype: np.dtype
    pixels: Callable[[], np.ndarray]


def image_id(query: int) -> str:
    """The image id of a query's candidate, as the rig protocol names it."""
    return f"q{int(query):06d}"


def silico_status(history: pd.DataFrame) -> np.ndarray:
    """In-silico trial statuses: ``ok`` for a finite response, ``failed`` for NaN/inf (as ``mango export``)."""
    return np.where(np.isfinite(history["response"].to_numpy(dtype=float)), "ok", "failed")


def has_presentations(conn: sqlite3.Connection) -> bool:
    """True for a rig run: its store holds presentations (older stores have no such table: in-silico)."""
    try:
        return conn.execute("SELECT 1 FROM presentations LIMIT 1").fetchone() is not None
    except sqlite3.OperationalError:
        return False


def responses_matrix(blobs: Sequence[bytes | None]) -> np.ndarray:
    """Per-channel responses (float64 blobs, one per trial) as ``[trials, channels]``; NaN where none."""
    rows = [np.frombuffer(b, "<f8") if isinstance(b, bytes) else np.empty(0) for b in blobs]
    channels = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), channels), np.nan)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def rig_presentations(conn: sqlite3.Connection, where: str = "", args: Sequence = ()) -> pd.DataFrame:
    """Presentations in the order they were sent (``where``: an optional SQL condition)."""
    sql = f"SELECT {', '.join(PRESENTATION_COLUMNS)} FROM presentations {where} ORDER BY sent, block, idx"
    return pd.DataFrame(conn.execute(sql, tuple(args)).fetchall(), columns=list(PRESENTATION_COLUMNS))


def stored_png(conn: sqlite3.Connection, image: str) -> bytes | None:
    """The PNG of a rig image as it was shown, or None when the store holds no image of that id."""
    row = conn.execute("SELECT png FROM images WHERE image = ?", (image,)).fetchone()
    return None if row is None else bytes(row[0])


def _pixel_mode(img: object) -> str:
    """The PIL mode a stored image is read in: gray, RGB or RGBA, whatever the PNG's own mode."""
    mode = img.mode  # type: ignore[attr-defined]
    if mode in ("L", "RGB", "RGBA"):
        return str(mode)
    return "RGBA" if "A" in img.getbands() else "RGB"  # type: ignore[attr-defined]


def png_pixels(png: bytes, image: str) -> np.ndarray:
    """A stored PNG as ``uint8 [H, W]`` (gray) or ``[H, W, 3|4]``; a broken one is a one-line MangoError."""
    with _open_png(png, image) as img:
        mode = _pixel_mode(img)
        return np.asarray(img if img.mode == mode else img.convert(mode))


def png_shape(png: bytes, image: str) -> tuple[int, ...]:
    """The shape :func:`png_pixels` gives, read from the PNG header alone (to plan a file before decoding)."""
    with _open_png(png, image) as img:
        return (img.height, img.width, *{"L": (), "RGB": (3,), "RGBA": (4,)}[_pixel_mode(img)])


def _open_png(png: bytes, image: str) -> Any:
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(png))
        img.load()
        return img
    except (OSError, ValueError, SyntaxError) as exc:
        raise MangoError(f"image {image!r} of the run store is not a readable PNG: {first_line(exc)}") from None


def to_png(pixels: np.ndarray, scale: int = 1) -> bytes:
    """``[H, W]`` or ``[H, W, C]`` pixels (float in [0, 1] or uint8) as PNG bytes, upscaled ``scale`` times."""
    from PIL import Image

    arr = pixels if pixels.dtype == np.uint8 else (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class Decoder:
    """A run's generator, turning queries of its history into pixels ``float32 [H, W, C]`` in [0, 1].

    Why a class: decoding one latent at a time is slow and decoding a whole run at once takes memory
    proportional to the run, so :meth:`pixels` decodes ``chunk`` queries per generator call and keeps
    at most ``keep`` images (least recently used dropped). Thread-safe: the monitor serves images
    from several threads.
    """

    def __init__(self, generator: object, history: pd.DataFrame, chunk: int = 256, keep: int = 1024) -> None:
        self.gen, self.chunk, self.keep = generator, chunk, max(keep, chunk)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.update(history)

    @classmethod
    def for_run(cls, generator_name: str, weights: str | None, history: pd.DataFrame, **kw: int) -> Decoder:
        """The decoder of a run from its recorded generator settings; a one-line MangoError when unavailable."""
        from ..generators import make_generator

        try:
            gen = make_generator(generator_name, weights)
        except MangoError as exc:
            raise MangoError(f"cannot rebuild the run's generator {generator_name!r} to draw its images: "
                             f"{exc}") from None
        return cls(gen, history, **kw)

    def update(self, history: pd.DataFrame) -> None:
        """Take the run's newer history (queries are looked up in it by number)."""
        with self._lock:
            self.history = history
            self._row = pd.Series(np.arange(len(history)), index=history["query"].to_numpy())

    def pixels(self, queries: Sequence[int]) -> list[np.ndarray]:
        """The images of ``queries`` (recorded query numbers), decoded ``chunk`` at a time."""
        with self._lock:
            todo = [int(q) for q in dict.fromkeys(int(q) for q in queries) if int(q) not in self._cache]
            missing = [q for q in todo if q not in self._row.index]
            if missing:
                raise MangoError(f"query {missing[0]} is not in the run's history")
            for start in range(0, len(todo), self.chunk):
                part = todo[start : start + self.chunk]
                rows = self.history.iloc[self._row.loc[part].to_numpy()]
                with torch.inference_mode():
                    imgs = self.gen.pixels(latents(rows, self.gen.space.dim))  # type: ignore[attr-defined]
                for q, img in zip(part, imgs.float().permute(0, 2, 3, 1).cpu().numpy(), strict=True):
                    self._cache[q] = img
            out = []
            for q in queries:
                self._cache.move_to_end(int(q))
                out.append(self._cache[int(q)])
            while len(self._cache) > self.keep:
                self._cache.popitem(last=False)
            return out
