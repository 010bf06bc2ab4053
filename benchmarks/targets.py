"""Images per second of each target network, naive vs optimized, alone and behind its generator.

    python benchmarks/targets.py [--quick] [--threads 1] [--nets cifar-snn,mnist-snn,...]

*naive* is the straightforward per-step loop the original MANGO ran (every
layer at every step, the whole network) for the snnTorch CNNs, and the whole
forward pass for other networks; *optimized* is MANGO's target
(``make_target``: static layers once, layer-wise over chunks of steps, only
up to the target layer, only the target channel). Both are timed in the
same process, alternating, and the responses are checked equal. Prints a
table and writes ``benchmarks/results/targets.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import mango
from mango.targets.sequential import SpikingSequential, per_step_loop

#: (network, target spec, generator or None); hidden units of each layer kind
CASES = {
    "cifar-snn": [("spiking0:5", None), ("spiking1:7", "cifar-vqvae"), ("spiking2:3", None), ("class:3", None)],
    "mnist-snn": [("lif2:12", "mnist-sngan"), ("class:3", None)],
    "cifar-spiking-resnet18": [("layer2.0.sn1:5", None), ("layer4.1.sn2:5", None)],
    "alexnet": [("features.8:17", None)],
    "resnet18": [("layer2.0.conv1:5", None), ("class:3", None)],
}


#: benchmark weights: speed does not depend on them, and ImageNet weights need a download
WEIGHTS = {"alexnet": "none", "resnet18": "none"}


def rate(fn, x: torch.Tensor, seconds: float) -> float:
    t0 = time.perf_counter()
    fn(x)  # warm-up (allocations, oneDNN primitive choice)
    if time.perf_counter() - t0 > seconds:  # a slow cell: one more call is the measurement
        t0 = time.perf_counter()
        fn(x)
        return len(x) / (time.perf_counter() - t0)
    n, t0 = 0, time.perf_counter()
    while True:
        fn(x)
        n += len(x)
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def naive_fn(target):
    """The whole network stepped T times, the unit read from the layer's output at each step."""
    net, spec = target.model, target.spec
    layer = spec.layer or net.order[-1]

    def fn(x):
        with torch.inference_mode():
            # the original ran every layer at every step; the whole network's outputs are
            # computed here too, with the target layer's taken from the same loop
            out = per_step_loop(net, x, layer, record_only=False)
            v = out[:, :, spec.unit]
            return (v.flatten(2).mean(2) if v.ndim > 2 else v).mean(0)
    return fn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default=",".join(CASES))
    p.add_argument("--batches", default="1,4,16,64,256")
    p.add_argument("--steps", default="20,100")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seconds", type=float, default=1.5, help="minimum timing window per cell")
    p.add_argument("--channels-last", action="store_true", help="networks and inputs in channels_last memory format")
    p.add_argument("--max-call-s", type=float, default=5.0, help="stop growing the batch past calls this long")
    p.add_argument("--quick", action="store_true", help="batches 1,16,64, T=20, 0.5 s per cell")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "targets.json")
    a = p.parse_args()
    if a.quick:
        a.batches, a.steps, a.seconds = "1,16,64", "20", 0.5
    torch.set_num_threads(a.threads)
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    console = Console()
    for net_name in a.nets.split(","):
        for spec, gen_name in CASES[net_name]:
            try:
                base = mango.make_target(net_name, spec, WEIGHTS.get(net_name))
            except mango.MangoError as exc:
                console.print(f"[yellow]skip {net_name} {spec}: {exc}")
                continue
            spiking = hasattr(base.model, "num_steps")
            for steps in ([int(s) for s in a.steps.split(",")] if spiking else [None]):
                target = mango.make_target(net_name, spec, WEIGHTS.get(net_name), steps=steps) if spiking else base
                gen = mango.GENERATORS.create(gen_name) if gen_name else None
                for b in batches:
                    if b > batches[0] and rows and rows[-1]["batch"] / rows[-1]["optimized_img_s"] > a.max_call_s:
                        console.print(f"[yellow]{net_name} {spec} T={steps}: batch {b} skipped (calls over "
                                      f"{a.max_call_s} s)")
                        break
                    torch.manual_seed(0)
                    x = torch.randn(b, *target.input_shape).clamp(-2, 2)
                    if a.channels_last:
                        target.model.to(memory_format=torch.channels_last)
                        x = x.contiguous(memory_format=torch.channels_last)
                    row = {"network": net_name, "target": spec, "T": steps, "batch": b,
                           "optimized_img_s": round(rate(target.responses, x, a.seconds), 1)}
                    if isinstance(target.model, SpikingSequential):  # the per-step loop, where it takes < ~5 s
                        naive = naive_fn(target) if (steps or 0) * b <= 100 * 16 else None
                        if naive is not None:
                            torch.testing.assert_close(naive(x), target.responses(x)[:, 0], rtol=0, atol=1e-6)
                    elif spec.startswith("class:") or b > 64:
                        naive = None
                    else:  # a network MANGO does not simulate itself: naive = the whole forward, no early stop
                        naive = target.model
                    if naive is not None:
                        row["naive_img_s"] = round(rate(naive, x, a.seconds), 1)
                        row["speedup"] = round(row["optimized_img_s"] / row["naive_img_s"], 2)
                    if gen is not None:
                        z = torch.randint(0, gen.space.size, (b, gen.space.dim),
                                          generator=torch.Generator().manual_seed(0))
                        row["generator"] = gen_name
                        row["generator_img_s"] = round(rate(gen.decode, z, a.seconds), 1)
                        row["gen+target_img_s"] = round(rate(lambda z, t=target, g=gen: t.responses(g.decode(z)), z,
                                                             a.seconds), 1)
                    rows.append(row)
                    console.print(row)
    table = Table(title=f"targets: images/s, {a.threads} thread(s)")
    cols = ["network", "target", "T", "batch", "naive_img_s", "optimized_img_s", "speedup", "generator",
            "generator_img_s", "gen+target_img_s"]
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(r.get(c, "")) for c in cols])
    console.print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    a.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": a.threads,
                                 "channels_last": a.channels_last, "malloc_env": env,
                                 "torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    console.print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
