"""Nevergrad optimizers behind MANGO's batched ask/tell: a few named presets and ``ng:NAME`` for any of them.

The MANGO paper ran Nevergrad's optimizers on the discrete grid (``space="grid"``: a ``TransitionChoice``
per coordinate); the default here is the continuous box (``space="box"``: a bounded ``Array`` through
:class:`~mango.optimizers.continuous.Box`), which suits the continuous methods (CMA, DE, SPSA, ...) better.

Threads: Nevergrad runs callback-style methods ("recast": scipy's Cobyla/Powell/SQP, pycma's fmin2, ...,
also chosen inside NGOpt, Chain* and MetaModel) in a ``recaster._MessagingThread`` that blocks on a queue
until it is told a value. Such a thread is not a daemon: left blocked (a run that stops mid-way with the
optimizer still referenced, or an error in between) it kept the interpreter from exiting. Here those
threads are made daemons (:func:`_daemon_recast_threads`), the ones started during this optimizer's calls
are recorded and stopped by ``close()`` or when the optimizer is garbage-collected, and asking a recast
method for a second candidate before its first is told (which would block forever) is refused.
"""
from __future__ import annotations

import difflib
import threading
import warnings
import weakref
from collections import deque
from typing import Any, Literal

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from .base import OPTIMIZERS, Optimizer
from .continuous import Box, Losses
from .options import Preset, register


def _registry() -> dict:
    import nevergrad as ng

    _daemon_recast_threads()
    return ng.optimizers.registry


def _daemon_recast_threads() -> None:
    """Make Nevergrad's recast threads daemons (patched once, process-wide): a blocked one never holds exit."""
    from nevergrad.optimization import recaster

    if getattr(recaster._MessagingThread, "mango_daemon", False):
        return

    class DaemonMessagingThread(recaster._MessagingThread):
        mango_daemon = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.daemon = True

    recaster._MessagingThread = DaemonMessagingThread


def _stop(threads: list) -> None:
    """Tell recast threads to finish (each raises out of its method and ends)."""
    for thread in threads:
        if thread.is_alive():
            thread.stop()


def _waiting_recast(opt: object) -> str | None:
    """Name of a recast optimizer inside ``opt`` (NGOpt, chains, portfolios) with a candidate out: it answers
    the next ask only after that candidate is told, so asking again would block forever."""
    from nevergrad.optimization.base import Optimizer as NgOptimizer
    from nevergrad.optimization.recaster import SequentialRecastOptimizer

    stack, seen = [opt], set()
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        thread = getattr(o, "_messaging_thread", None)
        if (isinstance(o, SequentialRecastOptimizer) and o.num_ask > o.num_tell and thread is not None
                and thread.is_alive()):
            return o.name
        for value in vars(o).values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else [value]
            stack.extend(x for x in items if isinstance(x, NgOptimizer))
    return None


