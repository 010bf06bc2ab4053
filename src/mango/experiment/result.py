"""What a run produces, and reading it back from its folder."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError
from .history import read_history

RESULT_KEYS = ("best_response", "best_latent", "best_query", "n_queries", "wall_time_s",
               "optimizer", "target", "generator", "model", "seed")


@dataclass
class RunResult:
    """The outcome of :func:`mango.run`; ``history`` has one row per query."""

    run_dir: Path
    best_response: float
    best_latent: torch.Tensor
    best_image: torch.Tensor
    best_query: int
    n_queries: int
    wall_time_s: float
    config: dict
    history: pd.DataFrame
    #: with ``remeasure``: the re-measured incumbent (n, its single recorded response, sd)
    remeasured: dict | None = None

    def summary(self) -> dict:
        """The content of ``result.json``."""
        c = self.config
        return {
            "best_response": self.best_response, "best_latent": self.best_latent.tolist(),
            "best_query": self.best_query, "n_queries": self.n_queries, "wall_time_s": round(self.wall_time_s, 3),
            "optimizer": c["optimizer"], "optimizer_options": c["optimizer_options"], "target": c["target"],
            "generator": c["generator"], "model": c["model"], "seed": c["seed"], "batch": c["batch"],
            "budget": c["budget"], "repeats": c["repeats"], "presentations": self.n_queries * c["repeats"],
            "remeasured": self.remeasured, "run_dir": str(self.run_dir),
        }


def best_of(history: pd.DataFrame) -> tuple[int, float]:
    """Row index and response of the best finite response (NaN/inf count as worst)."""
    r = history["response"].to_numpy(dtype=float)
    finite = np.isfinite(r)
    if not finite.any():
        raise MangoError("no finite response was measured: every query returned NaN or inf")
    i = int(np.argmax(np.where(finite, r, -np.inf)))
    return i, float(r[i])


def load_run(run_dir: str | Path) -> dict:
    """``result.json`` of a finished run plus its history, for ``mango show`` and analyses."""
    run_dir = Path(run_dir)
    res = run_dir / "result.json"
    if not run_dir.is_dir():
        raise MangoError(f"run folder not found: {run_dir}")
    if not (run_dir / "config.json").is_file():
        raise MangoError(f"{run_dir} is not a MANGO run folder: it holds no config.json")
    if not res.is_file():
        raise MangoError(f"{run_dir} holds no result.json: the run did not finish (continue it with --resume)")
    try:
        out = json.loads(res.read_text())
        out["history"] = read_history(run_dir / "history.csv")
    except (OSError, ValueError) as exc:
        raise MangoError(f"cannot read run {run_dir}: {exc}") from None
    missing = [k for k in RESULT_KEYS if k not in out]
    if missing:
        raise MangoError(f"{res} is missing {missing}: not a MANGO result file")
    return out
