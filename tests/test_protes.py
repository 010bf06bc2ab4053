"""PROTES: the likelihood, the sampler, the QTT mapping and the optimizer's behaviour."""
from __future__ import annotations

import itertools

import pytest
import torch

from mango.errors import MangoError
from mango.generators.space import LatentSpace
from mango.optimizers import OPTIMIZERS
from mango.optimizers import protes as P


def random_tt(d: int, n: int, r: int, seed: int = 0) -> torch.Tensor:
    """Padded cores [d, n, r, r] with mixed signs (so the |.| in the sampler matters)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(d, n, r, r, generator=g, dtype=torch.float64) - 0.3


def loop_log_likelihood(Y: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
    """The reference's formula, one mode at a time: cores Yl [1,n,r], Ym, Yr [r,n,1]."""
    d, Y = Y.shape[0], Y.transpose(1, 2)  # the reference's cores [r, n, r]
    cores = [Y[0, :1]] + list(Y[1:-1]) + [Y[-1, :, :, :1]] if d > 1 else [Y[0, :1, :, :1]]
    Z = [torch.ones(1, dtype=Y.dtype)]
    for core in reversed(cores[1:]):
        z = core.sum(1) @ Z[0]
        Z.insert(0, z / z.norm())
    Q, total = torch.ones(1, dtype=Y.dtype), 0.0
    for k, core in enumerate(cores):
        G = torch.einsum("r,riq,q->i", Q, core, Z[k]).abs()
        total = total + (G[i[k]] / G.sum()).log()
        Q = Q @ core[:, i[k], :]
        Q = Q / Q.norm()
    return total


@pytest.mark.parametrize("d,n,r", [(4, 3, 2), (19, 2, 3)])
def test_likelihood_is_normalized_and_matches_the_loop(d, n, r):
    Y = random_tt(d, n, r)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, n, (6, d), generator=g)
    fast = P.log_likelihood(Y, idx)
    slow = torch.stack([loop_log_likelihood(Y, i) for i in idx])
    assert torch.allclose(fast, slow, rtol=0, atol=1e-10)
    # the gradient (through Z too) matches autograd through the loop
    Y1, Y2 = Y.clone().requires_grad_(), Y.clone().requires_grad_()
    P.log_likelihood(Y1, idx).sum().backward()
    sum(loop_log_likelihood(Y2, i) for i in idx).backward()
    assert torch.allclose(Y1.grad, Y2.grad, rtol=1e-8, atol=1e-8)
    if d == 4:
        every = torch.tensor(list(itertools.product(range(n), repeat=d)))
        assert abs(P.log_likelihood(Y, every).exp().sum().item() - 1.0) < 1e-10


