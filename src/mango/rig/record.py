"""A rig run's trials in the run store: written before they are sent, and again when their block closes.

So a crash at any moment leaves a record of what the animal was shown: trials still ``sent`` are
expected again after ``--resume``, and their answers are matched then.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..experiment.store import RunStore, now
from .blocks import Ledger, Outcome, Verdict
from .protocol import Trial


def png(image: np.ndarray) -> bytes:
    arr = image[..., 0] if image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def unpng(data: bytes) -> np.ndarray:
    arr = np.asarray(Image.open(io.BytesIO(data)))
    return arr[..., None] if arr.ndim == 2 else arr


class RigRecord:
    """The ``presentations``, ``answers`` and ``images`` tables of one run (see :mod:`mango.experiment.store`)."""

    def __init__(self, store: RunStore) -> None:
        self.store, self.conn = store, store.conn
        self._stored = {r[0] for r in self.conn.execute("SELECT image FROM images")}
        self._encoded: list[tuple[str, str, bytes]] = []  # images of the block in flight, stored when it closes
        top = self.conn.execute("SELECT MAX(block) FROM presentations").fetchone()[0]
        self._block = -1 if top is None else int(top)
        self._count = int(self.conn.execute("SELECT COUNT(*) FROM presentations").fetchone()[0])

    def next_block(self) -> int:
        self._block += 1
        return self._block

    def presented(self) -> int:
        """Presentations sent in this run (every kind and status): what the budget counts."""
        return self._count

    def extra_images(self) -> int:
        """Images shown outside the search so far (their ids continue from here)."""
        return int(self.conn.execute("SELECT COUNT(*) FROM images WHERE kind = 'remeasure'").fetchone()[0])

    def pending(self) -> list[Trial]:
        """Trials sent whose block never closed (the run stopped while waiting for them)."""
        rows = self.conn.execute("SELECT p.trial, p.image, p.block, p.idx, i.png FROM presentations p LEFT JOIN images "
                                 "i ON p.image = i.image WHERE p.status = 'sent' ORDER BY p.block, p.idx").fetchall()
        empty = np.zeros((0, 0, 1), np.uint8)  # waiting for an answer needs the ids, not the pixels
        return [Trial(t, img, int(b), int(j), unpng(data) if data else empty) for t, img, b, j, data in rows]

    def answered(self, image_ids: list[str]) -> list[tuple[int, np.ndarray]]:
        """``(position in image_ids, responses)`` of the ok trials already recorded for these images."""
        where = {image: i for i, image in enumerate(image_ids)}
        rows = self.conn.execute(f"SELECT image, responses FROM presentations WHERE status = 'ok' AND image IN "
                                 f"({','.join('?' * len(image_ids))})", image_ids).fetchall() if image_ids else []
        return [(where[img], np.frombuffer(r, dtype="<f8").astype(np.float64)) for img, r in rows]

    def keep_images(self, image_ids: list[str], pixels: list[np.ndarray], kind: str) -> None:
        """Store the images of ``image_ids`` that were shown before a stop but never stored (their block never
        closed in that process); a no-op in an uninterrupted run."""
        rows = self.conn.execute(f"SELECT DISTINCT image FROM presentations WHERE image IN "
                                 f"({','.join('?' * len(image_ids))})", image_ids).fetchall() if image_ids else []
        lost = {r[0] for r in rows} - self._stored
        if lost:
            with self.store._transaction("recording the images shown before the stop"):
                self.conn.executemany("INSERT OR IGNORE INTO images VALUES (?, ?, ?)",
                                      [(i, kind, png(p)) for i, p in zip(image_ids, pixels, strict=True) if i in lost])
            self._stored |= lost

    def sent(self, trials: list[Trial], queries: list[int | None], image_ids: list[str], batch: int | None,
             kind: str = "search") -> None:
        """Record a block before it goes out. Images not in ``image_ids`` are the interleaved references;
        ``kind`` is ``search`` or ``remeasure``. The images themselves are stored with the block's answers
        (:meth:`encode` runs while the rig shows them): a candidate's image is its latent, recorded anyway."""
        query_of = dict(zip(image_ids, queries, strict=True))
        t = now_s()
        rows = [(tr.trial_id, query_of.get(tr.image_id), tr.image_id,
                 kind if tr.image_id in query_of else "reference", batch, tr.block, tr.index, "sent", t)
                for tr in trials]
        with self.store._transaction("recording the trials sent"):
            self.conn.executemany("INSERT INTO presentations (trial, query, image, kind, batch, block, idx, status, "
                                  "sent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self._count += len(trials)
        self._pending_images = [(tr, kind if tr.image_id in query_of else "reference") for tr in trials]

    def encode(self) -> None:
        """PNG of each image of the block in flight not stored yet (run while the rig shows them)."""
        pending = getattr(self, "_pending_images", [])
        new = {tr.image_id: (tr, k) for tr, k in pending if tr.image_id not in self._stored}
        self._encoded = [(image, k, png(tr.image)) for image, (tr, k) in new.items()]
        self._pending_images = []

    def closed(self, outcomes: list[Outcome], verdicts: list[Verdict]) -> None:
        """A block closed: each trial's status (and responses), and every answer as it came."""
        self._stored.update(image for image, _, _ in self._encoded)
        ups = [(o.status, o.answered, None if o.responses is None else o.responses.astype("<f8").tobytes(),
                o.problem, o.trial.trial_id) for o in outcomes]
        late = [(v.trial,) for v in verdicts if v.verdict == "late" and v.trial]
        logs = [(v.trial, v.answer.image_id, v.answer.block, v.answer.received, v.verdict,
                 None if v.answer.responses is None else np.asarray(v.answer.responses, "<f8").tobytes(),
                 v.answer.problem, repr(v.answer.raw)[:2000] if v.answer.raw else None) for v in verdicts]
        images, self._encoded = self._encoded, []
        with self.store._transaction("recording a block's answers"):
            self.conn.executemany("INSERT OR IGNORE INTO images VALUES (?, ?, ?)", images)
            self.conn.executemany("UPDATE presentations SET status = ?, answered = ?, responses = ?, problem = ? "
                                  "WHERE trial = ?", ups)
            self.conn.executemany("UPDATE presentations SET status = 'late' WHERE trial = ? AND status = 'missing'",
                                  late)
            self.conn.executemany("INSERT INTO answers (trial, image, block, received, verdict, responses, problem, "
                                  "raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", logs)


def now_s() -> float:
    import time

    return time.time()


__all__ = ["Ledger", "RigRecord", "now", "png", "unpng"]
