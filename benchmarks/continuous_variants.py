"""Issue 14, goal 1 on the continuous latent: other ways to run (sep-)CMA-ES, measured as the default runs.

    python benchmarks/continuous_variants.py --variants tie,pycma-diag,pycma-mirror,sep-lib,sep-to-full
    python benchmarks/continuous_variants.py --table-only

Each variant runs on the mnist-snn hidden units of both efficiency draws that fire (``efficiency.draw``: 12
units), seeds 0-4, noise-free, 3,000 queries, told ``rate+drive`` until the first spike like the default, and is
scored like ``benchmarks/efficiency.py`` (the rate of the best image at 250 / 1,000 / 3,000). The table puts
each next to the default's recorded runs (``auto`` in ``efficiency-runs.jsonl`` and
``efficiency-draw1-runs.jsonl``, same units and seeds). Variants:

* ``tie``: the default (``sepcma-2step``), but once the unit has fired it is told ``rate + 1e-6 * s(m)``,
  ``m`` the mean membrane (readout ``membrane``), ``s = 1/2 + atan(m) / pi``: equal rates are ranked by how
  close the membrane came, distinct rates keep their order (a rate step is >= 1/320 on these layers).
* ``pycma-diag`` / ``pycma-mirror``: pycma's diagonal CMA-ES (``CMA_diagonal``), popsize 18, first step 1.6
  (0.2 box widths), pycma's bound handling; without or with mirrored samples (``CMA_mirrors=0.5``,
  pycma's selective mirroring): the batch structure used as Brockhoff et al. (2010) do.
* ``sep-lib`` / ``sep-to-full``: ``cmaes.SepCMA`` (the library under ``sepcma``, with its own bound
  resampling instead of MANGO's clip-and-penalty), alone or handing its mean, step and diagonal over to a
  full ``cmaes.CMA`` after 990 queries (Ros and Hansen's sep-then-full schedule, at the budget where ``cma``
  starts to lead on some ``lif2`` units).
* ``gen-basis`` / ``rand-basis``: the default, searching the latent in a rotated basis (``z = clip(Q y)``): the
  eigenvectors of the generator's mean pull-back metric ``E[J^T J]`` (``J`` the Jacobian of the image, over 16
  prior draws; half of its trace lies in 4 of the 64 directions, 90 % in 22), so that sep-CMA-ES's diagonal
  can scale the directions that change the image apart from those that do not; or a random orthogonal basis,
  the control (sep-CMA-ES is not rotation invariant, so any basis changes the runs).
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import time
import warnings

import cma
import cmaes
import numpy as np
import torch
from _common import RESULTS, Objective, UntilSpike, append, drive, read_runs, record_args
from efficiency import draw, name, scores
from efficiency_tables import BUDGETS, fired_units

import mango
from mango.optimizers.auto import choose

VARIANTS = ("tie", "pycma-diag", "pycma-mirror", "sep-lib", "sep-to-full", "gen-basis", "rand-basis")
QUERIES, POP, SIGMA, HANDOVER = 3000, 18, 1.6, 990


def units() -> list[str]:
    """The mnist-snn hidden units of efficiency draws 0 and 1 that some method made fire there."""
    out: list[str] = []
    for seed, runs in ((0, "efficiency-runs.jsonl"), (1, "efficiency-draw1-runs.jsonl")):
        hidden = [u for m, u in draw(24, seed) if m == "mnist-snn" and not u.startswith("class")]
        fired = fired_units([r for r in read_runs(RESULTS / runs) if r["kind"] == "run"],
                            [name("mnist-snn", u) for u in hidden])
        out += [u for u in hidden if name("mnist-snn", u) in fired and u not in out]
    return out


def library_run(variant: str, f: Objective, seed: int, dim: int, low: float, high: float) -> tuple[list, list]:
    """A pycma or cmaes run told like the default; returns (rates, latents) per generation."""
    bounds = np.array([[low, high]] * dim)
    if variant.startswith("pycma"):
        opts = {"CMA_diagonal": True, "popsize": POP, "seed": seed + 1, "verbose": -9, "bounds": [low, high],
                "CMA_mirrors": 0.5 if variant == "pycma-mirror" else 0}
        es = cma.CMAEvolutionStrategy(np.zeros(dim), SIGMA, opts)
    else:
        es = cmaes.SepCMA(mean=np.zeros(dim), sigma=SIGMA, bounds=bounds, seed=seed, population_size=POP)
    shown, asked, n = UntilSpike(f), [], 0
    while n < QUERIES:
        if variant == "sep-to-full" and isinstance(es, cmaes.SepCMA) and n >= HANDOVER:
            es = cmaes.CMA(mean=es._mean.copy(), sigma=es._sigma, bounds=bounds, seed=seed + 1,
                           population_size=POP, cov=np.diag(es._C))
        x = np.array(es.ask()) if variant.startswith("pycma") else np.array([es.ask() for _ in range(POP)])
        z = torch.from_numpy(np.clip(x, low, high))
        v = shown(z)
        if variant.startswith("pycma"):
            es.tell(list(x), (-v).tolist())
        else:
            es.tell([(xi, -float(vi)) for xi, vi in zip(x, v, strict=True)])
        asked.append(z)
        n += len(x)
    return shown.rates, asked


@functools.cache
def rotated(gen, variant: str) -> mango.TorchGenerator:
    """``gen`` searched in another orthogonal basis (``gen-basis``, ``rand-basis``; see the module note)."""
    dim, (low, high) = gen.space.dim, gen.space.bounds
    g = torch.Generator().manual_seed(0)
    if variant == "rand-basis":
        q = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))[0]
    else:
        metric = torch.zeros(dim, dim, dtype=torch.float64)
        for _ in range(16):
            z = torch.randn(1, dim, generator=g)
            jac = torch.autograd.functional.jacobian(lambda x: gen.module(x).flatten(), z).reshape(-1, dim)
            metric += jac.double().T @ jac.double()
        q = torch.linalg.eigh(metric)[1].flip(1)
    basis = q.float()

    class Rotated(torch.nn.Module):
        def forward(self, y: torch.Tensor) -> torch.Tensor:
            return gen.module((y @ basis.T).clamp(low, high))

    return mango.TorchGenerator(Rotated(), gen.space, gen.image_shape, name=f"{gen.name}-{variant}")


def run(variant: str, gen, unit: str, seed: int) -> dict:
    if variant.endswith("-basis"):
        gen = rotated(gen, variant)
    f = Objective(gen, mango.make_target("mnist-snn", unit, readout="rate+drive"))
    t0 = time.perf_counter()
    if variant.endswith("-basis"):
        shown = UntilSpike(f)
        _, latents, *_ = drive(shown, choose(gen, False)[0], seed, QUERIES, gen.space)
        rates, asked = shown.rates, [latents]
    elif variant == "tie":
        fm = Objective(gen, mango.make_target("mnist-snn", unit, readout="membrane"))
        shown = UntilSpike(f)

        def measure(z: torch.Tensor) -> np.ndarray:
            fired = shown.spiked  # whether the unit had fired before this batch
            v = shown(z)
            return v + 1e-6 * (0.5 + np.arctan(fm(z)) / math.pi) if fired else v

        _, latents, *_ = drive(measure, choose(gen, False)[0], seed, QUERIES, gen.space)
        rates, asked = shown.rates, [latents]
    else:
        low, high = gen.space.bounds
        rates, asked = library_run(variant, f, seed, gen.space.dim, low, high)
    r = np.concatenate(rates)[:QUERIES]
    s = scores(r, r, torch.cat(asked)[:QUERIES], None, False)
    return {"kind": "run", "variant": variant, "unit": name("mnist-snn", unit), "seed": seed, "at": s["at"],
            "wall_s": round(time.perf_counter() - t0, 2)}


def table(records: list[dict]) -> str:
    base = {(r["unit"], r["seed"]): r["at"] for f in ("efficiency-runs.jsonl", "efficiency-draw1-runs.jsonl")
            for r in read_runs(RESULTS / f)
            if r["kind"] == "run" and r["method"] == "auto" and r["condition"] == "clean"}
    lines = [f"{'variant':<14}{'units':>6}  mean median @250 / @1000 / @3000   the default on the same runs"]
    for v in VARIANTS:
        rs = [r for r in records if r["variant"] == v and (r["unit"], r["seed"]) in base]
        us = sorted({r["unit"] for r in rs})
        if not us:
            continue
        mine = [[np.median([r["at"][str(b)] for r in rs if r["unit"] == u]) for b in BUDGETS] for u in us]
        ref = [[np.median([base[(u, r["seed"])][str(b)] for r in rs if r["unit"] == u]) for b in BUDGETS]
               for u in us]
        lines.append(f"{v:<14}{len(us):>6}  " + " / ".join(f"{x:.3f}" for x in np.mean(mine, 0))
                     + "                 " + " / ".join(f"{x:.3f}" for x in np.mean(ref, 0)))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS))
    record_args(p, "continuous-variants-runs.jsonl", "continuous-variants.json", seeds=5)
    a = p.parse_args()
    warnings.filterwarnings("ignore", module="cma")
    torch.set_num_threads(1)
    unknown = [v for v in a.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]!r}; expected some of {', '.join(VARIANTS)}")
    shard, shards = a.shard
    done = {(r["variant"], r["unit"], r["seed"]) for r in read_runs(a.runs)}
    gen = mango.GENERATORS.create("mnist-sngan")
    plan = [(v, u, s) for v in a.variants.split(",") for u in units() for s in range(a.seeds)]
    for i, (v, u, s) in enumerate(plan):
        if a.table_only or i % shards != shard or (v, name("mnist-snn", u), s) in done:
            continue
        rec = run(v, gen, u, s)
        print(f"{v} {rec['unit']} seed {s}: {rec['at']} ({rec['wall_s']:.0f} s)", flush=True)
        append(a.runs, rec)
    text = table(read_runs(a.runs))
    print(text)
    if shard == 0:
        a.out.write_text(json.dumps({"variants": a.variants.split(","), "table": text.splitlines(),
                                     "date": time.strftime("%Y-%m-%d")}, indent=1) + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
