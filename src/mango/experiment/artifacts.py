"""Pictures of a run: the MEI, the convergence plot and the GIF of the best image."""
from __future__ import annotations

from typing import IO

import numpy as np
import pandas as pd
import torch
from PIL import Image

from .history import best_rows, best_so_far, latents


def to_pil(image: torch.Tensor, scale: int = 8) -> Image.Image:
    """A ``[C, H, W]`` image in [0, 1] as an upscaled PIL image (nearest, pixels stay visible)."""
    t = (image.clamp(0, 1) * 255).round().byte().cpu()
    arr = t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr)
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


def convergence_plot(history: pd.DataFrame, path: str | IO[bytes], title: str) -> None:
    """Best response so far vs number of queries, over every measured response.

    Drawn on a bare :class:`~matplotlib.figure.Figure` (Agg canvas): no pyplot, no global backend
    switch, so importing or running MANGO changes nothing in the user's matplotlib.
    """
    from matplotlib.figure import Figure

    r = history["response"].to_numpy(dtype=float)
    q = history["query"].to_numpy() + 1
    best = best_so_far(history)
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    ax.scatter(q, r, s=3, alpha=0.25, color="tab:gray", label="each query")
    ax.step(q, best, where="post", color="tab:orange", lw=2, label="best so far")
    ax.set_xlabel("number of queries")
    ax.set_ylabel("response")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")


def improvements(history: pd.DataFrame, max_frames: int = 40) -> pd.DataFrame:
    """Rows where the best response improved (at most ``max_frames``, always keeping the last)."""
    r = history["response"].to_numpy(dtype=float)
    r = np.where(np.isfinite(r), r, -np.inf)
    prev = np.concatenate([[-np.inf], np.maximum.accumulate(r)[:-1]])
    rows = history[r > prev]
    if len(rows) > max_frames:
        keep = np.unique(np.linspace(0, len(rows) - 1, max_frames).round().astype(int))
        rows = rows.iloc[keep]
    return rows


def grid(images: torch.Tensor, nrow: int, pad: int = 1, pad_value: float = 0.5) -> torch.Tensor:
    """Images ``[N, C, H, W]`` tiled row-major into one ``[C, H', W']`` image with ``pad`` pixels between.

    torchvision's ``make_grid`` does this too, but importing torchvision costs ~2 s per run.
    """
    n, c, h, w = images.shape
    rows = -(-n // nrow)
    out = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=images.dtype)
    for i, img in enumerate(images):
        r, q = divmod(i, nrow)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = img
    return out


def top_grid(history: pd.DataFrame, decode, path: str | IO[bytes], dim: int, n: int = 16) -> None:
    """The ``n`` best distinct images of the run as one PNG grid, best first (row-major)."""
    rows = best_rows(history, n, dim)
    images = decode(latents(rows, dim))
    to_pil(grid(images, nrow=int(np.ceil(np.sqrt(len(rows))))), scale=4).save(path, format="PNG")


def evolution_gif(history: pd.DataFrame, decode, path: str | IO[bytes], dim: int) -> None:
    """Animated GIF of the best image each time it improved (decoded again from the history)."""
    frames = [to_pil(img) for img in decode(latents(improvements(history), dim))]
    durations = [200] * (len(frames) - 1) + [1500]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0)
