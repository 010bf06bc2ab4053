"""A study: the run folders under one folder, read back and checked, with their MEIs decoded.

Every analysis starts here, so a missing or corrupt file is reported once, in one line naming it,
before any figure is drawn. A run is a folder holding ``config.json`` and its records (``run.db``, or ``history.csv``
of MANGO 0.1) and ``result.json`` once it finished; a folder holding only some of them is a broken run.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import MangoError
from ..experiment.config import RunConfig
from ..experiment.result import RunResult as Run
from ..experiment.result import load_run
from ..generators import Generator, make_generator

RUN_FILES = ("config.json", "run.db", "history.csv", "result.json")


def read_run(path: str | Path) -> Run:
    """One finished run folder, checked file by file (:func:`mango.load_run`); problems are one-line MangoErrors."""
    return load_run(path)


def load_runs(folder: str | Path) -> list[Run]:
    """Every run folder under ``folder`` (itself included), recursively, sorted by path.

    Why strict: an analysis over a study silently missing a broken run would draw wrong medians, so a
    folder with any of ``config.json`` / ``history.csv`` / ``result.json`` must hold a whole finished run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MangoError(f"folder not found: {folder}")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        if any(f in files for f in RUN_FILES):
            found.append(read_run(root))
            dirs.clear()  # a run folder holds no runs
    if not found:
        raise MangoError(f"no runs in {folder}: no folder under it holds config.json and history.csv")
    return found


def as_runs(runs: str | Path | Iterable[Run]) -> list[Run]:
    """A folder (read with :func:`load_runs`) or runs already loaded."""
    if isinstance(runs, (str, Path)):
        return load_runs(runs)
    runs = list(runs)
    if not runs:
        raise MangoError("no runs given")
    return runs


def group(runs: Iterable[Run], key) -> dict[str, list[Run]]:
    """Runs grouped by ``key(run)``, groups in order of first appearance, each sorted by (method, seed)."""
    out: dict[str, list[Run]] = {}
    for r in runs:
        out.setdefault(key(r), []).append(r)
    return {k: sorted(v, key=lambda r: (r.method, r.seed, str(r.run_dir))) for k, v in out.items()}


def natural_key(text: str) -> list:
    """``lif2`` before ``lif10``; used to order layers (class outputs last)."""
    return [text == "class"] + [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def ordered_layers(runs: Iterable[Run], layers: list[str] | None = None) -> list[str]:
    """Layers present in ``runs``: ``layers`` if given (that order, that subset), else natural order."""
    present = {r.layer for r in runs}
    if layers:
        return [layer for layer in layers if layer in present]
    return sorted(present, key=natural_key)


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^\w.-]+", "_", text).strip("_")


@dataclass
class Generators:
    """The generators named in run configs, built once per analysis (``given`` objects take precedence:
    runs made with a generator object record its name, which the registry may not know)."""

    given: Mapping[str, Generator] = field(default_factory=dict)
    _built: dict = field(default_factory=dict)

    def get(self, cfg: RunConfig) -> Generator:
        if cfg.generator in self.given:
            return self.given[cfg.generator]
        key = (cfg.generator, cfg.generator_weights)
        if key not in self._built:
            self._built[key] = make_generator(cfg.generator, cfg.generator_weights)
        return self._built[key]

    def decode(self, run: Run) -> torch.Tensor:
        """The run's MEI as the generator makes it (``[C, H, W]``, in the generator's image space)."""
        return self.get(run.config).decode(run.best_latent[None])[0]

    def pixels(self, run: Run) -> torch.Tensor:
        """The run's MEI as plain pixels in [0, 1] (``[C, H, W]``), for pictures."""
        return self.get(run.config).pixels(run.best_latent[None])[0]
