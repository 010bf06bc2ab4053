"""Units of a torch model: addressed by name, read out over time, optionally noisy.

A target is one unit (``lif2:12``, responses ``[B, 1]``) or several units of one
layer (``lif2:*``, ``lif2:3-7``, ``class:1,3``; responses ``[B, U]``), measured by
the same forward pass. Each column of a multi-unit target equals, bit for bit,
the responses of the one-unit target of that unit (its seeded noise included).

Two ways to measure, same responses:

* networks built on :class:`SpikingSequential` are simulated only up to the
  target layer, computing only the target channels (the fast path);
* any other module is run whole with a forward hook on the target layer that
  records the units at every call (one call per time step, or one time-major
  call in multi-step networks); the forward is cut short after the target
  layer's last call.
"""
from __future__ import annotations

import weakref
from typing import cast

import torch
from torch import nn

from ..errors import MangoError, unknown
from . import drive
from .base import Target
from .layers import LayerInfo, first_tensor, probe_layers
from .noise import Noise
from .readout import Readout
from .sequential import SpikingSequential
from .spec import TargetSpec


class _Done(Exception):
    """Raised by the hook to stop the forward after the target layer."""


_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def layers_of(model: nn.Module, input_shape: tuple[int, ...]) -> list[LayerInfo]:
    """:func:`probe_layers`, once per model, input shape, time steps and set of submodules: targets on many
    units of one network (analyses, a sweep over its layers) share one probe forward."""
    key = (tuple(input_shape), getattr(model, "num_steps", None), bool(getattr(model, "multi_step", False)),
           tuple((n, id(m)) for n, m in model.named_modules()))
    try:
        per_model = _PROBES.setdefault(model, {})
    except TypeError:  # an unhashable module (it defines __eq__ without __hash__): not cached
        return probe_layers(model, input_shape)
    if key not in per_model:
        if len(per_model) >= 4:  # a few shapes / step counts per model; a changed model drops out this way
            per_model.pop(next(iter(per_model)))
        per_model[key] = probe_layers(model, input_shape)
    return per_model[key]


def _kind(value: object) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__.split('.')[0]}.{t.__qualname__}"


def class_outputs(out: object, batch: int, name: str) -> torch.Tensor:
    """A model's forward output checked to be class outputs ``[batch, classes]`` (a one-line MangoError if not)."""
    want = f"a torch.Tensor of class outputs [batch, classes] = [{batch}, N]"
    if not isinstance(out, torch.Tensor):
        hint = ("; a spiking network returns its spike rates as one tensor, not (spikes, membrane)"
                if isinstance(out, (tuple, list)) else "")
        raise MangoError(f"model {name!r} returned a {_kind(out)} from forward; expected {want}{hint}")
    if out.ndim != 2 or out.shape[0] != batch or out.shape[1] < 1:
        raise MangoError(f"model {name!r} returned class outputs of shape {list(out.shape)} for {batch} images; "
                         f"expected {want}")
    return out if out.is_floating_point() else out.float()


def declared_shape(model: nn.Module, input_shape: tuple[int, ...] | None, name: str) -> tuple[int, int, int]:
    """The input shape ``(C, H, W)``: given, or declared by the model (``input_space`` / ``input_shape``)."""
    if input_shape is None:
        space = getattr(model, "input_space", None)
        input_shape = space.shape if space is not None else getattr(model, "input_shape", None)
    if input_shape is None:
        raise MangoError(f"model {name!r} does not declare its input: pass input_shape=(C, H, W) or set input_space "
                         "= mango.imagespace.ImageSpace((C, H, W), mean, std) or input_shape on the module")
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise MangoError(f"input shape of {name!r} must be three positive integers (C, H, W), got {input_shape!r}")
    return shape


