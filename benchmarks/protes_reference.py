"""Validate MANGO's torch-native PROTES against the reference ``protes`` package (JAX).

    pip install -e ".[reference]"          # protes + jax (CPU)
    python benchmarks/protes_reference.py              # d=10, n=16, m=10^4, 5 seeds, 3 functions
    python benchmarks/protes_reference.py --quick      # 2 functions, m=2000, 3 seeds
    python benchmarks/protes_reference.py --functions alpine,schwefel --settings protes,tt-s

Run time is dominated by the small-k settings (m/k optimizer updates each): the default takes 12-14 min on
a shared 2-core machine (one thread), ~5 min of it our tt-s and tt-s/full; ``--quick`` ~1.5 min.
The reference runs in float32 (its default; ``--x64`` for float64), ours in float64.

Standard benchmark functions are minimized on a grid of ``n = 2^q`` evenly spaced points per dimension
over each function's usual domain. Both implementations get the same hyperparameters (k, k_top, k_gd,
lr, r) and the same budget m; ours maximizes, so it is told ``-f``. Settings:

* ``default``   k=100, k_top=10  (the reference's defaults)
* ``protes``    k=10,  k_top=1   (the paper's PROTES preset; MANGO's ``protes``)
* ``tt-s``      k=5,   k_top=1,  quantized: d*q binary modes (MANGO's ``tt-s``)
* ``tt-s/full`` k=5,   k_top=1,  unquantized (d modes of size n)
* ``tt-b``      k=25,  k_top=5,  quantized (MANGO's ``tt-b``)
* ``tt-b/full`` k=25,  k_top=5,  unquantized

For a quantized setting the reference runs on the quantized problem: d*q binary modes, a multi-index
mapped back to grid indices most significant bit first (``mango.optimizers.protes.from_bits``), the
same mapping our optimizer uses internally.

Each cell reports the mean and std over seeds of the best value found within m evaluations (tracked in
float64 by the wrapper around f, for both), the wall time per run, and for the reference the part of it
spent before its second batch (tracing + XLA compilation, paid on every ``protes.protes`` call). The
verdict is ``worse`` when ours' mean exceeds the reference mean by more than one reference std,
``better`` when it is below by more than that, ``same`` otherwise. ``p`` is Welch's two-sided t-test.
Writes ``benchmarks/results/protes_reference.json`` (per-run values included).
"""
from __future__ import annotations

import os

# one thread for everything: small tensors, a shared CPU (set before jax / torch are imported)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from mango.generators.space import LatentSpace  # noqa: E402
from mango.optimizers.protes import Protes, from_bits  # noqa: E402

# ---------------------------------------------------------------------------------------------------------
# benchmark functions: X [B, d] (float64) -> [B]; the usual domains (as in teneva / the PROTES paper)


def ackley(X: np.ndarray) -> np.ndarray:
    a, b, c = 20.0, 0.2, 2 * np.pi
    return (-a * np.exp(-b * np.sqrt((X**2).mean(1))) - np.exp(np.cos(c * X).mean(1)) + a + np.e)


def rastrigin(X: np.ndarray) -> np.ndarray:
    return 10.0 * X.shape[1] + (X**2 - 10.0 * np.cos(2 * np.pi * X)).sum(1)


def rosenbrock(X: np.ndarray) -> np.ndarray:
    return (100.0 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1.0 - X[:, :-1]) ** 2).sum(1)


def alpine(X: np.ndarray) -> np.ndarray:
    return np.abs(X * np.sin(X) + 0.1 * X).sum(1)


def schwefel(X: np.ndarray) -> np.ndarray:
    return 418.9829 * X.shape[1] - (X * np.sin(np.sqrt(np.abs(X)))).sum(1)


FUNCTIONS = {  # name -> (f, domain)
    "ackley": (ackley, (-32.768, 32.768)),
    "rastrigin": (rastrigin, (-5.12, 5.12)),
    "rosenbrock": (rosenbrock, (-2.048, 2.048)),
    "alpine": (alpine, (-10.0, 10.0)),
    "schwefel": (schwefel, (-500.0, 500.0)),
}

SETTINGS = {  # name -> (k, k_top, quantized)
    "default": (100, 10, False),
    "protes": (10, 1, False),
    "tt-s": (5, 1, True),
    "tt-s/full": (5, 1, False),
    "tt-b": (25, 5, True),
    "tt-b/full": (25, 5, False),
}


