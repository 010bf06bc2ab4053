"""``mango monitor RUN``: a live view of a run in the browser while it runs (or after).

:class:`~mango.monitor.server.MonitorServer` serves the page on 127.0.0.1;
:class:`~mango.monitor.state.RunWatcher` reads the run folder read-only at each poll. Names are
imported on first use (PEP 562): the ``mango`` command registers ``monitor`` without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

DEFAULT_PORT = 8765
_WHERE = {"MonitorServer": "server", "RunWatcher": "state"}

__all__ = ["DEFAULT_PORT", "MonitorServer", "RunWatcher"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
