"""SpikingJelly spiking ResNet-18 for 32x32 CIFAR-10 images: ``cifar-spiking-resnet18``.

SpikingJelly's ``SpikingResNet`` layout (BasicBlock, [2, 2, 2, 2]) with the CIFAR
stem (3x3 conv, stride 1, no max-pool), every ReLU a LIF node. Choices, and why:

* LIF ``tau=10``, ``decay_input=False``: SpikingJelly charges
  ``V <- V - (V - V_reset) / tau + X = 0.9 V + X``, the decay 0.9 and unscaled
  input current of the snnTorch networks (``Leaky(beta=0.9)``); ``decay_input=True``
  would also divide the input by tau. Hard reset to 0, ATan surrogate and
  ``detach_reset=True`` as in SpikingJelly's CIFAR-10 examples.
* input: the normalized image at each of ``num_steps`` (T) steps (direct
  encoding). conv1 + bn1 come before the first spiking layer, so they run once
  per image and their output is repeated over T (``stem_once``; the same
  outputs as repeating the image, T times fewer stem FLOPs).
* output: the mean over T of the ``fc`` output ``[T, B, 10]`` -- SpikingJelly's
  usual readout (the linear map of the time-averaged spikes); ``class:N``
  reads it as a logit (or ``prob``).
* multi-step mode (``step_mode='m'``: layers see ``[T, B, ...]``, one call per
  forward) by default; ``set_step_mode('s')`` loops over T, one call per step.
* neuron state is reset before and after every forward (no leaks between
  batches or models; memory freed).
* backend: SpikingJelly >= 2.0 has no CuPy backend and no ``set_backend``; it
  picks the neuron kernel from the tensor's device (native CUDA, else Triton,
  else torch; ``SJ_LIF_CUDA_IMPLEMENTATION=cuda|triton|torch`` overrides, read at
  import). With SpikingJelly 0.0.0.0.x, nodes are set to ``backend='cupy'`` when
  the input is on CUDA and cupy imports, ``'torch'`` otherwise.
* trainable: ``.train()`` plus surrogate gradients, like any SpikingJelly net.

No pretrained weights ship: ``weights=None``/``"none"`` is a random
initialization seeded 0; pass a ``.safetensors`` or ``.pth`` state_dict to load one.
"""
from __future__ import annotations

import importlib.util

import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

from ..checkpoints import build_from_card, has_card, load_state, untrained
from ..imagespace import CIFAR10_MEAN, CIFAR10_STD, ImageSpace
from .base import MODELS
from .sequential import positive_steps

TAU = 10.0  # decay 1 - 1/tau = 0.9


class LIFNode(neuron.LIFNode):
    """SpikingJelly's LIF node, keeping its membrane trace ``v_seq`` while a forward hook watches it.

    The ``membrane`` readout reads ``v_seq`` of the hooked layer; storing it in every
    layer all the time would cost T x the activations' memory.
    """

    @property
    def store_v_seq(self) -> bool:
        return self._store_v_seq or (self.step_mode == "m" and bool(self._forward_hooks))

    @store_v_seq.setter
    def store_v_seq(self, value: bool) -> None:
        self._store_v_seq = value


def _lif() -> LIFNode:
    return LIFNode(tau=TAU, decay_input=False, surrogate_function=surrogate.ATan(), detach_reset=True)


