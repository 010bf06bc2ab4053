"""Time the default run and split a query's cost into optimizer, generator and target.

    python benchmarks/default_run.py [--budget 2000] [--optimizer tt-s] [--seeds 1]

Prints a table and writes ``benchmarks/results/default_run.json``. The split
is measured in the same process: the run's own wall time, then the
generator and the target re-timed on the latents the run recorded (same
batches), the rest being optimizer ask/tell plus bookkeeping.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import mango
from mango.experiment.history import latent_columns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=int, default=2000)
    p.add_argument("--optimizers", default="tt-s,tt-b,protes,random")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "default_run.json")
    a = p.parse_args()
    gen = mango.GENERATORS.create(mango.RunConfig.generator)
    tgt = mango.make_target(mango.RunConfig.model, mango.RunConfig.target)
    rows = []
    for name in a.optimizers.split(","):
        for seed in range(a.seeds):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                res = mango.run(optimizer=name, budget=a.budget, seed=seed, out=Path(tmp) / "r", progress=False)
                total = time.perf_counter() - t0
            h = res.history
            loop = float(h["elapsed_s"].iloc[-1])
            t_gen = t_tgt = 0.0
            for _, b in h.groupby("batch"):
                z = torch.tensor(b[latent_columns(gen.space.dim)].to_numpy())
                t1 = time.perf_counter()
                images = gen.decode(z)
                t2 = time.perf_counter()
                tgt.responses(images)
                t_gen, t_tgt = t_gen + t2 - t1, t_tgt + time.perf_counter() - t2
            rows.append({"optimizer": name, "seed": seed, "budget": a.budget, "batch": res.config["batch"],
                         "best_response": res.best_response, "total_s": round(total, 2), "loop_s": round(loop, 2),
                         "generator_s": round(t_gen, 2), "target_s": round(t_tgt, 2),
                         "optimizer_and_rest_s": round(max(loop - t_gen - t_tgt, 0.0), 2),
                         "queries_per_s": round(a.budget / loop, 1)})
    table = Table(title=f"default run: {mango.RunConfig.model} {mango.RunConfig.target}, budget {a.budget}")
    for col in rows[0]:
        table.add_column(col)
    for r in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) and k == "best_response" else str(v) for k, v in r.items()))
    Console(width=200).print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or
            platform.machine(), "date": time.strftime("%Y-%m-%d")}
    a.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
