"""Which search asked each candidate still awaiting its value, for optimizers made of several searches.

Why: the base tells values in ask order, but one ``tell`` may cover part of an ask or several asks, so a
composite optimizer (``sepcma-2step``'s two sep-CMA-ES, ``image-model``'s models and its start's or alternating
sep-CMA-ES) must split each told slice among the searches that asked for it. One queue does it for all.
"""
from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

K = TypeVar("K")


class Routes(Generic[K]):
    """A FIFO of (owner, count): ``add`` at each ask, ``split`` at each tell."""

    def __init__(self) -> None:
        self._queue: deque[tuple[K, int]] = deque()

    def add(self, owner: K, count: int) -> None:
        self._queue.append((owner, count))

    def split(self, count: int) -> list[tuple[K, slice]]:
        """The next ``count`` told values as consecutive slices, each with the owner that asked for them."""
        parts, done = [], 0
        while done < count:
            owner, left = self._queue[0]
            m = min(left, count - done)
            parts.append((owner, slice(done, done + m)))
            done += m
            if m == left:
                self._queue.popleft()
            else:
                self._queue[0] = (owner, left - m)
        return parts
