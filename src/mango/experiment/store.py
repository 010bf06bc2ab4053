"""The run store: every measured query of a run, in ``run.db`` (SQLite) inside its folder.

Why SQLite (the model is Optuna's RDB storage): a commit is atomic and, in WAL mode with
``synchronous=FULL``, durable with one fsync, so each measured batch is one transaction; a crash at
any instant loses at most the batch being measured, and nothing is ever rewritten in place. Readers
(``mango show``, the analyses, a live monitor) read while the run writes. Each record carries a CRC32
of its content, so a damaged record is found, reported with its query number and set aside (table
``damaged``) instead of being trusted or dropped with everything after it.

Latents are stored as raw little-endian bytes (int64 grid indices or float64 box values), so a
resumed run replays bit-identical candidates.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import MangoError, first_line

DB_NAME = "run.db"
SCHEMA = 1
#: history columns before the latent columns ``z0..``
COLUMNS = ("query", "batch", "asked", "response", "response_sd", "value", "elapsed_s", "batch_s", "optimizer_s")
_NUMBERS = COLUMNS[3:]
_HEAD = struct.Struct("<qqq6d")
_KINDS = {"i8": np.dtype("<i8"), "f8": np.dtype("<f8")}

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS queries (
    query INTEGER PRIMARY KEY, batch INTEGER NOT NULL, asked INTEGER NOT NULL,
    response REAL, response_sd REAL, value REAL, elapsed_s REAL, batch_s REAL, optimizer_s REAL,
    zkind TEXT NOT NULL, z BLOB NOT NULL, crc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS damaged (
    id INTEGER PRIMARY KEY, position TEXT NOT NULL, reason TEXT NOT NULL, raw TEXT NOT NULL, found TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS presentations (
    trial TEXT PRIMARY KEY, query INTEGER, image TEXT NOT NULL, kind TEXT NOT NULL, batch INTEGER,
    block INTEGER NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL, sent REAL NOT NULL, answered REAL,
    responses BLOB, problem TEXT);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY, trial TEXT, image TEXT, block INTEGER, received REAL NOT NULL, verdict TEXT NOT NULL,
    responses BLOB, problem TEXT, raw TEXT);
CREATE TABLE IF NOT EXISTS images (image TEXT PRIMARY KEY, kind TEXT NOT NULL, png BLOB NOT NULL);
"""
#: Rig runs (``mango.rig``) also fill ``presentations`` (one row per trial sent: ``status`` is ``sent`` until
#: its block closes, then ok / missing / late / duplicate / malformed; ``responses`` = float64 per channel;
#: ``query`` is NULL for reference images), ``answers`` (every answer received, as it came, with the
#: verdict given to it) and ``images`` (each image shown, as PNG). Times are Unix seconds.


def latent_columns(dim: int) -> list[str]:
    return [f"z{i}" for i in range(dim)]


def _num(x: object) -> float:
    """One canonical float: every NaN is the same NaN, so the checksum of a re-read record matches."""
    v = float(x)  # type: ignore[arg-type]
    return math.nan if math.isnan(v) else v


def checksum(row: Sequence) -> int:
    """CRC32 of one record ``(query, batch, asked, *numbers, zkind, z)``."""
    head = _HEAD.pack(int(row[0]), int(row[1]), int(row[2]), *(_num(v if v is not None else math.nan)
                                                                for v in row[3:9]))
    return zlib.crc32(row[10], zlib.crc32(row[9].encode(), zlib.crc32(head)))


