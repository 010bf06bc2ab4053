"""Discover the addressable layers of a torch model with one probe forward."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerInfo:
    """One hookable module: its per-call output shape (no batch), units and kind."""

    name: str
    kind: str
    shape: tuple[int, ...]
    calls: int
    spiking: bool

    @property
    def units(self) -> int:
        return self.shape[0] if self.shape else 1


def first_tensor(output: object) -> torch.Tensor:
    """Spiking layers return ``(spikes, membrane)``; the spikes are the response."""
    return output[0] if isinstance(output, (tuple, list)) else output


def is_spiking(model: nn.Module, name: str, module: nn.Module) -> bool:
    declared = getattr(model, "spiking_layers", None)
    if declared is not None:
        return name in declared
    return any(c.__name__ in ("SpikingNeuron", "BaseNode") for c in type(module).__mro__)


@torch.inference_mode()
def probe_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Every named submodule whose forward ran, in execution order, with output shape."""
    seen: dict[str, list] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, inp, out, name=name):
            t = first_tensor(out)
            if isinstance(t, torch.Tensor):
                seen.setdefault(name, [type(mod).__name__, tuple(t.shape[1:]), 0])[2] += 1

        handles.append(module.register_forward_hook(hook))
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    return [LayerInfo(n, k, s, c, is_spiking(model, n, modules[n])) for n, (k, s, c) in seen.items()]