class GridFunction:
    """f on the grid: integer indices ``[B, d]`` -> values ``[B]`` (float64)."""

    def __init__(self, name: str, d: int, n: int) -> None:
        self.name, self.d, self.n = name, d, n
        self.f, (lo, hi) = FUNCTIONS[name][0], FUNCTIONS[name][1]
        self.grid = np.linspace(lo, hi, n)

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        return self.f(self.grid[np.asarray(idx, dtype=np.int64)])

    def grid_minimum(self) -> float | None:
        """The exact minimum over the grid, where cheap: separable sums, a chain DP for Rosenbrock, and
        for Ackley an enumeration of multisets of |x| (it depends only on sum x^2 and sum cos 2 pi x)."""
        g, d = self.grid, self.d
        if self.name in ("rastrigin", "alpine", "schwefel"):
            return float(self.f(g[:, None]).min() * d)  # f(x) = sum of one 1-D term per coordinate
        if self.name == "rosenbrock":  # min over paths of sum_i c(x_i, x_{i+1})
            cost = 100.0 * (g[None, :] - g[:, None] ** 2) ** 2 + (1.0 - g[:, None]) ** 2  # [x_i, x_{i+1}]
            best = np.zeros(self.n)
            for _ in range(d - 1):
                best = (best[:, None] + cost).min(0)
            return float(best.min())
        if self.name == "ackley":
            u = np.unique(np.round(np.abs(g), 12))
            if math.comb(len(u) + d - 1, d) > 300_000:
                return None
            combos = np.array(list(itertools.combinations_with_replacement(u, d)))
            return float(ackley(combos).min())
        return None


# ---------------------------------------------------------------------------------------------------------
# the two implementations, each run for exactly m evaluations of f; best value tracked here in float64


class Tracker:
    def __init__(self) -> None:
        self.best, self.evals, self.calls, self.t_second = math.inf, 0, 0, None
        self.t0 = time.perf_counter()
        self.curve: list[tuple[int, float]] = []

    def record(self, y: np.ndarray) -> None:
        self.calls += 1
        if self.calls == 2:
            self.t_second = time.perf_counter() - self.t0
        self.evals += len(y)
        b = float(np.min(y))
        if b < self.best:
            self.best = b
            self.curve.append((self.evals, b))


def run_reference(fn: GridFunction, q: int, k: int, k_top: int, quantized: bool, m: int, seed: int,
                  k_gd: int, lr: float, r: int) -> dict:
    import protes

    tr = Tracker()

    def f(I):
        I = np.asarray(I)
        if quantized:
            I = from_bits(torch.from_numpy(I.astype(np.int64)), q).numpy()
        y = fn(I)
        tr.record(y)
        return y

    d, n = (fn.d * q, 2) if quantized else (fn.d, fn.n)
    tr.t0 = time.perf_counter()
    _, y_opt = protes.protes(f, d=d, n=n, m=m, k=k, k_top=k_top, k_gd=k_gd, lr=lr, r=r, seed=seed)
    wall = time.perf_counter() - tr.t0
    assert tr.evals == m, (tr.evals, m)
    assert abs(float(y_opt) - tr.best) <= 1e-5 * max(1.0, abs(tr.best)), (float(y_opt), tr.best)
    return {"best": tr.best, "wall_s": wall, "warmup_s": tr.t_second, "curve": tr.curve}


def run_ours(fn: GridFunction, q: int, k: int, k_top: int, quantized: bool, m: int, seed: int,
             k_gd: int, lr: float, r: int) -> dict:
    tr = Tracker()
    opt = Protes(LatentSpace(fn.d, fn.n), seed, k=k, k_top=k_top, k_gd=k_gd, lr=lr, rank=r, quantize=quantized)
    assert opt.quantize == quantized and (opt.q == q if quantized else opt.q == 1)
    while tr.evals < m:
        z = opt.ask(min(k, m - tr.evals))
        y = fn(z.numpy())
        tr.record(y)
        opt.tell(z, torch.from_numpy(-y))
    wall = time.perf_counter() - tr.t0
    return {"best": tr.best, "wall_s": wall, "warmup_s": tr.t_second, "curve": tr.curve}


# ---------------------------------------------------------------------------------------------------------


def summarize(ref: list[float], ours: list[float]) -> dict:
    from scipy.stats import ttest_ind

    rm, rs, om, os_ = np.mean(ref), np.std(ref, ddof=1), np.mean(ours), np.std(ours, ddof=1)
    tol = rs + 1e-9 * max(1.0, abs(rm))
    verdict = "worse" if om - rm > tol else "better" if rm - om > tol else "same"
    with warnings.catch_warnings():  # nearly identical samples (e.g. every seed at the grid minimum)
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(ttest_ind(ours, ref, equal_var=False).pvalue) if (rs > 0 or os_ > 0) else 1.0
    return {"ref_mean": float(rm), "ref_std": float(rs), "ours_mean": float(om), "ours_std": float(os_),
            "delta": float(om - rm), "verdict": verdict, "p_welch": p if p == p else 1.0}


