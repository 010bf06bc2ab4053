"""Any unit of a torch model, read with a forward hook.

The hook averages the hooked output over the calls of one forward, so a
spiking layer called once per time step yields its spike count / T (the
paper's normalized activity, all time steps counted), and a layer called
once yields its activation. After the target layer's last call the forward
is cut short: later layers are never computed.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import MangoError, unknown
from .base import Target
from .layers import LayerInfo, first_tensor, probe_layers
from .spec import TargetSpec


class _Done(Exception):
    """Raised by the hook to stop the forward after the target layer."""


class TorchTarget(Target):
    """Maximize one unit of ``model`` (addressed by a :class:`TargetSpec`)."""

    def __init__(self, model: nn.Module, spec: str | TargetSpec, input_shape: tuple[int, ...] | None = None,
                 name: str = "torch-module") -> None:
        self.model = model.eval()
        self.spec = TargetSpec.parse(spec) if isinstance(spec, str) else spec
        self.input_shape = tuple(input_shape or getattr(model, "input_shape"))
        self.name = name
        self.layers: dict[str, LayerInfo] = {i.name: i for i in probe_layers(model, self.input_shape)}
        self._resolve()

    def _resolve(self) -> None:
        spec = self.spec
        if spec.layer is None:
            with torch.inference_mode():
                n = self.model(torch.zeros(1, *self.input_shape)).shape[1]
            if spec.unit >= n:
                raise MangoError(f"class {spec.unit} out of range for {self.name!r}: it has {n} outputs (0..{n - 1})")
            self._calls_needed = 0
            return
        if spec.layer not in self.layers:
            raise unknown(f"layer of {self.name!r}", spec.layer, self.layers)
        info = self.layers[spec.layer]
        if spec.unit >= info.units:
            raise MangoError(f"unit {spec.unit} out of range for layer {spec.layer!r}: "
                             f"it has {info.units} units (0..{info.units - 1})")
        if spec.position is not None:
            if len(info.shape) != 3:
                raise MangoError(f"layer {spec.layer!r} has output shape {list(info.shape)}: no spatial position")
            y, x = spec.position
            if y >= info.shape[1] or x >= info.shape[2]:
                raise MangoError(f"position {y},{x} out of range for layer {spec.layer!r} "
                                 f"of spatial size {info.shape[1]}x{info.shape[2]}")
        self._calls_needed = info.calls
        self._module = dict(self.model.named_modules())[spec.layer]

    def _hook(self, module: nn.Module, inputs: object, output: object) -> None:
        v = first_tensor(output)[:, self.spec.unit]
        if v.ndim == 3:
            v = v[:, self.spec.position[0], self.spec.position[1]] if self.spec.position else v.mean((1, 2))
        elif v.ndim > 1:
            v = v.flatten(1).mean(1)
        self._sum = v.to(torch.float32, copy=True) if self._sum is None else self._sum + v
        self._calls += 1
        if self._calls == self._calls_needed:
            raise _Done

    @torch.inference_mode()
    def responses(self, images: torch.Tensor) -> torch.Tensor:
        images = self.check_images(images)
        self._sum, self._calls = None, 0
        if self.spec.layer is None:
            return self.model(images)[:, self.spec.unit:self.spec.unit + 1].float()
        # hooked only while measuring, so several targets can share one model
        handle = self._module.register_forward_hook(self._hook)
        try:
            self.model(images)
        except _Done:
            return (self._sum / self._calls)[:, None]
        finally:
            handle.remove()
        raise RuntimeError(f"layer {self.spec.layer} ran {self._calls} times, expected {self._calls_needed}")

    def describe(self) -> dict:
        d = super().describe()
        d["spec"] = str(self.spec)
        if self.spec.layer is not None:
            d["spiking"] = self.layers[self.spec.layer].spiking
        return d
