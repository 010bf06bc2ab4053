"""Compare optimizers on one generator + target: query efficiency, wall time, overhead.

    python benchmarks/optimizers.py --optimizers tt-b,tt-s,protes,random --budgets 1000,5000,10000 --seeds 5
    python benchmarks/optimizers.py --optimizers ng-portfolio+space=grid,ng-portfolio+space=box,cma

An entry ``NAME+key=value+...`` passes hyperparameters (JSON values) to the optimizer.

For each optimizer and seed one run with the largest budget is made (the
smaller budgets are its prefixes: no optimizer here is told the budget).
Prints a table and writes ``<out>/optimizers.json`` and
``<out>/convergence.png`` (median best response vs queries with the 25-75 %
band, full and zoomed, like the paper's Figure 5: :func:`mango.analysis.plot_convergence`;
``mango analyze compare <out>/runs`` draws the same from the kept run folders). Responses are also given
as a ratio to the best of ``--random-reference`` random latents, the way
XDream reports evolved / best-natural-image ratios. Run folders are kept in
``<out>/runs`` for later analysis.

With ``--noise`` (e.g. ``membrane:0.3``) the target is noisy: the optimizers
see noisy responses (``--repeats`` averages several), and the table adds
``true@B``, the noise-free response of the candidate each run would report
at budget B (its best recorded one), so a lucky measurement does not count.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

import mango
from mango.analysis import plot_convergence
from mango.experiment.history import best_so_far
from mango.optimizers.base import parse_entry


def random_reference(gen, tgt, n: int, seed: int = 12345, batch: int = 250) -> float:
    """Best response over ``n`` uniform random grid latents."""
    g = torch.Generator().manual_seed(seed)
    best = -np.inf
    for i in range(0, n, batch):
        z = torch.randint(0, gen.space.size, (min(batch, n - i), gen.space.dim), generator=g)
        r = tgt.responses(gen.decode(z)).double().mean(1)
        best = max(best, float(r[torch.isfinite(r)].max()))
    return best


def true_responses(history, clean, gen, budgets: list[int]) -> list[float]:
    """Noise-free response of the best-recorded candidate within each budget."""
    from mango.experiment.history import latents

    v = history["value"].to_numpy(dtype=float)
    rows = [int(np.argmax(v[:b])) for b in budgets]
    z = latents(history.iloc[rows], gen.space.dim)
    return clean.responses(gen.decode(z)).double().mean(1).tolist()


def summarize(runs: dict, budgets: list[int], reference: float, truth: dict | None = None) -> list[dict]:
    overall = max(float(np.nanmax(c)) for curves in runs.values() for c, *_ in curves)
    rows = []
    for name, curves in runs.items():
        best = np.stack([c for c, *_ in curves])  # [seeds, budget]
        row = {"optimizer": name, "seeds": len(curves)}
        for b in budgets:
            med = float(np.median(best[:, b - 1]))
            row[f"best@{b}"] = round(med, 4)
            row[f"ratio@{b}"] = round(med / reference, 3) if reference > 0 else None
            if truth:
                row[f"true@{b}"] = round(float(np.median([t[budgets.index(b)] for t in truth[name]])), 4)
        hit = [int(np.argmax(c >= 0.9 * overall)) + 1 if (c >= 0.9 * overall).any() else None for c in best]
        reached = [h for h in hit if h is not None]
        row["q_to_90%"] = int(np.median(reached)) if len(reached) * 2 > len(hit) else None
        row["wall_s"] = round(float(np.median([w for _, w, _ in curves])), 2)
        row["overhead"] = round(float(np.median([o for _, _, o in curves])), 3)
        rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--optimizers", default="tt-b,tt-s,protes,random")
    p.add_argument("--budgets", default="1000,5000,10000")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--target", default=mango.RunConfig.target)
    p.add_argument("--model", default=mango.RunConfig.model)
    p.add_argument("--generator", default=mango.RunConfig.generator)
    p.add_argument("--random-reference", type=int, default=10000)
    p.add_argument("--noise", default=None, help="target noise, e.g. membrane:0.3 or poisson")
    p.add_argument("--repeats", type=int, default=1, help="measurements per candidate (noisy targets)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "optimizers")
    a = p.parse_args()
    budgets = sorted(int(b) for b in a.budgets.split(","))
    gen = mango.GENERATORS.create(a.generator)
    clean = mango.make_target(a.model, a.target)
    tgt = mango.make_target(a.model, a.target, noise=a.noise) if a.noise else clean
    reference = random_reference(gen, clean, a.random_reference)
    truth: dict[str, list] = {}
    runs: dict[str, list] = {}
    jobs = [(o, s) for o in a.optimizers.split(",") for s in range(a.seeds)]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name, seed in track(jobs, description="runs"):
        opt, options = parse_entry(name)
        out = a.out / "runs" / f"{stamp}-{name.replace(':', '_')}-s{seed}"
        res = mango.run(optimizer=opt, optimizer_options=options, budget=budgets[-1], seed=seed, target=tgt,
                        generator=gen, progress=False, repeats=a.repeats, out=out)
        h = res.history
        curve = best_so_far(h)
        wall = float(h["elapsed_s"].iloc[-1])
        overhead = float(h.groupby("batch")["optimizer_s"].first().sum()) / wall
        runs.setdefault(name, []).append((curve, wall, overhead))
        if a.noise:
            truth.setdefault(name, []).append(true_responses(h, clean, gen, budgets))
    rows = summarize(runs, budgets, reference, truth)
    title = f"{a.model} {a.target} / {a.generator}; random best of {a.random_reference}: {reference:.4f}"
    if a.noise:
        title += f"; noise {a.noise}, repeats {a.repeats}"
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    Console(width=200).print(table)
    a.out.mkdir(parents=True, exist_ok=True)
    plot_convergence({name: np.stack([c for c, *_ in curves]) for name, curves in runs.items()},
                     a.out / "convergence.png", title)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "date": time.strftime("%Y-%m-%d"), "budgets": budgets, "seeds": a.seeds, "target": a.target,
            "model": a.model, "generator": a.generator, "random_reference": reference,
            "random_reference_n": a.random_reference, "noise": a.noise, "repeats": a.repeats}
    (a.out / "optimizers.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.out / 'optimizers.json'} and {a.out / 'convergence.png'}")


if __name__ == "__main__":
    main()
