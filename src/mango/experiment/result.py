"""What a run produces, and reading it back from its folder."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError, first_line
from .config import RunConfig
from .history import latent_columns, read_history

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
    """``result.json`` of a finished run plus its ``history`` and ``config``, checked file by file.

    The one reader of a run folder (``mango show``, the analyses): an analysis over a study with a
    broken run would draw wrong medians, so any problem is a one-line MangoError naming the file.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MangoError(f"run folder not found: {run_dir}")
    if not (run_dir / "config.json").is_file():
        raise MangoError(f"{run_dir} is not a MANGO run folder: config.json is missing")
    hist_path, res = run_dir / "history.csv", run_dir / "result.json"
    if not hist_path.is_file():
        raise MangoError(f"broken run folder {run_dir}: history.csv is missing")
    cfg = RunConfig.load(run_dir / "config.json")
    try:
        history = read_history(hist_path)
    except Exception as exc:  # pandas raises several types (EmptyDataError, ParserError, UnicodeDecodeError)
        raise MangoError(f"cannot read {hist_path}: {first_line(exc)}") from None
    missing = [c for c in ("query", "response", "value", "z0") if c not in history.columns]
    if missing:
        raise MangoError(f"{hist_path} is not a MANGO history: columns {missing} are missing")
    if history.empty:
        raise MangoError(f"{hist_path} holds no queries")
    zcols = latent_columns(sum(1 for c in history.columns if re.fullmatch(r"z\d+", c)))
    bad = [c for c in ["query", "response", *zcols] if not pd.api.types.is_numeric_dtype(history[c])]
    if bad:
        raise MangoError(f"{hist_path} is corrupt: non-numeric values in column {bad[0]!r}")
    torn = history[zcols].isna().any(axis=1).to_numpy() | (history["query"].to_numpy() != np.arange(len(history)))
    if torn.any():
        raise MangoError(f"{hist_path} is corrupt: data row {int(np.argmax(torn)) + 1} is incomplete or out of order")
    if not res.is_file():
        raise MangoError(f"{run_dir} holds no result.json: the run did not finish (continue it with "
                         f"mango run --resume --out {run_dir})")
    try:
        out = json.loads(res.read_text())
    except (OSError, ValueError) as exc:
        raise MangoError(f"cannot read {res}: {first_line(exc)}") from None
    missing = [k for k in RESULT_KEYS if k not in out] if isinstance(out, dict) else list(RESULT_KEYS)
    if missing:
        raise MangoError(f"{res} is not a MANGO result file: keys {missing} are missing")
    if len(out["best_latent"]) != len(zcols) or out["n_queries"] != len(history):
        raise MangoError(f"{res} does not fit {hist_path}: {len(out['best_latent'])} latent values and "
                         f"{out['n_queries']} queries, the history has {len(zcols)} and {len(history)}")
    out["history"], out["config"] = history, asdict(cfg)
    return out