@pytest.mark.parametrize("d,n,b", [(3, 3, 1), (6, 2, 3)])
def test_sample_frequencies_match_the_likelihood(d, n, b):
    """b=1: one mode per step; b=3: binary modes sampled three at a time through the tree."""
    Y = random_tt(d, n, 3, seed=2)
    draws = P.sample(P.prepare(Y, b), 20000, torch.Generator().manual_seed(0))
    assert draws.shape == (20000, d // b)
    idx = P.to_bits(draws, b) if b > 1 else draws
    every = torch.tensor(list(itertools.product(range(n), repeat=d)))
    p = P.log_likelihood(Y, every).exp()
    codes = (idx * n ** torch.arange(d - 1, -1, -1)).sum(1)
    freq = torch.bincount(codes, minlength=n**d).double() / len(codes)
    assert 0.5 * (freq - p).abs().sum().item() < 0.05


@pytest.mark.parametrize("size", [64, 512])
def test_quantized_index_mapping_round_trips(size):
    q = size.bit_length() - 1
    z = torch.cat([torch.arange(size).reshape(-1, 4), torch.randint(0, size, (7, 4))])
    bits = P.to_bits(z, q)
    assert bits.shape == (len(z), 4 * q) and set(bits.unique().tolist()) <= {0, 1}
    assert torch.equal(P.from_bits(bits, q), z)
    assert P.to_bits(torch.tensor([[5]]), 3).tolist() == [[1, 0, 1]]  # most significant bit first


@pytest.mark.parametrize("quantize", [False, True])
def test_tell_pulls_the_distribution_to_the_elite(quantize):
    """ask and tell agree on the index <-> bits mapping: after many updates on one elite, asks return it."""
    space = LatentSpace(4, 8)
    opt = P.Protes(space, seed=0, k=1, k_top=1, lr=0.1, quantize=quantize)
    target = torch.tensor([[3, 6, 1, 4]])
    opt.ask(60)  # told the target in place of these: the base only counts what was asked
    for _ in range(60):
        opt.tell(target, torch.tensor([1.0]))
    asks = opt.ask(200)
    assert asks.dtype == torch.long and asks.shape == (200, 4)
    assert (asks == target).all(1).double().mean() > 0.5


def run(opt, f, budget: int, batch: int) -> float:
    best = -float("inf")
    for _ in range(budget // batch):
        z = opt.ask(batch)
        y = f(z)
        opt.tell(z, y)
        best = max(best, y.max().item())
    return best


@pytest.mark.parametrize("quantize", [False, True])
def test_beats_random_search_on_a_separable_objective(quantize):
    space = LatentSpace(20, 16)
    target = torch.randint(0, 16, (20,), generator=torch.Generator().manual_seed(7))
    f = lambda z: -(z - target).double().pow(2).sum(1)  # noqa: E731
    seeds = (0, 1, 2)
    protes = sum(run(P.Protes(space, seed=s, quantize=quantize), f, 2000, 10) for s in seeds) / 3
    rand = sum(run(OPTIMIZERS.create("random", space, seed=s), f, 2000, 10) for s in seeds) / 3
    assert protes > rand / 1.5, (protes, rand)  # about -90 (unquantized) and -30 (quantized) against -185


def test_failed_measurements_are_never_elites(monkeypatch):
    seen = []
    real = P.log_likelihood
    monkeypatch.setattr(P, "log_likelihood", lambda Y, idx: seen.append(idx.clone()) or real(Y, idx))
    opt = P.Protes(LatentSpace(3, 10), seed=0, k=4, k_top=2)
    z = torch.tensor([[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]])
    opt.ask(8)  # told in place of these
    opt.tell(z, torch.tensor([torch.inf, float("nan"), 0.5, -torch.inf]))  # +inf and NaN: failed, not best
    assert len(seen) == 1 and seen[0].tolist() == [[3, 3, 3]]
    before = opt.Y.detach().clone()
    opt.tell(z, torch.full((4,), -torch.inf))  # nothing finite: no update, no crash
    assert len(seen) == 1 and torch.equal(opt.Y.detach(), before)
    assert opt.ask(3).shape == (3, 3)


def test_updates_happen_every_k_results():
    opt = P.Protes(LatentSpace(3, 8), seed=0, k=10, k_top=2, quantize=False)
    y0 = opt.Y.detach().clone()
    z = opt.ask(9)
    opt.tell(z, torch.arange(9.0))
    assert torch.equal(opt.Y.detach(), y0)  # 9 buffered, no update yet
    z = opt.ask(16)
    opt.tell(z, torch.arange(16.0))
    assert not torch.equal(opt.Y.detach(), y0) and len(opt._vals) == 5  # one update, 5 left over


def test_quantize_needs_a_power_of_two_size():
    with pytest.raises(MangoError, match="size=10"):
        P.Protes(LatentSpace(4, 10), quantize=True)
    with pytest.raises(MangoError, match="size=10"):
        OPTIMIZERS.create("tt-b", LatentSpace(4, 10))
    assert P.Protes(LatentSpace(4, 10)).quantize is False  # auto: off
    assert P.Protes(LatentSpace(4, 64)).quantize is True  # auto: on


def test_presets_and_overrides():
    space = LatentSpace(8, 64)
    tt_b = OPTIMIZERS.create("tt-b", space, seed=1, lr=0.1)
    assert tt_b.hyperparameters() == {"k": 25, "k_top": 5, "k_gd": 1, "lr": 0.1, "rank": 5, "quantize": True}
    assert tt_b.preferred_batch == 25
    assert OPTIMIZERS.create("tt-s", space).preferred_batch == 5
    plain = OPTIMIZERS.create("protes", space)
    assert plain.quantize is False and plain.preferred_batch == 10
    docs = OPTIMIZERS.describe()
    assert all("discrete grid" in docs[name] for name in ("protes", "tt-s", "tt-b"))
