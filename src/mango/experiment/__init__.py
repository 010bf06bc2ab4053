"""Experiments: the loop, its run folder (a locked SQLite run store), and reading results back.

Names are imported on first use (PEP 562), so ``mango.experiment.config`` loads without torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"RunConfig": "config", "export_run": "export", "read_history": "history", "RunInterrupted": "loop",
          "run": "loop", "RunResult": "result", "load_run": "result"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
