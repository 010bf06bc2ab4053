"""TTOpt: maximum-volume tensor-train cross optimization (Sozykin et al., NeurIPS 2022), via the ``ttopt`` package.

TTOpt sweeps the TT cores of the objective tensor; at each core it requests the full fiber block of the current
left/right index sets, then keeps the rows of maximal volume (maxvol) of the smoothed values ``exp(y_opt - y)``
as the next index set, plus the best row. It searches the discrete grid: indices ``0..size-1`` per coordinate,
as binary QTT modes (little-endian, as in ``ttopt.TTOpt`` with ``p=2``) when ``size`` is a power of two.

``ttopt`` is callback-driven (it calls ``f(I)`` itself), so it runs in a daemon worker thread, and two queues
turn its calls into ``ask``/``tell``: each batch it requests is served across as many ``ask`` calls as needed and
handed back when all its values are told. ttopt is seeded and its calls are strictly sequential, so the
candidates depend only on the seed and the values told (resume replays identically). When ``ask`` wants more
candidates than the pending batch has left while that batch still awaits values, the rest are padding: the best
point so far with one random coordinate redrawn (uniform grid points before any value), values kept only to
track the best. A run that stops mid-batch leaves the worker blocked on a queue: it is a daemon thread and is
told to finish when the optimizer is garbage-collected or ``close()`` is called. The worker computes only while
``ask`` waits for its next batch, i.e. inside the base's :func:`~mango.optimizers.threads.one_thread`, so it needs no
thread pinning of its own.
"""
from __future__ import annotations

import queue
import threading
import weakref
from collections import deque

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import Optimizer
from .options import register

_FAILED = 1e300  # ttopt minimizes -value; a failed (-inf) measurement becomes a huge finite cost (exp(y_opt - y) = 0)


class _Bridge:
    """The two queues between the optimizer and its worker (no reference to the optimizer: it can be collected)."""

    def __init__(self) -> None:
        self.requests: queue.Queue = queue.Queue()  # worker -> optimizer: index batches [B, modes], or an exception
        self.replies: queue.Queue = queue.Queue()  # optimizer -> worker: costs [B], or None to stop

    def stop(self) -> None:
        self.replies.put(None)


def _work(bridge: _Bridge, modes: list[int], rank: int, seed: int, fs_opt: float) -> None:
    """Worker thread: run ttopt (minimizing the cost) until told to stop."""
    from ttopt import ttopt

    def f(I: np.ndarray, i_opt, y_opt, opt_opt):  # noqa: ANN001 - ttopt's callback signature
        bridge.requests.put(np.asarray(I, dtype=np.int64).copy())
        y = bridge.replies.get()
        return (None, None) if y is None else (y, [None] * len(y))

    try:
        ttopt(f, modes, rank=rank, evals=None, seed=seed, fs_opt=fs_opt, is_max=False)
        bridge.requests.put(MangoError("ttopt stopped before the budget was spent"))
    except BaseException as exc:  # hand every failure to the thread that asks
        bridge.requests.put(exc)


