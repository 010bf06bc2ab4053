"""The settings of one run, stored as ``config.json`` in its folder."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import MangoError

#: settings that must match when a run is resumed (the budget may grow)
FIXED_ON_RESUME = ("generator", "model", "target", "optimizer", "optimizer_options", "batch", "seed",
                   "model_weights", "generator_weights", "repeats", "readout", "noise", "steps")


@dataclass
class RunConfig:
    """Everything needed to reproduce a run; the embedded default is the default."""

    generator: str = "mnist-sngan"
    model: str = "mnist-snn"
    target: str = "lif2:12"
    optimizer: str = "sepcma"
    optimizer_options: dict = field(default_factory=dict)
    budget: int = 3000
    batch: int | None = None
    seed: int = 0
    model_weights: str | None = None
    generator_weights: str | None = None
    #: measurements per candidate (noisy targets): the history keeps their mean and spread
    repeats: int = 1
    #: at the end, measure the 5 best candidates this many more times and report the best mean
    remeasure: int = 0
    #: how the unit's activity becomes a response (default: rate for spiking layers, mean otherwise)
    readout: str | None = None
    #: injected trial-to-trial noise, e.g. "poisson" or "input:0.1,membrane:0.05" (default: none)
    noise: str | None = None
    #: time steps of a spiking target (default: the network's own)
    steps: int | None = None

    def validate(self) -> None:
        if not isinstance(self.budget, int) or self.budget < 1:
            raise MangoError(f"budget must be a positive integer, got {self.budget!r}")
        if self.batch is not None and (not isinstance(self.batch, int) or self.batch < 1):
            raise MangoError(f"batch must be a positive integer, got {self.batch!r}")
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise MangoError(f"repeats must be a positive integer, got {self.repeats!r}")
        if not isinstance(self.remeasure, int) or self.remeasure < 0:
            raise MangoError(f"remeasure must be a non-negative integer, got {self.remeasure!r}")
        if self.batch is not None and self.budget < self.batch:
            raise MangoError(f"budget {self.budget} is smaller than batch {self.batch}; use budget >= batch")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MangoError(f"cannot read run config {path}: {exc}") from None
        names = {f.name for f in fields(cls)}
        bad = sorted(set(data) - names)
        if bad:
            raise MangoError(f"unknown keys {bad} in run config {path}; allowed: {', '.join(sorted(names))}")
        return cls(**data)

    def mismatches(self, other: RunConfig) -> list[str]:
        """Settings fixed on resume where ``other`` differs from this (stored) config."""
        return [f"{k}: run has {getattr(self, k)!r}, given {getattr(other, k)!r}" for k in FIXED_ON_RESUME
                if getattr(self, k) != getattr(other, k)]