class NevergradOptimizer(Optimizer):
    """Nevergrad optimizer ``method`` (a name in ``nevergrad.optimizers.registry``), maximizing.

    * ``space="grid"``: ``ng.p.TransitionChoice(range(size), repetitions=dim)``, candidates are grid indices
      (the paper's set-up); ``space="box"`` (default): ``ng.p.Array`` bounded to the box (sigma = width / 6),
      candidates are floats (grid indices with ``grid=True``; codes for a categorical space).
    * ``ask(k)`` calls Nevergrad's ``ask`` ``k`` times; ``num_workers`` (how many candidates Nevergrad
      expects in flight) defaults to the first ``ask``'s ``k``, so it matches the loop's batch. The
      Nevergrad optimizer is built at that first ask (replay asks the same ``k``, so resume is exact).
      Methods that cannot run in parallel (SPSA) get ``num_workers=1`` and a preferred batch of 1: larger
      batches run, but each batch is proposed before any of it is told.
    * Recast methods (Cobyla, Powell, ...; see the module doc) propose one candidate at a time: a second one
      before the first is told is refused (batch 1).
    * Nevergrad minimizes: it is told ``-value``; failed measurements get a finite penalty (:class:`Losses`).
    * Seeding: the parametrization's ``random_state`` is set before the optimizer is built (Nevergrad
      optimizers draw from it, sub-optimizers of portfolios share it), so equal seeds give equal asks.
    * ``budget`` is passed on: some methods (NGOpt, Portfolio) pick their sub-methods by it.
    """

    def __init__(self, latent: LatentSpace, seed: int = 0, method: str = "OnePlusOne",
                 space: Literal["box", "grid"] = "box", grid: bool = False, num_workers: int | None = None,
                 budget: int | None = None) -> None:
        super().__init__(latent, seed)
        registry = _registry()
        if method not in registry:
            near = difflib.get_close_matches(method, list(registry), n=3)
            hint = f"did you mean {', '.join(near)}?" if near else "see nevergrad.optimizers.registry"
            raise MangoError(f"unknown Nevergrad optimizer {method!r}; {hint}")
        if space not in ("box", "grid"):
            raise MangoError(f"Nevergrad space must be 'box' or 'grid', got {space!r}")
        if (num_workers is not None and num_workers < 1) or (budget is not None and budget < 1):
            raise MangoError(f"num_workers and budget must be positive, got {num_workers} and {budget}")
        self.method, self.mode, self.budget, self.num_workers = method, space, budget, num_workers
        self.cls = registry[method]
        self.sequential = bool(getattr(self.cls, "no_parallelization", False))
        if self.sequential:
            self.num_workers = 1
        self.preferred_batch = 1 if self.sequential else (num_workers or 10)
        self.box = Box(latent, grid)
        self.losses = Losses()
        self.opt: Any = None  # built at the first ask, once the batch size is known
        self._pending: deque = deque()  # Nevergrad candidates asked, not yet told (told in the same order)
        self._threads: list[threading.Thread] = []  # recast threads started during our calls
        self._finalizer = weakref.finalize(self, _stop, self._threads)
        self._finalizer.atexit = False  # at exit the (daemon) threads end with the interpreter

    def _build(self, k: int) -> None:
        import nevergrad as ng

        if self.mode == "grid":
            param = ng.p.TransitionChoice(range(self.space.size), repetitions=self.space.dim)
        else:
            # = Array(...).set_bounds(low, high) with sigma = width / 6 and the start at the centre; sigma 1 on
            # [0, 1] (categorical codes) would be a poor scale (Nevergrad warns about it)
            param = ng.p.Array(shape=(self.space.dim,), lower=self.box.low, upper=self.box.high)
        param.random_state = np.random.RandomState(self.seed % 2**32)
        self.num_workers = self.num_workers or max(1, k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "inefficient settings" hints
            self.opt = self.cls(parametrization=param, budget=self.budget, num_workers=self.num_workers)

    def _ask(self, k: int) -> torch.Tensor:
        with _ThreadTracker(self._threads):
            if self.opt is None:
                self._build(k)
            cands = [self._ask_one() for _ in range(k)]
        if self.mode == "grid":
            return torch.tensor([list(c.value) for c in cands], dtype=torch.long).reshape(k, self.space.dim)
        return self.box.candidates(np.array([c.value for c in cands], dtype=np.float64).reshape(k, self.space.dim))

    def _ask_one(self) -> Any:
        """One Nevergrad candidate (a ``Parameter``), recorded as pending."""
        if self._pending:
            waiting = _waiting_recast(self.opt)
            if waiting is not None:
                raise MangoError(f"Nevergrad {self.method} (running {waiting}) proposes one candidate at a time and "
                                 "waits for its value: use batch 1 (--batch 1)")
        try:
            cand = self.opt.ask()
        except AssertionError as exc:  # e.g. NGOpt: `assert self.budget is not None`
            if self.budget is None:
                raise MangoError(f"Nevergrad {self.method} needs a budget: pass it as an option (--opt budget=N)") \
                    from exc
            raise
        self._pending.append(cand)
        return cand

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        with warnings.catch_warnings(), _ThreadTracker(self._threads):
            warnings.simplefilter("ignore")
            for loss in self.losses(values):
                cand = self._pending.popleft()
                if not np.isnan(loss):  # a left-out candidate is never told (Nevergrad allows untold asks)
                    self.opt.tell(cand, float(loss))

    def _close(self) -> None:
        self._finalizer()

    def hyperparameters(self) -> dict:
        return {"method": self.method, "space": self.mode, "grid": self.box.grid, "num_workers": self.num_workers,
                "budget": self.budget}

    def searched_space(self) -> str:
        if self.mode == "grid":
            return f"grid {self.space.size}^{self.space.dim} (TransitionChoice)"
        return self.box.describe()


class _ThreadTracker:
    """Context manager: appends the recast threads Nevergrad starts inside it to ``threads`` (stopped at close)."""

    def __init__(self, threads: list) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        self.before = set(threading.enumerate())

    def __exit__(self, *exc: object) -> None:
        from nevergrad.optimization.recaster import _MessagingThread

        self.threads[:] = [t for t in self.threads if t.is_alive()]
        self.threads.extend(t for t in threading.enumerate()
                            if t not in self.before and isinstance(t, _MessagingThread))


register("ng-portfolio", NevergradOptimizer, "Nevergrad Portfolio (CMA + DE + Hammersley); box (default) or "
         "space=grid.", fixed={"method": "Portfolio"})
register("ng-oneplusone", NevergradOptimizer, "Nevergrad (1+1)-ES; searches the box (default) or the grid "
         "(space=grid).", fixed={"method": "OnePlusOne"})
register("ng-noisybandit", NevergradOptimizer, "Nevergrad NoisyBandit (re-evaluates, for noisy units); box or "
         "space=grid.", fixed={"method": "NoisyBandit"})
register("ng-spsa", NevergradOptimizer, "Nevergrad SPSA (sequential: preferred batch 1); box (default) or space=grid.",
         fixed={"method": "SPSA"})
register("ng-cma", NevergradOptimizer, "Nevergrad CMA (pycma); searches the box (default) or the grid (space=grid).",
         fixed={"method": "CMA"})
_NG_ANY = "Any Nevergrad optimizer by name, e.g. ng:DE, ng:NGOpt; box (default) or space=grid."
OPTIMIZERS.register_prefix("ng:", _NG_ANY)(Preset("ng:", NevergradOptimizer, prefix_arg="method"))
