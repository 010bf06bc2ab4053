"""Discover the addressable layers of a torch model with one probe forward."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import MangoError, first_line


@dataclass(frozen=True)
class LayerInfo:
    """One hookable module: its per-image output shape, units, calls per forward and kind.

    ``time`` says how a call's output holds time steps: ``"step"`` (one step or
    a static layer, ``[B, ...]``), ``"major"`` (multi-step, ``[T, B, ...]``) or
    ``"flat"`` (multi-step folded into the batch, ``[T * B, ...]``).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    calls: int
    spiking: bool
    time: str = "step"

    @property
    def units(self) -> int:
        return self.shape[0] if self.shape else 1


def first_tensor(output: object) -> object:
    """Spiking layers return ``(spikes, membrane)``; the spikes are the response (callers check it is a tensor)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def is_spiking(model: nn.Module, name: str, module: nn.Module) -> bool:
    declared = getattr(model, "spiking_layers", None)
    if declared is not None:
        return name in declared
    return any(c.__name__ in ("SpikingNeuron", "BaseNode") for c in type(module).__mro__)


def _layout(shape: tuple[int, ...], batch: int, steps: int | None) -> tuple[str, tuple[int, ...]]:
    if steps and len(shape) >= 2 and shape[0] == steps and shape[1] == batch:
        return "major", shape[2:]
    if steps and shape and shape[0] == steps * batch and steps > 1:
        return "flat", shape[1:]
    return "step", shape[1:]


@torch.inference_mode()
def probe_layers(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """Every named submodule whose forward ran, in execution order, with its output layout.

    Multi-step models (``multi_step = True`` and ``num_steps``) are probed with
    a batch size other than T, so time-major outputs can be told apart.
    """
    steps = getattr(model, "num_steps", None) if getattr(model, "multi_step", False) else None
    batch = 3 if steps == 2 else 2
    seen: dict[str, list] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, inp, out, name=name):
            t = first_tensor(out)
            if isinstance(t, torch.Tensor):
                seen.setdefault(name, [type(mod).__name__, tuple(t.shape), 0])[2] += 1

        handles.append(module.register_forward_hook(hook))
    try:
        model(torch.zeros(batch, *input_shape))
    except (RuntimeError, TypeError, ValueError, IndexError, AttributeError) as exc:
        if isinstance(exc, MangoError):
            raise
        dims = ", ".join(map(str, input_shape))
        raise MangoError(f"model {type(model).__name__} fails on its declared input [batch, {dims}]: "
                         f"{type(exc).__name__}: {first_line(exc)[:200]}; does it declare the right input_space "
                         "/ input_shape?") from exc
    finally:
        for h in handles:
            h.remove()
    modules = dict(model.named_modules())
    infos = []
    for n, (k, s, c) in seen.items():
        time, shape = _layout(s, batch, steps)
        infos.append(LayerInfo(n, k, shape, c, is_spiking(model, n, modules[n]), time))
    return infos
