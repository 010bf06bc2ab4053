"""Helpers shared by the training scripts: progress bar and seeding."""
from __future__ import annotations

import random

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def seed_everything(seed: int) -> None:
    """Training scripts are entry points, so seeding the global RNGs here is fine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("{task.fields[info]}"),
    )
