"""User-facing errors.

Every mistake a user can make (bad name, bad number, bad file) raises a
:class:`MangoError` whose message is one line naming the bad value and what
is allowed. The CLI prints that line and exits with status 2, without a
traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from collections.abc import Iterable


class MangoError(ValueError):
    """A user error: bad input, not a bug."""


def unknown(kind: str, value: object, allowed: Iterable[object]) -> MangoError:
    """Build the standard 'unknown X' error listing what is allowed."""
    names = ", ".join(str(a) for a in allowed)
    return MangoError(f"unknown {kind} {value!r}; allowed: {names}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
