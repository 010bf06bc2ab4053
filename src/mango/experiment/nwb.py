"""``mango export RUN --format nwb``: a run as one Neurodata Without Borders file (pynwb).

Layout, NWB's pattern for "a set of images presented in some order" (so NWB tools and DANDI read it
without MANGO):

- ``/stimulus/templates/stimulus_images``: :class:`pynwb.base.Images`, one ``GrayscaleImage``,
  ``RGBImage`` or ``RGBAImage`` per image, named by its id (``q000123``: the candidate of query 123;
  ``ref003``: reference image 3), rows x columns (x channels), ordered by ``order_of_images``. Rig
  images are the stored PNGs (uint8); in-silico images are the run's generator decoding each query's
  latent again (float32 in [0, 1], what the target was shown before its own normalization).
- ``/stimulus/presentation/stimulus_presentation``: :class:`pynwb.image.IndexSeries`, for each trial
  the index of its image in ``order_of_images``, at the trial's start time.
- ``/intervals/trials``: one row per presentation (in-silico: per query; its ``repeats`` are recorded
  as their mean and sd): ``trial, query, image, kind, batch, block, status, response, response_sd,
  latent``, and for rig runs ``responses`` (``[trials, channels]``, NaN where there is no answer) and
  ``problem``. ``query`` is -1 outside the search (reference and re-measure images), ``batch`` -1 when
  there is none (re-measures).
- ``notes``: the run's settings and each plug-in's effective settings (JSON); ``source_script``: the
  MANGO version that wrote it.

Times are seconds from ``session_start_time`` (the run's first ``start`` event). Rig trials run from
``sent`` to ``answered`` (a trial never answered: to ``sent`` + the block timeout when the run records
one, else to its block's last answer). In-silico trials span their batch's measuring interval on the
run clock (``elapsed_s - batch_s`` .. ``elapsed_s``: pauses between resumes excluded; the batch is
shown at once), or synthetic 0.1 s slots per query for runs without that clock (MANGO 0.1 folders).
"""
from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import MangoError, first_line
from .files import _umask, fsync_dir
from .history import latents
from .result import CONFIG_NAME, RunResult, load_run
from .stimuli import (
    Decoder,
    Picture,
    Trials,
    has_presentations,
    image_id,
    png_pixels,
    png_shape,
    responses_matrix,
    rig_presentations,
    silico_status,
    stored_png,
)
from .store import DB_NAME, RunStore

#: synthetic trial length for in-silico runs without a run clock
SLOT_S = 0.1
_TIMEOUT_KEYS = ("block_timeout_s", "timeout_s", "block_timeout", "timeout")


def export_nwb(run_dir: str | Path, out: str | Path, generator: Any = None) -> Path:
    """Write the run in ``run_dir`` (finished or not: what is measured) to the NWB file ``out``; returns ``out``.

    ``generator``: the generator object of a run made with one (its images are decoded again);
    runs made with a registered generator rebuild it from their settings. An existing ``out`` is
    replaced whole (temporary file, fsync, rename).
    """
    try:
        import pynwb  # noqa: F401
    except ImportError as exc:
        raise MangoError(f"NWB export needs pynwb: pip install pynwb ({first_line(exc)})") from None
    from .nwb_file import build_file

    run, out = load_run(run_dir, unfinished=True), Path(out)
    store = RunStore.read(run.run_dir) if (run.run_dir / DB_NAME).is_file() else None
    try:
        rig = store is not None and has_presentations(store.conn)
        start = _session_start(run, store)
        trials, images = _rig(run, store.conn, start) if rig else _silico(run, generator)  # type: ignore[union-attr]
        settings = run.settings or (_stored_settings(store.conn) if store is not None else {})
        nwbfile = build_file(run, settings, start, trials, images, rig)
        _write(nwbfile, out)
    finally:
        if store is not None:
            store.close()
    return out


def _session_start(run: RunResult, store: RunStore | None) -> datetime:
    """The first ``start`` event of the store (local time), else the time ``config.json`` was written."""
    if store is not None:
        row = store.conn.execute("SELECT time FROM events WHERE kind = 'start' ORDER BY id LIMIT 1").fetchone()
        if row is not None:
            try:
                return datetime.strptime(row[0], "%Y-%m-%dT%H:%M:%S").astimezone()
            except ValueError:
                pass
    return datetime.fromtimestamp((run.run_dir / CONFIG_NAME).stat().st_mtime).astimezone()


