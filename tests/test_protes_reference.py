"""Our torch PROTES against the reference package (``protes``, JAX): the same likelihood on the same
cores, the same Adam update from the same elites, and a search at least as good with the same
hyperparameters and budget. Skipped unless the optional extra is installed: pip install -e ".[reference]".
The full comparison is ``benchmarks/protes_reference.py``.
"""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
import torch

# one XLA thread (only takes effect if jax is first imported here)
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
jax = pytest.importorskip("jax", reason="the reference PROTES needs jax: pip install -e '.[reference]'")
pytest.importorskip("protes", reason="the reference PROTES package is not installed: pip install -e '.[reference]'")
jnp = pytest.importorskip("jax.numpy")
ref = importlib.import_module("protes.protes")  # the module (the package re-exports the function as `protes`)
from jax.experimental import enable_x64  # noqa: E402

from mango.generators.space import LatentSpace  # noqa: E402
from mango.optimizers import protes as P  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    """The reference re-jits on every ``protes.protes`` call (~2 s); a persistent cache cuts that to ~0.5 s."""
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")
    old = {key: getattr(jax.config, key) for key in keys}
    new = (str(tmp_path_factory.mktemp("jax-cache")), 0, 0)
    for key, value in zip(keys, new, strict=True):
        jax.config.update(key, value)
    yield
    for key, value in old.items():
        jax.config.update(key, value)


def random_tt(d: int, n: int, r: int, seed: int) -> torch.Tensor:
    """Our padded layout ``Y [d, n, r, r]`` (``Y[k, i]`` = the reference's ``Y_k[:, i, :]``), mixed signs."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(d, n, r, r, generator=g, dtype=torch.float64) - 0.3


def reference_cores(Y: torch.Tensor) -> list[np.ndarray]:
    """The reference's ``[Yl [1, n, r], Ym [d-2, r, n, r], Yr [r, n, 1]]`` holding the same TT-tensor
    (float64 numpy: make them jax arrays inside ``enable_x64``)."""
    T = Y.detach().permute(0, 2, 1, 3).numpy()  # [d, r, n, r]
    return [T[0, :1], T[1:-1], T[-1, :, :, :1]]


@pytest.mark.parametrize("d,n,r", [(7, 5, 3), (24, 2, 5)])
def test_log_likelihood_matches_the_reference(d, n, r):
    Y = random_tt(d, n, r, seed=d)
    idx = torch.randint(0, n, (8, d), generator=torch.Generator().manual_seed(1))
    with enable_x64():
        Yl, Ym, Yr = map(jnp.asarray, reference_cores(Y))
        Zm = ref._interface_matrices(Ym, Yr)
        theirs = np.array([float(ref._likelihood(Yl, Ym, Yr, Zm, jnp.asarray(i.numpy()))) for i in idx])
    ours = P.log_likelihood(Y, idx).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8)


def test_update_matches_the_reference():
    """One batch through the reference's own loop (its sampler, top-k_top selection, k_gd Adam steps),
    replayed through ours from the same cores: the updated TT-tensors agree."""
    d, n, r, k, k_top, k_gd, lr = 6, 4, 3, 12, 3, 3, 5e-2
    Y = random_tt(d, n, r, seed=3).abs()  # the reference initializes in [0, 1)
    seen = {}

    def f(I):
        seen["I"] = np.asarray(I)
        seen["y"] = np.random.default_rng(0).permutation(len(seen["I"])).astype(np.float64)  # distinct values
        return seen["y"]

    info = {}
    with enable_x64():
        ref.protes(f, d, n, m=k, k=k, k_top=k_top, k_gd=k_gd, lr=lr, r=r, seed=0,
                   P=[jnp.asarray(G) for G in reference_cores(Y)], info=info, with_info_p=True, do_final_update=True)
        theirs = [np.asarray(G) for G in info["P"]]
    assert all(G.dtype == np.float64 for G in theirs)
    opt = P.Protes(LatentSpace(d, n), 0, k=k, k_top=k_top, k_gd=k_gd, lr=lr, rank=r, quantize=False)
    with torch.no_grad():
        opt.Y.copy_(Y)
    # the method's own update from the reference's samples (the public tell only takes what was asked)
    opt._tell(torch.from_numpy(seen["I"].astype(np.int64)), torch.from_numpy(-seen["y"]))  # ours maximizes
    mine = reference_cores(opt.Y)
    assert not np.allclose(mine[1], reference_cores(Y)[1])  # it did move
    for a, b in zip(mine, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)


# ---- the search: same hyperparameters, same budget, several seeds

GRIDS = {"ackley": (-32.768, 32.768), "rastrigin": (-5.12, 5.12)}


def grid_function(name: str, n: int):
    grid = np.linspace(*GRIDS[name], n)

    def f(idx) -> np.ndarray:
        X = grid[np.asarray(idx, dtype=np.int64)]
        if name == "ackley":
            return (-20.0 * np.exp(-0.2 * np.sqrt((X**2).mean(1))) - np.exp(np.cos(2 * np.pi * X).mean(1))
                    + 20.0 + np.e)
        return 10.0 * X.shape[1] + (X**2 - 10.0 * np.cos(2 * np.pi * X)).sum(1)

    return f


def best_reference(f, d: int, n: int, m: int, k: int, k_top: int, seed: int) -> float:
    best = [np.inf]

    def wrapped(I):
        y = f(I)
        best[0] = min(best[0], float(y.min()))
        return y

    ref.protes(wrapped, d, n, m=m, k=k, k_top=k_top, seed=seed, info={})  # its defaults: k_gd=1, lr=5e-2, r=5
    return best[0]


def best_ours(f, d: int, n: int, m: int, k: int, k_top: int, seed: int) -> float:
    opt = P.Protes(LatentSpace(d, n), seed, k=k, k_top=k_top, k_gd=1, lr=5e-2, rank=5, quantize=False)
    best, used = np.inf, 0
    while used < m:
        z = opt.ask(min(k, m - used))
        y = f(z.numpy())
        opt.tell(z, torch.from_numpy(-y))
        best, used = min(best, float(y.min())), used + len(y)
    return best


@pytest.mark.parametrize("name", list(GRIDS))
def test_search_at_least_as_good_as_the_reference(name):
    """The `protes` preset (k=10, k_top=1) on d=8, n=16, m=2000, 5 seeds: our mean best value is within one
    reference std of the reference's mean best, or below it (minimization; ours is told -f)."""
    d, n, m, k, k_top, seeds = 8, 16, 2000, 10, 1, range(5)
    f = grid_function(name, n)
    theirs = np.array([best_reference(f, d, n, m, k, k_top, s) for s in seeds])
    ours = np.array([best_ours(f, d, n, m, k, k_top, s) for s in seeds])
    msg = f"{name}: ours {ours.mean():.4g} ± {ours.std(ddof=1):.3g} vs reference {theirs.mean():.4g} ± " \
          f"{theirs.std(ddof=1):.3g} (ours {ours.round(4).tolist()}, reference {theirs.round(4).tolist()})"
    assert ours.mean() <= theirs.mean() + theirs.std(ddof=1) + 1e-9, msg
    print(msg)