class BasicBlock(nn.Module):
    """SpikingJelly's spiking ResNet BasicBlock (same layers, same names): conv-bn-LIF-conv-bn, + shortcut, LIF."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = layer.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = layer.BatchNorm2d(cout)
        self.sn1 = _lif()
        self.conv2 = layer.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = layer.BatchNorm2d(cout)
        self.sn2 = _lif()
        self.downsample = None if stride == 1 and cin == cout else nn.Sequential(
            layer.Conv2d(cin, cout, 1, stride, bias=False), layer.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.sn2(self.bn2(self.conv2(self.sn1(self.bn1(self.conv1(x))))) + identity)


class CifarSpikingResNet18(nn.Module):
    """Spiking ResNet-18, CIFAR stem; ``forward`` returns the mean fc output over ``num_steps`` steps.

    Module names follow SpikingJelly's ``SpikingResNet`` (``layer2.0.sn1``, ``layer3.0.downsample.0``);
    built here rather than from ``spikingjelly...model.spiking_resnet``, which imports torchvision (1 s).
    """

    # the residual stages, added in __init__ by name
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, num_steps: int = 4, num_classes: int = 10, stem_once: bool = True) -> None:
        super().__init__()
        positive_steps(num_steps)
        # static stem, plain torch layers (left single-step by set_step_mode)
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.sn1 = _lif()
        widths = (64, 128, 256, 512)
        for i, (cin, cout) in enumerate(zip((64,) + widths[:-1], widths, strict=True)):
            stride = 1 if i == 0 else 2
            self.add_module(f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1))
        self.fc = layer.Linear(512, num_classes)
        for m in self.modules():  # SpikingResNet's initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.num_steps, self.stem_once = num_steps, stem_once
        self.input_space = ImageSpace((3, 32, 32), CIFAR10_MEAN, CIFAR10_STD)
        self.input_shape = self.input_space.shape
        self.nodes = [m for m in self.modules() if isinstance(m, LIFNode)]
        self._backend_device: torch.device | None = None
        self.set_step_mode("m")

    @property
    def multi_step(self) -> bool:
        """Layers after the stem output time-major ``[T, B, ...]`` tensors (see ``probe_layers``)."""
        return self.step_mode == "m"

    def set_step_mode(self, mode: str) -> CifarSpikingResNet18:
        """``'m'``: every layer runs once on all T steps; ``'s'``: a Python loop over the steps."""
        for child in self.children():  # not self: the wrapper's own step_mode is plain bookkeeping
            functional.set_step_mode(child, mode)
        self.step_mode = mode
        self._backend_device = None
        return self

    def reset(self) -> None:
        """Zero every node's state and drop its membrane trace (SpikingJelly < 2.0 keeps a stale one)."""
        for node in self.nodes:
            node.reset()
            node.v_seq = None

    def _select_backend(self, device: torch.device) -> None:
        """SpikingJelly 0.0.0.0.x only (nodes with ``supported_backends``): CuPy on CUDA when installed."""
        if device == self._backend_device:
            return
        self._backend_device = device
        cupy = device.type == "cuda" and importlib.util.find_spec("cupy") is not None
        for node in self.nodes:
            supported = getattr(node, "supported_backends", None)
            if supported is not None:
                node.backend = "cupy" if cupy and "cupy" in supported else "torch"

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 + bn1: ``[B, ...]`` once (``stem_once``), else on the image repeated, ``[T, B, ...]``."""
        if self.stem_once:
            return self.bn1(self.conv1(x))
        t = self.num_steps
        return self.bn1(self.conv1(x.unsqueeze(0).repeat(t, 1, 1, 1, 1).flatten(0, 1))).unflatten(0, (t, len(x)))

    def body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.sn1(x)))))
        return self.fc(self.avgpool(x).flatten(2 if self.step_mode == "m" else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized images ``[B, 3, 32, 32]`` -> class outputs ``[B, classes]`` (mean fc output over T)."""
        self._select_backend(x.device)
        self.reset()
        try:
            static = self.stem(x)
            steps = self.num_steps
            if self.step_mode == "m":
                seq = static.unsqueeze(0).expand(steps, *static.shape) if self.stem_once else static
                return self.body(seq).mean(0)
            return torch.stack([self.body(static if self.stem_once else static[t]) for t in range(steps)]).mean(0)
        finally:
            self.reset()


@MODELS.register("cifar-spiking-resnet18")
def cifar_spiking_resnet18(weights: str | None = None) -> CifarSpikingResNet18:
    """SpikingJelly spiking ResNet-18 for CIFAR-10 (LIF tau 10 = decay 0.9, T=4 multi-step; random init seeded 0)."""
    if weights and weights != "none" and has_card(weights):  # from `mango train target`: its time steps
        with torch.random.fork_rng(devices=[]):  # a reproducible init that leaves the caller's random state alone
            torch.manual_seed(0)
            net = build_from_card(CifarSpikingResNet18, weights, required=False)
    else:
        net = untrained(CifarSpikingResNet18)
    if weights and weights != "none":
        load_state(net, weights)
    return net.eval()
