"""Query efficiency of the default on many neurons: issue 14's benchmark.

    python benchmarks/efficiency.py --shard 0/2 & python benchmarks/efficiency.py --shard 1/2   # resumes
    python benchmarks/efficiency.py --table-only              # the tables from the runs recorded so far
    # held-out units (another draw), and a candidate default measured as the default runs:
    python benchmarks/efficiency.py --draw-seed 1 --models mnist-snn \
        --runs benchmarks/results/efficiency-draw1-runs.jsonl --out benchmarks/results/efficiency-draw1.json
    python benchmarks/efficiency.py --models mnist-snn --methods sepcma+sigma=1.6 --like-default sepcma+sigma=1.6 \
        --runs benchmarks/results/efficiency-continuous-variants.jsonl
    # would any single method meet goal 1 in the default's place (draw 1: efficiency-draw1-variants.jsonl)?
    python benchmarks/efficiency.py --table-only --models mnist-snn --conditions clean \
        --more-runs benchmarks/results/efficiency-continuous-variants.jsonl \
        --as-default auto,cma,sepcma,ga,ng-portfolio,sepcma-2step+sigma=2.0
    # reading (b)'s false alarms: the default with seeds 5-9 against its own seeds 0-4 (an A/A check)
    python benchmarks/efficiency.py --methods auto --first-seed 5 --models mnist-snn \
        --runs benchmarks/results/efficiency-aa-runs.jsonl --out /tmp/aa.json
    python benchmarks/efficiency.py --table-only --models mnist-snn --aa benchmarks/results/efficiency-aa-runs.jsonl

**Units:** ``--units`` (24) drawn by a seeded permutation of each layer (``--draw-seed``), taken in turn from
mnist-snn ``lif1``, ``lif2``, ``class`` (generator mnist-sngan) and cifar-snn ``spiking0``, ``spiking1``,
``spiking2``, ``class`` (cifar-vqvae). Nothing is skipped: silent units stay in the draw and are reported.

**Methods:** ``auto`` (what ``mango run`` uses with no ``--optimizer``: ``mango.optimizers.auto``, told whether
the target is noisy) and ``cma``, ``sepcma``, ``ga``, ``ng-portfolio``, each at its preferred batch.

**Conditions:** ``clean`` (the noise-free target) and ``noisy``, living-like: each response is a Poisson count
``Poisson(rate * 20 * gain(q)) / 20`` (20 counts at rate 1, as ``mango rig simulate``), with a slow
multiplicative drift ``gain(q) = 1 + 0.1 sin(2 pi q / 3000 + phase)`` over the session (``q``: presentation).
The noise stream depends on (unit, seed) only, so every method meets the same noise.

**Score:** the *noise-free* response of the MEI a run reports at budget B: its best recorded response. The
noisy default also does what ``mango run`` does for a noisy target: it spends 25 of its B presentations
re-measuring its 5 best candidates 5 times each and reports the best *mean*. Budgets 250, 1,000 and 3,000
are prefixes of one run of 3,000 (no optimizer here is told the budget; the default's re-measurement is
recomputed at each B from the first B - 25 presentations).

**Ceiling:** the white-box gradient MEI of each unit (:func:`mango.gradient_mei`); a unit that no method and
not the white-box search makes fire is reported as unreachable for that generator.

**"Within the seed spread"** is reported two ways: the default's upper quartile against the best other
method's median, and a one-sided Mann-Whitney U test of each other method against the default over the
seeds' scores (p < 0.05).

Records go to ``--runs`` (JSON lines, one per run); the tables and ``--out`` are built from every record.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, Objective, UntilSpike, append, drive, read_runs, shard
from efficiency_tables import BUDGETS, CURVE_STEP, aa_test, as_default, markdown, report

import mango
from mango.optimizers.auto import choose

LAYERS = {"mnist-snn": ("mnist-sngan", ["lif1", "lif2", "class"]),
          "cifar-snn": ("cifar-vqvae", ["spiking0", "spiking1", "spiking2", "class"])}
COUNTS, DRIFT, PERIOD = 20.0, 0.1, 3000
TOP, REPEATS = 5, 5  # the default's re-measurement of a noisy run (mango.optimizers.auto.REMEASURE)


def draw(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (model, unit) pairs: each layer's units in a seeded random order, the layers taken in turn."""
    queues = []
    for k, (model, (_, layers)) in enumerate(LAYERS.items()):
        for j, layer in enumerate(layers):
            units = list(mango.make_target(model, f"{layer}:*").units)
            order = np.random.default_rng([seed, k, j]).permutation(len(units))
            queues.append([(model, f"{layer}:{units[i]}") for i in order])
    out: list[tuple[str, str]] = []
    while len(out) < n:
        for q in queues:
            if q and len(out) < n:
                out.append(q.pop(0))
    return out


