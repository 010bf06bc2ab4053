"""Train a generator (``sngan28``, ``sngan32``, ``sngan32-lite``, ``vqvae``) on a dataset, reproducibly.

``train_generator(...)`` -- or ``mango train gen`` / ``python -m mango.training.gan`` -- writes into
``out_dir``:

* ``generator.safetensors`` + ``generator.json``: the final weights and their card (architecture, latent space,
  image space, dataset, training settings, GFLOP/image, final losses), loadable as ``mnist-sngan`` (sngan28),
  ``cifar-sngan`` / ``cifar-sngan-lite`` or ``cifar-vqvae`` with ``--generator-weights``;
* ``checkpoint/``: the resumable state every ``checkpoint_every`` steps (:mod:`mango.training.state`);
* ``samples/step_NNNNNN.png``: a sample grid every ``sample_every`` steps (fixed latents; for the VQ-VAE,
  originals each followed by their reconstructions);
* ``metrics.csv``: the losses of every step.

Why it resumes bit-exactly: the batches are a pure function of the seed and the step (``BatchOrder``), the
latents come from the trainer's own generator, and the checkpoint holds the weights, the optimizer moments
and every random state -- so ``steps=4`` then ``resume=True, steps=8`` equals ``steps=8`` in one go (on the
same machine and thread count: float reductions differ across those).
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from ..checkpoints import save_weights
from . import state
from .common import BatchOrder, CsvLog, input_fitter, load_batch, positive, progress, seed_everything, training_data
from .recipes import ARCHS, make_recipe

__all__ = ["ARCHS", "train_generator"]


def train_generator(arch: str, dataset: str, steps: int, out_dir: str | Path, batch: int = 64,
                    lr: float | None = None, checkpoint_every: int = 500, sample_every: int = 500,
                    resume: bool = False, seed: int = 0, resize: bool = False, options: dict | None = None,
                    limit: int | None = None, root: str | Path | None = None, download: bool = False,
                    device: str = "cpu", show_progress: bool = True) -> dict:
    """Train generator ``arch`` on ``dataset`` (train split) for ``steps`` generator updates into ``out_dir``.

    ``lr`` defaults to the arch's (2e-4 GAN, 1e-3 VQ-VAE); ``options`` change the architecture (``width``,
    ``d_width``, ``dim``, ``n_dis``; VQ-VAE: its constructor's keywords); ``limit`` trains on a seeded random
    subset; ``resize`` pads/resizes images and repeats channels when the dataset's shape is not the arch's.
    ``resume`` continues the checkpoint in ``out_dir`` (same settings; ``steps`` may grow).
    Returns the card, the weights path, this session's loss history and the trained generator module.
    """
    recipe = make_recipe(arch, options)
    for name, value in (("steps", steps), ("batch", batch), ("checkpoint_every", checkpoint_every),
                        ("sample_every", sample_every)):
        positive(name, value)
    lr = recipe.lr if lr is None else lr
    positive("lr", lr)
    out = Path(out_dir)
    ckpt = state.folder(out, resume)
    ds = training_data(dataset, "train", limit, seed, root, download)
    fit = input_fitter(dataset, ds[0][0].shape, recipe.image_space, resize, f"arch {arch!r}")
    order = BatchOrder(len(ds), batch, seed)
    settings = {"arch": arch, "dataset": dataset, "batch": batch, "lr": lr, "seed": seed, "resize": resize,
                "options": recipe.options, "limit": limit, "steps": steps, "checkpoint_every": checkpoint_every,
                "sample_every": sample_every}

    seed_everything(seed)
    models = {k: m.to(device).train() for k, m in recipe.build_checked().items()}
    opts = recipe.optimizers(models, lr)
    rngs = {"latent": torch.Generator().manual_seed(seed + 1)}
    step = state.load(ckpt, models, opts, rngs, settings) if resume else 0
    (out / "samples").mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / "metrics.csv", ("step", *recipe.losses), keep_until=step if resume else None)
    fixed = fit(load_batch(ds, order.epoch(0)[:16])[0]).to(device)
    history: list[dict] = []
    start = time.time()
    with progress(show_progress) as bar:
        task = bar.add_task(arch, total=steps, completed=step, info="")
        while step < steps:
            per = recipe.batches_per_step
            reals = [fit(load_batch(ds, order.indices(step * per + k))[0]).to(device) for k in range(per)]
            losses = recipe.step(models, opts, reals, rngs["latent"])
            step += 1
            history.append({"step": step, **losses})
            log.append(history[-1])
            bar.update(task, advance=1, info=" ".join(f"{k} {v:.3f}" for k, v in losses.items()))
            if step % sample_every == 0 or step == steps:
                save_image(recipe.preview(models, fixed), out / "samples" / f"step_{step:06d}.png", nrow=8)
            if step % checkpoint_every == 0 or step == steps:
                state.save(ckpt, step, models, opts, rngs, settings)

    module, fields = recipe.export(models)
    card = {"arch": arch, **fields,
            "dataset": {"name": dataset, "split": "train", "images": len(ds), "resize": resize},
            "training": settings | {"steps": step, "device": device,
                                    "seconds_this_session": round(time.time() - start, 1)},
            "metrics": _final_losses(out / "metrics.csv", recipe.losses), "torch": torch.__version__}
    path = out / "generator.safetensors"
    save_weights(module, path, card)
    return {"weights": path, "card": card, "history": history, "module": module}


def _final_losses(path: Path, names: tuple[str, ...], last: int = 50) -> dict[str, float]:
    """Mean of each loss over the last ``last`` logged steps (from the CSV, so resumed runs count too)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))[-last:]
    return {f"{k}_last{len(rows)}": round(sum(float(r[k]) for r in rows) / max(len(rows), 1), 5) for k in names}


def main() -> None:
    """``python -m mango.training.gan ARGS`` = ``mango train gen ARGS`` (one argument parser, the CLI's)."""
    from ..cli.main import app

    app(["train", "gen", *sys.argv[1:]], prog_name="mango")


if __name__ == "__main__":
    main()
