"""Declared image spaces: exact conversion between a generator's images and a network's input."""
import pytest
import torch

import mango
from mango import MangoError
from mango.imagespace import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, ImageSpace, adapter

PIXELS = ImageSpace((3, 32, 32))
CIFAR = ImageSpace((3, 32, 32), CIFAR10_MEAN, CIFAR10_STD)


def test_same_space_needs_no_conversion():
    assert adapter(CIFAR, ImageSpace((3, 32, 32), CIFAR10_MEAN, CIFAR10_STD)) is None


def test_pixels_to_normalized_and_back():
    x = torch.rand(4, 3, 32, 32)
    to_cifar = adapter(PIXELS, CIFAR)
    y = to_cifar(x)
    m, s = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(y, (x - m) / s)
    torch.testing.assert_close(adapter(CIFAR, PIXELS)(y), x)


def test_resize_only_when_the_network_declares_it():
    imagenet = ImageSpace((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD, resize=True)
    y = adapter(CIFAR, imagenet)(torch.zeros(2, 3, 32, 32))
    assert y.shape == (2, 3, 224, 224)
    # a CIFAR-normalized zero image is the CIFAR mean colour; in ImageNet space that is (mean_c - mean_i) / std_i
    want = (torch.tensor(CIFAR10_MEAN) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(y[0, :, 100, 100], want)
    with pytest.raises(MangoError, match=r"makes images of shape \[3, 32, 32\] but net expects \[3, 64, 64\] and does "
                                         r"not resize"):
        adapter(CIFAR, ImageSpace((3, 64, 64)), "gen", "net")


@pytest.mark.parametrize("kw, needle", [
    (dict(shape=(3, 8, 8), mean=(0.5,) * 3), "both mean and std"),
    (dict(shape=(3, 8, 8), mean=(0.5,) * 2, std=(0.2,) * 2), "has 2 values for 3 channels"),
    (dict(shape=(8, 8)), r"shape must be three positive integers \(C, H, W\), got \(8, 8\)"),
    (dict(shape=(3, 0, 8)), "shape must be three positive integers"),
    (dict(shape=(3, 8.5, 8)), "shape must be three positive integers"),
    (dict(shape="3x8x8"), "shape must be three positive integers"),
    (dict(shape=(1, 8, 8), mean=(float("nan"),), std=(0.2,)), "mean must be a list of finite numbers"),
    (dict(shape=(1, 8, 8), mean=(0.5,), std=(float("inf"),)), "std must be a list of finite numbers"),
    (dict(shape=(1, 8, 8), mean=("0.5",), std=(0.2,)), "mean must be a list of finite numbers"),
    (dict(shape=(1, 8, 8), mean=(0.5,), std=(0.0,)), "std must be > 0"),
    (dict(shape=(1, 8, 8), resize="yes"), "resize must be true or false, got 'yes'"),
])
def test_bad_declarations(kw, needle):
    with pytest.raises(MangoError, match=needle):
        ImageSpace(**kw)


def test_run_adapts_a_pixel_generator_to_a_normalized_network(tmp_path):
    """A [0, 1] generator drives a CIFAR-normalized network: what the network sees is normalized."""
    seen = []

    class Probe(torch.nn.Module):
        input_space = CIFAR

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3)

        def forward(self, x):
            seen.append(x.clone())
            return self.conv(x).mean((2, 3))

    class Grey(mango.Generator):
        name, space, image_shape = "grey", mango.LatentSpace(2, 8, (0.0, 1.0)), (3, 32, 32)

        def decode(self, z):
            return torch.full((len(z), 3, 32, 32), 0.5)

    mango.run(generator=Grey(), target=mango.TorchTarget(Probe(), "conv:0"), optimizer="random", budget=8,
              out=tmp_path / "r", progress=False)
    want = (0.5 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    torch.testing.assert_close(seen[-1][0, :, 0, 0], want)
