"""The query history: one CSV row per query, appended as each batch is measured.

CSV keeps it readable everywhere (``pandas.read_csv``, ``numpy.genfromtxt``,
a spreadsheet). Each batch is written with one ``write`` + ``fsync``, so a
crash loses at most the batch being measured; a torn last line or an
incomplete batch (fewer rows than its ``asked`` size) is dropped on resume.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

COLUMNS = ("query", "batch", "asked", "response", "response_sd", "value", "elapsed_s", "batch_s", "optimizer_s")


def latent_columns(dim: int) -> list[str]:
    return [f"z{i}" for i in range(dim)]


class HistoryWriter:
    """Appends measured batches to ``path``; creates the header on first use."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim = Path(path), dim
        if not self.path.exists() or self.path.stat().st_size == 0:
            self.path.write_text(",".join([*COLUMNS, *latent_columns(dim)]) + "\n")

    def append(self, first_query: int, batch: int, z: torch.Tensor, responses: torch.Tensor, sd: torch.Tensor,
               values: torch.Tensor, elapsed: float, batch_s: float, optimizer_s: float) -> None:
        """One batch: ``elapsed`` since the run started, ``batch_s`` for the whole batch, ``optimizer_s`` in ask+tell."""
        zs = z.cpu().numpy()
        buf = io.StringIO()
        for i in range(len(zs)):
            head = f"{first_query + i},{batch},{len(zs)},{float(responses[i])!r},{float(sd[i])!r},{float(values[i])!r},{elapsed:.6f},{batch_s:.6f},{optimizer_s:.6f}"
            buf.write(head + "," + ",".join(map(repr, zs[i].tolist())) + "\n")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:  # one syscall per batch: a kill cannot interleave half a batch with the next
            os.write(fd, buf.getvalue().encode())
            os.fsync(fd)
        finally:
            os.close(fd)


def latents(rows: pd.DataFrame, dim: int) -> torch.Tensor:
    """Candidates as recorded: integer columns are grid indices (long), float columns box values (float64)."""
    cols = latent_columns(dim)
    z = torch.tensor(rows[cols].to_numpy())
    return z.long() if all(pd.api.types.is_integer_dtype(rows[c]) for c in cols) else z.double()


def best_rows(history: pd.DataFrame, n: int, dim: int) -> pd.DataFrame:
    """The ``n`` best distinct candidates, best first (failed measurements last)."""
    order = np.argsort(-history["value"].to_numpy(dtype=float), kind="stable")
    return history.iloc[order].drop_duplicates(subset=latent_columns(dim)).head(n)


def best_so_far(history: pd.DataFrame) -> np.ndarray:
    """Best response after each query (NaN/inf count as worst): the convergence curve of a run."""
    r = history["response"].to_numpy(dtype=float)
    return np.maximum.accumulate(np.where(np.isfinite(r), r, -np.inf))


def read_history(path: Path) -> pd.DataFrame:
    """The recorded queries as a DataFrame (columns ``query, batch, response, ..., z0..``)."""
    return pd.read_csv(path)  # pandas >= 3 parses floats round-trip exact (float latents resume bit-exact)


def repair_history(path: Path, dim: int) -> pd.DataFrame:
    """Keep only whole batches (drop a torn line or a half-written last batch); rewrite the file."""
    lines = Path(path).read_text().splitlines()
    width = len(COLUMNS) + dim
    good = [lines[0]] + [ln for ln in lines[1:] if ln.count(",") == width - 1]
    df = pd.read_csv(io.StringIO("\n".join(good) + "\n"))
    df = df[df["query"].to_numpy() == np.arange(len(df))]  # stop at the first gap
    if len(df):
        last = df["batch"].iloc[-1]
        rows = df["batch"] == last
        if rows.sum() < df.loc[rows, "asked"].iloc[0]:
            df = df[~rows]
    Path(path).write_text("\n".join(good[: len(df) + 1]) + "\n")
    return df.reset_index(drop=True)
