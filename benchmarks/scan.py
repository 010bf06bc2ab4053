"""Batched neurons: a scan of many units of one layer against the same runs one after another.

    python benchmarks/scan.py [--model cifar-snn] [--generator cifar-vqvae] [--layer spiking1] [--units 0-31]
                              [--steps 20] [--budget 100] [--optimizers codes,sepcma]

Both sides run the same searches (same optimizer, seeds and budget per unit) and, noise-free, give the
same histories, which the script checks on two units. Queries/s = all units' queries / wall time, both
measured in this one run. Writes ``benchmarks/results/scan.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import mango
from mango.scan import scan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="cifar-snn")
    ap.add_argument("--generator", default="cifar-vqvae")
    ap.add_argument("--layer", default="spiking1")
    ap.add_argument("--units", default="0-31")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--optimizers", default="codes,sepcma", help="one row each (codes: the default on the VQ-VAE, "
                    "batch 1; sepcma: batch 18)")
    args = ap.parse_args()
    rows = [measure(args, o) for o in args.optimizers.split(",")]
    print(pd.DataFrame(rows).T.to_string(header=False))
    record = {"benchmark": "scan batched neurons", "rows": rows, "torch_threads": torch.get_num_threads(),
              "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    path = Path(__file__).parent / "results" / "scan.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


def measure(args: argparse.Namespace, optimizer: str) -> dict:
    lo, hi = map(int, args.units.split("-"))
    units = list(range(lo, hi + 1))
    common = dict(model=args.model, generator=args.generator, steps=args.steps, budget=args.budget,
                  optimizer=optimizer)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        scan(Path(tmp) / "scan", layers=[args.layer], units=args.units, progress=False, **common)
        batched = time.perf_counter() - t0
        t0 = time.perf_counter()
        for u in units:
            mango.run(target=f"{args.layer}:{u}", out=Path(tmp) / f"solo{u}", progress=False, **common)
        alone = time.perf_counter() - t0
        cols = ["query", "response"]
        same = all(mango.read_history(Path(tmp) / "scan" / args.layer / f"u{u:04d}-s0")[cols]
                   .equals(mango.read_history(Path(tmp) / f"solo{u}")[cols]) for u in (units[0], units[-1]))
    n = len(units) * args.budget
    return {"model": args.model, "layer": args.layer, "units": len(units), "steps": args.steps,
            "budget_per_unit": args.budget, "optimizer": optimizer, "queries": n,
            "batched_s": round(batched, 2), "one_after_another_s": round(alone, 2),
            "batched_qps": round(n / batched, 1), "one_after_another_qps": round(n / alone, 1),
            "speedup": round(alone / batched, 2), "identical_histories": same}


if __name__ == "__main__":
    main()
