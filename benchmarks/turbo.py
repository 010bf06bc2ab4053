"""Issue 14's "trust-region Bayesian optimization (TuRBO) with BoTorch/GPyTorch, on the continuous latent".

    pip install -e ".[bo]"                         # BoTorch and GPyTorch (not needed by MANGO itself)
    python benchmarks/turbo.py --shard 0/2 & python benchmarks/turbo.py --shard 1/2    # resumes
    python benchmarks/turbo.py --table-only

TuRBO-1 (Eriksson et al., NeurIPS 2019) written as a MANGO ask/tell optimizer over the latent box (scaled to
[0, 1]^d): a Sobol start of one batch, then per batch a BoTorch ``SingleTaskGP`` (its default kernel and
priors) on this restart's last ``window`` points, and a batch by Thompson sampling (``MaxPosteriorSampling``)
over Sobol candidates inside the trust region, each perturbing ``min(1, 20/d)`` of the best point's
coordinates. The hyperparameters are fitted (``fit_gpytorch_mll``) every ``refit`` batches and reused in
between: in 64 dimensions one fit takes ~4 s on 200 points and ~9 s on 400. The region is a box around the
best point with sides shaped by the GP's lengthscales; it doubles after 3 improving batches in a row, halves
after ``ceil(d / batch)`` batches without, and the search restarts when its side falls below 0.5^7 (all as
in the paper).

Measured as the default runs (``benchmarks/efficiency.py``: readout ``rate+drive`` until the first spike,
noise-free score of the best recorded image at 250 / 1,000 / 3,000) on the 8 mnist-snn hidden units of the
efficiency draw, seeds 0-2, against the medians of the default's and ng-portfolio's recorded runs (same seeds).
"""
from __future__ import annotations

import argparse
import json
import math

import efficiency
import numpy as np
import torch
from _common import RESULTS, Objective, append, read_runs, record_args

import mango
from mango.optimizers.auto import DRIVE
from mango.optimizers.base import Optimizer
from mango.optimizers.cma import CMAES
from mango.optimizers.options import register


class TuRBO(Optimizer):
    """TuRBO-1 over a bounded continuous latent (see the module note)."""

    preferred_batch = 20

    def __init__(self, space, seed: int = 0, batch: int = 20, window: int = 200, candidates: int = 2000,
                 refit: int = 5) -> None:
        super().__init__(space, seed)
        self.refit, self.batches, self.hyper = int(refit), 0, None
        from torch.quasirandom import SobolEngine
        self.preferred_batch, self.window, self.n_cand = int(batch), int(window), int(candidates)
        self.dim = space.dim
        self.lo, self.hi = space.bounds
        self.sobol = SobolEngine(self.dim, scramble=True, seed=self.seed)
        self.fail_tol, self.succ_tol = math.ceil(max(4 / self.preferred_batch, self.dim / self.preferred_batch)), 3
        self._restart()

    def _restart(self) -> None:
        self.X = torch.empty(0, self.dim, dtype=torch.float64)
        self.Y = torch.empty(0, dtype=torch.float64)
        self.length, self.succ, self.fail, self.best, self.hyper = 0.8, 0, 0, -math.inf, None

    def _propose(self, k: int) -> torch.Tensor:
        from botorch.fit import fit_gpytorch_mll
        from botorch.generation import MaxPosteriorSampling
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood
        X, Y = self.X[-self.window:], self.Y[-self.window:]
        gp = SingleTaskGP(X, Y[:, None], outcome_transform=Standardize(m=1))
        if self.hyper is None or self.batches % self.refit == 0:
            try:
                fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
            except Exception:  # noqa: BLE001 - a failed fit keeps the prior's hyperparameters (as BoTorch warns)
                pass
            self.hyper = {k: v.clone() for k, v in gp.state_dict().items() if not k.startswith("outcome_transform")}
        else:  # the last fit's hyperparameters on the new data: fitting every batch costs seconds
            gp.load_state_dict(self.hyper, strict=False)
        self.batches += 1
        centre = self.X[int(torch.argmax(self.Y))]
        ls = gp.covar_module.lengthscale.detach().reshape(-1).double()
        weights = ls / ls.mean()
        weights = weights / weights.prod().pow(1 / self.dim)
        lo = (centre - weights * self.length / 2).clamp(0, 1)
        hi = (centre + weights * self.length / 2).clamp(0, 1)
        pert = lo + (hi - lo) * self.sobol.draw(self.n_cand).double()
        mask = torch.rand(self.n_cand, self.dim, generator=self.generator, dtype=torch.float64) <= min(1, 20 / self.dim)
        empty = mask.sum(1) == 0
        mask[empty, torch.randint(0, self.dim, (int(empty.sum()),), generator=self.generator)] = True
        cand = torch.where(mask, pert, centre.expand(self.n_cand, -1))
        with torch.no_grad():
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=self.generator)))  # BoTorch's sampler RNG
            return MaxPosteriorSampling(model=gp, replacement=False)(cand, num_samples=k).detach()

    def _ask(self, k: int) -> torch.Tensor:
        unit = self.sobol.draw(k).double() if len(self.Y) < self.preferred_batch else self._propose(k)
        return self.lo + (self.hi - self.lo) * unit

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        unit = (candidates.double() - self.lo) / (self.hi - self.lo)
        values = torch.where(torch.isfinite(values), values, torch.full_like(values, -1e6))
        if len(self.Y) >= self.preferred_batch:  # a trust-region batch: grow, shrink or restart
            improved = float(values.max()) > self.best + 1e-3 * abs(self.best)
            self.succ, self.fail = (self.succ + 1, 0) if improved else (0, self.fail + 1)
            if self.succ == self.succ_tol:
                self.length, self.succ = min(2 * self.length, 1.6), 0
            elif self.fail == self.fail_tol:
                self.length, self.fail = self.length / 2, 0
        self.X, self.Y = torch.cat([self.X, unit]), torch.cat([self.Y, values.double()])
        self.best = max(self.best, float(values.max()))
        if self.length < 0.5 ** 7:
            self._restart()