class TorchTarget(Target):
    """Units of ``model`` (a :class:`TargetSpec`: one unit or a set of one layer's units), reduced by a
    :class:`Readout`; ``units`` is the resolved tuple, one response column per unit."""

    units: tuple[int, ...]

    def __init__(self, model: nn.Module, spec: str | TargetSpec, input_shape: tuple[int, ...] | None = None,
                 name: str = "torch-module", readout: str | Readout | None = None, noise: str | Noise | None = None,
                 fast: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise MangoError(f"target network {name!r} is a {_kind(model)}, not a torch nn.Module")
        self.model = model.eval()
        self.spec = TargetSpec.parse(spec) if isinstance(spec, str) else spec
        space = getattr(model, "input_space", None)
        self.input_shape = declared_shape(model, input_shape, name)
        self._input_space = space if space is not None and tuple(space.shape) == self.input_shape else None
        self.name = name
        self.steps = getattr(model, "num_steps", None)
        self.noise = Noise.parse(noise) if isinstance(noise, str) or noise is None else noise
        self.fast = fast and isinstance(model, SpikingSequential)
        if self.noise and self.noise.per_step and not isinstance(model, SpikingSequential):
            raise MangoError(f"noise {self.noise} needs a network simulated step by step by MANGO (mnist-snn, "
                             f"cifar-snn); {name!r} supports input:SD only")
        self.layers: dict[str, LayerInfo] = {i.name: i for i in layers_of(model, self.input_shape)}
        self._rng = torch.Generator().manual_seed(0)
        self._resolve(Readout.parse(readout) if isinstance(readout, str) or readout is None else readout)

    def _resolve(self, readout: Readout | None) -> None:
        spec = self.spec
        if spec.layer is None:
            with torch.inference_mode():
                n = class_outputs(self.model(torch.zeros(1, *self.input_shape)), 1, self.name).shape[1]
            self._set_units(spec.resolve(n, self.name))
            self.readout = readout or Readout("logit")
            self.readout.check(None, False, self.steps)
            return
        if spec.layer not in self.layers:
            raise unknown(f"layer of {self.name!r}", spec.layer, self.layers)
        info = self.layers[spec.layer]
        self._set_units(spec.resolve(info.units, self.name))
        if spec.position is not None:
            if len(info.shape) != 3:
                raise MangoError(f"layer {spec.layer!r} has output shape {list(info.shape)}: no spatial position")
            y, x = spec.position
            if y >= info.shape[1] or x >= info.shape[2]:
                raise MangoError(f"position {y},{x} out of range for layer {spec.layer!r} "
                                 f"of spatial size {info.shape[1]}x{info.shape[2]}")
        self.readout = readout or Readout("rate" if info.spiking else "mean")
        self.readout.check(spec.layer, info.spiking, self.steps)
        self._info = info
        self._module = dict(self.model.named_modules())[spec.layer]
        if self.readout.drive:
            self._theta = drive.threshold(self._module, spec.layer)
            if self.fast and not drive.spikes_from_membrane(self._module):  # spikes read from the layer itself
                if self.noise and self.noise.per_step:
                    raise MangoError(f"readout rate+drive with noise {self.noise} needs layer {spec.layer!r} to be "
                                     "an snnTorch Leaky with the default delayed reset and binary spikes")
                self.fast = False

    def _set_units(self, units: tuple[int, ...]) -> None:
        self.units = units
        self._index = torch.tensor(units)

    def reseed(self, key: int) -> None:
        self._rng.manual_seed(key)

    # -- measuring -------------------------------------------------------------------------------
    @torch.inference_mode()
    def responses(self, images: torch.Tensor) -> torch.Tensor:
        return self._measure(images)[0]

    @torch.inference_mode()
    def evaluate(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Responses and the optimizer's values, both ``[B, U]``: with readout ``rate+drive`` the rates and
        the drive values of :mod:`mango.targets.drive` (one simulation), else the responses twice."""
        r, v = self._measure(images)
        return r, r if v is None else v

    def _measure(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        images = self.check_images(images)
        if self.noise and self.noise.input_sd > 0 and not self.fast:
            images = images + self.noise.input_sd * torch.randn(images.shape, generator=self._rng, dtype=images.dtype)
        if self.spec.layer is None:
            return self._class_output(images), None
        if self.readout.drive:
            spikes, peaks = self._fast_drive(images) if self.fast else self._hooked_drive(images)
            rate = self.readout.reduce(spikes)
            return rate, drive.values(rate, peaks.amax(0), self._theta)
        trace = self._fast_trace(images) if self.fast else self._hooked_trace(images)
        return self.readout.reduce(trace), None

    @property
    def _simulated(self) -> SpikingSequential:
        """The model on the fast path (``self.fast`` holds only for a :class:`SpikingSequential`)."""
        return cast(SpikingSequential, self.model)

    def _class_output(self, images: torch.Tensor) -> torch.Tensor:
        if self.fast and self.readout.kind == "logit":
            last = self._simulated.order[-1]
            rates = self._simulated.simulate(images, last, self.units, noise=self.noise, rng=self._rng)
            return Readout("mean").reduce(rates.float())  # [T, B, U] -> [B, U], each unit's series alone
        if self.fast:
            out = self._simulated.simulate(images, noise=self.noise, rng=self._rng).mean(0)
        else:
            out = class_outputs(self.model(images), len(images), self.name)
        out = out.softmax(1) if self.readout.kind == "prob" else out
        return out.index_select(1, self._index.to(out.device)).float()

    def _reduce_positions(self, v: torch.Tensor) -> torch.Tensor:
        """``[T, B, U, ...]`` of the units' channels -> ``[T, B, U]``: one position, or the mean over
        positions (of each channel's positions laid out contiguously, so a channel is reduced in the
        same order whatever other channels are measured with it)."""
        if self.readout.kind == "relu":
            v = v.clamp_min(0)
        if v.ndim == 5 and self.spec.position is not None:
            return v[:, :, :, self.spec.position[0], self.spec.position[1]]
        return v.contiguous().flatten(3).mean(3) if v.ndim > 3 else v

    def _fast_trace(self, images: torch.Tensor) -> torch.Tensor:
        # sub-batches of ``micro_batch`` images: the membranes of a large batch fall out of the CPU
        # caches (measured on cifar-snn spiking1, T=20: 168 img/s at batch 16, 110 at 64, 84 at 256)
        step = getattr(self.model, "micro_batch", None) or len(images)
        traces = [self._simulated.simulate(part, self.spec.layer, self.units,
                                           membrane=self.readout.needs_membrane, noise=self.noise, rng=self._rng)
                  for part in images.split(step)]
        return self._reduce_positions(torch.cat(traces, 1).float())

    def _fast_drive(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Spikes ``[T, B, U]`` (reduced over positions, as for ``rate``) and membrane peaks over positions
        ``[T, B, U]``, from one simulation recording the membrane: a spike is ``membrane > threshold``, the
        comparison ``snntorch.Leaky`` makes (and :func:`~mango.targets.sequential._lif_inference`)."""
        step = getattr(self.model, "micro_batch", None) or len(images)
        spikes, peaks = [], []
        for part in images.split(step):
            mem = self._simulated.simulate(part, self.spec.layer, self.units, membrane=True, noise=self.noise,
                                           rng=self._rng).float()
            spikes.append(torch.gt(mem, self._theta).to(mem.dtype))
            peaks.append(drive.peak_positions(mem, self.spec.position))
        return self._reduce_positions(torch.cat(spikes, 1)), torch.cat(peaks, 1)

    def _hooked_drive(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spikes = self._hooked_trace(images)
        return spikes, torch.cat(self._peaks)

    def _hooked_trace(self, images: torch.Tensor) -> torch.Tensor:
        self._chunks: list[torch.Tensor] = []
        self._peaks: list[torch.Tensor] = []
        self._batch = len(images)
        # hooked only while measuring, so several targets can share one model
        handle = self._module.register_forward_hook(self._hook)
        try:
            self.model(images)
        except _Done:
            return torch.cat(self._chunks)
        finally:
            handle.remove()
        raise MangoError(f"layer {self.spec.layer!r} of {self.name!r} ran {len(self._chunks)} times in this forward "
                         f"but {self._info.calls} times when probed; a network must run each layer equally often "
                         "for every input (a spiking one reads num_steps at every call)")

    def _hook(self, module: nn.Module, inputs: object, output: object) -> None:
        if self.readout.drive:  # the spikes, and the membrane's peak over positions
            self._peaks.append(drive.peak_positions(self._channels(self._membrane(module, output)).float(),
                                                    self.spec.position))
            t = first_tensor(output)
        else:
            t = self._membrane(module, output) if self.readout.needs_membrane else first_tensor(output)
        self._chunks.append(self._reduce_positions(self._channels(t).float()))
        if len(self._chunks) == self._info.calls:
            raise _Done

    def _membrane(self, module: nn.Module, output: object) -> torch.Tensor:
        t = output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else getattr(module, "v_seq", None)
        if not isinstance(t, torch.Tensor):
            raise MangoError(f"layer {self.spec.layer!r} does not expose its membrane potential")
        return t

    def _channels(self, t: object) -> torch.Tensor:
        """One call's output of the target layer -> ``[steps, B, U, ...]``: the units' channels, checked."""
        if not isinstance(t, torch.Tensor):
            raise MangoError(f"layer {self.spec.layer!r} of {self.name!r} returned a {_kind(t)}, not a torch.Tensor")
        got = list(t.shape)
        if self._info.time == "flat" and t.ndim and t.shape[0] % self._batch == 0:
            t = t.view(-1, self._batch, *t.shape[1:])
        elif self._info.time == "step":
            t = t.unsqueeze(0)
        if t.ndim < 2 or t.shape[1] != self._batch or tuple(t.shape[2:]) != self._info.shape:
            raise MangoError(f"layer {self.spec.layer!r} of {self.name!r} gave an output of shape {got} for "
                             f"{self._batch} images; when probed it gave {list(self._info.shape)} per image")
        return t.index_select(2, self._index.to(t.device)) if t.ndim > 2 else t[:, :, None]  # one value: one unit

    def describe(self) -> dict:
        d = super().describe()
        d.update(spec=str(self.spec), readout=str(self.readout), noise=str(self.noise or "none"))
        if self.spec.multi:  # (one-unit targets describe themselves as before: resumed runs compare this)
            d["units"] = list(self.units)
        if self.steps:
            d["num_steps"] = self.steps
        if self.spec.layer is not None:
            d["spiking"] = self.layers[self.spec.layer].spiking
        return d
