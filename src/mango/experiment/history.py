"""The query history of a run as a pandas DataFrame: one row per query, latent columns ``z0..``.

Read from the run store (``run.db``) or, for a MANGO 0.1 folder, from its ``history.csv``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError
from .legacy import LEGACY_NAME, legacy_history
from .store import COLUMNS, DB_NAME, Damage, RunStore, latent_columns

__all__ = ["COLUMNS", "best_rows", "best_so_far", "latent_columns", "latents", "read_history", "scan_history"]


def _zcols(rows: pd.DataFrame) -> list[str]:
    return [c for c in rows.columns if c.startswith("z") and c[1:].isdigit()]


def latents(rows: pd.DataFrame, dim: int | None = None) -> torch.Tensor:
    """Candidates as recorded: integer columns are grid indices (long), float columns box values (float64)."""
    cols = latent_columns(dim) if dim is not None else _zcols(rows)
    z = torch.tensor(rows[cols].to_numpy())
    return z.long() if all(pd.api.types.is_integer_dtype(rows[c]) for c in cols) else z.double()


def best_rows(history: pd.DataFrame, n: int, dim: int | None = None) -> pd.DataFrame:
    """The ``n`` best distinct candidates, best first (failed measurements last)."""
    order = np.argsort(-history["value"].to_numpy(dtype=float), kind="stable")
    cols = latent_columns(dim) if dim is not None else _zcols(history)
    return history.iloc[order].drop_duplicates(subset=cols).head(n)


def best_so_far(history: pd.DataFrame) -> np.ndarray:
    """Best response after each query (NaN/inf count as worst): the convergence curve of a run."""
    r = history["response"].to_numpy(dtype=float)
    return np.maximum.accumulate(np.where(np.isfinite(r), r, -np.inf))


def scan_history(run_dir: str | Path) -> tuple[pd.DataFrame, list[Damage]]:
    """Every intact record of a run folder, and what is wrong with the rest (damaged records, gaps)."""
    run_dir = Path(run_dir)
    if (run_dir / DB_NAME).is_file():
        with RunStore.read(run_dir) as store:
            df, damage = store.history()
    elif (run_dir / LEGACY_NAME).is_file():
        df, damage = legacy_history(run_dir / LEGACY_NAME)
    else:
        raise MangoError(f"{run_dir} holds no measured queries: neither {DB_NAME} nor {LEGACY_NAME} is there")
    q = df["query"].to_numpy()
    missing = np.setdiff1d(np.arange(q.max() + 1 if len(q) else 0), q)
    if len(missing) and not damage:
        damage = [Damage(f"query {int(missing[0])}", f"{len(missing)} queries missing (set aside)", "")]
    return df, damage


def read_history(run_dir: str | Path) -> pd.DataFrame:
    """The recorded queries of a run folder as a DataFrame; a damaged record is a one-line MangoError naming it."""
    df, damage = scan_history(run_dir)
    if damage:
        d = damage[0]
        more = f" and {len(damage) - 1} more" if len(damage) > 1 else ""
        raise MangoError(f"{run_dir}: damaged record at {d.position} ({d.reason}){more}; nothing was dropped: "
                         f"mango run --resume --out {run_dir} sets it aside and measures it again")
    return df