class Noisy:
    """The clean objective seen through Poisson counts and a slow drift; presentation ``q`` counts calls."""

    def __init__(self, clean: Objective, key: list[int]) -> None:
        self.clean, self.rng = clean, np.random.default_rng(key)
        self.phase = float(self.rng.uniform(0, 2 * math.pi))
        self.q = 0

    def observe(self, rates: np.ndarray) -> np.ndarray:
        q = self.q + np.arange(len(rates))
        self.q += len(rates)
        gain = 1 + DRIFT * np.sin(2 * math.pi * q / PERIOD + self.phase)
        return self.rng.poisson(np.clip(rates, 0, None) * COUNTS * gain) / COUNTS

    def __call__(self, z: torch.Tensor) -> np.ndarray:
        self.last = self.clean(z)
        return self.observe(self.last)


def scores(told: np.ndarray, clean: np.ndarray, asked: torch.Tensor, noisy: Noisy | None, remeasure: bool) -> dict:
    """Noise-free score of the reported MEI at every budget (and every CURVE_STEP queries)."""
    best = np.maximum.accumulate(np.where(np.isfinite(told), told, -np.inf))
    first = np.r_[0, np.flatnonzero(np.diff(best) > 0) + 1]  # where each new best was recorded
    idx = first[np.searchsorted(first, np.arange(len(told)), side="right") - 1]
    curve = clean[idx]  # the clean response of the best recorded candidate so far
    out = {"curve": [round(float(x), 4) for x in curve[CURVE_STEP - 1 :: CURVE_STEP]],
           "at": {str(b): round(float(curve[b - 1]), 4) for b in BUDGETS if b <= len(told)}}
    if remeasure and noisy is not None:
        for b in BUDGETS:
            if b > len(told):
                continue
            n = b - TOP * REPEATS
            keys = [row.numpy().tobytes() for row in asked[:n]]
            chosen: list[int] = []
            for i in np.argsort(-told[:n], kind="stable"):
                if keys[i] not in {keys[j] for j in chosen}:
                    chosen.append(int(i))
                if len(chosen) == TOP:
                    break
            noisy.q = n  # the re-measurement is shown at presentations n .. b - 1
            means = noisy.observe(np.repeat(clean[chosen], REPEATS)).reshape(len(chosen), REPEATS).mean(1)
            out["at"][str(b)] = round(float(clean[chosen[int(np.argmax(means))]]), 4)
    return out


def run_one(f: Objective, unit: str, method: str, seed: int, condition: str, space, unit_key: int,
            remeasure: bool | None = None, queries: int = BUDGETS[-1]) -> dict:
    """One run of ``queries`` (3,000; a shorter run records the budgets it reaches). ``f``'s target reads
    ``rate+drive`` where the default does (``auto``, clean, a spiking layer's unit): the optimizer is told the
    drive values, the scores are the rates. ``remeasure``: whether a noisy run re-measures its best at the end
    as the default does (default: for ``auto`` only)."""
    noisy = Noisy(f, [seed, unit_key, 7]) if condition == "noisy" else None
    entry, why = choose(f.gen, noisy is not None) if method == "auto" else (method, "")
    t0, f.seconds = time.perf_counter(), 0.0
    shown = UntilSpike(f)

    def measure(z: torch.Tensor) -> np.ndarray:
        if noisy is None:
            return shown(z)
        v = noisy(z)
        shown.rates.append(noisy.last)
        return v

    told, asked, spent, batch, _ = drive(measure, entry, seed, queries, space, generator=f.gen)
    rates = np.concatenate(shown.rates)
    s = scores(told if noisy is not None else rates, rates, asked, noisy,
               method == "auto" if remeasure is None else remeasure)
    return {"kind": "run", "unit": unit, "method": method, "chose": entry, "why": why, "seed": seed,
            "condition": condition, "readout": str(f.tgt.readout), "batch": batch, **s,
            "optimizer_s": round(spent, 2), "measure_s": round(f.seconds, 2),
            "wall_s": round(time.perf_counter() - t0, 2)}


