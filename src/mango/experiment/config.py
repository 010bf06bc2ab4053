"""The settings of one run: declared once here, read by the API, the CLI, resume and the summary.

Each field's metadata carries its command-line help and whether a resume may change it
(``fixed``): :func:`mango.run` takes the field names as keywords, ``mango run`` builds one option per
field, and ``config.json`` stores them all.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import MangoError, first_line


def setting(default: Any, help: str, fixed: bool = True, **kw: Any) -> Any:
    """A run setting: ``fixed`` ones must match when a run is resumed (the budget may grow)."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help, "fixed": fixed, **kw})
    return field(default=default, metadata={"help": help, "fixed": fixed, **kw})


@dataclass
class RunConfig:
    """Everything needed to reproduce a run; the embedded default is the default."""

    generator: str = setting("mnist-sngan", "generator (`mango list generators`)")
    model: str = setting("mnist-snn", "target network (`mango list targets`)")
    target: str = setting("lif2:12", "class:N, LAYER:UNIT or LAYER:UNIT@ROW,COL")
    optimizer: str = setting("auto", "optimizer (`mango list optimizers`); auto: image-model-sepcma for a "
                             "continuous latent (image-model-noisy for a noisy target, sepcma-2step in a scan), "
                             "codes(-noisy) for a categorical one")
    optimizer_options: dict = setting({}, "optimizer hyperparameter KEY=VALUE, repeatable", option="--opt")
    budget: int = setting(3000, "number of candidates measured; each is shown --repeats times", fixed=False)
    batch: int | None = setting(None, "queries per optimizer step (default: the optimizer's own)")
    seed: int = setting(0, "seed of the optimizer (and of injected noise)")
    model_weights: str | None = setting(None, "weights file for the target network (.safetensors, .pt)")
    generator_weights: str | None = setting(None, "weights file for the generator (.safetensors, .pt)")
    repeats: int = setting(1, "presentations per candidate, for noisy targets; they multiply the images shown")
    remeasure: int = setting(0, "at the end, measure the 5 best this many more times and report the best mean",
                             fixed=False)
    readout: str | None = setting(None, "rate, rate+drive, count:A-B, latency, membrane, mean, relu, logit, prob "
                                  "(default: rate for spiking layers, rate+drive with optimizer auto and no "
                                  "noise; mean otherwise, logit for class:N)")
    noise: str | None = setting(None, "injected trial-to-trial noise: input:SD, membrane:SD, poisson "
                                "(comma-separated)")
    steps: int | None = setting(None, "time steps of a spiking target (default: the network's own)")
    objective: str | None = setting(None, "a weighted sum of units of the target's layer instead of the unit alone, "
                                    "e.g. 'u - mean(*)' (u = the target unit): a selective stimulus")
    #: rig runs (``--model rig:...``): the rig's answers, its silences and its drift
    timeout: float = setting(10.0, "rig runs: seconds of live rig to wait for a block's answers", fixed=False)
    reshows: int = setting(3, "rig runs: times an unanswered image is shown again before it is left out",
                           fixed=False)
    references: int = setting(0, "rig runs: reference images interleaved in every block (to track drift)")

    def validate(self) -> RunConfig:
        """Types and ranges of every setting, each failure one line naming the value."""
        for f in fields(self):
            value, kind = getattr(self, f.name), f.type
            optional = "None" in str(kind)
            if value is None and optional:
                continue
            if "float" in str(kind):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
                    and value > 0
                want = "a positive number"
            elif "int" in str(kind):
                ok = isinstance(value, int) and not isinstance(value, bool)
                want = "an integer"
            elif "dict" in str(kind):
                ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
                want = "a mapping of option names to values"
            else:
                ok = isinstance(value, str) and value != ""
                want = "a non-empty string"
            if not ok:
                raise MangoError(f"{f.name} must be {want}{' or None' if optional else ''}, got {value!r}")
        for name in ("budget", "repeats") + (("batch",) if self.batch is not None else ()) + \
                (("steps",) if self.steps is not None else ()):
            if getattr(self, name) < 1:
                raise MangoError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.reshows < 0 or self.references < 0:
            raise MangoError(f"reshows and references must be >= 0, got {self.reshows!r} and {self.references!r}")
        if self.remeasure < 0:
            raise MangoError(f"remeasure must be a non-negative integer, got {self.remeasure!r}")
        if self.seed < 0:
            raise MangoError(f"seed must be a non-negative integer, got {self.seed!r}")
        bad = {k: v for k, v in self.optimizer_options.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            raise MangoError(f"optimizer options must be finite, got {bad}")
        if self.objective and self.readout == "rate+drive":
            raise MangoError(f"readout rate+drive (one unit's drive told to the optimizer) does not combine with an "
                             f"objective, got objective {self.objective!r}; use readout rate")
        if self.batch is not None and self.budget < self.batch:
            raise MangoError(f"budget {self.budget} is smaller than batch {self.batch}; use budget >= batch")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: object, source: str = "settings") -> RunConfig:
        """Settings from a mapping (``config.json``, keyword arguments); unknown or ill-typed ones are one line."""
        if not isinstance(data, dict):
            raise MangoError(f"{source} must be a JSON object of run settings, got {type(data).__name__}: "
                             f"{json.dumps(data)[:60]}")
        names = [f.name for f in fields(cls)]
        bad = sorted(set(data) - set(names))
        if bad:
            raise MangoError(f"unknown settings {bad} in {source}; allowed: {', '.join(names)}")
        cfg = cls(**data)
        try:
            return cfg.validate()
        except MangoError as exc:
            raise MangoError(f"{exc} (in {source})") from None

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            data = json.loads(Path(path).read_bytes().decode("utf-8"))
        except (OSError, ValueError) as exc:
            raise MangoError(f"cannot read run config {path}: {first_line(exc)} (restore it, or start a new run "
                             "in another folder)") from None
        return cls.from_dict(data, str(path))

    def mismatches(self, other: RunConfig) -> list[str]:
        """Settings fixed on resume where ``other`` differs from this (stored) config."""
        return [f"{f.name}: run has {getattr(self, f.name)!r}, given {getattr(other, f.name)!r}"
                for f in fields(self) if f.metadata["fixed"] and getattr(self, f.name) != getattr(other, f.name)]


SETTINGS = tuple(f.name for f in fields(RunConfig))
