"""Issue 14, goal 1 on the continuous latent: ``image-model``, a CNN model of the neuron in image space searched
through the generator (:mod:`mango.optimizers.image_model`), against the default.

    python benchmarks/image_surrogate.py --shard 0/2 & python benchmarks/image_surrogate.py --shard 1/2
    python benchmarks/image_surrogate.py --table-only

Measured as the default runs (``continuous_variants.units``: the 13 mnist-snn hidden units of both efficiency
draws that some method made fire; told ``rate+drive`` until the first spike; noise-free; the rate of the best
image at 250 / 1,000) and put next to the default's and Portfolio's recorded runs with the same seeds. 1,000
queries, not 3,000: the model costs about 70 s of one CPU core per 1,000 queries (a presentation to a living
neuron costs more).
The records made before the trust region (commit e2e17f6) are named ``image-model (e2e17f6)`` and
``image-model+pool=1 (e2e17f6)`` (without the pooling layer); ``--table-only --method "image-model (e2e17f6)"``
gives ``results/image-surrogate.json``. Those named ``... (development)`` are the trust region's variants
measured while it was written (the code's floating-point path differed in the last digits).
Goal 1's set-up with ten seeds: ``efficiency.py --methods image-model --like-default image-model --queries 1000``
(docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _common import RESULTS, Objective, UntilSpike, append, drive, read_runs, record_args
from continuous_variants import units
from efficiency import name

import mango

BUDGETS = (100, 250, 500, 1000, 3000)


def run(gen, unit: str, seed: int, entry: str, queries: int = 1000) -> dict:
    f = Objective(gen, mango.make_target("mnist-snn", unit, readout="rate+drive"))
    shown = UntilSpike(f)
    t0 = time.perf_counter()
    *_, spent, _, described = drive(shown, entry, seed, queries, gen.space, generator=gen)
    best = np.maximum.accumulate(np.concatenate(shown.rates))
    return {"kind": "run", "method": entry, "unit": name("mnist-snn", unit), "seed": seed,
            "at": {str(b): round(float(best[b - 1]), 4) for b in BUDGETS if b <= queries},
            "optimizer_s": round(spent, 1), "wall_s": round(time.perf_counter() - t0, 1), "optimizer": described}


def table(records: list[dict]) -> str:
    ref: dict = {}
    for f in ("efficiency-runs.jsonl", "efficiency-draw1-runs.jsonl"):
        for r in read_runs(RESULTS / f):
            if r["kind"] == "run" and r["condition"] == "clean":
                ref[(r["method"], r["unit"], r["seed"])] = r["at"]
    lines = [f"{'unit':<16}{'seeds':>6}  surrogate @250 / @1000 (/ @3000)   default @250 / @1000 / @3000"
             "   portfolio @3000"]
    rows = []
    for u in sorted({r["unit"] for r in records}):
        rs = [r for r in records if r["unit"] == u and ("auto", u, r["seed"]) in ref]
        if not rs:
            continue
        med = [np.median([r["at"][b] for r in rs]) for b in ("250", "1000")]
        late = f" / {np.median([r['at']['3000'] for r in rs]):.3f}" if all("3000" in r["at"] for r in rs) else ""
        d = [np.median([ref[("auto", u, r["seed"])][b] for r in rs]) for b in ("250", "1000", "3000")]
        p = np.median([ref[("ng-portfolio", u, r["seed"])]["3000"] for r in rs])
        rows.append((med, d, p))
        lines.append(f"{u:<16}{len(rs):>6}  {med[0]:.3f} / {med[1]:.3f}{late or ' ' * 8}    "
                     f"{d[0]:.3f} / {d[1]:.3f} / {d[2]:.3f}          {p:.3f}")
    if rows:
        m, d, p = (np.mean([r[i] for r in rows], 0) for i in range(3))
        lines.append(f"{'mean':<22}  {m[0]:.3f} / {m[1]:.3f}            {d[0]:.3f} / {d[1]:.3f} / {d[2]:.3f}"
                     f"          {float(p):.3f}")
        fire = [r for r in rows if max(*r[0], *r[1], r[2]) > 0]  # a unit silent for every method is left out
        lines.append(f"at 1,000 >= portfolio's 3,000: surrogate {sum(r[0][1] >= r[2] for r in fire)}, "
                     f"default {sum(r[1][1] >= r[2] for r in fire)} of the {len(fire)} units that fire")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    record_args(p, "image-surrogate-runs.jsonl", "image-surrogate.json", seeds=3)
    p.add_argument("--method", default="image-model", help="an optimizer entry, NAME+key=value")
    p.add_argument("--queries", type=int, default=1000, help="presentations per run (1,000 or 3,000)")
    p.add_argument("--units", default=None, help="a comma-separated subset of the units (default: all 13)")
    a = p.parse_args()
    torch.set_num_threads(1)
    shard, shards = a.shard
    gen = mango.GENERATORS.create("mnist-sngan")
    done = {(r["method"], r["unit"], r["seed"]) for r in read_runs(a.runs)}
    plan = [(u, s) for s in range(a.seeds) for u in (a.units.split(",") if a.units else units())]
    for i, (u, s) in enumerate(plan):
        if a.table_only or i % shards != shard or (a.method, name("mnist-snn", u), s) in done:
            continue
        rec = run(gen, u, s, a.method, a.queries)
        print(f"{rec['unit']} seed {s}: {rec['at']} ({rec['wall_s']:.0f} s)", flush=True)
        append(a.runs, rec)
    text = table([r for r in read_runs(a.runs) if r["method"] == a.method])
    print(text)
    if shard == 0:
        a.out.write_text(json.dumps({"table": text.splitlines(), "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
