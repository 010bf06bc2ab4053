"""The batched ask/tell interface: the base does the bookkeeping, each method only ``_ask``/``_tell``.

Optimizers *maximize*. ``ask(k)`` proposes ``k`` candidates ``[k, dim]``: ``int64`` grid indices (or
categorical codes) in ``[0, size)``, or ``float64`` points within the space's bounds; ``tell`` gives back
one value per candidate, in ask order, higher is better.

The public :meth:`Optimizer.ask` / :meth:`Optimizer.tell` are final (as in Nevergrad's
``optimization/base.py``) so that every method gets the same guarantees without repeating them: ``k`` and
the values are validated, NaN and +-inf become ``-inf`` ("failed measurement", the worst value) before
``_tell`` sees them, a method can never be told more values than it proposed, what ``_ask`` returns is
checked (a wrong shape, dtype or range is a bug of the method: ``RuntimeError``), and both run under
:func:`~mango.optimizers.threads.one_thread`.

Optimizers must be deterministic given their seed and the sequence of ``tell`` calls: the experiment loop
resumes a crashed run by *replaying* the recorded history through ``ask``/``tell`` (Optuna-style: the
history is the only state on disk), and checks that every replayed candidate equals the recorded one.
"""
from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from numbers import Integral
from typing import Any, final

import numpy as np
import torch

from ..errors import MangoError
from ..generators.space import LatentSpace
from ..registry import Registry
from .threads import one_thread


def check_seed(seed: object) -> int:
    """``seed`` as an ``int``: integers (and integral floats) >= 0; bools, fractions and text are errors."""
    value = None
    if isinstance(seed, Integral) and not isinstance(seed, (bool, np.bool_)):
        value = int(seed)
    elif isinstance(seed, float) and math.isfinite(seed) and seed.is_integer():
        value = int(seed)
    if value is None:
        raise MangoError(f"seed must be an integer, got {seed!r}")
    if value < 0:
        raise MangoError(f"seed must be >= 0, got {seed!r}")
    return value


