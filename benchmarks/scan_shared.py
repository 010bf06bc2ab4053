"""Shared presentations: how many presentations in all before every unit reaches 90 % of its own search.

    python benchmarks/scan_shared.py [--model mnist-snn] [--generator mnist-sngan] [--layer lif2] [--units 0-31]
                                     [--independent 3000] [--budget 3000] [--optimizers sepcma,ga] [--steps T]

First every unit gets an independent search of ``--independent`` queries (a batched scan: the same
searches as one run per unit). Then a shared scan (``--shared``) of ``--budget`` presentations in all
serves every unit, once per optimizer, and once more with injection switched off (each unit's optimizer
learns only from its own proposals; every image still scores for every unit) to show what injection
brings. For each total t, the fraction of units (not silent in their independent search) whose best
over the first t shared presentations reaches 90 % of their independent best. Writes
``benchmarks/results/scan_shared-<model>.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

import mango
from mango.optimizers import Optimizer
from mango.scan import scan

TOTALS = (250, 500, 1000, 2000, 3000, 5000, 10000, 20000)


@contextmanager
def no_injection():
    """Every optimizer ignores foreign images (the base class's ``_inject``)."""
    from mango.optimizers import cma, discrete, genetic

    saved = {c: c._inject for c in (cma.CMAES, cma.OnePlusOne, genetic.Genetic, discrete.CodeSearch)}
    for c in saved:
        c._inject = Optimizer._inject
    try:
        yield
    finally:
        for c, f in saved.items():
            c._inject = f


def reached(out: Path, layer: str, units: list[int], target: dict[int, float], totals: list[int]) -> dict:
    """Per total: the fraction of units whose running best reaches 90 % of ``target``; per unit: when."""
    when, running = {}, {}
    for u in units:
        r = mango.read_history(out / layer / f"u{u:04d}-s0")["response"].to_numpy()
        running[u] = best = np.maximum.accumulate(np.nan_to_num(r, nan=-np.inf))
        hit = np.flatnonzero(best >= 0.9 * target[u])
        when[u] = int(hit[0]) + 1 if len(hit) else None
    frac = {t: float(np.mean([w is not None and w <= t for w in when.values()])) for t in totals}
    ratio = {t: float(np.median([running[u][min(t, len(running[u])) - 1] / target[u] for u in units]))
             for t in totals}
    return {"fraction_reaching_90pct": frac, "median_of_best_over_independent": ratio,
            "presentations_until_reached": when,
            "all_reached_at": max(when.values()) if all(w is not None for w in when.values()) else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist-snn")
    ap.add_argument("--generator", default="mnist-sngan")
    ap.add_argument("--layer", default="lif2")
    ap.add_argument("--units", default="0-31")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--independent", type=int, default=3000)
    ap.add_argument("--budget", type=int, default=3000)
    ap.add_argument("--optimizers", default="sepcma,ga")
    ap.add_argument("--independent-from", default=None,
                    help="a JSON this script wrote: reuse its independent bests (same model, layer, units, budget)")
    args = ap.parse_args()
    lo, hi = map(int, args.units.split("-"))
    units = list(range(lo, hi + 1))
    common = dict(model=args.model, generator=args.generator, steps=args.steps, layers=[args.layer],
                  units=args.units, progress=False)
    totals = [t for t in TOTALS if t <= args.budget]
    rows, record = [], {"settings": vars(args), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as tmp:
        if args.independent_from:
            old = json.loads(Path(args.independent_from).read_text())
            best = {int(u): float(b) for u, b in old["independent_best"].items()}
            record["independent_s"] = old.get("independent_s")
        else:
            t0 = time.perf_counter()
            ind = scan(Path(tmp) / "independent", budget=args.independent, **common)
            record["independent_s"] = round(time.perf_counter() - t0, 1)
            best = {int(u): float(b) for u, b in zip(ind["unit"], ind["best_response"], strict=True)}
        live = [u for u in units if best[u] > 0]
        record["independent_best"] = {int(u): float(b) for u, b in best.items()}
        record["silent_in_independent"] = [u for u in units if best[u] <= 0]
        for opt in args.optimizers.split(","):
            for inject in (True, False):
                name = f"{opt}{'' if inject else ' (no injection)'}"
                out = Path(tmp) / f"shared-{opt}-{inject}"
                t0 = time.perf_counter()
                if inject:
                    scan(out, budget=args.budget, shared=True, optimizer=opt, **common)
                else:
                    with no_injection():
                        scan(out, budget=args.budget, shared=True, optimizer=opt, **common)
                res = reached(out, args.layer, live, best, totals)
                res["seconds"] = round(time.perf_counter() - t0, 1)
                record[name] = res
                frac = res["fraction_reaching_90pct"]
                ratio = res["median_of_best_over_independent"]
                rows.append({"shared scan": name, **{f"{t}": f"{frac[t]:.0%} ({ratio[t]:.2f})" for t in totals},
                             "all units at": res["all_reached_at"] or f">{args.budget}"})
    print(f"{args.model} {args.layer}: {len(units)} units, {len(live)} not silent after {args.independent} "
          f"independent queries each ({args.independent * len(units)} in all)")
    print("fraction of units at >= 90 % of their independent best (median best / independent best), "
          "by total presentations:")
    print(pd.DataFrame(rows).to_string(index=False))
    path = Path(__file__).parent / "results" / f"scan_shared-{args.model}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
