"""Experiments: the loop, its run folder, and reading results back."""
from .config import RunConfig
from .history import read_history
from .loop import run
from .result import RunResult, load_run

__all__ = ["RunConfig", "RunResult", "load_run", "read_history", "run"]