def versions() -> dict:
    from importlib.metadata import version

    import jax
    import jaxlib
    import optax

    return {"protes": version("protes"), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "optax": optax.__version__, "jax_enable_x64": bool(jax.config.jax_enable_x64),
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--functions", help=f"comma-separated, from {','.join(FUNCTIONS)} "
                                       "(default: ackley,rastrigin,rosenbrock)")
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {','.join(SETTINGS)}")
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--q", type=int, default=4, help="n = 2^q grid points per dimension")
    p.add_argument("--budget", type=int, help="m, evaluations per run (default 10000)")
    p.add_argument("--seeds", type=int, help="default 5")
    p.add_argument("--k-gd", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-2)
    p.add_argument("--rank", type=int, default=5)
    p.add_argument("--x64", action="store_true", help="run the reference in float64 (its default is float32)")
    p.add_argument("--jax-cache", default="tmp",
                   help="XLA persistent compilation cache dir for the reference, which re-jits on every "
                        "protes.protes call (~2 s each; ~0.5 s with the cache): 'tmp' (a fresh temporary "
                        "dir, the default), a path, or 'none'")
    p.add_argument("--quick", action="store_true", help="defaults ackley,rastrigin; m=2000; 3 seeds")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "protes_reference.json")
    a = p.parse_args()
    quick = {"functions": "ackley,rastrigin", "budget": 2000, "seeds": 3}
    full = {"functions": "ackley,rastrigin,rosenbrock", "budget": 10_000, "seeds": 5}
    for key, value in (quick if a.quick else full).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    try:
        import jax
        import protes  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"needs the reference package: pip install -e '.[reference]' ({e})") from e
    if a.x64:
        jax.config.update("jax_enable_x64", True)
    if a.jax_cache != "none":
        cache = tempfile.mkdtemp(prefix="jax-cache-") if a.jax_cache == "tmp" else a.jax_cache
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    torch.set_num_threads(1)
    functions, settings = a.functions.split(","), a.settings.split(",")
    n, hp = 2**a.q, {"k_gd": a.k_gd, "lr": a.lr, "r": a.rank}
    console = Console(width=200)
    meta = {"dim": a.dim, "q": a.q, "n": n, "budget": a.budget, "seeds": a.seeds, **hp, "jax_cache": a.jax_cache,
            "versions": versions(), "domains": {f: FUNCTIONS[f][1] for f in functions}}
    console.print(meta)
    rows, runs, t_start = [], [], time.perf_counter()
    for name in functions:
        fn = GridFunction(name, a.dim, n)
        gmin = fn.grid_minimum()
        for s in settings:
            k, k_top, quantized = SETTINGS[s]
            res = {"reference": [], "ours": []}
            for seed in range(a.seeds):
                for impl, run in (("reference", run_reference), ("ours", run_ours)):
                    out = run(fn, a.q, k, k_top, quantized, a.budget, seed, **hp)
                    res[impl].append(out)
                    runs.append({"function": name, "setting": s, "impl": impl, "seed": seed, **out})
            row = {"function": name, "setting": s, "k": k, "k_top": k_top, "quantized": quantized,
                   "modes": f"{a.dim * a.q}x2" if quantized else f"{a.dim}x{n}", "grid_min": gmin,
                   **summarize([o["best"] for o in res["reference"]], [o["best"] for o in res["ours"]])}
            for impl in res:
                row[f"{impl}_wall_s"] = float(np.mean([o["wall_s"] for o in res[impl]]))
                row[f"{impl}_warmup_s"] = float(np.mean([o["warmup_s"] or 0.0 for o in res[impl]]))
            rows.append(row)
            console.print(f"[{time.perf_counter() - t_start:7.1f}s] {name:10s} {s:10s} "
                          f"ref {row['ref_mean']:.4g}±{row['ref_std']:.3g}  ours {row['ours_mean']:.4g}"
                          f"±{row['ours_std']:.3g}  {row['verdict']}")
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps({"meta": meta, "rows": rows, "runs": runs}, indent=1) + "\n")

    table = Table(title=f"PROTES: reference (protes {meta['versions']['protes']}, jax {meta['versions']['jax']}) "
                        f"vs MANGO (torch) — d={a.dim}, n={n}, m={a.budget}, {a.seeds} seeds, "
                        f"k_gd={a.k_gd}, lr={a.lr}, r={a.rank}; best value found (minimized), mean ± std")
    for col in ("function", "grid min", "setting", "k/k_top", "modes", "reference", "ours", "ours − ref",
                "p", "verdict", "ref s (warmup)", "ours s"):
        table.add_column(col, justify="left" if col in ("function", "setting", "verdict") else "right")
    for r_ in rows:
        color = {"worse": "red", "better": "green", "same": "white"}[r_["verdict"]]
        table.add_row(r_["function"], "-" if r_["grid_min"] is None else f"{r_['grid_min']:.4g}", r_["setting"],
                      f"{r_['k']}/{r_['k_top']}", r_["modes"], f"{r_['ref_mean']:.4g} ± {r_['ref_std']:.3g}",
                      f"{r_['ours_mean']:.4g} ± {r_['ours_std']:.3g}", f"{r_['delta']:+.3g}",
                      f"{r_['p_welch']:.2f}", f"[{color}]{r_['verdict']}[/{color}]",
                      f"{r_['reference_wall_s']:.1f} ({r_['reference_warmup_s']:.1f})", f"{r_['ours_wall_s']:.1f}")
    console.print(table)
    meta["total_s"] = round(time.perf_counter() - t_start, 1)
    a.out.write_text(json.dumps({"meta": meta, "rows": rows, "runs": runs}, indent=1) + "\n")
    console.print(f"wrote {a.out} ({meta['total_s']} s)")


if __name__ == "__main__":
    main()
