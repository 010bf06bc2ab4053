"""Datasets: names, offline errors, the digits split, normalization constants. Nothing is downloaded."""
from __future__ import annotations

import pytest
import torch

from mango import MangoError
from mango.data import DATASETS, IMAGE_SPACES, MNIST_MEAN, MNIST_STD, image_space, load_dataset
from mango.imagespace import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD


def test_names_and_unknown_name():
    assert set(DATASETS) == {"digits", "mnist", "fashion-mnist", "cifar10", "imagenet"}
    with pytest.raises(MangoError, match="unknown dataset 'svhn'; allowed: digits, mnist, fashion-mnist") as err:
        load_dataset("svhn", "train")
    assert "cifar10" in str(err.value) and "imagenet" in str(err.value)
    with pytest.raises(MangoError, match="unknown dataset"):
        image_space("svhn")
    with pytest.raises(MangoError, match="allowed: train, test"):
        load_dataset("cifar10", "val")
    with pytest.raises(MangoError, match="allowed: train, val"):
        load_dataset("imagenet", "test")


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_dataset_offline_is_one_line_error(name, tmp_path):
    with pytest.raises(MangoError) as err:
        load_dataset(name, "test", root=tmp_path)
    msg = str(err.value)
    assert f"is not under {tmp_path}" in msg and "download=True" in msg and "--download" in msg
    assert "\n" not in msg


def test_default_root_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MANGO_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(MangoError, match=f"is not under {tmp_path / 'data'}"):
        load_dataset("mnist", "train")
    with pytest.raises(MangoError, match=f"is not under {tmp_path / 'data' / 'imagenet'}.*cannot be downloaded"):
        load_dataset("imagenet", "val")


def test_imagenet_is_an_image_folder(tmp_path):
    from PIL import Image

    with pytest.raises(MangoError, match="class subfolders"):
        load_dataset("imagenet", "val", root=tmp_path)
    for label, cls in enumerate(["n01440764", "n01443537"]):
        (tmp_path / "val" / cls).mkdir(parents=True)
        Image.new("RGB", (300, 260), (255 * label, 128, 0)).save(tmp_path / "val" / cls / "a.png")
    ds = load_dataset("imagenet", "val", root=tmp_path)
    assert len(ds) == 2
    image, label = ds[1]
    assert image.shape == (3, 224, 224) and label == 1
    torch.testing.assert_close(image[:, 100, 100], torch.tensor([1.0, 128 / 255, 0.0]))


def test_digits_split(digits):
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (4000, 1000)
    image, label = test[0]
    assert image.shape == (1, 28, 28) and isinstance(label, int)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    torch.testing.assert_close(test.images, digits[0])  # the same held-out split as mnist_digits
    assert torch.bincount(test.labels).tolist() == [100] * 10
    # the split is disjoint: no held-out image appears in the training images
    train_keys = {bytes(x.numpy()) for x in train.images}
    assert not any(bytes(x.numpy()) in train_keys for x in test.images)


def test_normalization_constants():
    assert (MNIST_MEAN, MNIST_STD) == (0.1307, 0.3081)
    assert image_space("mnist").mean == (0.1307,) and image_space("mnist").std == (0.3081,)
    assert image_space("digits") == image_space("mnist")
    assert image_space("fashion-mnist").mean == (0.2860,) and image_space("fashion-mnist").std == (0.3530,)
    assert image_space("cifar10").mean == CIFAR10_MEAN == (0.4914, 0.4822, 0.4465)
    assert image_space("cifar10").std == CIFAR10_STD == (0.2471, 0.2435, 0.2616)
    assert image_space("imagenet").mean == IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert image_space("imagenet").std == IMAGENET_STD == (0.229, 0.224, 0.225)
    assert [IMAGE_SPACES[n].shape for n in DATASETS] == [(1, 28, 28)] * 3 + [(3, 32, 32), (3, 224, 224)]
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(image_space("cifar10").to_unit(image_space("cifar10").from_unit(x)), x)
