"""``mango convert``: MANGO 0.1 run folders (``history.csv``) into run stores, under each folder's lock."""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import MangoError
from .files import FolderLock
from .legacy import LEGACY_NAME, convert
from .result import CONFIG_NAME
from .store import DB_NAME


def legacy_folders(folder: Path) -> list[Path]:
    """``folder`` itself if it is a MANGO 0.1 run, else every such run folder under it."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if LEGACY_NAME in files and DB_NAME not in files:
            found.append(Path(root))
            dirs.clear()
    return found


def convert_folders(folders: Iterable[Path]) -> Iterator[str]:
    """Convert every MANGO 0.1 run under ``folders``; yields one line per run converted."""
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise MangoError(f"folder not found: {folder}")
        runs = legacy_folders(folder)
        if not runs:
            yield f"{folder}: nothing to convert (no history.csv without run.db under it)"
        for run_dir in runs:
            if not (run_dir / CONFIG_NAME).is_file():
                raise MangoError(f"{run_dir} holds {LEGACY_NAME} but no {CONFIG_NAME}: not a MANGO run; nothing "
                                 "was converted there")
            with FolderLock(run_dir):
                n, damage = convert(run_dir)
            note = (f"; {len(damage)} damaged lines kept aside in table damaged (first: {damage[0].position}: "
                    f"{damage[0].reason}), measured again by mango run --resume --out {run_dir}") if damage else ""
            yield f"{run_dir}: {n} records -> {DB_NAME} (the CSV is kept as history.v0.csv){note}"
