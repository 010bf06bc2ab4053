"""SIGTERM and SIGHUP stop the ``mango`` command like Ctrl-C: a KeyboardInterrupt at a safe point.

A run then keeps every measured batch and says how to resume; the exit status is 128 + the signal.
"""
from __future__ import annotations

import signal

_received = signal.SIGINT


def _stop(signum: int, frame: object) -> None:
    global _received
    _received = signal.Signals(signum)
    raise KeyboardInterrupt(f"stopped by {_received.name}")


def install() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)


def exit_code() -> int:
    """128 + the signal that stopped the command (SIGINT for Ctrl-C)."""
    return 128 + int(_received)
