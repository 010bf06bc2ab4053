"""The batched forward of a scan on one device: 32 units of cifar-snn spiking1 at T=20, batched or one by one.

    python benchmarks/gpu_forward.py --device cuda [--reps 5] [--units 32] [--per-unit 16] [--out FILE]

Why: issue 13 asked for a batched scan answering >= 5x the queries/s of 32 single-unit runs one after
another, and for the batched forward to be measured on a GPU where a session has one. On the project's CPU
a batch is no cheaper per image (docs/benchmarks.md, "Batched neurons"); this measures the part of a scan
step that batching can speed up -- the cifar-vqvae decode plus the cifar-snn forward up to ``spiking1``
(MANGO's own simulation, ``TorchTarget.responses``), responses copied back to the CPU -- on ``--device``:

* one after another: per unit, its own one-unit target measures its images (1: ``codes``; ``--per-unit``:
  sepcma-like), each with its own decode: what 32 single-unit runs do per step;
* batched: one decode and one forward of every unit's images by one target on all the units, each unit
  reading its own column: what the scan does when it measures a step *together*.

The library has no device option, so the script moves the generator's and the network's modules to the
device. Two settings of the simulation: ``mango`` (its CPU-tuned defaults: sub-batches of 16 images, about
32 images per layer call) and ``large`` (the whole batch at once, up to ``--chunk-images`` per layer call).
Every way's responses (spike rates: equal rates are equal spike counts) are compared, image by image, with
the first one-after-another row's and, for the first 8 units, with the CPU's (column ``diff``: how many
differ). Prints a table and writes a JSON record (``--out``).

Run on an H200 with only torch installed there: the pure-Python wheels of snntorch, spikingjelly and loguru
installed with ``pip install --no-deps --target``, ``PYTHONPATH=src``, and ``MANGO_RELEASE_DIR`` pointing at a
copy of the release checkpoints (``results/gpu_forward-h200.json``; docs/benchmarks.md, "Batched neurons").
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from mango.generators.vqvae import cifar_vqvae
from mango.targets import TorchTarget, make_model


def timed(fn, reps: int, sync) -> tuple[float, torch.Tensor]:
    """Median seconds of ``fn()`` over ``reps`` runs after two warm-ups, and its (last) output."""
    for _ in range(2):
        out = fn()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--units", type=int, default=32, help="units 0..N-1 of the layer")
    ap.add_argument("--layer", default="spiking1")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--per-unit", type=int, default=16, help="images per unit per step, sepcma-like rows")
    ap.add_argument("--chunk-images", type=int, default=4096, help="images per layer call, setting 'large'")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the docs' CPU numbers: 1)")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 convs on CUDA (default: exact fp32)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_forward.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    gen = cifar_vqvae()
    net = make_model("cifar-snn")
    net.num_steps = args.steps
    units, k, layer = list(range(args.units)), args.per_unit, args.layer
    # targets probe their layers with a CPU forward: built before the modules move
    solo = [TorchTarget(net, f"{layer}:{u}", name="cifar-snn") for u in units]
    multi = TorchTarget(net, f"{layer}:0-{args.units - 1}", name="cifar-snn")
    rng = torch.Generator().manual_seed(0)
    z1 = torch.randint(0, gen.space.size, (args.units, gen.space.dim), generator=rng)  # one image per unit
    zk = torch.randint(0, gen.space.size, (args.units * k, gen.space.dim), generator=rng)  # k per unit
    n_ref = min(args.units, 8)
    with torch.inference_mode():  # on the CPU: the first units' responses to their first image
        ref = {n: torch.cat([solo[u].responses(gen.decode(z[u * n:u * n + 1])) for u in range(n_ref)]).flatten()
               for n, z in ((1, z1), (k, zk))}
    gen.model.to(dev)
    net.to(dev)

    def apart(z: torch.Tensor, n: int):
        return lambda: torch.cat([solo[u].responses(gen.decode(z[u * n:(u + 1) * n])).cpu()
                                  for u in units]).flatten()

    def together(z: torch.Tensor, n: int):
        own = torch.arange(args.units * n, device=dev)
        return lambda: multi.responses(gen.decode(z))[own, own // n].cpu()

    ways = [("one after another", 1, apart(z1, 1)), ("one after another", k, apart(zk, k)),
            ("batched", 1, together(z1, 1)), ("batched", k, together(zk, k))]
    settings = {"mango": (net.micro_batch, net.chunk_images), "large": (0, args.chunk_images)}
    rows, base = [], {}  # base: the first one-after-another responses, per images per unit
    for setting, (micro, chunk) in settings.items():
        net.micro_batch, net.chunk_images = micro, chunk  # instance attributes over the class defaults
        for way, n, fn in ways:
            seconds, r = timed(fn, args.reps, sync)
            base.setdefault(n, r)
            images = args.units * n
            rows.append({"setting": setting, "way": way, "images_per_unit": n, "images": images,
                         "calls": args.units if way != "batched" else 1, "seconds": seconds,
                         "images_per_s": images / seconds, "ms_per_image": 1e3 * seconds / images,
                         "mismatches_vs_one_after_another": int((r != base[n]).sum()),
                         "mismatches_vs_cpu": int((r[:n_ref * n:n] != ref[n]).sum()),
                         "mean_rate": float(r.mean())})
    for row in rows:
        alone = next(a for a in rows if a["setting"] == row["setting"] and a["way"] == "one after another"
                     and a["images_per_unit"] == row["images_per_unit"])
        row["speedup_vs_one_after_another"] = row["images_per_s"] / alone["images_per_s"]
    def best(way: str, n: int) -> float:  # the faster setting of a way
        return max(r["images_per_s"] for r in rows if r["way"] == way and r["images_per_unit"] == n)

    summary = {f"speedup_best_{n}_per_unit": best("batched", n) / best("one after another", n) for n in (1, k)}

    print(f"{args.units} units of cifar-snn {layer} (T={args.steps}) + cifar-vqvae decode on {device_name(dev)}, "
          f"median of {args.reps}")
    head = f"{'setting':7} {'way':18} {'img/unit':>8} {'images':>6} {'img/s':>10} {'ms/img':>8} {'x':>7} {'diff':>5}"
    print(head)
    for r in rows:
        print(f"{r['setting']:7} {r['way']:18} {r['images_per_unit']:>8} {r['images']:>6} {r['images_per_s']:>10,.1f} "
              f"{r['ms_per_image']:>8.3f} {r['speedup_vs_one_after_another']:>6.2f}x "
              f"{r['mismatches_vs_one_after_another'] + r['mismatches_vs_cpu']:>5}")
    for n in (1, k):
        print(f"{n:>2} image(s) per unit, batched vs one after another, each in its faster setting: "
              f"{summary[f'speedup_best_{n}_per_unit']:.2f}x")
    record = {"benchmark": "gpu_forward: batched scan forward vs one-unit targets one after another",
              "device": args.device, "device_name": device_name(dev), "torch": torch.__version__,
              "cuda": torch.version.cuda, "python": platform.python_version(), "torch_threads": args.threads,
              "tf32": args.tf32 if cuda else None, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "load_avg": os.getloadavg()[0], "model": "cifar-snn", "generator": "cifar-vqvae", "layer": layer,
              "units": args.units, "steps": args.steps, "reps": args.reps,
              "settings": {s: {"micro_batch": m, "chunk_images": c} for s, (m, c) in settings.items()},
              "rows": rows, **summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
