"""What the live page shows, read from a run folder that may be writing right now.

Each poll opens the store read-only (WAL: a reader never blocks the writer), reads a cheap signature
(query count, CRC total, presentation statuses, ``result.json``'s time) and rebuilds the state only
when it changed, so a page polling every second costs one small query between batches. Nothing is
ever written to the run folder. A damaged record is shown as the one-line error every reader gives.
"""
from __future__ import annotations

import math
import os
import re
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MangoError, first_line
from ..experiment.files import LOCK_NAME
from ..experiment.history import best_so_far
from ..experiment.legacy import LEGACY_NAME
from ..experiment.result import RESULT_NAME, RunResult, load_run
from ..experiment.stimuli import (
    Decoder,
    has_presentations,
    image_id,
    responses_matrix,
    rig_presentations,
    silico_status,
    stored_png,
    to_png,
)
from ..experiment.store import DB_NAME, RunStore

#: most points of the curve sent to the page (the curve is thinned evenly beyond that)
CURVE_POINTS = 600
#: most images of the latest batch or block shown
LATEST_IMAGES = 64


def _num(x: object) -> float | None:
    """A float for JSON: NaN and infinities become null (JSON has no such numbers)."""
    v = float(x)  # type: ignore[arg-type]
    return v if math.isfinite(v) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunWatcher:
    """The state of one run folder for the page, rebuilt when the run changes; thread-safe."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._lock = threading.Lock()
        self._sig: tuple | None = None
        self._state: dict[str, Any] = {}
        self._decoder: Decoder | None = None
        self._decoder_error: str | None = None
        self._rig = False
        self._updated: float | None = None

    # --- state ----------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The page's JSON: ``phase`` is waiting, running, stopped (unfinished, no writer), finished or error."""
        with self._lock:
            try:
                sig = self._signature()
                if sig is None or sig[0] == 0:
                    self._sig, self._state = None, {}
                    return self._frame("waiting", message=self._waiting(sig))
                if sig != self._sig:
                    self._state = self._build()
                    self._sig, self._updated = sig, self._last_write()
            except MangoError as exc:
                self._sig = None
                return self._frame("error", message=str(exc))
            # read at every poll: a writer that stops (or is killed) changes nothing in the record
            phase = "finished" if self._state["finished"] else "running" if self._writer() else "stopped"
            return {**self._state, **self._frame(phase)}

    def _frame(self, phase: str, message: str | None = None) -> dict[str, Any]:
        return {"run": str(self.run_dir), "phase": phase, "message": message, "now": time.time(),
                "updated": self._updated if self._state else None}

    def _waiting(self, sig: tuple | None) -> str:
        if not self.run_dir.is_dir():
            return "waiting for the run folder to appear"
        if self._rig and sig is not None and sig[3]:  # a rig's first block is out, no query recorded yet
            return f"waiting for the first block's answers ({sig[3]} trials sent)"
        return "waiting for the first batch"

    def _writer(self) -> str | None:
        """Who holds the run folder's lock (``pid N on HOST``), read without taking it, or None when no process
        does: the writer truncates ``.lock`` when it lets go, and a writer killed on this host is a dead pid."""
        try:
            holder = (self.run_dir / LOCK_NAME).read_text(errors="replace").strip()
        except OSError:
            return None
        m = re.match(r"pid (\d+) on (\S+)", holder)
        if not holder or (m and m.group(2) == socket.gethostname() and not _alive(int(m.group(1)))):
            return None
        return holder

    def _last_write(self) -> float | None:
        """When the run last wrote its record (Unix time): the newest of its store files and result."""
        times = []
        for name in (DB_NAME, DB_NAME + "-wal", RESULT_NAME, LEGACY_NAME):
            try:
                times.append((self.run_dir / name).stat().st_mtime)
            except OSError:  # not there (yet, or any more)
                pass
        return max(times) if times else None

    def _signature(self) -> tuple | None:
        """What changes when the run records anything: None while there is no record to read."""
        if not (self.run_dir / DB_NAME).is_file():
            try:
                return (1, (self.run_dir / LEGACY_NAME).stat().st_mtime_ns)  # a MANGO 0.1 folder
            except OSError:
                return None
        result = self.run_dir / RESULT_NAME
        with RunStore.read(self.run_dir) as store:
            try:
                head = store.conn.execute("SELECT COUNT(*), MAX(query), TOTAL(crc) FROM queries").fetchone()
                rig = has_presentations(store.conn)
                shown = store.conn.execute("SELECT COUNT(*), TOTAL(answered), SUM(status = 'sent') "
                                           "FROM presentations").fetchone() if rig else ()
            except sqlite3.DatabaseError as exc:
                raise MangoError(f"cannot read {store.path}: {first_line(exc)}") from None
        self._rig = rig
        return (*head, *shown, result.stat().st_mtime_ns if result.is_file() else 0)

    def _build(self) -> dict[str, Any]:
        run = load_run(self.run_dir, unfinished=True)
        c, h = run.config, run.history
        curve = best_so_far(h)
        keep = np.unique(np.linspace(0, len(h) - 1, min(len(h), CURVE_POINTS)).round().astype(int))
        state: dict[str, Any] = {
            "kind": "rig" if self._rig else "in silico",
            "config": {k: getattr(c, k) for k in ("optimizer", "generator", "model", "target", "seed")},
            "queries": run.n_queries, "budget": c.budget, "finished": run.finished,
            "best": {"query": run.best_query, "response": _num(run.best_response),
                     "image": f"/image/{image_id(run.best_query)}.png"},
            "curve": {"query": (h["query"].to_numpy()[keep] + 1).tolist(), "best": [_num(v) for v in curve[keep]],
                      "response": [_num(v) for v in h["response"].to_numpy(dtype=float)[keep]]},
        }
        state.update(self._rig_view(run) if self._rig else self._silico_view(run))
        self._prepare_images(run, state)
        return state

    def _silico_view(self, run: RunResult) -> dict[str, Any]:
        h = run.history
        status = silico_status(h)
        last = h[h["batch"] == h["batch"].iloc[-1]].tail(LATEST_IMAGES)
        items = [{"id": image_id(q), "image": f"/image/{image_id(q)}.png", "query": int(q), "response": _num(r),
                  "status": "ok" if math.isfinite(r) else "failed"}
                 for q, r in zip(last["query"], last["response"].astype(float), strict=True)]
        counts = {"ok": int((status == "ok").sum()), "failed": int((status == "failed").sum())}
        return {"latest": {"label": f"batch {int(h['batch'].iloc[-1])}", "items": items}, "counts": counts,
                "progress": {"done": len(h), "unit": "queries"}}

    def _rig_view(self, run: RunResult) -> dict[str, Any]:
        """Statuses of every presentation; the latest block with each trial's own response (the mean of the
        target's channels in that trial, as the rig target averages them per query; else the query's)."""
        with RunStore.read(self.run_dir) as store:
            counts = dict(store.conn.execute("SELECT status, COUNT(*) FROM presentations GROUP BY status "
                                             "ORDER BY status").fetchall())
            # a rig run's budget caps presentations during the search (re-measures come after it)
            presented = store.conn.execute("SELECT COUNT(*) FROM presentations WHERE kind != 'remeasure'").fetchone()
            p = rig_presentations(store.conn, "WHERE block = (SELECT MAX(block) FROM presentations)")
            settings = run.settings or store.meta_json("settings") or {}
        p = p.sort_values("idx").tail(LATEST_IMAGES)
        channels = responses_matrix(p["responses"].tolist())
        units = (settings.get("target") or {}).get("channels") if isinstance(settings, dict) else None
        by_query = dict(zip(run.history["query"], run.history["response"].astype(float), strict=True))
        items = []
        for name, trial, status, q, row in zip(p["image"], p["trial"], p["status"], p["query"], channels, strict=True):
            query = None if q is None or q != q else int(q)
            own = row[units] if isinstance(units, list) and units and max(units) < len(row) else np.empty(0)
            response = float(own.mean()) if len(own) else math.nan if query is None else by_query.get(query, math.nan)
            items.append({"id": name, "image": f"/image/{name}.png", "trial": trial, "status": status, "query": query,
                          "response": _num(response), "channels": [_num(v) for v in row]})
        block = int(p["block"].iloc[0]) if len(p) else 0
        return {"latest": {"label": f"block {block}", "items": items}, "counts": counts,
                "progress": {"done": int(presented[0]), "unit": "presentations"}}

    # --- images ---------------------------------------------------------------------------------------
    def _prepare_images(self, run: RunResult, state: dict[str, Any]) -> None:
        """In silico: decode the latest batch and the MEI now, in one generator call, for the page to fetch."""
        if self._rig:
            return
        if self._decoder is None and self._decoder_error is None:
            try:
                self._decoder = Decoder.for_run(run.config.generator, run.config.generator_weights, run.history)
            except MangoError as exc:
                self._decoder_error = str(exc)
        if self._decoder is None:
            state["images_error"] = self._decoder_error
            return
        self._decoder.update(run.history)
        self._decoder.pixels([it["query"] for it in state["latest"]["items"]] + [run.best_query])

    def image(self, name: str) -> bytes | None:
        """The PNG of image ``name`` (``q000123`` or a rig id), or None when the run has no such image."""
        if self._rig:
            with RunStore.read(self.run_dir) as store:
                return stored_png(store.conn, name)
        if self._decoder is None or not (name.startswith("q") and name[1:].isdigit()):
            return None
        try:
            return to_png(self._decoder.pixels([int(name[1:])])[0])
        except MangoError:
            return None
