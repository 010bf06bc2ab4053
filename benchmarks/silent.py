"""Silent units: does the default make every unit fire that some image of the generator can make fire?

    python benchmarks/silent.py                         # cifar-snn spiking1 and spiking2, every unit (resumes)
    python benchmarks/silent.py --table-only
    python benchmarks/silent.py --control               # the same search told the plain rate (the old default)
    python benchmarks/silent.py --variant codes+start=64  # another method on the units the default left silent
    python benchmarks/silent.py --entry codes+restart=50 --runs results/silent-restart50-runs.jsonl  # all units

For every unit of ``--layers``: the default search (what ``mango run`` does with no ``--optimizer`` and no
``--readout``: ``codes`` on the VQ-VAE, readout ``rate+drive``) with seed 0, stopped at its first spike or at
``--budget`` queries. Each unit still silent then gets the white-box search (:func:`mango.gradient_mei`): if
it finds an image that makes the unit fire, the default missed a reachable unit; if not, the unit is reported
as not reachable with this generator (as far as gradients can tell). Issue 14's goal: at most 5 % of the
reachable units still silent after 1,000 queries.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, Objective, append, drive, read_runs

import mango
from mango.optimizers.auto import DRIVE, choose


class FirstSpike(Exception):
    pass


def default_search(f: Objective, space, budget: int, seed: int, entry: str | None = None) -> int | None:
    """Queries until the first spike of the default search (or of optimizer ``entry``), or None if it stayed
    silent for ``budget``."""
    count = 0

    def measure(z: torch.Tensor) -> np.ndarray:
        nonlocal count
        r, v = f.evaluate(z)
        hit = np.flatnonzero(r > 0)
        if len(hit):
            count += int(hit[0]) + 1
            raise FirstSpike
        count += len(r)
        return v

    try:
        drive(measure, entry or choose(f.gen)[0], seed, budget, space, generator=f.gen)
    except FirstSpike:
        return count
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cifar-snn")
    p.add_argument("--generator", default="cifar-vqvae")
    p.add_argument("--layers", default="spiking1,spiking2")
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gradient-steps", type=int, default=150)
    p.add_argument("--gradient-restarts", type=int, default=4)
    p.add_argument("--entry", help="the search to measure instead of the default (NAME+key=value)")
    p.add_argument("--runs", type=Path, default=RESULTS / "silent-runs.jsonl")
    p.add_argument("--out", type=Path, default=RESULTS / "silent.json")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--control", action="store_true", help="plain rate instead of rate+drive (no white-box runs); "
                   "recorded in --control-runs and compared in the summary")
    p.add_argument("--control-runs", type=Path, default=RESULTS / "silent-control-runs.jsonl")
    p.add_argument("--variant", help="an optimizer entry (NAME+key=value) run with rate+drive on the units the "
                   "default left silent though the white box makes them fire; recorded in --variant-runs")
    p.add_argument("--variant-runs", type=Path, default=RESULTS / "silent-variants-runs.jsonl")
    a = p.parse_args()
    torch.set_num_threads(1)
    gen = mango.GENERATORS.create(a.generator)
    done = {r["unit"]: r for r in read_runs(a.runs)}
    control = {r["unit"]: r for r in read_runs(a.control_runs)}
    units = [f"{layer}:{u}" for layer in a.layers.split(",")
             for u in mango.make_target(a.model, f"{layer}:*").units]
    for unit in units:
        if a.control and not a.table_only and unit not in control:
            f = Objective(gen, mango.make_target(a.model, unit))
            t0 = time.perf_counter()
            control[unit] = {"unit": unit, "budget": a.budget, "seed": a.seed, "readout": "rate",
                             "first_spike": default_search(f, gen.space, a.budget, a.seed),
                             "seconds": round(time.perf_counter() - t0, 1)}
            append(a.control_runs, control[unit])
            print(json.dumps(control[unit]), flush=True)
        if a.table_only or a.control or unit in done:
            continue
        t0 = time.perf_counter()
        f = Objective(gen, mango.make_target(a.model, unit, readout=DRIVE))
        first = default_search(f, gen.space, a.budget, a.seed, a.entry)
        rec = {"unit": unit, "entry": a.entry or choose(gen)[0], "budget": a.budget, "seed": a.seed,
               "first_spike": first}
        if first is None:
            mei = mango.gradient_mei(gen, a.model, unit, steps=a.gradient_steps, restarts=a.gradient_restarts)
            rec["white_box"] = round(mei.response, 4)
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        append(a.runs, rec)
        done[unit] = rec
        print(json.dumps(rec), flush=True)
    if a.variant:
        tried = {(r["variant"], r["unit"]) for r in read_runs(a.variant_runs)}
        for r in done.values():
            if r["first_spike"] is None and r.get("white_box", 0) > 0 and (a.variant, r["unit"]) not in tried:
                f = Objective(gen, mango.make_target(a.model, r["unit"], readout=DRIVE))
                rec = {"variant": a.variant, "unit": r["unit"], "budget": a.budget, "seed": a.seed,
                       "first_spike": default_search(f, gen.space, a.budget, a.seed, a.variant)}
                append(a.variant_runs, rec)
                print(json.dumps(rec), flush=True)
    summary = {}
    for layer in a.layers.split(","):
        rs = [done[u] for u in units if u.startswith(f"{layer}:") and u in done]
        fired = [r for r in rs if r["first_spike"] is not None]
        missed = [r["unit"] for r in rs if r["first_spike"] is None and r.get("white_box", 0) > 0]
        unreachable = [r["unit"] for r in rs if r["first_spike"] is None and r.get("white_box", 0) == 0]
        reachable = len(fired) + len(missed)
        summary[layer] = {"units": len(rs), "fired_by_default": len(fired),
                          "median_first_spike": float(np.median([r["first_spike"] for r in fired])) if fired else None,
                          "silent_but_reachable": missed, "unreachable": unreachable,
                          "silent_share_of_reachable": round(len(missed) / reachable, 3) if reachable else None}
        plain = [control[r["unit"]] for r in rs if r["unit"] in control]
        if plain:
            summary[layer]["plain_rate"] = {"units": len(plain),
                                            "fired": sum(c["first_spike"] is not None for c in plain)}
        s = summary[layer]
        print(f"{layer}: {s['units']} units; the default made {s['fired_by_default']} fire within {a.budget} "
              f"queries (median first spike {s['median_first_spike']}); silent but reachable by the white box: "
              f"{len(missed)} ({s['silent_share_of_reachable']}); not reachable: {len(unreachable)} {unreachable}"
              + (f"; told the plain rate instead, {s['plain_rate']['fired']} of {s['plain_rate']['units']} fired"
                 if "plain_rate" in s else ""))
    variants: dict[str, dict] = {}
    for r in read_runs(a.variant_runs):
        v = variants.setdefault(r["variant"], {"units": 0, "fired": []})
        v["units"] += 1
        if r["first_spike"] is not None:
            v["fired"].append(r["unit"])
    for name, v in variants.items():
        print(f"variant {name} on the units the default left silent: {len(v['fired'])} of {v['units']} fired "
              f"{v['fired']}")
    summary["variants_on_silent_but_reachable"] = variants
    a.out.write_text(json.dumps({"meta": {"model": a.model, "generator": a.generator, "budget": a.budget,
                                        "seed": a.seed, "gradient_steps": a.gradient_steps,
                                        "gradient_restarts": a.gradient_restarts, "date": time.strftime("%Y-%m-%d")},
                               "summary": summary}, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
