"""Some output channels of a conv or linear layer, the same bits however many are asked for.

A target on units of one layer of a :class:`~mango.targets.sequential.SpikingSequential`
network computes only their channels of the last channel-mixing layer before it, and
a multi-unit target must give each unit exactly the responses its one-unit target
gives. But a conv's rounding depends on how many output channels one call computes
(oneDNN picks its kernel by the channel count; measured: up to 8e-7 apart for 1x1
and 3x3 convs on small batches), and a linear layer of one row is a GEMV where more
rows are a GEMM; a membrane at the threshold would then spike in one and not the
other. So a channel is never computed by a call whose width depends on the request:

* conv: in fixed aligned blocks of :data:`BLOCK` channels (0-15, 16-31, ...), each
  block its own call: a unit's block is the same call in a one-unit target and in
  every multi-unit one. A block costs what one channel costs (oneDNN works on 8 or
  16 output channels per register block; measured on cifar-snn conv1, 32 images,
  one thread: 4.0 ms for 1 channel, 3.7 ms for 16, 6.7 ms for 32), while one call
  per channel would make 32 channels cost 16x what they cost in one call.
* linear: one row per call (a GEMV; 0.02 ms for 32 images x 1600 inputs).
"""
from __future__ import annotations

from typing import cast

import torch
from torch import nn

#: output channels per conv call (aligned: block g holds channels g*BLOCK .. (g+1)*BLOCK - 1)
BLOCK = 16


def sliceable(m: nn.Module) -> bool:
    """A layer whose output channels can be computed apart: linear, or a conv without groups."""
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)


def channels(m: nn.Module, x: torch.Tensor, units: tuple[int, ...]) -> torch.Tensor:
    """Output channels ``units`` of the linear or conv layer ``m`` on ``x``, in that order: ``[N, U, ...]``."""
    if isinstance(m, nn.Linear):
        rows = [nn.functional.linear(x, m.weight[u:u + 1], None if m.bias is None else m.bias[u:u + 1])
                for u in units]
        return rows[0] if len(rows) == 1 else torch.cat(rows, 1)
    conv = cast(nn.Conv2d, m)
    count = conv.weight.shape[0]
    blocks = sorted({u // BLOCK for u in units})
    parts = []
    for g in blocks:
        lo, hi = g * BLOCK, min(count, (g + 1) * BLOCK)
        parts.append(conv._conv_forward(x, conv.weight[lo:hi], None if conv.bias is None else conv.bias[lo:hi]))
    out = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    start = {g: i * BLOCK for i, g in enumerate(blocks)}  # only the layer's last block may be short: it comes last
    local = [start[u // BLOCK] + u % BLOCK for u in units]
    if local == list(range(out.shape[1])):
        return out
    return out.index_select(1, torch.tensor(local, device=out.device))
