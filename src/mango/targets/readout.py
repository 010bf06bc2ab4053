"""Readouts: how a unit's activity over one presentation becomes one response.

Every target records a *trace* of its units: ``[T, B, U]`` values, one row per
time step for a spiking layer (spikes, or membrane potential), a single row
for a layer of a classic network. A readout reduces the trace over time to
``[B, U]``, each unit's column on its own (so a unit read with others gives
what it gives alone).

=============  ==========================================================
``rate``       spike count / T over all T steps, in [0, 1] (the paper's
               normalized activity; spiking layers' default)
``rate+drive`` the rate as the response; the optimizer is also told the
               sub-threshold drive of a unit that has not spiked
               (:mod:`mango.targets.drive`)
``count:A-B``  spike count in steps A..B-1 / (B - A)
``latency``    1 - (first spike step) / T, 0 if silent: earlier is larger
``membrane``   mean membrane potential over the T steps
``mean``       the activation (classic layers' default)
``relu``       the ReLU'd activation, averaged over positions
``logit``      class output as is (class:N default)
``prob``       softmax probability of the class
=============  ==========================================================
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import MangoError

SPIKING = ("rate", "count", "latency", "membrane", "rate+drive")
CLASSIC = ("mean", "relu")
CLASS = ("logit", "prob")
#: every readout kind (``count`` is written ``count:A-B``)
NAMES = SPIKING + CLASSIC + CLASS
FORMS = ("rate, rate+drive, count:A-B, latency, membrane (spiking layers); mean, relu (other layers); "
         "logit, prob (class:N)")
_COUNT = re.compile(r"^count:(\d+)-(\d+)$")


@dataclass(frozen=True)
class Readout:
    kind: str
    start: int = 0
    stop: int = 0

    def __post_init__(self) -> None:
        if self.kind not in NAMES:
            raise MangoError(f"unknown readout {self.kind!r}; allowed: {FORMS}")
        if self.kind == "count":
            a, b = self.start, self.stop
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b)) or not 0 <= a < b:
                raise MangoError(f"bad readout count:{a}-{b}: the window count:A-B needs integers 0 <= A < B")

    @classmethod
    def parse(cls, text: str | None) -> Readout | None:
        """``None`` means the default for the layer (rate / mean / logit)."""
        if text is None:
            return None
        text = text.strip()
        m = _COUNT.match(text)
        if m:
            a, b = int(m[1]), int(m[2])
            if b <= a:
                raise MangoError(f"bad readout {text!r}: the window count:A-B needs A < B")
            return cls("count", a, b)
        if text in SPIKING + CLASSIC + CLASS and text != "count":
            return cls(text)
        raise MangoError(f"unknown readout {text!r}; allowed: {FORMS}")

    def __str__(self) -> str:
        return f"count:{self.start}-{self.stop}" if self.kind == "count" else self.kind

    @property
    def needs_membrane(self) -> bool:
        return self.kind == "membrane"

    @property
    def drive(self) -> bool:
        """The response is the rate, and the optimizer's value adds the silent unit's drive (rate+drive)."""
        return self.kind == "rate+drive"

    def check(self, layer: str | None, spiking: bool, steps: int | None) -> None:
        """Fail early when the readout does not fit the addressed layer."""
        where = "class outputs" if layer is None else f"layer {layer!r}"
        if layer is None and self.kind not in CLASS:
            raise MangoError(f"readout {self} does not apply to {where}; use logit or prob")
        if layer is not None and self.kind in CLASS:
            raise MangoError(f"readout {self} applies to class:N only, not to {where}")
        if self.kind in SPIKING and layer is not None and not spiking:
            raise MangoError(f"readout {self} needs a spiking layer, but {where} is not spiking; use mean or relu")
        if self.kind == "count" and steps is not None and self.stop > steps:
            raise MangoError(f"readout {self}: window ends after the {steps} time steps of the network")

    def reduce(self, trace: torch.Tensor) -> torch.Tensor:
        """``[T, B, ...]`` -> ``[B, ...]``: over time steps only, each series on its own.

        Each unit's series of one image is first laid out contiguously (``[B, ..., T]``): a float
        sum's rounding depends on how the reduced values lie in memory, so this way a response is
        the same bits whatever other units and images share the trace (measured: summing over
        dim 0 of ``[T, 8, 12]`` and of ``[T, 8, 1]`` differs by 4e-8 for rates of 12x12 positions).
        """
        series = trace.movedim(0, -1).contiguous()
        if self.kind == "count":
            return series[..., self.start:self.stop].contiguous().mean(-1)
        if self.kind == "latency":
            t = series.shape[-1]
            fired = series > 0
            first = torch.where(fired.any(-1), fired.float().argmax(-1).to(series.dtype),
                                torch.full_like(series[..., 0], t))
            return 1 - first / t
        # relu: the ReLU is applied per position before averaging (see TorchTarget); rate+drive: the rate
        return series.mean(-1)
