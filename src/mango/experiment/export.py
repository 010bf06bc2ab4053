"""``mango export``: a run's history as CSV or Parquet, one row per presentation, with a ``status``.

In-silico runs show each candidate once per query (``repeats`` presentations are recorded as their
mean and spread): status ``ok`` for a finite response, ``failed`` for NaN/inf.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MangoError, first_line
from .files import replace_file
from .result import load_run

FORMATS = ("csv", "parquet")


def history_table(run_dir: str | Path) -> pd.DataFrame:
    """The export table: the history with a ``status`` column after ``query``/``batch``."""
    df = load_run(run_dir, unfinished=True).history.copy()
    status = np.where(np.isfinite(df["response"].to_numpy(dtype=float)), "ok", "failed")
    df.insert(2, "status", status)
    return df


def export_run(run_dir: str | Path, fmt: str, out: str | Path) -> Path:
    """Write the history of ``run_dir`` to ``out`` as ``fmt`` (csv or parquet); returns ``out``."""
    if fmt not in FORMATS:
        raise MangoError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    df, out = history_table(run_dir), Path(out)
    if out.is_dir():
        raise MangoError(f"--out {out} is a folder; give a file name, e.g. {out / ('history.' + fmt)}")
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
