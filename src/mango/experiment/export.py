"""``mango export``: a run's history as CSV, Parquet or NWB, one row per presentation, with a ``status``.

Rig runs: one row per trial sent (``trial, query, image, kind, batch, block, idx, status, sent,
answered, problem``, the objective ``response`` of an ok trial, ``ch0..`` every channel, then the
candidate's latent ``z0..``; reference images have no query). In-silico runs show each candidate once
per query (``repeats`` presentations are recorded as their mean and spread): one row per query,
status ``ok`` for a finite response, ``failed`` for NaN/inf.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MangoError, first_line
from .files import replace_file
from .result import load_run

FORMATS = ("csv", "parquet", "nwb")


def history_table(run_dir: str | Path) -> pd.DataFrame:
    """The export table: one row per presentation with its ``status`` (see the module docstring)."""
    run = load_run(run_dir, unfinished=True)
    trials = _presentations(Path(run_dir))
    if len(trials):
        return _rig_table(trials, run.history, run.config.target)
    df = run.history.copy()
    status = np.where(np.isfinite(df["response"].to_numpy(dtype=float)), "ok", "failed")
    df.insert(2, "status", status)
    return df


def export_run(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the history of ``run_dir`` to ``out`` as ``fmt`` (csv or parquet); returns ``out``."""
    if fmt not in FORMATS:
        raise MangoError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        raise MangoError(f"--out {out} is a folder; give a file name, e.g. {out / ('history.' + fmt)}")
    if fmt == "nwb":
        from .nwb import export_nwb

        return export_nwb(run_dir, out)
    df = history_table(run_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            replace_file(out, lambda f: df.to_csv(f, index=False))
        else:
            replace_file(out, lambda f: df.to_parquet(f, index=False))
    except ImportError as exc:
        raise MangoError(f"Parquet export needs pyarrow: pip install pyarrow ({first_line(exc)})") from None
    except OSError as exc:
        raise MangoError(f"cannot write {out}: {exc.strerror or first_line(exc)}") from None
    return out


def _presentations(run_dir: Path) -> pd.DataFrame:
    from .store import RunStore

    with RunStore.read(run_dir) as store:
        return pd.read_sql_query("SELECT trial, query, image, kind, batch, block, idx, status, sent, answered, "
                                 "problem, responses FROM presentations ORDER BY block, idx", store.conn)


def _rig_table(trials: pd.DataFrame, history: pd.DataFrame, spec: str) -> pd.DataFrame:
    from ..rig.target import parse_channels

    units = list(parse_channels(spec))
    width = max((len(r) // 8 for r in trials["responses"] if r is not None), default=0)
    ch = np.full((len(trials), width), np.nan)
    for i, r in enumerate(trials["responses"]):
        if r is not None:
            ch[i] = np.frombuffer(r, "<f8")
    out = trials.drop(columns=["responses"]).astype({"query": "Int64", "batch": "Int64"})
    out["response"] = ch[:, units].mean(1) if width else np.nan
    out = pd.concat([out, pd.DataFrame(ch, columns=[f"ch{c}" for c in range(width)])], axis=1)
    z = history[["query", *[c for c in history.columns if c.startswith("z") and c[1:].isdigit()]]]
    return out.merge(z.astype({"query": "Int64"}), on="query", how="left")
