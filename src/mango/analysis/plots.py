"""Figure helpers shared by the analyses; matplotlib is imported only when a figure is drawn."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

#: figure resolution: sharp in print, small enough to embed many in one HTML report
DPI = 150


class Figures:
    """pyplot's ``subplots`` without pyplot: bare :class:`~matplotlib.figure.Figure` objects on the Agg
    canvas, so an analysis never switches the user's matplotlib backend or leaves figures open."""

    @staticmethod
    def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
                 layout: Literal["constrained", "compressed", "tight"] | None = None, **kwargs: Any) -> tuple:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize, layout=layout)
        return fig, fig.subplots(nrows, ncols, **kwargs)


def figures() -> type[Figures]:
    return Figures


def save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def show_image(ax, image: torch.Tensor) -> None:
    """A ``[C, H, W]`` image in [0, 1] on ``ax``, without ticks (gray for one channel)."""
    arr = image.detach().clamp(0, 1).cpu().numpy()
    if arr.shape[0] == 1:
        ax.imshow(arr[0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.transpose(arr, (1, 2, 0)), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def colours(n: int) -> list:
    """``n`` distinct colours (tab10, then tab20 beyond 10); exactly ``n``, so ``zip(..., strict=True)`` holds."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


@dataclass
class Analysis:
    """What an analysis computed (``tables``) and wrote (``figures``: PNG, ``files``: CSV)."""

    tables: dict[str, pd.DataFrame]
    figures: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def table(self) -> pd.DataFrame:
        """The main table (the first)."""
        return next(iter(self.tables.values()))

    def write_tables(self, out: Path, prefix: str) -> None:
        """Each table as ``out/PREFIX[_NAME].csv`` (CSV: readable everywhere, no extra dependency)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for i, (name, df) in enumerate(self.tables.items()):
            path = out / (f"{prefix}.csv" if i == 0 else f"{prefix}_{name}.csv")
            df.to_csv(path, index=False)
            self.files.append(path)
