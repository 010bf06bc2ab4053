"""Speed of ``cifar-spiking-resnet18``: multi-step vs single-step mode, stem once vs per step.

    OMP_NUM_THREADS=1 python benchmarks/spiking_resnet_speed.py               # batch 1 and 16, T=4 (~15 s)
    python benchmarks/spiking_resnet_speed.py --batch 1 --steps 4 8 --repeats 20

Prints images/s of the class forward (inference mode, CPU or ``--device cuda``) for each
step mode x stem setting; the outputs of all four are checked to be equal.
"""
from __future__ import annotations

import argparse
import time

import torch

from mango.targets.spiking_resnet import cifar_spiking_resnet18


def images_per_s(net: torch.nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        out = net(x)  # warm-up
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            net(x)
        if x.is_cuda:
            torch.cuda.synchronize()
    return repeats * len(x) / (time.perf_counter() - start), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    p.add_argument("--steps", type=int, nargs="+", default=[4])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    net = cifar_spiking_resnet18().to(args.device)
    print(f"{'batch':>5} {'T':>3} {'mode':>6} {'stem':>9} {'img/s':>9}")
    for batch in args.batch:
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(args.device)
        for steps in args.steps:
            net.num_steps = steps
            ref = None
            for mode in ("m", "s"):
                net.set_step_mode(mode)
                for once in (True, False):
                    net.stem_once = once
                    rate, out = images_per_s(net, x, max(1, args.repeats // batch))
                    ref = out if ref is None else ref
                    same = "" if torch.allclose(out, ref, atol=1e-5) else "  OUTPUT DIFFERS"
                    print(f"{batch:>5} {steps:>3} {mode:>6} {'once' if once else 'per step':>9} {rate:>9.1f}{same}")
    net.set_step_mode("m")


if __name__ == "__main__":
    main()
