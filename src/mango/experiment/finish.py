"""The end of a run: the MEI, its pictures and ``result.json``, all derived from the store.

Each file is replaced whole (:func:`~mango.experiment.files.replace_file`), so a kill while
finishing leaves the previous files or the new ones, and ``--resume`` finishes again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..generators import Generator
from ..targets import Target
from . import artifacts
from .config import RunConfig
from .files import folder_error, replace_file, write_json
from .history import latents, read_history
from .measure import remeasure_top
from .result import RESULT_NAME, RunResult, best_of
from .store import RunStore


def finish(run_dir: Path, cfg: RunConfig, gen: Generator, tgt: Target, store: RunStore, wall: float) -> RunResult:
    """Write the MEI, plots, GIF and ``result.json`` from the recorded history."""
    df = read_history(run_dir)
    i, best = best_of(df)
    remeasured = None
    try:
        if cfg.remeasure:
            rm = remeasure_top(df, gen, tgt, cfg.remeasure, seed=cfg.seed)
            replace_file(run_dir / "remeasured.csv", lambda f: rm.to_csv(f, index=False))
            j = int(np.nanargmax(np.where(np.isfinite(rm["mean"]), rm["mean"], np.nan)))
            i, best = int(rm["query"].iloc[j]), float(rm["mean"].iloc[j])
            remeasured = {"n": cfg.remeasure, "recorded_response": float(rm["recorded"].iloc[j]),
                          "sd": float(rm["sd"].iloc[j])}
        z = latents(df.iloc[i : i + 1], gen.space.dim)
        image = gen.pixels(z)[0]
        title = f"{cfg.optimizer} on {cfg.model} {cfg.target} (seed {cfg.seed})"
        replace_file(run_dir / "mei.png", lambda f: artifacts.to_pil(image).save(f, format="PNG"))
        replace_file(run_dir / "convergence.png", lambda f: artifacts.convergence_plot(df, f, title))
        replace_file(run_dir / "evolution.gif", lambda f: artifacts.evolution_gif(df, gen.pixels, f, gen.space.dim))
        replace_file(run_dir / "top16.png", lambda f: artifacts.top_grid(df, gen.pixels, f, gen.space.dim))
        settings = store.meta_json("settings")
        result = RunResult(run_dir, cfg, df, best, z[0], int(df["query"].iloc[i]), wall, remeasured,
                           settings if isinstance(settings, dict) else {}, True, image)
        write_json(run_dir / RESULT_NAME, result.summary())
    except OSError as exc:
        raise folder_error(run_dir, exc, "writing the run's pictures") from None
    store.log("finish", f"{len(df)} queries, best {best:.6g} at query {result.best_query}")
    return result
