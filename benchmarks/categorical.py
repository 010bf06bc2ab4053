"""Categorical latents: optimizers on cifar-vqvae codes (64 codes, each one of 512) -> cifar-snn units.

    python benchmarks/categorical.py                                  # the default comparison (long: run it
                                                                      # in the background; it resumes)
    python benchmarks/categorical.py --methods codes,ga --seeds 3     # some methods only
    python benchmarks/categorical.py --methods codes@1,codes@10,codes@32 --budgets 250,1000,3000   # batching
    python benchmarks/categorical.py --table-only                     # the table from the runs recorded so far

Methods: a MANGO optimizer entry (``NAME+key=value+...``, see ``benchmarks/optimizers.py``), optionally with
``@BATCH`` (default: the optimizer's preferred batch, as the loop does), or ``ngopt``: Nevergrad's NGOpt called
directly over ``ng.p.TransitionChoice(range(512), repetitions=64)``, one candidate at a time
(``num_workers=1``), seeded through the parametrization's random state.

Units: ``--per-layer`` units of each of ``--layers``, drawn by a seeded permutation (``--draw-seed``). A unit
that none of 128 random latents makes fire is first run by every method with seed 0 and the smallest budget;
if none of them makes it fire either, it is skipped (and reported) and the next unit of the draw is taken.
``--extra`` adds named units (e.g. ``spiking1:3``, the unit where every MANGO preset stalled at 0.154).

Score: the best response found within each budget (the target is noise-free). One run per (unit, method,
seed) with the largest budget; smaller budgets are its prefixes: MANGO's optimizers are never told the budget,
and NGOpt picks DiscreteLenglerOnePlusOne at every budget here, whose mutation schedule does not read the
budget (``--check-prefix`` verifies both on a cheap function and records the result). Each finished run is
appended to ``--runs`` (JSON lines), so an interrupted benchmark resumes and several processes can share it;
the table (median over seeds per unit and budget) and ``--out`` are written from every recorded run.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, Objective, append, drive, read_runs

import mango
from mango.imagespace import adapter

CURVE_STEP = 10  # best-so-far recorded every CURVE_STEP queries


def ngopt_direct(f: Objective, seed: int, budget: int, size: int, dim: int) -> tuple[np.ndarray, float]:
    """NGOpt over TransitionChoice codes, asked and told one candidate at a time; returns (values, optimizer s)."""
    import nevergrad as ng

    param = ng.p.TransitionChoice(range(size), repetitions=dim)
    param.random_state = np.random.RandomState(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = ng.optimizers.NGOpt(parametrization=param, budget=budget, num_workers=1)
        values, spent = [], 0.0
        for _ in range(budget):
            t0 = time.perf_counter()
            cand = opt.ask()
            z = torch.tensor(np.asarray(cand.value, dtype=np.int64)).reshape(1, dim)
            spent += time.perf_counter() - t0
            v = float(f(z)[0])
            t0 = time.perf_counter()
            opt.tell(cand, -v)
            spent += time.perf_counter() - t0
            values.append(v)
    return np.array(values), spent


def mango_method(f: Objective, entry: str, seed: int, budget: int, space) -> tuple[np.ndarray, float, int, dict]:
    """A MANGO optimizer driven like the loop: ``ask(min(batch, left))``, measure, ``tell``."""
    values, _, spent, batch, described = drive(f, entry, seed, budget, space)
    return values, spent, batch, described


def run_one(f: Objective, method: str, seed: int, budget: int, space) -> dict:
    t0 = time.perf_counter()
    f.seconds = 0.0
    if method == "ngopt":
        values, spent = ngopt_direct(f, seed, budget, space.size, space.dim)
        batch, described = 1, {"class": "nevergrad NGOpt", "space": f"TransitionChoice({space.size})^{space.dim}"}
    else:
        values, spent, batch, described = mango_method(f, method, seed, budget, space)
    best = np.maximum.accumulate(np.where(np.isfinite(values), values, -np.inf))
    return {"method": method, "seed": seed, "budget": budget, "batch": batch,
            "curve": [round(float(x), 4) for x in best[CURVE_STEP - 1 :: CURVE_STEP]],
            "best": round(float(best[-1]), 4), "optimizer_s": round(spent, 2),
            "measure_s": round(f.seconds, 2), "wall_s": round(time.perf_counter() - t0, 2), "described": described}


def best_at(record: dict, budget: int) -> float:
    return record["curve"][budget // CURVE_STEP - 1]


def check_prefix(size: int = 512, dim: int = 64, budgets: tuple[int, ...] = (250, 1000, 3000), n: int = 250) -> dict:
    """On a cheap function: NGOpt's chosen method at every budget, and whether its first ``n`` asks are the
    same whatever budget it is given (so shorter budgets are prefixes of one long run)."""
    import nevergrad as ng

    target = np.random.default_rng(0).integers(0, size, dim)
    chosen, asks = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in budgets:
            param = ng.p.TransitionChoice(range(size), repetitions=dim)
            param.random_state = np.random.RandomState(0)
            opt = ng.optimizers.NGOpt(parametrization=param, budget=b, num_workers=1)
            seq = []
            for _ in range(n):
                c = opt.ask()
                seq.append(np.asarray(c.value))
                opt.tell(c, -float((np.asarray(c.value) == target).sum()))
            chosen[b] = type(opt.optim).__name__ if hasattr(opt, "optim") else type(opt).__name__
            chosen[b] = getattr(opt.optim, "name", chosen[b])
            asks[b] = np.stack(seq)
    same = all(np.array_equal(asks[budgets[0]], asks[b]) for b in budgets)
    return {"ngopt_chooses": {str(b): c for b, c in chosen.items()}, f"first_{n}_asks_identical": same}


def draw_units(layers: list[str], per_layer: int, seed: int, units_of: dict) -> dict[str, list[int]]:
    """A seeded permutation of each layer's units (taken in order until ``per_layer`` are kept)."""
    rng = np.random.default_rng(seed)
    return {layer: rng.permutation(units_of[layer]).tolist() for layer in layers}