@dataclass
class Damage:
    """A record that failed its check: where it is, why, and its raw content (kept, never dropped)."""

    position: str
    reason: str
    raw: str


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class RunStore:
    """``run.db`` of one run folder; :meth:`open` for the (locked) writer, :meth:`read` for readers."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool = False) -> None:
        self.path, self.conn, self.readonly = path, conn, readonly

    @classmethod
    def open(cls, folder: Path, dim: int) -> RunStore:
        """The writer's store for latents of ``dim`` values (created if missing). The caller holds the folder lock."""
        path = Path(folder) / DB_NAME
        if not path.exists():
            _create(path, dim)
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            conn.execute("SELECT 1 FROM queries LIMIT 1")  # a store, before anything is written to it
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            raise MangoError(f"cannot open {path}: {first_line(exc)} (not a MANGO run store, or damaged; "
                             f"check it with: sqlite3 {path} 'PRAGMA integrity_check')") from None
        store = cls(path, conn)
        store._check_schema()
        if store.dim != dim:
            raise MangoError(f"{path} holds latents of {store.dim} values, the generator makes {dim}: "
                             "resume with the run's own generator")
        return store

    @classmethod
    def read(cls, folder: Path) -> RunStore:
        """A read-only view; works while a run writes."""
        path = Path(folder) / DB_NAME
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            conn.execute("SELECT 1 FROM queries LIMIT 1")
        except sqlite3.DatabaseError as exc:
            raise MangoError(f"cannot read {path}: {first_line(exc)}") from None
        store = cls(path, conn, readonly=True)
        store._check_schema()
        return store

    def _check_schema(self) -> None:
        found = self.meta("schema")
        if found != str(SCHEMA):
            raise MangoError(f"{self.path} has store schema {found}; this MANGO reads schema {SCHEMA}: "
                             "upgrade MANGO to read it")

    @property
    def dim(self) -> int:
        return int(self.meta("dim") or 0)

    def close(self) -> None:
        """Close; the writer also leaves WAL mode, so a finished run is one self-contained file."""
        if not self.readonly:
            try:
                self.conn.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.Error:  # a reader still has it open: the WAL stays until the next writer
                pass
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- small tables ---------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def meta_json(self, key: str) -> object:
        value = self.meta(key)
        return None if value is None else json.loads(value)

    def set_meta(self, key: str, value: object) -> None:
        with self._transaction("recording settings"):
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def log(self, kind: str, text: str) -> None:
        """An event of the session (start, resume, interruption, records set aside), for the record."""
        with self._transaction("logging"):
            self.conn.execute("INSERT INTO events (time, kind, text) VALUES (?, ?, ?)", (now(), kind, text))

    def events(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT time, kind, text FROM events ORDER BY id", self.conn)

    def damaged(self) -> list[Damage]:
        rows = self.conn.execute("SELECT position, reason, raw FROM damaged ORDER BY id").fetchall()
        return [Damage(*r) for r in rows]

    # --- queries --------------------------------------------------------------------------------
    def append(self, rows: Iterable[tuple], damage: Sequence[Damage] = (), drop: Sequence[int] = (),
               meta: dict | None = None) -> None:
        """Records ``(query, batch, asked, response, sd, value, elapsed, batch_s, opt_s, zkind, z)`` in one
        transaction: all of it is on disk when this returns, or none of it. ``damage`` is kept in the
        ``damaged`` table, and the records of the queries in ``drop`` leave ``queries`` (set aside, not
        trusted), in the same transaction; ``meta`` entries are written with them."""
        data = [(*r[:3], *(None if math.isnan(_num(v)) else float(v) for v in r[3:9]), r[9], r[10], checksum(r))
                for r in rows]
        with self._transaction("recording a batch"):
            self.conn.executemany("INSERT INTO damaged (position, reason, raw, found) VALUES (?, ?, ?, ?)",
                                  [(d.position, d.reason, d.raw, now()) for d in damage])
            self.conn.executemany("DELETE FROM queries WHERE query = ?", [(q,) for q in drop])
            self.conn.executemany("INSERT INTO queries VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", data)
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                  [(k, json.dumps(v)) for k, v in (meta or {}).items()])

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM queries").fetchone()[0])

    def measured(self) -> int:
        """Queries the run has reached: one past the highest recorded query number."""
        top = self.conn.execute("SELECT MAX(query) FROM queries").fetchone()[0]
        return 0 if top is None else int(top) + 1

    def history(self) -> tuple[pd.DataFrame, list[Damage]]:
        """The intact records as a DataFrame (``COLUMNS`` then ``z0..``), and the damaged ones."""
        rows = self.conn.execute("SELECT query, batch, asked, response, response_sd, value, elapsed_s, batch_s, "
                                 "optimizer_s, zkind, z, crc FROM queries ORDER BY query").fetchall()
        good, damage, dim = [], [], self.dim
        for r in rows:
            reason = None
            if r[9] not in _KINDS or not isinstance(r[10], bytes) or len(r[10]) != 8 * dim:
                reason = "latent of the wrong kind or length"
            elif checksum(r[:11]) != r[11]:
                reason = "checksum mismatch"
            if reason:
                damage.append(Damage(f"query {r[0]}", reason, repr(r[:11])))
            else:
                good.append(r)
        return to_frame(good, dim), damage

    def _transaction(self, doing: str) -> _Transaction:
        return _Transaction(self, doing)


class _Transaction:
    """``BEGIN IMMEDIATE`` .. ``COMMIT``; any SQLite failure rolls back and becomes one line saying what to do."""

    def __init__(self, store: RunStore, doing: str) -> None:
        self.store, self.doing = store, doing

    def __enter__(self) -> None:
        self.store.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> Literal[False]:
        conn = self.store.conn
        if kind is None:
            try:
                conn.execute("COMMIT")
                return False
            except sqlite3.Error as err:
                exc = err
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            folder = self.store.path.parent
            if "full" in str(exc):
                raise MangoError(f"disk full while {self.doing} in {folder}: every batch recorded before is safe; "
                                 f"free space, then continue with mango run --resume --out {folder}") from None
            raise MangoError(f"cannot write {self.store.path} while {self.doing}: {first_line(exc)}; every batch "
                             f"recorded before is safe; continue with mango run --resume --out {folder}") from None
        return False


def _create(path: Path, dim: int) -> None:
    """A new store, built under a temporary name and renamed into place: a ``run.db`` is never half made."""
    from .files import fsync_dir

    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        conn.executescript(_TABLES)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema", str(SCHEMA)), ("dim", str(dim))])
        conn.close()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        if "full" in str(exc):
            raise MangoError(f"disk full while creating {path}: free space, then run again") from None
        raise MangoError(f"cannot create {path}: {first_line(exc)}") from None


def to_frame(rows: Sequence[Sequence], dim: int) -> pd.DataFrame:
    """Records -> the history DataFrame; latent columns are int64 (grid indices) or float64 (box values)."""
    df = pd.DataFrame([r[:9] for r in rows], columns=list(COLUMNS))
    df = df.astype({"query": "int64", "batch": "int64", "asked": "int64", **{c: "float64" for c in _NUMBERS}})
    kinds = {r[9] for r in rows}
    dtype = _KINDS["f8"] if "f8" in kinds else _KINDS["i8"]
    z = (np.stack([np.frombuffer(r[10], _KINDS[r[9]]).astype(dtype) for r in rows]) if rows
         else np.empty((0, dim), dtype))
    return pd.concat([df, pd.DataFrame(z.astype(dtype.newbyteorder("=")), columns=latent_columns(dim))], axis=1)


def encode_latent(z: np.ndarray) -> tuple[str, bytes]:
    """A latent row as ``(zkind, bytes)``: exact, whatever the platform's byte order."""
    kind = "i8" if np.issubdtype(z.dtype, np.integer) else "f8"
    return kind, np.ascontiguousarray(z, dtype=_KINDS[kind]).tobytes()
