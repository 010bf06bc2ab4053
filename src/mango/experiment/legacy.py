"""Run folders of MANGO 0.1 (``history.csv``): read line by line, converted into ``run.db`` once.

Every line is checked on its own, so a damaged line (torn by a crash, garbled, a duplicate query
number from two writers) is reported with its line number and kept aside, while every line after
it is kept. Conversion never edits the CSV: it is renamed to ``history.v0.csv`` after ``run.db``
holds its records.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MangoError
from .files import fsync_dir
from .store import COLUMNS, Damage, RunStore, encode_latent, latent_columns, to_frame

LEGACY_NAME = "history.csv"
BACKUP_NAME = "history.v0.csv"


def _parse(fields: list[str], dim: int) -> tuple:
    head = [int(fields[0]), int(fields[1]), int(fields[2]), *(float(v) for v in fields[3:9])]
    zs = fields[9:]
    if all(v.lstrip("-").isdigit() for v in zs):
        z = np.array([int(v) for v in zs], dtype=np.int64)
    else:
        z = np.array([float(v) for v in zs], dtype=np.float64)
        if not np.isfinite(z).all():
            raise ValueError("non-finite latent value")
    if head[0] < 0 or head[1] < 0 or head[2] < 1:
        raise ValueError("negative query, batch or size")
    return (*head, *encode_latent(z))


def read_legacy(path: Path) -> tuple[list[tuple], list[Damage], int]:
    """Records, damaged lines and the latent size of a MANGO 0.1 ``history.csv``."""
    try:
        text = Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise MangoError(f"cannot read {path}: {exc.strerror}") from None
    lines = text.splitlines()
    header = lines[0].split(",") if lines else []
    dim = len(header) - len(COLUMNS)
    if tuple(header[: len(COLUMNS)]) != COLUMNS or dim < 1 or header[len(COLUMNS):] != latent_columns(dim):
        raise MangoError(f"{path} is not a MANGO history: its first line should name the columns "
                         f"{', '.join(COLUMNS)}, z0..; it is {lines[0][:80]!r}" if lines else f"{path} is empty")
    records: list[tuple] = []
    damage: list[Damage] = []
    seen: set[int] = set()
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        try:
            if len(fields) != len(COLUMNS) + dim:
                raise ValueError(f"{len(fields)} fields, expected {len(COLUMNS) + dim}")
            rec = _parse(fields, dim)
            if rec[0] in seen:
                raise ValueError(f"a second record of query {rec[0]}")
        except ValueError as exc:
            damage.append(Damage(f"{Path(path).name} line {number}", str(exc) or "unreadable", line[:10_000]))
            continue
        seen.add(rec[0])
        records.append(rec)
    return records, damage, dim


def legacy_history(path: Path):  # -> (pd.DataFrame, list[Damage])
    """A MANGO 0.1 history as the store's DataFrame (for readers: nothing is written)."""
    records, damage, dim = read_legacy(path)
    records.sort(key=lambda r: r[0])
    return to_frame(records, dim), damage


def convert(folder: Path) -> tuple[int, list[Damage]]:
    """Copy ``history.csv`` into ``run.db``, then rename the CSV to ``history.v0.csv``. The caller holds the lock.

    Returns the number of records copied and the damaged lines (kept in ``run.db``'s ``damaged`` table).
    A crash before the rename leaves the CSV in place and no committed records: converting again is safe.
    """
    folder = Path(folder)
    records, damage, dim = read_legacy(folder / LEGACY_NAME)
    with RunStore.open(folder, dim) as store:
        if store.meta("converted") is None:  # else a crash came between the commit and the rename
            if store.count():
                raise MangoError(f"{folder} holds both {LEGACY_NAME} and a run.db with records: move one away")
            store.append(sorted(records, key=lambda r: r[0]), damage=damage,
                         meta={"converted": f"{len(records)} records from {LEGACY_NAME} (MANGO 0.1), "
                                            f"{len(damage)} damaged lines kept aside"})
            store.log("convert", f"{len(records)} records from {LEGACY_NAME}; {len(damage)} damaged lines kept "
                      f"aside; the CSV is kept as {BACKUP_NAME}")
    os.replace(folder / LEGACY_NAME, folder / BACKUP_NAME)
    fsync_dir(folder)
    return len(records), damage
