"""A run's outcome: one record that :func:`mango.run` returns and :func:`load_run` reads back.

``load_run`` is the one reader of a run folder (``mango show``, ``mango export``, the analyses): an
analysis over a study with a broken run would draw wrong medians, so any problem is a one-line
MangoError naming the file; a damaged record is reported with its position, never skipped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..errors import MangoError, first_line
from .config import RunConfig
from .history import best_so_far, latent_columns, latents, read_history

CONFIG_NAME, RESULT_NAME = "config.json", "result.json"


@dataclass
class RunResult:
    """One run: its settings, every query, and the best one. ``finished`` is False while it runs."""

    run_dir: Path
    config: RunConfig
    history: pd.DataFrame
    best_response: float
    best_latent: torch.Tensor
    best_query: int
    wall_time_s: float = 0.0
    #: with ``remeasure``: the re-measured incumbent (n, its single recorded response, sd)
    remeasured: dict | None = None
    #: each plug-in's effective settings (optimizer hyperparameters, generator and target descriptions)
    settings: dict = field(default_factory=dict)
    finished: bool = True
    #: the MEI as plain pixels (set by :func:`mango.run`; decode ``best_latent`` for a loaded run)
    best_image: torch.Tensor | None = None

    @property
    def n_queries(self) -> int:
        return len(self.history)

    @property
    def method(self) -> str:
        """The optimizer and its options, e.g. ``ng-portfolio+space=grid``: what a comparison compares."""
        opts = "".join(f"+{k}={v}" for k, v in sorted(self.config.optimizer_options.items()))
        return self.config.optimizer + opts

    @property
    def neuron(self) -> str:
        """The unit measured: model (with its weights file, if any), target spec, and readout/noise/steps."""
        c = self.config
        parts = [c.model + (f"[{Path(c.model_weights).name}]" if c.model_weights else ""), c.target]
        parts += [f"{k}={v}" for k, v in (("readout", c.readout), ("noise", c.noise), ("steps", c.steps)) if v]
        return " ".join(parts)

    @property
    def layer(self) -> str:
        """The target's layer name, or ``class`` for a class output."""
        from ..targets.spec import TargetSpec

        return TargetSpec.parse(self.config.target).layer or "class"

    @property
    def seed(self) -> int:
        return self.config.seed

    @cached_property
    def curve(self) -> np.ndarray:
        """Best response after each query."""
        return best_so_far(self.history)

    def label(self) -> str:
        return f"{self.method} s{self.seed}"

    def summary(self) -> dict:
        """The content of ``result.json``: the outcome, the settings given, the settings in effect."""
        c = self.config
        return {
            "best_response": self.best_response, "best_latent": self.best_latent.tolist(),
            "best_query": self.best_query, "n_queries": self.n_queries, "presentations": self.n_queries * c.repeats,
            "wall_time_s": round(self.wall_time_s, 3), "remeasured": self.remeasured, "finished": self.finished,
            "optimizer": c.optimizer, "target": c.target, "model": c.model, "generator": c.generator,
            "seed": c.seed, "run_dir": str(self.run_dir), "config": c.to_dict(), "settings": self.settings,
        }


def best_of(history: pd.DataFrame) -> tuple[int, float]:
    """Row index and response of the best finite response (NaN/inf count as worst)."""
    r = history["response"].to_numpy(dtype=float)
    finite = np.isfinite(r)
    if not finite.any():
        raise MangoError("no finite response was measured: every query returned NaN or inf")
    i = int(np.argmax(np.where(finite, r, -np.inf)))
    return i, float(r[i])


def load_run(run_dir: str | Path, unfinished: bool = False) -> RunResult:
    """The run in ``run_dir``, checked; ``unfinished=True`` also reads a run still going (or stopped).

    Works while the run writes (the store serves readers). Old folders (MANGO 0.1, ``history.csv``)
    are read as they are.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise MangoError(f"run folder not found: {run_dir}")
    if not (run_dir / CONFIG_NAME).is_file():
        raise MangoError(f"{run_dir} is not a MANGO run folder: {CONFIG_NAME} is missing")
    cfg = RunConfig.load(run_dir / CONFIG_NAME)
    history = read_history(run_dir)
    if history.empty:
        raise MangoError(f"{run_dir} holds no measured queries yet (continue it with mango run --resume "
                         f"--out {run_dir})")
    res_path = run_dir / RESULT_NAME
    if not res_path.is_file():
        if not unfinished:
            raise MangoError(f"{run_dir} holds no {RESULT_NAME}: the run did not finish ({len(history)} of "
                             f"{cfg.budget} queries; continue it with mango run --resume --out {run_dir})")
        i, best = best_of(history)
        return RunResult(run_dir, cfg, history, best, latents(history.iloc[i : i + 1])[0],
                         int(history["query"].iloc[i]), float(history["elapsed_s"].iloc[-1]), finished=False)
    try:
        out = json.loads(res_path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise MangoError(f"cannot read {res_path}: {first_line(exc)} (rewrite it with mango run --resume "
                         f"--out {run_dir})") from None
    keys = ("best_response", "best_latent", "best_query", "n_queries", "wall_time_s")
    missing = [k for k in keys if k not in out] if isinstance(out, dict) else list(keys)
    if missing:
        raise MangoError(f"{res_path} is not a MANGO result file: keys {missing} are missing")
    dim = len(latent_columns_of(history))
    if not isinstance(out["best_latent"], list) or len(out["best_latent"]) != dim or out["n_queries"] != len(history):
        raise MangoError(f"{res_path} does not fit the run's history: {len(out['best_latent'])} latent values and "
                         f"{out['n_queries']} queries, the history has {dim} and {len(history)}")
    z = out["best_latent"]
    best_latent = torch.tensor(z, dtype=torch.long if all(isinstance(v, int) for v in z) else torch.float64)
    return RunResult(run_dir, cfg, history, float(out["best_response"]), best_latent, int(out["best_query"]),
                     float(out["wall_time_s"]), out.get("remeasured"), out.get("settings") or {}, True)


def latent_columns_of(history: pd.DataFrame) -> list[str]:
    return [c for c in history.columns if c.startswith("z") and c[1:].isdigit()]


__all__ = ["RunResult", "best_of", "latent_columns", "load_run"]
