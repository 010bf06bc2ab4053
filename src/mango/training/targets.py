"""Train a target network on a dataset, keeping every epoch: ``train_target`` / ``mango train target``.

Archs: ``mnist-snn`` (:class:`SpikingCNN`), ``cifar-snn`` (:class:`MangoCifarSNN`), ``cifar-spiking-resnet18``
and the torchvision ``alexnet``, ``resnet18``, ``vgg16`` (from the ``MODELS`` factories with weights
``"none"``: the same modules, so every checkpoint loads back with ``--model ARCH --model-weights FILE``).

Why every epoch is kept: how an MEI changes while a network learns is a question MANGO should answer, so
``out_dir`` gets ``epoch_001.safetensors`` (+ JSON card) after each epoch, and ``metrics.csv`` one row per
epoch with its held-out accuracy. ``checkpoint/`` holds the resumable state (weights, Adam moments, random
states); the data order is a function of (seed, epoch) and the learning rate a closed-form cosine over
``epochs``, so a resumed run equals an uninterrupted one.

Loss: cross-entropy on the class outputs -- logits for classic networks, spike *counts* (rate x T, snnTorch's
``ce_count_loss`` idea) for the snnTorch networks, trained by surrogate-gradient BPTT.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import read_card, save_weights
from ..errors import MangoError, unknown
from ..targets import MODELS
from ..targets.base import model_input_space
from ..targets.sequential import SpikingSequential
from ..targets.spiking_cnn import MangoCifarSNN, SpikingCNN
from . import state
from .common import BatchOrder, CsvLog, input_fitter, load_batch, positive, progress, seed_everything, training_data

if TYPE_CHECKING:
    from .common import ImageData

ARCHS: tuple[str, ...] = ("mnist-snn", "cifar-snn", "cifar-spiking-resnet18", "alexnet", "resnet18", "vgg16")
#: Adam learning rates that train each from scratch (the deep plain ANNs need a smaller one)
DEFAULT_LR = {"mnist-snn": 2e-3, "cifar-snn": 1e-3, "cifar-spiking-resnet18": 1e-3, "alexnet": 1e-4,
              "resnet18": 1e-3, "vgg16": 1e-4}
FIELDS = ("epoch", "train_loss", "heldout_accuracy", "lr", "seconds", "weights")


def build_target(arch: str, num_steps: int | None = None) -> tuple[nn.Module, dict]:
    """A freshly initialized network ``arch`` and the architecture keywords its loader reads from the card."""
    positive("num_steps", num_steps, allow_none=True)
    if arch == "mnist-snn":
        kwargs: dict[str, Any] = {"in_channels": 1, "image_size": 28, "channels": [12, 32], "n_classes": 10,
                                  "beta": 0.9, "num_steps": num_steps or 20}
        return SpikingCNN(**kwargs), kwargs
    if arch == "cifar-snn":
        return MangoCifarSNN(num_steps=num_steps or 20), {"num_steps": num_steps or 20}
    if arch not in ARCHS:
        raise unknown("target arch", arch, ARCHS)
    if arch not in MODELS:  # a model family whose module is not installed (yet)
        raise MangoError(f"target arch {arch!r} is not registered in this install; available: "
                         f"{', '.join(a for a in ARCHS if a in MODELS or a.endswith('-snn'))}")
    net = MODELS.create(arch, "none")
    if num_steps is not None:
        if not hasattr(net, "num_steps"):
            raise MangoError(f"num_steps={num_steps} given, but {arch!r} is not a spiking network with time steps")
        net.num_steps = num_steps  # type: ignore[assignment]  # a plain int on the module
    return net, ({"num_steps": net.num_steps} if hasattr(net, "num_steps") else {})


def class_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class outputs as logits: snnTorch networks return spike rates, so scale them to counts (rate x T)."""
    out = model(x)
    return out * model.num_steps if isinstance(model, SpikingSequential) else out


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Held-out accuracy of argmax class outputs (spike counts for spiking networks) on tensors ``x``, ``y``."""
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch].to(x.device)).sum())
                  for i in range(0, len(x), batch))
    return correct / len(x)


def evaluate(model: nn.Module, ds: ImageData, fit: Callable[[torch.Tensor], torch.Tensor], batch: int,
             device: str) -> float:
    """:func:`accuracy` over a dataset, loaded and fitted chunk by chunk (any size)."""
    correct = 0
    for i in range(0, len(ds), batch):
        x, y = load_batch(ds, torch.arange(i, min(i + batch, len(ds))))
        correct += round(accuracy(model, fit(x).to(device), y.to(device), batch) * len(y))
    return correct / len(ds)


def train_target(arch: str, dataset: str, epochs: int, out_dir: str | Path, batch: int = 64,
                 lr: float | None = None, seed: int = 0, num_steps: int | None = None, resize: bool = False,
                 resume: bool = False, limit: int | None = None, eval_limit: int | None = None,
                 root: str | Path | None = None, download: bool = False, device: str = "cpu",
                 show_progress: bool = True) -> dict:
    """Train ``arch`` on ``dataset`` for ``epochs`` (Adam + cosine), saving weights and held-out accuracy per epoch.

    ``num_steps`` sets a spiking network's time steps; ``limit``/``eval_limit`` use seeded random subsets of the
    train/held-out splits; ``resize`` fits images of another shape (see :func:`~.common.reshape_images`);
    ``resume`` continues ``out_dir``'s checkpoint (same settings; ``epochs`` may grow). The seed sets the data
    order and dropout, and the initialization of the snnTorch networks (the ``MODELS`` factories seed theirs 0).
    Returns the last epoch's card, its weights path, the accuracy per epoch and the model.
    """
    positive("epochs", epochs)
    positive("batch", batch)
    lr = DEFAULT_LR.get(arch, 1e-3) if lr is None else lr
    positive("lr", lr)
    out = Path(out_dir)
    ckpt = state.folder(out, resume)
    seed_everything(seed)
    model, arch_kwargs = build_target(arch, num_steps)
    model.to(device)
    ds = training_data(dataset, "train", limit, seed, root, download)
    held_out = training_data(dataset, "val" if dataset == "imagenet" else "test", eval_limit, seed, root, download)
    space = model_input_space(model)
    fit = input_fitter(dataset, ds[0][0].shape, space, resize, f"arch {arch!r}")
    order = BatchOrder(len(ds), batch, seed)
    settings = {"arch": arch, "dataset": dataset, "batch": batch, "lr": lr, "seed": seed, "num_steps": num_steps,
                "resize": resize, "limit": limit, "eval_limit": eval_limit, "epochs": epochs}
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    done = state.load(ckpt, {"model": model}, {"adam": opt}, {}, settings) if resume else 0
    out.mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / "metrics.csv", FIELDS, keep_until=done if resume else None)
    accs = [float(r["heldout_accuracy"]) for r in log.rows]
    per_epoch = math.ceil(len(ds) / batch)
    card: dict = {}
    path = out / f"epoch_{done:03d}.safetensors"
    with progress(show_progress) as bar:
        task = bar.add_task(arch, total=epochs * per_epoch, completed=done * per_epoch, info="")
        for epoch in range(done, epochs):
            start, total = time.time(), 0.0
            rate = lr * (1 + math.cos(math.pi * epoch / epochs)) / 2
            for group in opt.param_groups:
                group["lr"] = rate
            model.train()
            perm = order.epoch(epoch)
            for i in range(0, len(ds), batch):
                x, y = load_batch(ds, perm[i:i + batch])
                loss = F.cross_entropy(class_logits(model, fit(x).to(device)), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(y)
                bar.update(task, advance=1, info=f"epoch {epoch + 1} loss {loss.item():.3f}")
            accs.append(evaluate(model, held_out, fit, max(batch, 256), device))
            path = out / f"epoch_{epoch + 1:03d}.safetensors"
            card = {"arch": arch, "model": type(model).__name__, "architecture": arch_kwargs,
                    "input_space": space.to_dict(),
                    "dataset": {"name": dataset, "train_images": len(ds), "heldout_images": len(held_out),
                                "resize": resize},
                    "training": settings | {"optimizer": "Adam + cosine", "device": device,
                                            "loss": "cross-entropy on class outputs (spike counts for snnTorch)"},
                    "epoch": epoch + 1, "heldout_accuracy": accs[-1], "accuracy_per_epoch": accs,
                    "torch": torch.__version__}
            save_weights(model, path, card)
            log.append({"epoch": epoch + 1, "train_loss": total / len(ds), "heldout_accuracy": accs[-1],
                        "lr": rate, "seconds": round(time.time() - start, 2), "weights": path.name})
            state.save(ckpt, epoch + 1, {"model": model}, {"adam": opt}, {}, settings)
            bar.update(task, info=f"epoch {epoch + 1} held-out acc {accs[-1]:.3f}")
    if not card and path.is_file():  # resumed a run that had already finished
        card = read_card(path)
    return {"weights": path, "card": card, "accuracy_per_epoch": accs, "model": model.eval()}


def main() -> None:
    """``python -m mango.training.targets ARGS`` = ``mango train target ARGS``."""
    from ..cli.main import app

    app(["train", "target", *sys.argv[1:]], prog_name="mango")


if __name__ == "__main__":
    main()
