"""The embedded default target: a small snnTorch spiking CNN for 28x28 digits.

conv1 -> pool1 -> lif1 -> conv2 -> pool2 -> lif2 -> fc1 -> lif3, LIF neurons
(``snntorch.Leaky``, beta 0.9, fast-sigmoid surrogate). The static image is
shown at every one of ``num_steps`` time steps, so conv1/pool1 are computed
once per image instead of ``num_steps`` times (same spikes, ~2x faster).
Membrane state is passed explicitly and starts at zero in every forward:
no state leaks between batches or between models (unlike
``snntorch.utils.reset``, which resets every Leaky in the process).
The forward returns the output spike *rate* (count / num_steps) per class.
"""
from __future__ import annotations

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from ..checkpoints import WEIGHTS_DIR, load_weights, read_card
from ..data import MNIST_MEAN, MNIST_STD
from .base import MODELS


class SpikingCNN(nn.Module):
    """Spiking CNN classifier; input ``[B, C, H, W]`` in [0, 1], output rates ``[B, classes]``."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        channels: tuple[int, int] = (12, 32),
        n_classes: int = 10,
        beta: float = 0.9,
        num_steps: int = 20,
        mean: float = MNIST_MEAN,
        std: float = MNIST_STD,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.num_steps = num_steps
        self.input_shape = (in_channels, image_size, image_size)
        self.register_buffer("mean", torch.tensor(mean), persistent=False)
        self.register_buffer("std", torch.tensor(std), persistent=False)
        grad = surrogate.fast_sigmoid(slope=25)
        side = ((image_size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=grad)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=grad)
        self.fc1 = nn.Linear(c2 * side * side, n_classes)
        self.lif3 = snn.Leaky(beta=beta, spike_grad=grad)

    #: names of the modules whose outputs are spikes (their first output)
    spiking_layers = ("lif1", "lif2", "lif3")

    def forward(self, x: torch.Tensor, num_steps: int | None = None) -> torch.Tensor:
        steps = num_steps or self.num_steps
        cur1 = self.pool1(self.conv1((x - self.mean) / self.std))
        mem1 = torch.zeros_like(cur1)
        mem2 = mem3 = None
        counts = None
        for _ in range(steps):
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.pool2(self.conv2(spk1))
            if mem2 is None:
                mem2 = torch.zeros_like(cur2)
            spk2, mem2 = self.lif2(cur2, mem2)
            cur3 = self.fc1(spk2.flatten(1))
            if mem3 is None:
                mem3 = torch.zeros_like(cur3)
            spk3, mem3 = self.lif3(cur3, mem3)
            counts = spk3 if counts is None else counts + spk3
        return counts / steps


@MODELS.register("mnist-snn")
def mnist_snn(weights: str | None = None) -> SpikingCNN:
    """Embedded snnTorch spiking CNN for 28x28 digits (LIF beta 0.9, T=20 steps)."""
    path = weights or WEIGHTS_DIR / "mnist_spiking_cnn.safetensors"
    card = read_card(path)
    return load_weights(SpikingCNN(**card["architecture"]), path).eval()
