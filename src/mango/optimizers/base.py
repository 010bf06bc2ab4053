"""The batched ask/tell interface every optimizer implements.

Optimizers *maximize*. ``ask(k)`` proposes ``k`` candidates as a
``LongTensor[k, dim]`` of grid indices (continuous optimizers may return
floats in the space's bounds); ``tell`` gives back one value per candidate,
higher is better, ``-inf`` for failed measurements (NaN/inf responses).

Optimizers must be deterministic given their seed and the sequence of
``tell`` calls: the experiment loop resumes a crashed run by *replaying* the
recorded history through ``ask``/``tell`` (Optuna-style: the history is the
only state on disk), and checks that every replayed candidate equals the
recorded one.
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod

import torch

from ..generators.space import LatentSpace
from ..registry import Registry


class Optimizer(ABC):
    """Batched ask/tell maximizer over a :class:`LatentSpace`."""

    #: batch size the method was designed for (PROTES: its ``k``); the loop uses it when no batch is given
    preferred_batch: int = 10

    def __init__(self, space: LatentSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    @abstractmethod
    def ask(self, k: int) -> torch.Tensor:
        """Propose ``k`` candidates ``[k, dim]``."""

    @abstractmethod
    def tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        """Receive values ``[k]`` (higher is better, ``-inf`` = failed) for asked candidates."""

    def hyperparameters(self) -> dict:
        """Settings recorded in the run's config and result."""
        return {}


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