class TTOpt(Optimizer):
    """TTOpt (maxvol TT cross) over the grid, run by the ``ttopt`` package in a worker thread."""

    def __init__(self, space: LatentSpace, seed: int = 0, rank: int = 4, fs_opt: float = 1.0,
                 quantize: bool | None = None) -> None:
        super().__init__(space, seed)
        if rank < 1 or fs_opt <= 0:
            raise MangoError(f"TTOpt needs rank >= 1 and fs_opt > 0, got rank={rank}, fs_opt={fs_opt}")
        if quantize and not space.is_binary_quantizable:
            raise MangoError(f"quantized TTOpt needs a power-of-two grid size, got size={space.size}")
        self.rank, self.fs_opt = int(rank), float(fs_opt)
        self.quantize = space.is_binary_quantizable if quantize is None else bool(quantize)
        self.q = space.size.bit_length() - 1 if self.quantize else 1  # modes per coordinate
        self.p = 2 if self.quantize else space.size  # values per mode
        self.preferred_batch = self.rank * self.p * self.rank  # an interior core's fiber block
        self._bridge: _Bridge | None = None
        self._batch: torch.Tensor | None = None  # ttopt's pending request, as grid indices
        self._served = 0  # rows of it handed out
        self._vals: list[float] = []  # values told for it
        self._slots: deque[bool] = deque()  # per asked, untold candidate: True = from ttopt's batch, False = padding
        self._best: tuple[float, torch.Tensor] | None = None
        self._reply: np.ndarray | None = None  # costs of ttopt's completed batch, not yet handed back

    def _start(self) -> None:
        self._bridge = _Bridge()
        modes = [self.p] * (self.space.dim * self.q)
        self._thread = threading.Thread(target=_work, args=(self._bridge, modes, self.rank, self.seed, self.fs_opt),
                                        name=f"ttopt-seed{self.seed}", daemon=True)
        self._thread.start()
        self._finalizer = weakref.finalize(self, self._bridge.stop)
        self._finalizer.atexit = False  # at exit the blocked daemon thread just ends with the interpreter

    def _close(self) -> None:
        """Let the worker thread finish (it also does when the optimizer is garbage-collected)."""
        if self._bridge is not None:
            self._finalizer()

    def _to_grid(self, I: np.ndarray) -> torch.Tensor:
        """ttopt's multi-indices ``[B, dim * q]`` -> grid indices ``[B, dim]`` (bit b of a coordinate weighs 2**b)."""
        idx = torch.from_numpy(I)
        if self.q == 1:
            return idx
        return (idx.reshape(len(idx), self.space.dim, self.q) << torch.arange(self.q)).sum(-1)

    def _next_batch(self) -> torch.Tensor:
        """Hand ttopt the values of its last batch and wait for its next one (it computes only meanwhile)."""
        if self._bridge is None:
            self._start()
        bridge = self._bridge
        assert bridge is not None
        if self._reply is not None:
            bridge.replies.put(self._reply)
            self._reply = None
        item = bridge.requests.get()
        if isinstance(item, BaseException):
            raise MangoError(f"ttopt failed: {item!r}") from item
        return self._to_grid(item)

    def _padding(self, n: int) -> torch.Tensor:
        """Candidates beyond ttopt's pending batch: the best point with one coordinate redrawn."""
        if self._best is None:
            return torch.randint(0, self.space.size, (n, self.space.dim), generator=self.generator)
        z = self._best[1].repeat(n, 1)
        coord = torch.randint(0, self.space.dim, (n,), generator=self.generator)
        z[torch.arange(n), coord] = torch.randint(0, self.space.size, (n,), generator=self.generator)
        return z

    def _ask(self, k: int) -> torch.Tensor:
        parts = []
        while k > 0:
            if self._batch is None:
                self._batch, self._served, self._vals = self._next_batch(), 0, []
            m = min(k, len(self._batch) - self._served)
            if m == 0:  # all of ttopt's batch is out, its values are not all told yet
                parts.append(self._padding(k))
                self._slots.extend([False] * k)
                break
            parts.append(self._batch[self._served : self._served + m])
            self._served, k = self._served + m, k - m
            self._slots.extend([True] * m)
        return torch.cat(parts)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        v = torch.where(values.isnan(), -torch.inf, values)  # left out: like a failure, zero weight in maxvol
        if self._best is None or float(v.max()) > self._best[0]:
            i = int(v.argmax())
            self._best = (float(v[i]), candidates[i].long().clone())
        for value in v.tolist():
            if self._slots.popleft():
                self._vals.append(value)
        if self._batch is not None and len(self._vals) == len(self._batch):
            vals = np.asarray(self._vals)
            self._reply, self._batch = np.where(np.isfinite(vals), -vals, _FAILED), None  # sent by the next ask

    def hyperparameters(self) -> dict:
        return {"rank": self.rank, "fs_opt": self.fs_opt, "quantize": self.quantize}


register("ttopt", TTOpt, "TTOpt (rank 4, QTT when size = 2^q): maximum-volume tensor-train cross, "
         "searches the discrete grid.")