def fires_on_random(gen, tgt, n: int = 128, seed: int = 12345) -> float:
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(0, gen.space.size, (n, gen.space.dim), generator=g)
    with torch.inference_mode():
        return float(tgt.responses(gen.decode(z)).double().max())


def table(runs: list[dict], units: list[str], methods: list[str], budgets: list[int]) -> tuple[list[dict], str]:
    rows, lines = [], []
    head = f"{'unit':<13} {'method':<34} {'seeds':>5} " + " ".join(f"{'@' + str(b):>7}" for b in budgets)
    lines.append(head)
    for unit in units:
        for method in methods:
            rs = [r for r in runs if r["unit"] == unit and r["method"] == method]
            if not rs:
                continue
            med = {b: float(np.median([best_at(r, b) for r in rs])) for b in budgets if b <= rs[0]["budget"]}
            rows.append({"unit": unit, "method": method, "seeds": len(rs), "batch": rs[0]["batch"],
                         **{f"median@{b}": round(v, 4) for b, v in med.items()},
                         "per_seed": {str(r["seed"]): {str(b): best_at(r, b) for b in med} for r in rs},
                         "optimizer_s": float(np.median([r["optimizer_s"] for r in rs]))})
            lines.append(f"{unit:<13} {method:<34} {len(rs):>5} " + " ".join(f"{med.get(b, float('nan')):>7.3f}"
                                                                          for b in budgets))
        lines.append("")
    return rows, "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="codes,ga,ngopt,ng:DiscreteLenglerOnePlusOne+space=grid")
    p.add_argument("--layers", default="spiking1,spiking2")
    p.add_argument("--per-layer", type=int, default=2)
    p.add_argument("--draw-seed", type=int, default=0)
    p.add_argument("--extra", default="spiking1:3", help="named units measured besides the draw (comma-separated)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budgets", default="250,1000,3000")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--runs", type=Path, default=RESULTS / "categorical-runs.jsonl")
    p.add_argument("--out", type=Path, default=RESULTS / "categorical.json")
    p.add_argument("--reference", default="codes", help="the method compared with the others in the summary")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--check-prefix", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    budgets = sorted(int(b) for b in a.budgets.split(","))
    methods = a.methods.split(",")
    layers = a.layers.split(",")
    gen = mango.GENERATORS.create("cifar-vqvae")
    space = gen.space
    units_of = {layer: list(mango.make_target("cifar-snn", f"{layer}:*", steps=a.steps).units) for layer in layers}
    order = draw_units(layers, a.per_layer, a.draw_seed, units_of)
    runs = read_runs(a.runs)
    screens = {r["unit"]: r for r in runs if r.get("kind") == "screen"}
    probes = [r for r in runs if r.get("kind") == "probe" and r["steps"] == a.steps]
    runs = [r for r in runs if r.get("kind") == "run" and r["steps"] == a.steps]
    kept: list[str] = []
    skipped: dict[str, str] = {}

    def fires(unit: str, f: Objective) -> bool:
        """Whether ``unit`` responds to random latents, else to some method (seed 0, smallest budget)."""
        if unit not in screens:
            screens[unit] = {"kind": "screen", "unit": unit, "random_max": fires_on_random(gen, f.tgt)}
            if not a.table_only:
                append(a.runs, screens[unit])
        if screens[unit]["random_max"] > 0:
            return True
        short = [r for r in probes if r["unit"] == unit]
        for method in methods:
            if not a.table_only and not any(r["method"] == method for r in short):
                rec = {"kind": "probe", "unit": unit, "steps": a.steps, **run_one(f, method, 0, budgets[0], space)}
                append(a.runs, rec)
                short.append(rec)
        if any(r["best"] > 0 for r in short):
            return True
        skipped[unit] = f"silent: no response to 128 random latents nor to any method (seed 0, budget {budgets[0]})"
        return False

    plan = [(unit, True) for unit in a.extra.split(",") if unit] + [
        (f"{layer}:{u}", False) for layer in layers for u in order[layer]]
    n_kept = dict.fromkeys(layers, 0)
    for unit, named in plan:
        layer = unit.split(":")[0]
        if not named and n_kept[layer] >= a.per_layer or unit in kept:
            continue
        tgt = mango.make_target("cifar-snn", unit, steps=a.steps)
        assert adapter(gen.image_space, tgt.input_space, "generator", "target") is None
        f = Objective(gen, tgt)
        if not fires(unit, f):
            continue
        kept.append(unit)
        n_kept[layer] += not named
        for seed in range(a.seeds):
            for method in methods:
                if a.table_only or any(r["unit"] == unit and r["method"] == method and r["seed"] == seed for r in runs):
                    continue
                rec = {"kind": "run", "unit": unit, "steps": a.steps, **run_one(f, method, seed, budgets[-1], space)}
                append(a.runs, rec)
                runs.append(rec)
                print(f"{unit} {method} seed {seed}: best {rec['best']:.3f} (@{budgets[0]} "
                      f"{best_at(rec, budgets[0]):.3f}; {rec['wall_s']:.0f} s, optimizer {rec['optimizer_s']:.0f} s)",
                      flush=True)
    all_methods = list(dict.fromkeys([*methods, *(r["method"] for r in runs if r["unit"] in kept)]))
    rows, text = table(runs, kept, all_methods, budgets)
    print(text)
    summary = {}
    ref = a.reference
    for other in all_methods:
        if other == ref:
            continue
        wins = {}
        for b in budgets:
            pairs = [(row_ref[f"median@{b}"], row[f"median@{b}"]) for unit in kept
                     for row_ref in rows if row_ref["unit"] == unit and row_ref["method"] == ref
                     for row in rows if row["unit"] == unit and row["method"] == other and f"median@{b}" in row]
            if pairs:
                wins[str(b)] = {"units_better": sum(x > y for x, y in pairs),
                                "units_tied": sum(x == y for x, y in pairs),
                                "units_worse": sum(x < y for x, y in pairs)}
        summary[other] = wins
    if summary:
        print(f"{ref} against each method (units where its median is better / tied / worse):")
        for other, wins in summary.items():
            print(f"  {other:<34} " + "  ".join(f"@{b}: {w['units_better']}/{w['units_tied']}/{w['units_worse']}"
                                               for b, w in wins.items()))
    meta = {"generator": "cifar-vqvae", "model": "cifar-snn", "steps": a.steps, "budgets": budgets,
            "seeds": a.seeds, "layers": layers, "per_layer": a.per_layer, "draw_seed": a.draw_seed, "extra": a.extra,
            "units": kept, "skipped": skipped, "random_max": {u: screens[u]["random_max"] for u in screens},
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d")}
    if a.check_prefix:
        meta["ngopt_prefix_check"] = check_prefix()
        print(meta["ngopt_prefix_check"])
    elif a.out.exists():
        old = json.loads(a.out.read_text()).get("meta", {})
        if "ngopt_prefix_check" in old:
            meta["ngopt_prefix_check"] = old["ngopt_prefix_check"]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": meta, "reference": ref, "summary": summary, "rows": rows}, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
