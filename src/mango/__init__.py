"""MANGO: Maximization of neural Activation via Non-Gradient Optimization.

Find the most exciting input (MEI) of a neuron with as few queries as
possible: an optimizer proposes latents, a generator turns them into images,
a target network (or a living neuron) responds.

Importing ``mango`` loads nothing heavy and changes no global state; each
name below is imported on first use (PEP 562).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "MangoError": ".errors",
    "RunConfig": ".experiment.config", "RunResult": ".experiment.result", "load_run": ".experiment.result",
    "read_history": ".experiment.history", "run": ".experiment.loop", "RunInterrupted": ".experiment.loop",
    "export_run": ".experiment.export",
    "GENERATORS": ".generators", "Generator": ".generators", "LatentSpace": ".generators",
    "TorchGenerator": ".generators",
    "OPTIMIZERS": ".optimizers", "Optimizer": ".optimizers",
    "MODELS": ".targets", "Target": ".targets", "TargetSpec": ".targets", "TorchTarget": ".targets",
    "make_target": ".targets",
    "load_scan": ".scan",
    "GradientMEI": ".analysis.gradient", "gradient_mei": ".analysis.gradient", "gradient_meis": ".analysis.gradient",
}
_MODULES = ("analysis", "data", "experiment", "generators", "optimizers", "scan", "targets", "training")

# spelled out (not computed from _WHERE and _MODULES) so linters and type checkers see the re-exports;
# tests/test_package.py checks that it lists exactly those names
__all__ = [
    "GENERATORS", "Generator", "GradientMEI", "LatentSpace", "MODELS", "MangoError", "OPTIMIZERS", "Optimizer",
    "RunConfig", "RunInterrupted", "RunResult", "Target", "TargetSpec", "TorchGenerator", "TorchTarget", "analysis",
    "data", "experiment", "export_run", "generators", "gradient_mei", "gradient_meis", "load_run", "load_scan",
    "make_target", "optimizers", "read_history", "run", "scan", "targets", "training",
]

if TYPE_CHECKING:
    from . import analysis, data, experiment, generators, optimizers, scan, targets, training
    from .analysis.gradient import GradientMEI, gradient_mei, gradient_meis
    from .errors import MangoError
    from .experiment.config import RunConfig
    from .experiment.export import export_run
    from .experiment.history import read_history
    from .experiment.loop import RunInterrupted, run
    from .experiment.result import RunResult, load_run
    from .generators import GENERATORS, Generator, LatentSpace, TorchGenerator
    from .optimizers import OPTIMIZERS, Optimizer
    from .scan import load_scan
    from .targets import MODELS, Target, TargetSpec, TorchTarget, make_target


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
