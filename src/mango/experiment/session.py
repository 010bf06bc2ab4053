"""Opening a run folder for writing: lock it, check what it holds, write its config, open its store.

Everything here happens before the first query is measured, and nothing already in the folder is
changed unless it is a run this process may continue.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import MangoError
from .config import RunConfig
from .files import FolderLock, folder_error, write_text
from .legacy import LEGACY_NAME, convert
from .result import CONFIG_NAME, RESULT_NAME
from .store import DB_NAME, RunStore

RUN_FILES = (CONFIG_NAME, DB_NAME, LEGACY_NAME, RESULT_NAME)


def _json_roundtrip(value: object) -> object:
    return json.loads(json.dumps(value, default=str))


@contextmanager
def open_run(run_dir: Path, cfg: RunConfig, resume: bool, dim: int, settings: dict,
             notes: list[str], shared: dict | None = None) -> Iterator[RunStore]:
    """The store of ``run_dir``, locked for this process while the block runs.

    A new run needs a folder without run files; a resumed one its own ``config.json`` (a MANGO 0.1
    folder is converted first, reported in ``notes``). ``settings`` (each plug-in's effective
    settings) are recorded at the start and must be the same on resume: a preset that changed
    meaning would silently change what the run means. ``shared``: the run is a member of a shared scan
    (:mod:`mango.scan.shared`), recorded in its store; such a run continues only with its scan.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise MangoError(f"--out {run_dir} is a file, not a folder: choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise folder_error(run_dir, exc, "creating it") from None
    with FolderLock(run_dir):
        present = [n for n in RUN_FILES if (run_dir / n).exists()]
        if not resume and present:
            if CONFIG_NAME in present:
                raise MangoError(f"{run_dir} already holds a run: pass --resume to continue it or choose another --out")
            raise MangoError(f"{run_dir} holds {', '.join(present)} but no {CONFIG_NAME}: not a run MANGO can "
                             "continue; choose another --out (nothing there was changed)")
        if resume and (run_dir / LEGACY_NAME).exists() and not (run_dir / DB_NAME).exists():
            n, damage = convert(run_dir)
            notes.append(f"converted {run_dir / LEGACY_NAME} (MANGO 0.1) into {DB_NAME}: {n} records"
                         + (f", {len(damage)} damaged lines kept aside (first: {damage[0].position}: "
                            f"{damage[0].reason})" if damage else ""))
        store = RunStore.open(run_dir, dim)
        try:
            part_of = store.meta_json("shared")
            if part_of is not None and shared is None:
                scan = part_of.get("scan") if isinstance(part_of, dict) else part_of
                raise MangoError(f"{run_dir} is one unit of a shared scan ({scan}): its batches were proposed by "
                                 "every unit; run the same mango scan again to continue it")
            if shared is not None and part_of is None:
                if store.count():
                    raise MangoError(f"{run_dir} holds a run of its own, not a unit of a shared scan: "
                                     "choose another --out")
                store.set_meta("shared", shared)
            done = store.measured()
            if done > cfg.budget:
                raise MangoError(f"cannot resume {run_dir} with budget {cfg.budget}: {done} queries are already "
                                 f"measured; use --budget {done} or more")
            try:
                write_text(run_dir / CONFIG_NAME, cfg.to_json())
            except OSError as exc:
                raise folder_error(run_dir, exc, f"writing {CONFIG_NAME}") from None
            now = _json_roundtrip(settings)
            stored = store.meta_json("settings")
            if stored is None:
                store.set_meta("settings", now)
            elif isinstance(stored, dict) and isinstance(now, dict) and stored.get("optimizer") != now.get("optimizer"):
                raise MangoError(f"cannot resume {run_dir}: optimizer {cfg.optimizer!r} now has settings "
                                 f"{_diff(stored.get('optimizer'), now.get('optimizer'))} "
                                 "(a changed preset or MANGO version); use the MANGO version that started it")
            store.log("resume" if resume else "start", f"budget {cfg.budget}")
            yield store
        finally:
            store.close()


def _diff(old: object, new: object) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return ", ".join(f"{k}={new.get(k)!r} (run made with {old.get(k)!r})" for k in keys if old.get(k) != new.get(k))
    return f"{new!r} (run made with {old!r})"