class Optimizer(ABC):
    """Batched ask/tell maximizer over a :class:`LatentSpace`; subclasses implement ``_ask`` and ``_tell``."""

    #: batch size the method was designed for (PROTES: its ``k``); the loop uses it when no batch is given
    preferred_batch: int = 10

    def __init__(self, space: LatentSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = check_seed(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self._outstanding = 0  # asked, not yet told
        self._closed = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("ask", "tell", "inject", "close"):
            if name in vars(cls):
                raise TypeError(f"{cls.__name__} overrides {name}(); implement _{name}() instead")

    @abstractmethod
    def _ask(self, k: int) -> torch.Tensor:
        """Propose ``k >= 1`` candidates ``[k, dim]`` (int64 indices, or float64 points in the bounds)."""

    @abstractmethod
    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Values ``[n]`` (float64, ``n >= 1``, ``-inf`` = failed, never NaN/+inf) of the oldest asked candidates."""

    def _close(self) -> None:  # noqa: B027 - an optional hook
        """Release what the method holds (worker threads); called once by :meth:`close`."""

    def _inject(self, candidates: torch.Tensor, values: torch.Tensor) -> None:  # noqa: B027 - an optional hook
        """Learn from candidates this method did not propose, with their values (float64 ``[n]``, all finite,
        ``n >= 1``). The default ignores them: a method without a way to use foreign points
        searches on its own (a shared scan still counts every image for the unit's best)."""

    @property
    def learns_from_others(self) -> bool:
        """Whether :meth:`inject` changes what the method proposes next (it overrides ``_inject``)."""
        return type(self)._inject is not Optimizer._inject

    @final
    def ask(self, k: int) -> torch.Tensor:
        """Propose ``k`` candidates ``[k, dim]``."""
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, Integral) or k < 0:
            raise MangoError(f"ask needs a whole number of candidates k >= 0, got k={k!r}")
        self._check_open()
        k = int(k)
        if k == 0:
            return torch.empty(0, self.space.dim, dtype=torch.long)
        with one_thread():
            z = self._ask(k)
        self._check_candidates(z, k)
        self._outstanding += k
        return z

    @final
    def tell(self, candidates: torch.Tensor, values: Any, missing: Any = None) -> None:
        """Values (tensor, array or list; one per candidate, in ask order) for the oldest asked candidates.

        NaN and +-inf are failed measurements (the worst). ``missing`` (a boolean mask) marks candidates
        that were never measured (a rig that gave no answer): they are left out, not told as a value;
        ``_tell`` receives NaN for them and each method drops them (see its docstring).
        """
        self._check_open()
        candidates, v = self._pairs("tell", candidates, values)
        if len(v) > self._outstanding:
            raise MangoError(f"tell got {len(v)} values but only {self._outstanding} asked candidates await one")
        if len(v) == 0:
            return
        v = torch.where(torch.isfinite(v), v, -torch.inf)
        if missing is not None:
            mask = torch.as_tensor(np.asarray(missing, dtype=bool).reshape(-1))
            if len(mask) != len(v):
                raise MangoError(f"tell got a missing-mask of {len(mask)} for {len(v)} candidates")
            v = torch.where(mask, torch.nan, v)
        self._outstanding -= len(v)
        with one_thread():
            self._tell(candidates, v)

    @final
    def inject(self, candidates: torch.Tensor, values: Any) -> None:
        """Candidates proposed by someone else (another unit's search in a shared scan) and measured here.

        Only between batches: every asked candidate must be told first (``ask`` then ``tell`` keep their
        order; an injection in between would change what the outstanding candidates mean). NaN (never
        measured), NaN/inf values and failed measurements are dropped before the method sees them.
        Deterministic like ``tell``: a replayed sequence of asks, tells and injections gives the same asks.
        """
        self._check_open()
        if self._outstanding:
            raise MangoError(f"inject while {self._outstanding} asked candidates await their values; "
                             "tell them first")
        candidates, v = self._pairs("inject", candidates, values)
        keep = torch.isfinite(v)
        if bool(keep.any()):
            with one_thread():
                self._inject(candidates[keep], v[keep])

    def _pairs(self, doing: str, candidates: Any, values: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidates ``[n, dim]`` and one float64 value each, checked (one line naming what is wrong)."""
        candidates = torch.as_tensor(candidates)
        if candidates.ndim != 2 or candidates.shape[1] != self.space.dim:
            raise MangoError(f"{doing} needs candidates of shape [n, {self.space.dim}], got {list(candidates.shape)}")
        v = _as_values(values)
        if len(v) != len(candidates):
            raise MangoError(f"{doing} got {len(v)} values for {len(candidates)} candidates; give one value per "
                             "candidate")
        return candidates, v

    @final
    def close(self) -> None:
        """Release resources (worker threads); idempotent. Asking or telling afterwards is an error."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Optimizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hyperparameters(self) -> dict:
        """The effective settings (JSON-serializable), named as the optimizer's options."""
        return {}

    def searched_space(self) -> str:
        """What the method searches, for :meth:`describe` (continuous methods: their box)."""
        kind = "grid" if self.space.bounds is not None else "codes"
        return f"{kind} {self.space.size}^{self.space.dim}"

    def describe(self) -> dict:
        """Class, searched space, preferred batch and hyperparameters: written into every run's result."""
        out = {"class": type(self).__name__, "space": self.searched_space(), "preferred_batch": self.preferred_batch}
        out.update((k, v) for k, v in self.hyperparameters().items() if k not in out)
        return out

    def _check_open(self) -> None:
        if self._closed:
            raise MangoError(f"optimizer {type(self).__name__} is closed: no ask or tell after close()")

    def _check_candidates(self, z: object, k: int) -> None:
        """Raise ``RuntimeError`` when ``_ask`` broke its contract (a bug of the method, not of the user)."""
        dim, size, bounds = self.space.dim, self.space.size, self.space.bounds
        problem = None
        if not isinstance(z, torch.Tensor):
            problem = f"a {type(z).__name__}, not a torch tensor"
        elif tuple(z.shape) != (k, dim):
            problem = f"shape {list(z.shape)} for k={k} (expected [{k}, {dim}])"
        elif z.dtype == torch.int64:
            lo, hi = int(z.min()), int(z.max())
            if lo < 0 or hi >= size:
                problem = f"indices in [{lo}, {hi}], outside [0, {size})"
        elif z.dtype == torch.float64:
            if bounds is None:
                problem = "float64 points for a categorical space (it needs int64 codes)"
            elif not bool(((z >= bounds[0]) & (z <= bounds[1])).all()):
                problem = f"float64 points outside the bounds [{bounds[0]}, {bounds[1]}] (or NaN)"
        else:
            problem = f"dtype {z.dtype} (expected int64 indices or float64 points)"
        if problem:
            raise RuntimeError(f"optimizer {type(self).__name__} asked {problem}")


def _as_values(values: Any) -> torch.Tensor:
    """Values as a 1-D float64 CPU tensor (a scalar counts as one value)."""
    try:
        if isinstance(values, torch.Tensor):
            v = values.detach().to("cpu", torch.float64)
        else:
            v = torch.from_numpy(np.array(values, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError):
        raise MangoError(f"tell needs numeric values, got {str(values)[:80]!r}") from None
    if v.ndim > 1:
        raise MangoError(f"tell needs one value per candidate (1-D), got shape {list(v.shape)}")
    return v.reshape(-1)


OPTIMIZERS: Registry[Optimizer] = Registry("optimizer")


def parse_option_value(text: str) -> object:
    """A ``KEY=VALUE`` value: JSON when it parses (numbers, booleans, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_entry(text: str) -> tuple[str, dict]:
    """``cma+popsize=20+grid=true`` -> ``("cma", {"popsize": 20, "grid": True})``: an optimizer with
    options in one token, as the benchmarks take them."""
    name, *pairs = text.split("+")
    return name, {k: parse_option_value(v) for k, _, v in (p.partition("=") for p in pairs)}
