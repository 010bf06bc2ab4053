"""snnTorch spiking CNNs: the embedded MNIST default and the MANGO release CIFAR-10 network.

Both are :class:`SpikingSequential` networks of ``snntorch.Leaky`` neurons
(beta 0.9, fast-sigmoid surrogate) shown the static image at each of
``num_steps`` steps; the output is the spike *rate* (count / T) per class.
"""
from __future__ import annotations

from pathlib import Path

import snntorch as snn
from snntorch import surrogate
from torch import nn

from ..checkpoints import (
    WEIGHTS_DIR,
    build_from_card,
    has_card,
    load_state,
    load_weights,
    read_card,
    release_file,
    untrained,
)
from ..data import MNIST_MEAN, MNIST_STD
from ..errors import MangoError
from ..imagespace import CIFAR10_MEAN, CIFAR10_STD, ImageSpace
from .base import MODELS
from .sequential import SpikingSequential


class SpikingCNN(SpikingSequential):
    """conv1 -> pool1 -> lif1 -> conv2 -> pool2 -> lif2 -> fc1 -> lif3; input plain pixels in [0, 1]."""

    order = ("conv1", "pool1", "lif1", "conv2", "pool2", "lif2", "flatten", "fc1", "lif3")

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
        super().__init__(num_steps, ImageSpace((in_channels, image_size, image_size)), mean, std)
        c1, c2 = channels
        grad = surrogate.fast_sigmoid(slope=25)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise MangoError(f"image_size must be at least 16 (two 5x5 convs, each followed by 2x2 pooling), got "
                             f"{image_size}")
        self.conv1 = nn.Conv2d(in_channels, c1, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.lif1 = snn.Leaky(beta=beta, spike_grad=grad)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.lif2 = snn.Leaky(beta=beta, spike_grad=grad)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c2 * side * side, n_classes)
        self.lif3 = snn.Leaky(beta=beta, spike_grad=grad)


class MangoCifarSNN(SpikingSequential):
    """The MANGO release CIFAR-10 spiking CNN (the paper's "SNNTorch CNN", ~72 % accuracy).

    Input: a CIFAR-10 image normalized with the CIFAR-10 mean/std. The module
    that runs after conv0 is ``MaxPool2d(3, 2, padding=1)`` (the original code
    named two pools ``pool0``, so the second definition won); the class
    readout is the spike count of ``final_spiking`` over the steps.
    """

    order = ("conv0", "pool0", "spiking0", "conv1", "pool1", "spiking1", "flatten", "linear1", "spiking2",
             "linear2", "relu", "final_spiking")

    def __init__(self, num_steps: int = 20, beta: float = 0.9, n_classes: int = 10) -> None:
        super().__init__(num_steps, ImageSpace((3, 32, 32), CIFAR10_MEAN, CIFAR10_STD))
        grad = surrogate.fast_sigmoid(slope=10)
        self.conv0 = nn.Conv2d(3, 200, 5)
        self.pool0 = nn.MaxPool2d(3, 2, padding=1)
        self.spiking0 = snn.Leaky(beta=beta, spike_grad=grad)
        self.conv1 = nn.Conv2d(200, 64, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.spiking1 = snn.Leaky(beta=beta, spike_grad=grad)
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(1600, 100)
        self.spiking2 = snn.Leaky(beta=beta, spike_grad=grad)
        self.linear2 = nn.Linear(100, n_classes)
        self.relu = nn.ReLU()
        self.final_spiking = snn.Leaky(beta=beta, spike_grad=grad)


EMBEDDED = WEIGHTS_DIR / "mnist_spiking_cnn.safetensors"
RELEASE_NAME = "snn_cifar10.pt"


@MODELS.register("mnist-snn")
def mnist_snn(weights: str | None = None) -> SpikingCNN:
    """Embedded snnTorch spiking CNN for 28x28 digits (LIF beta 0.9, T=20 steps)."""
    if weights == "none":  # the embedded architecture, untrained
        return untrained(SpikingCNN, **read_card(EMBEDDED)["architecture"]).eval().use_channels_last()
    path = weights or EMBEDDED
    net = build_from_card(SpikingCNN, path)
    return load_weights(net, path).eval().use_channels_last()


@MODELS.register("cifar-snn")
def cifar_snn(weights: str | None = None) -> MangoCifarSNN:
    """MANGO release snnTorch CNN for CIFAR-10 (normalized input, T=20 steps; loads snn_cifar10.pt unchanged)."""
    if weights == "none":
        return untrained(MangoCifarSNN).eval().use_channels_last()
    path = Path(weights) if weights else release_file(RELEASE_NAME)
    # a .safetensors from `mango train target --arch cifar-snn` carries its time steps in its card
    net = build_from_card(MangoCifarSNN, path, required=False) if has_card(path) else MangoCifarSNN()
    return load_state(net, path).eval().use_channels_last()


# default weights: a MANGO release checkpoint (see mango.checkpoints); a function attribute, read with getattr
cifar_snn.release_file = RELEASE_NAME  # type: ignore[attr-defined]
