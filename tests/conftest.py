"""Shared fixtures: the embedded default models, loaded once per session."""
from __future__ import annotations

import pytest
import torch

import mango
from mango.generators import GENERATORS
from mango.targets import MODELS


@pytest.fixture(scope="session")
def snn():
    return MODELS.create("mnist-snn")


@pytest.fixture(scope="session")
def sngan():
    return GENERATORS.create("mnist-sngan")


@pytest.fixture(scope="session")
def digits():
    from mango.data import mnist_digits

    return mnist_digits("test")


@pytest.fixture()
def tiny_setup():
    """An untrained generator/target pair: fast, for loop mechanics."""
    from mango.generators.sngan import SNGANGenerator
    from mango.targets.spiking_cnn import SpikingCNN

    torch.manual_seed(0)
    gen = mango.TorchGenerator(SNGANGenerator(dim=8, width=16), mango.LatentSpace(8, 16, (-4.0, 4.0)),
                               (1, 28, 28), "tiny-gen")
    net = SpikingCNN(channels=(4, 8), num_steps=5)
    return gen, net
