"""Pictures of a run: the MEI, the convergence plot and the GIF of the best image."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from .history import best_rows, best_so_far, latents  # noqa: E402


def to_pil(image: torch.Tensor, scale: int = 8) -> Image.Image:
    """A ``[C, H, W]`` image in [0, 1] as an upscaled PIL image (nearest, pixels stay visible)."""
    arr = (image.clamp(0, 1) * 255).round().byte().cpu()
    arr = arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST)


def convergence_plot(history: pd.DataFrame, path: Path, title: str) -> None:
    """Best response so far vs number of queries, over every measured response."""
    r = history["response"].to_numpy(dtype=float)
    q = history["query"].to_numpy() + 1
    best = best_so_far(history)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.scatter(q, r, s=3, alpha=0.25, color="tab:gray", label="each query")
    ax.step(q, best, where="post", color="tab:orange", lw=2, label="best so far")
    ax.set_xlabel("number of queries")
    ax.set_ylabel("response")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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


def top_grid(history: pd.DataFrame, decode, path: Path, dim: int, n: int = 16) -> None:
    """The ``n`` best distinct images of the run as one PNG grid, best first (row-major)."""
    from torchvision.utils import make_grid

    rows = best_rows(history, n, dim)
    grid = make_grid(decode(latents(rows, dim)), nrow=int(np.ceil(np.sqrt(len(rows)))), padding=1, pad_value=0.5)
    to_pil(grid, scale=4).save(path)


def evolution_gif(history: pd.DataFrame, decode, path: Path, dim: int) -> None:
    """Animated GIF of the best image each time it improved (decoded again from the history)."""
    frames = [to_pil(img) for img in decode(latents(improvements(history), dim))]
    durations = [200] * (len(frames) - 1) + [1500]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
