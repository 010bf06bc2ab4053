"""``mango train gen | target``: the training API (:mod:`mango.training`) on the command line.

Training modules are imported inside the commands, so ``mango --help`` stays fast.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

app: typer.Typer = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Train generators and target networks (reproducible, resumable).")
from .main import _options, err, out, user_errors  # noqa: E402  (after app: main.py imports this module to register it)


@contextmanager
def _resumable(out_dir: Path) -> Iterator[None]:
    """Ctrl-C says how to continue (the last checkpoint is intact: checkpoints are replaced atomically)."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"interrupted; continue from the last checkpoint in {out_dir / 'checkpoint'} with the same "
                  "command plus --resume", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None



# options shared by `train gen` and `train target`
BATCH = typer.Option(64, help="images per batch")
RESUME = typer.Option(False, help="continue the checkpoint in --out (same settings)")
LIMIT = typer.Option(None, help="train on a seeded random subset of this many images")
ROOT = typer.Option(None, help="dataset folder (default: $MANGO_DATA_DIR)")
DOWNLOAD = typer.Option(False, help="download the dataset if missing (torchvision datasets)")
DEVICE = typer.Option("cpu", help="torch device, e.g. cuda")
QUIET = typer.Option(False, help="no progress bar")

@app.command()
def gen(
    arch: str = typer.Option(..., help="sngan28, sngan32, sngan32-lite or vqvae"),
    dataset: str = typer.Option(..., help="digits, mnist, fashion-mnist, cifar10 or imagenet"),
    steps: int = typer.Option(..., help="generator updates in total (a resume may raise it)"),
    out_dir: Path = typer.Option(..., "--out", help="output folder: weights, card, checkpoint, samples, metrics"),
    batch: int = BATCH,
    lr: Optional[float] = typer.Option(None, help="Adam learning rate (default: 2e-4 GAN, 1e-3 VQ-VAE)"),
    checkpoint_every: int = typer.Option(500, help="steps between resumable checkpoints"),
    sample_every: int = typer.Option(500, help="steps between sample grids (PNG)"),
    seed: int = typer.Option(0, help="seed of initialization, data order and latents"),
    resume: bool = RESUME,
    resize: bool = typer.Option(False, help="pad/resize images and repeat channels to fit the arch"),
    opt: list[str] = typer.Option([], "--opt", help="architecture option KEY=VALUE (width, d_width, dim, n_dis; "
                                  "VQ-VAE keywords), repeatable"),
    limit: Optional[int] = LIMIT,
    root: Optional[Path] = ROOT,
    download: bool = DOWNLOAD,
    device: str = DEVICE,
    quiet: bool = QUIET,
) -> None:
    """Train a generator; writes generator.safetensors + its JSON card into --out."""
    from ..training.gan import train_generator

    with user_errors(), _resumable(out_dir):
        result = train_generator(arch, dataset, steps, out_dir, batch=batch, lr=lr, checkpoint_every=checkpoint_every,
                                 sample_every=sample_every, resume=resume, seed=seed, resize=resize,
                                 options=_options(opt), limit=limit, root=root, download=download, device=device,
                                 show_progress=not quiet)
        card = result["card"]
        losses = ", ".join(f"{k} {v:.4f}" for k, v in card["metrics"].items())
        out.print(f"{arch}: {card['training']['steps']} steps, {card['gflop_per_image']} GFLOP/image; {losses}\n"
                  f"weights -> {result['weights']} (samples in {Path(out_dir) / 'samples'})", highlight=False)


@app.command()
def target(
    arch: str = typer.Option(..., help="mnist-snn, cifar-snn, cifar-spiking-resnet18, alexnet, resnet18 or vgg16"),
    dataset: str = typer.Option(..., help="digits, mnist, fashion-mnist, cifar10 or imagenet"),
    epochs: int = typer.Option(..., help="epochs in total (a resume may raise it)"),
    out_dir: Path = typer.Option(..., "--out", help="output folder: epoch_NNN.safetensors, metrics.csv, checkpoint"),
    batch: int = BATCH,
    lr: Optional[float] = typer.Option(None, help="Adam learning rate, cosine-annealed (default: per arch)"),
    seed: int = typer.Option(0, help="seed of data order and dropout (and snnTorch initialization)"),
    steps: Optional[int] = typer.Option(None, help="time steps of a spiking network (default: its own)"),
    resume: bool = RESUME,
    resize: bool = typer.Option(False, help="pad/resize images and repeat channels to fit the network"),
    limit: Optional[int] = LIMIT,
    eval_limit: Optional[int] = typer.Option(None, help="held-out images measured per epoch (default: all)"),
    root: Optional[Path] = ROOT,
    download: bool = DOWNLOAD,
    device: str = DEVICE,
    quiet: bool = QUIET,
) -> None:
    """Train a target network; one checkpoint per epoch and its held-out accuracy in metrics.csv."""
    from ..training.targets import train_target

    with user_errors(), _resumable(out_dir):
        result = train_target(arch, dataset, epochs, out_dir, batch=batch, lr=lr, seed=seed, num_steps=steps,
                              resize=resize, resume=resume, limit=limit, eval_limit=eval_limit, root=root,
                              download=download, device=device, show_progress=not quiet)
        accs = " ".join(f"{a:.3f}" for a in result["accuracy_per_epoch"])
        out.print(f"{arch}: held-out accuracy per epoch {accs}\nlast epoch -> {result['weights']}; "
                  f"metrics in {Path(out_dir) / 'metrics.csv'}", highlight=False)