class TuRBOThenSepCMA(Optimizer):
    """TuRBO (batches of 18) until ``switch`` queries are told, then sep-CMA-ES (the default) from TuRBO's best
    point with ``step`` times the default's first step (0.3 box widths): TuRBO's lead at 250 queries without its
    stall at 3,000."""

    preferred_batch = 18  # sep-CMA-ES's population in 64 dimensions, so that its generations are whole batches

    def __init__(self, space, seed: int = 0, switch: int = 250, step: float = 0.5) -> None:
        super().__init__(space, seed)
        self.turbo, self.switch, self.step, self.told = TuRBO(space, seed, batch=18), int(switch), float(step), 0
        self.best_x, self.best_v, self.cma = None, -math.inf, None

    def _ask(self, k: int) -> torch.Tensor:
        if self.told < self.switch:
            return self.turbo.ask(k)  # whole batches: the switch comes after the batch that reaches it
        if self.cma is None:
            from cmaes import SepCMA

            self.cma = CMAES(self.space, self.seed, separable=True)
            self.cma.sigma *= self.step
            self.cma.es = SepCMA(mean=self.best_x.numpy().astype(np.float64), sigma=self.cma.sigma,
                                 population_size=self.cma.popsize, seed=self.seed % 2**32)
        return self.cma.ask(k)

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        i = int(torch.argmax(torch.where(torch.isfinite(values), values, torch.full_like(values, -math.inf))))
        if float(values[i]) > self.best_v:
            self.best_x, self.best_v = candidates[i].double().clone(), float(values[i])
        (self.turbo if self.cma is None else self.cma).tell(candidates, values)
        self.told += len(values)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    record_args(p, "turbo-runs.jsonl", "turbo.json", seeds=3)
    p.add_argument("--method", default="turbo", help="turbo, or turbo-sepcma[+switch=N][+step=S]: TuRBO for 250 "
                   "queries, then sep-CMA-ES from its best with 0.5x its usual first step (--runs another file)")
    a = p.parse_args()
    if a.method.partition("+")[0] not in ("turbo", "turbo-sepcma"):
        p.error(f"unknown method {a.method!r}; allowed: turbo, turbo-sepcma[+switch=N][+step=S]")
    torch.set_num_threads(1)
    register("turbo", TuRBO, "TuRBO-1 (benchmark only)")
    register("turbo-sepcma", TuRBOThenSepCMA, "TuRBO-1, then sep-CMA-ES from its best (benchmark only)")
    shard, shards = a.shard
    draw = efficiency.draw(24, 0)
    units = [(m, u) for m, u in draw if m == "mnist-snn" and not u.startswith("class:")]
    done = {(r["unit"], r["seed"]) for r in read_runs(a.runs)}
    gen = mango.GENERATORS.create("mnist-sngan")
    plan = [(seed, m, u) for seed in range(a.seeds) for m, u in units]
    for i, (seed, model, unit) in enumerate(plan):
        if a.table_only or i % shards != shard or (efficiency.name(model, unit), seed) in done:
            continue
        f = Objective(gen, mango.make_target(model, unit, readout=DRIVE))
        rec = efficiency.run_one(f, efficiency.name(model, unit), a.method, seed, "clean", gen.space,
                                 draw.index((model, unit)))  # told rate+drive until the first spike, as the default
        append(a.runs, rec)
        print(rec["unit"], seed, rec["at"], f"{rec['wall_s']:.0f} s (optimizer {rec['optimizer_s']:.0f} s)", flush=True)
    summary = report(read_runs(a.runs), a.seeds, a.method)
    if shard == 0:
        a.out.write_text(json.dumps({"meta": {"seeds": a.seeds, "torch": torch.__version__}, "summary": summary},
                                    indent=1) + "\n")
        print(f"wrote {a.out}")


def report(runs: list[dict], seeds: int, method: str = "turbo") -> dict:
    """Per unit, the median over seeds of turbo, the default and ng-portfolio (their recorded runs)."""
    recorded = [r for r in read_runs(RESULTS / "efficiency-runs.jsonl") if r["kind"] == "run"
                and r["condition"] == "clean" and r["seed"] < seeds and r["method"] in ("auto", "ng-portfolio")]
    summary: dict = {}
    print(f"| unit | {method} @250 / @1000 / @3000 | default (sepcma) | ng-portfolio |\n|---|---|---|---|")
    for unit in sorted({r["unit"] for r in runs}):
        row = {}
        for name, rs in ((method, runs), ("auto", recorded), ("ng-portfolio", recorded)):
            mine = [r for r in rs if r["unit"] == unit and r["method"] == name and r["seed"] < seeds]
            row[name] = [float(np.median([r["at"][b] for r in mine])) if mine else math.nan
                           for b in ("250", "1000", "3000")]
        summary[unit] = row
        print(f"| {unit} | " + " | ".join(" / ".join(f"{x:.3f}" for x in v) for v in row.values()) + " |")
    if summary:
        means = {m: np.nanmean([row[m] for row in summary.values()], 0).round(3).tolist() for m in next(
            iter(summary.values()))}
        summary["mean"] = means
        print("| mean | " + " | ".join(" / ".join(f"{x:.3f}" for x in v) for v in means.values()) + " |")
    return summary


if __name__ == "__main__":
    main()
