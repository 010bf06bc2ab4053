"""The drive objective (readout ``rate+drive``): a silent spiking unit still gives the optimizer a slope.

A unit that has not spiked answers 0 to every image, so a gradient-free optimizer searches a flat
landscape until it happens on an image that makes it fire. With ``--readout rate+drive`` the
*response* (what the run records, reports and plots) stays the spike rate, and the *value* the
optimizer is told for each image is

    value = rate                   if the unit spiked (rate > 0)
    value = -d / (d + theta)       if it did not; d = theta - peak >= 0

where ``peak`` is the unit's highest membrane potential over the T steps and its positions (the
closest it came to a spike anywhere in its channel; one position for ``LAYER:K@Y,X``) and ``theta``
the layer's firing threshold (1 if it is 0). A spike is ``membrane > theta``, so a silent image
has ``d >= 0`` and a value in (-1, 0], and an image with a spike has a value of at least
1 / (T * positions) > 0: **the values are strictly ordered**, every image with a spike above every
image without one, and among silent images the one that brought the membrane closer to threshold
above the other. The hyperbolic squash does not saturate: membranes 55 and 20 below a threshold of
1 are -0.982 and -0.952 (a sigmoid would round both to -1.0 in float64, and the slope would be lost).

**Only until the first spike.** Once any image of the run has made the unit fire, the optimizer is told
the rates themselves (:func:`until_spike`): silent images are then all 0, as with readout ``rate``. Measured
on mnist-snn ``lif2:23`` (sep-CMA-ES, 5 seeds), ranking the silent images by their drive after the unit had
fired cost a sixth of the 250-query score (median 0.075 against 0.091 for the plain rate): the peak membrane
anywhere in the channel is not the mean rate the search then climbs.

Where this lives: :meth:`mango.targets.Target.evaluate` returns ``(responses, values)``;
the loop records the responses and tells the optimizer the values (see
:func:`mango.experiment.measure.evaluate`). For any other readout the values are the responses.

The peak is read from the same simulation as the spikes, exactly, on both measuring paths:
MANGO's simulation of a :class:`~mango.targets.sequential.SpikingSequential` (membrane recorded,
spikes = ``membrane > threshold``, as ``snntorch.Leaky`` decides them) and the forward hook on any
other spiking layer (its spikes and its membrane: snnTorch's ``(spk, mem)``, SpikingJelly's
``v_seq``; a post-reset membrane is the pre-reset one as long as the unit has not spiked, the only
case where the peak is used).
"""
from __future__ import annotations

import snntorch as snn
import torch
from torch import nn

from ..errors import MangoError


def threshold(module: nn.Module, layer: str) -> float:
    """The firing threshold of a spiking layer: snnTorch ``threshold`` or SpikingJelly ``v_threshold``."""
    for attr in ("threshold", "v_threshold"):
        value = getattr(module, attr, None)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            return float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    raise MangoError(f"readout rate+drive needs the firing threshold of layer {layer!r}: one number in its "
                     "'threshold' (snnTorch) or 'v_threshold' (SpikingJelly) attribute; use rate or membrane")


def spikes_from_membrane(m: nn.Module) -> bool:
    """An ``snntorch.Leaky`` whose spikes are exactly ``membrane > threshold`` of the membrane it returns:
    delayed reset (the returned membrane is the one before the reset), binary spikes, no inhibition or
    quantized state, one threshold."""
    return (isinstance(m, snn.Leaky) and bool(m.reset_delay) and not m.inhibition and not m.state_quant
            and float(m.graded_spikes_factor) == 1.0 and m.threshold.numel() == 1)


def peak_positions(membrane: torch.Tensor, position: tuple[int, int] | None) -> torch.Tensor:
    """``[T, B, U, ...]`` membranes of the units' channels -> ``[T, B, U]``: the highest over the positions (or
    the one position). A max is exact, so a unit's peak does not depend on the units measured with it."""
    if membrane.ndim == 5 and position is not None:
        return membrane[:, :, :, position[0], position[1]]
    return membrane.flatten(3).amax(3) if membrane.ndim > 3 else membrane


def values(rate: torch.Tensor, peak: torch.Tensor, theta: float) -> torch.Tensor:
    """What the optimizer is told, ``[B, U]``: the rate where the unit spiked, else ``-d / (d + theta)`` with
    ``d = theta - peak`` (float64; see the module note). A NaN membrane gives NaN (the loop's worst)."""
    rate, peak = rate.double(), peak.double()
    scale = abs(theta) or 1.0
    d = (theta - peak).clamp_min(0)
    silent = -d / (d + scale)
    return torch.where(rate > 0, rate, torch.where(peak.isnan(), peak, silent))


def until_spike(responses: torch.Tensor, values: torch.Tensor, spiked: bool) -> torch.Tensor:
    """What the optimizer is told for a batch: the drive ``values`` while the unit has not fired in the run, the
    ``responses`` from the batch with its first spike on (``spiked``: an earlier image made it fire). For any
    other readout the values are the responses, so this changes nothing there."""
    return responses if spiked or bool((responses > 0).any()) else values