def uses_drive(method: str, condition: str, unit: str, also: tuple[str, ...] = ()) -> bool:
    """Whether ``mango run`` reads this unit with ``rate+drive`` (mango.experiment.loop.drive_by_default);
    ``also``: candidate defaults measured the way the default runs."""
    return (method == "auto" or method in also) and condition == "clean" and not unit.startswith("class:")


def ceiling(gen: str, model: str, unit: str, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    m = mango.gradient_mei(gen, model, unit, steps=150, restarts=8, seed=seed)
    return {"kind": "ceiling", "unit": unit, "model": model, "response": round(m.response, 4),
            "restarts": [round(x, 4) for x in m.restarts], "steps": m.steps,
            "seconds": round(time.perf_counter() - t0, 1)}


def plan(units: list[tuple[str, str]], methods: list[str], seeds: int, first: int = 0) -> list[tuple]:
    """Ceilings first, then runs: the first 3 seeds of every unit before the others; within them clean before
    noisy, and the cheap mnist-snn units before the cifar-snn ones (an interrupted benchmark has both)."""
    items: list[tuple] = [("ceiling", m, u) for m, u in units]
    for group in (range(first, first + min(3, seeds)), range(first + 3, first + seeds)):
        for condition in ("clean", "noisy"):
            for cheap in (True, False):
                items += [("run", m, u, meth, s, condition) for s in group for m, u in units for meth in methods
                          if (m == "mnist-snn") == cheap]
    return items


def name(model: str, unit: str) -> str:
    return f"{model.split('-')[0]}/{unit}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--units", type=int, default=24)
    p.add_argument("--draw-seed", type=int, default=0)
    p.add_argument("--methods", default="auto,cma,sepcma,ga,ng-portfolio")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0, help="run seeds FIRST.. (the tables read seeds 0..)")
    p.add_argument("--models", default=",".join(LAYERS), help="run only these models' units (the tables keep all)")
    p.add_argument("--only", default="", help="run only these units, e.g. mnist/class:9,mnist/lif1:4 (the tables "
                   "keep all)")
    p.add_argument("--shard", type=shard, default=(0, 1), help="I/N: this process does every N-th item of the plan, "
                   "from I")
    p.add_argument("--runs", type=Path, default=RESULTS / "efficiency-runs.jsonl")
    p.add_argument("--out", type=Path, default=RESULTS / "efficiency.json")
    p.add_argument("--like-default", default="", help="candidate defaults: these methods too read rate+drive "
                   "and re-measure a noisy run's best where the default does")
    p.add_argument("--conditions", default="clean,noisy", help="run only these conditions' runs")
    p.add_argument("--queries", type=int, default=BUDGETS[-1], choices=BUDGETS, help="presentations per run: "
                   "a costly method's runs of 1,000 give goal 1's first sentence, not the 3,000 column")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--more-runs", type=Path, nargs="*", default=[], help="also read these records (candidate "
                   "defaults' runs kept apart) for the tables; new runs go to --runs only")
    p.add_argument("--aa", type=Path, help="the default's runs with other seeds (--first-seed 5): count reading "
                   "(b)'s false alarms, those seeds against seeds 0-4 both ways")
    p.add_argument("--as-default", default="", help="also list, for each of these methods in the default's "
                   "place, the points where a baseline is better beyond the seed spread")
    p.add_argument("--markdown", action="store_true", help="also print the per-unit tables for docs/benchmarks.md")
    a = p.parse_args()
    missing = [str(f) for f in [*a.more_runs, *([a.aa] if a.aa else [])] if not f.exists()]
    if missing:  # a mistyped record file would silently leave its runs out of the tables
        raise SystemExit(f"error: no such record file {missing[0]!r} (--more-runs / --aa read existing records)")
    torch.set_num_threads(1)
    methods, also = a.methods.split(","), tuple(filter(None, a.like_default.split(",")))
    conditions = a.conditions.split(",")
    shard_i, shards = a.shard
    units, models = draw(a.units, a.draw_seed), a.models.split(",")
    only = set(filter(None, a.only.split(",")))
    if only - {name(m, u) for m, u in units}:  # a mistyped unit would silently run nothing
        raise SystemExit(f"error: --only names {sorted(only - {name(m, u) for m, u in units})[0]!r}, not a unit of "
                         f"draw {a.draw_seed} (e.g. {name(*units[0])})")
    known = read_runs(a.runs) + [r for path in a.more_runs for r in read_runs(path)]  # e.g. the ceilings
    done = {(r["kind"], r["unit"], r.get("method"), r.get("seed"), r.get("condition")) for r in known}
    gens: dict[str, object] = {}
    for i, item in enumerate(plan(units, methods, a.seeds, a.first_seed)):
        if a.table_only or i % shards != shard_i or item[1] not in models:
            continue
        if only and name(*item[1:3]) not in only:
            continue
        if item[0] == "run" and item[5] not in conditions:
            continue
        kind, model, unit = item[:3]
        key = (kind, name(model, unit), *(item[3:] if kind == "run" else (None, None, None)))
        if key in done:
            continue
        gen_name = LAYERS[model][0]
        if kind == "ceiling":
            rec = {**ceiling(gen_name, model, unit), "unit": name(model, unit)}
            print(f"{rec['unit']} ceiling {rec['response']:.3f} ({rec['seconds']:.0f} s)", flush=True)
        else:
            gen = gens.setdefault(gen_name, mango.GENERATORS.create(gen_name))
            readout = "rate+drive" if uses_drive(item[3], item[5], unit, also) else None
            f = Objective(gen, mango.make_target(model, unit, readout=readout))
            unit_key = units.index((model, unit))
            rec = run_one(f, name(model, unit), item[3], item[4], item[5], gen.space, unit_key,
                          remeasure=True if item[3] in also else None, queries=a.queries)
            print(f"{rec['unit']} {rec['condition']} {rec['method']} seed {rec['seed']}: {rec['at']} "
                  f"({rec['wall_s']:.0f} s)", flush=True)
        append(a.runs, rec)
    records = read_runs(a.runs) + [r for path in a.more_runs for r in read_runs(path)]
    runs = [r for r in records if r["kind"] == "run" and r["seed"] < a.seeds]
    ceilings = {r["unit"]: r["response"] for r in records if r["kind"] == "ceiling"}
    summary, text = report(runs, ceilings, [name(m, u) for m, u in units], methods)
    print(text)
    for candidate in filter(None, a.as_default.split(",")):
        for condition in conditions:
            lost, reaches = as_default(runs, [name(m, u) for m, u in units], candidate, condition)
            print(f"{candidate} as the default, {condition}: @1000 >= ng-portfolio@3000 on "
                  f"{sum(r[0] == '+' for r in reaches)}/{len(reaches)} units ({', '.join(reaches)}); {len(lost)} "
                  f"points behind a baseline beyond the seed spread: {lost}")
    if a.aa:
        for condition in conditions:
            found, tests = aa_test(runs, [name(m, u) for m, u in units], read_runs(a.aa), condition)
            print(f"A/A, {condition}: {len(found)} of {tests} tests find the default better than itself beyond "
                  f"the seed spread: {found}")
    if a.markdown:
        for condition in ("clean", "noisy"):
            print(f"\n{condition}:\n" + markdown(runs, ceilings, [name(m, u) for m, u in units], methods, condition))
    meta = {"units": [name(m, u) for m, u in units], "draw_seed": a.draw_seed, "methods": methods,
            "seeds": a.seeds, "budgets": list(BUDGETS), "noise": {"counts_at_rate_1": COUNTS, "drift": DRIFT,
                                                                   "drift_period": PERIOD},
            "remeasure": {"top": TOP, "repeats": REPEATS}, "ceilings": ceilings, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
    if shard_i == 0:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"meta": meta, "summary": summary}, indent=1) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    try:
        main()
    except mango.MangoError as exc:  # a bad --methods option: one line; the runs recorded so far are kept
        raise SystemExit(f"error: {exc}") from None