# --- trials and images of the two kinds of run ------------------------------------------------------------
def _silico(run: RunResult, generator: Any) -> tuple[Trials, list[Picture]]:
    h = run.history
    q = h["query"].to_numpy()
    stop = h["elapsed_s"].to_numpy(dtype=float)
    begin = stop - h["batch_s"].to_numpy(dtype=float)
    clock = bool(np.isfinite(begin).all() and np.isfinite(stop).all() and (np.diff(begin) >= 0).all())
    if not clock:
        begin, stop = np.arange(len(h)) * SLOT_S, np.arange(1, len(h) + 1) * SLOT_S
    ids = [image_id(i) for i in q]
    table = pd.DataFrame({
        "start_time": np.maximum(begin, 0.0), "stop_time": np.maximum(stop, 0.0), "trial": ids, "query": q,
        "image": ids, "kind": "search", "batch": h["batch"].to_numpy(), "block": h["batch"].to_numpy(),
        "status": silico_status(h), "response": h["response"].to_numpy(dtype=float),
        "response_sd": h["response_sd"].to_numpy(dtype=float)})
    trials = Trials(table, latents(h).numpy(), "in silico: the batch's measuring interval on the run clock "
                    "(elapsed_s - batch_s .. elapsed_s), the batch shown at once" if clock else
                    f"in silico: synthetic {SLOT_S} s slots, one per query (the run recorded no clock)")
    decoder = (Decoder(generator, h) if generator is not None else
               Decoder.for_run(run.config.generator, run.config.generator_weights, h))
    c, height, width = decoder.gen.image_shape  # type: ignore[attr-defined]
    if c not in (1, 3, 4):
        raise MangoError(f"the run's images have {c} channels; NWB stores gray, RGB or RGBA images (1, 3, 4)")
    shape = (height, width) if c == 1 else (height, width, c)
    chunk: dict[int, np.ndarray] = {}

    def pixels(i: int) -> np.ndarray:  # the writer asks in order: each chunk of queries is decoded once
        if int(q[i]) not in chunk:
            part = [int(v) for v in q[i : i + decoder.chunk]]
            chunk.clear()
            chunk.update(zip(part, decoder.pixels(part), strict=True))
        img = chunk[int(q[i])].astype(np.float32)
        return img[..., 0] if c == 1 else img

    return trials, [Picture(ids[i], f"candidate of query {int(q[i])}, pixels in [0, 1]", shape, np.dtype("float32"),
                            partial(pixels, i)) for i in range(len(q))]


def _rig(run: RunResult, conn: sqlite3.Connection, start: datetime) -> tuple[Trials, list[Picture]]:
    p = rig_presentations(conn)
    origin = min(start.timestamp(), float(p["sent"].min()))
    sent, answered = p["sent"].to_numpy(dtype=float), p["answered"].to_numpy(dtype=float)
    timeout = _block_timeout(run.settings or _stored_settings(conn))
    if timeout is not None:
        close = sent + timeout
    else:  # no timeout recorded: a block closed no earlier than its last answer (or its last trial sent)
        close = pd.Series(np.fmax(answered, sent)).groupby(p["block"].to_numpy()).transform("max").to_numpy(float)
    stop = np.where(np.isfinite(answered), answered, close)
    h = run.history.reset_index(drop=True)
    row = pd.Series(np.arange(len(h)), index=h["query"].to_numpy())
    query = p["query"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    known = np.isin(query, h["query"].to_numpy())
    at = row.loc[query[known]].to_numpy()
    response, sd = np.full(len(p), np.nan), np.full(len(p), np.nan)
    response[known] = h["response"].to_numpy(dtype=float)[at]
    sd[known] = h["response_sd"].to_numpy(dtype=float)[at]
    z = latents(h).numpy()
    lat = np.full((len(p), z.shape[1]), np.nan)
    lat[known] = z[at]
    table = pd.DataFrame({
        "start_time": sent - origin, "stop_time": np.maximum(stop, sent) - origin, "trial": p["trial"].astype(str),
        "query": query, "image": p["image"].astype(str), "kind": p["kind"].astype(str),
        "batch": p["batch"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64),
        "block": p["block"].to_numpy(dtype=np.int64), "status": p["status"].astype(str), "response": response,
        "response_sd": sd, "problem": p["problem"].fillna("").astype(str)})
    never = (f"sent + the block timeout ({timeout} s)" if timeout is not None else
             "its block's last answer (the run records no block timeout)")
    trials = Trials(table, lat, f"rig: sent .. answered; a trial never answered ends at {never}",
                    responses_matrix(p["responses"].tolist()))
    kinds = dict(conn.execute("SELECT image, kind FROM images ORDER BY image").fetchall())

    def pixels(name: str) -> np.ndarray:
        return png_pixels(stored_png(conn, name) or b"", name)

    return trials, [Picture(name, f"{kind} image, as shown to the rig", png_shape(stored_png(conn, name) or b"", name),
                            np.dtype("uint8"), partial(pixels, name)) for name, kind in kinds.items()]


def _stored_settings(conn: sqlite3.Connection) -> dict:
    row = conn.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
    value = json.loads(row[0]) if row else None
    return value if isinstance(value, dict) else {}


def _block_timeout(settings: object) -> float | None:
    """The rig's block timeout (seconds) from the recorded plug-in settings: the target's first, then anywhere."""
    if isinstance(settings, dict) and isinstance(settings.get("target"), dict):
        found = _block_timeout_in(settings["target"])
        if found is not None:
            return found
    return _block_timeout_in(settings)


def _block_timeout_in(settings: object) -> float | None:
    if isinstance(settings, dict):
        for key in _TIMEOUT_KEYS:
            if isinstance(settings.get(key), (int, float)) and not isinstance(settings.get(key), bool):
                return float(settings[key])
        for value in settings.values():
            found = _block_timeout_in(value)
            if found is not None:
                return found
    return None


def _write(nwbfile: Any, out: Path) -> None:
    """Write to a temporary file beside ``out``, fsync, rename: ``out`` is the old file or the new one."""
    from pynwb import NWBHDF5IO

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.nwb", dir=out.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it (mkstemp makes it private)
        os.close(fd)
    except OSError as exc:
        raise MangoError(f"cannot write {out}: {exc.strerror or first_line(exc)}") from None
    try:
        with NWBHDF5IO(tmp, "w") as io:
            io.write(nwbfile)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except OSError as exc:
        raise MangoError(f"cannot write {out}: {exc.strerror or first_line(exc)}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


__all__: Sequence[str] = ["export_nwb"]
