"""The XDream genetic algorithm (ga, ga-ponce) and TTOpt: GA mechanics, TTOpt's batches and thread, beating random.

Shapes, dtypes, determinism, failed values and bad calls are checked for every optimizer in
test_optimizer_conformance.py.
"""
from __future__ import annotations

import gc
import subprocess
import sys

import numpy as np
import pytest
import torch

from mango.generators.space import LatentSpace
from mango.optimizers import OPTIMIZERS

BOX = LatentSpace(6, 16, (-4.0, 4.0))


def objective(space: LatentSpace, t: torch.Tensor):
    """Separable ``-sum (z - t)^2`` on latent values (grid indices or box floats; codes for categorical spaces)."""

    def f(z: torch.Tensor) -> torch.Tensor:
        if z.is_floating_point():
            x = z.double()
        else:
            x = space.grid().double()[z] if space.bounds is not None else z.double()
        return -((x - t) ** 2).sum(1)

    return f


def drive(opt, f, budget: int, batch: int | None = None) -> tuple[list[torch.Tensor], float]:
    asked, best, done = [], -np.inf, 0
    while done < budget:
        k = min(batch or opt.preferred_batch, budget - done)
        z = opt.ask(k)
        v = f(z)
        opt.tell(z, v)
        asked.append(z)
        best, done = max(best, float(v.max())), done + k
    return asked, best


def test_ga_grid_option_gives_grid_indices():
    opt = OPTIMIZERS.create("ga", BOX, seed=0, grid=True)
    z = opt.ask(20)
    assert z.dtype == torch.long and BOX.check(z) is z


def test_ga_normal_start_is_xdreams_standard_normal_codes_on_the_box():
    """``start=normal``: the first generation is XDream's N(0, 1) codes in its units (box width / 8 per unit: on
    [-4, 4] exactly N(0, 1)); the default draws it uniformly from the box; on codes both are uniform."""
    space = LatentSpace(64, 16, (-4.0, 4.0))
    normal = OPTIMIZERS.create("ga", space, seed=0, start="normal").ask(20).numpy()
    uniform = OPTIMIZERS.create("ga", space, seed=0).ask(20).numpy()
    assert abs(normal.mean()) < 0.1 and 0.9 < normal.std() < 1.1
    assert 2.1 < uniform.std() < 2.5  # uniform on [-4, 4]: sd 8 / sqrt(12) = 2.31
    codes = LatentSpace(64, 512, None)
    z = OPTIMIZERS.create("ga", codes, seed=0, start="normal").ask(20)
    assert torch.equal(z, OPTIMIZERS.create("ga", codes, seed=0).ask(20))


@pytest.mark.parametrize("name, population", [("ga", 20), ("ga-ponce", 40)])
def test_ga_population_size_is_the_preset(name, population):
    opt = OPTIMIZERS.create(name, BOX, seed=0)
    assert opt.preferred_batch == population == opt.hyperparameters()["population"]
    z = opt.ask(population)
    opt.tell(z, torch.arange(population, dtype=torch.float64))
    assert len(opt._genes) == population and opt._served == 0  # a new generation of the same size


def one_generation(opt, space=BOX):
    z = opt.ask(opt.population)
    v = objective(space, torch.zeros(space.dim, dtype=torch.float64))(z)
    opt.tell(z, v)
    return z, v, opt.ask(opt.population)


def test_ga_children_genes_come_from_two_parents_and_best_is_conserved():
    opt = OPTIMIZERS.create("ga", BOX, seed=2, mutation_rate=0.0)
    parents, v, children = one_generation(opt)
    assert torch.equal(children[0], parents[int(v.argmax())])  # n_conserve = 1: the best passes unchanged
    for child in children[1:]:  # heritability: every gene from one of two members of the last generation
        same = child[None] == parents  # [population, dim]
        assert same.any(0).all()
        assert any((same[a] | same[b]).all() for a in range(len(parents)) for b in range(len(parents)))


def test_ga_high_selectivity_breeds_only_from_the_best():
    opt = OPTIMIZERS.create("ga", BOX, seed=3, mutation_rate=0.0, selectivity=1e9)
    parents, v, children = one_generation(opt)
    assert (children == parents[int(v.argmax())]).all()


def test_ga_full_heritability_copies_one_parent_and_mutation_moves_genes():
    opt = OPTIMIZERS.create("ga", BOX, seed=4, mutation_rate=0.0, heritability=1.0)
    parents, _, children = one_generation(opt)
    assert all((child[None] == parents).all(1).any() for child in children)
    mutated = OPTIMIZERS.create("ga", BOX, seed=4, mutation_rate=1.0)
    parents, _, children = one_generation(mutated)
    assert not (children[1:, :, None] == parents.T[None]).any()  # every child gene moved off every parent's


def test_ga_asks_beyond_the_generation_grow_it():
    opt = OPTIMIZERS.create("ga", BOX, seed=0)
    z = opt.ask(30)
    assert len(torch.unique(z, dim=0)) == 30
    opt.tell(z, torch.arange(30, dtype=torch.float64))
    assert torch.equal(opt.ask(1)[0], z[-1])  # the best of all 30 is conserved


@pytest.mark.parametrize("name", ["ga", "ttopt"])
def test_beats_random_search_on_a_separable_grid_objective(name):
    space = LatentSpace(20, 16, (-4.0, 4.0))
    wins = []
    for seed in range(3):
        g = torch.Generator().manual_seed(100 + seed)
        f = objective(space, space.grid()[torch.randint(0, 16, (20,), generator=g)].double())
        best = drive(OPTIMIZERS.create(name, space, seed=seed), f, 2000)[1]
        rand = drive(OPTIMIZERS.create("random", space, seed=seed), f, 2000)[1]
        wins.append((best, rand))
    assert np.mean([b for b, _ in wins]) > np.mean([r for _, r in wins]), wins


def test_ttopt_serves_its_batches_across_asks_and_pads_beyond():
    opt = OPTIMIZERS.create("ttopt", BOX, seed=0)
    assert opt.quantize and opt.preferred_batch == 32
    f = objective(BOX, torch.zeros(BOX.dim, dtype=torch.float64))
    a = drive(OPTIMIZERS.create("ttopt", BOX, seed=0), f, 200, batch=3)[0]  # ttopt's batches split up
    b = drive(OPTIMIZERS.create("ttopt", BOX, seed=0), f, 200, batch=50)[0]  # asks longer than its batches
    assert torch.equal(torch.cat(a)[:8], torch.cat(b)[:8])  # its first batch (8 points) is served either way
    assert all(len(z) == 50 for z in b)


def test_ttopt_stopping_mid_batch_does_not_hang_the_interpreter():
    code = ("import torch; from mango.optimizers import OPTIMIZERS; from mango.generators.space import LatentSpace\n"
            "o = OPTIMIZERS.create('ttopt', LatentSpace(4, 8, (-1.0, 1.0)), seed=0); z = o.ask(5)\n"
            "o.tell(z, torch.zeros(5)); o.ask(2); print('done')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr
    opt = OPTIMIZERS.create("ttopt", BOX, seed=0)
    opt.ask(3)
    thread = opt._thread
    opt.close()  # (or garbage collection) lets the worker thread end
    thread.join(10)
    assert not thread.is_alive()
    opt = OPTIMIZERS.create("ttopt", BOX, seed=0)
    opt.ask(3)
    thread = opt._thread
    del opt
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
