"""``sepcma-2step`` (a scan's default on a continuous latent, and the default's first 240 images): one generation
at a large and one at a small first step, then the better search alone; a search that begins exactly as ``sepcma``
with a 0.2-box first step.

Beats random search, determinism and exact resume are checked for every registered optimizer in
``test_optimizer_conformance.py``; this file checks the choice of step.
"""
from __future__ import annotations

import torch

from mango.generators.space import LatentSpace
from mango.optimizers import OPTIMIZERS

SPACE = LatentSpace(dim=16, size=64, bounds=(-4.0, 4.0))


def spread(z: torch.Tensor) -> float:
    return float(z.double().abs().mean())


def trial(prefer_small: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, object]:
    opt = OPTIMIZERS.create("sepcma-2step", SPACE, seed=3)
    k = opt.preferred_batch
    large = opt.ask(k)
    opt.tell(large, torch.full((k,), 0.5 if not prefer_small else 0.1, dtype=torch.float64))
    small = opt.ask(k)
    opt.tell(small, torch.full((k,), 0.9 if prefer_small else 0.2, dtype=torch.float64))
    return large, small, opt.ask(k), opt


def test_first_generation_is_sepcmas_then_a_small_step():
    large, small, _, _ = trial(prefer_small=False)
    sep = OPTIMIZERS.create("sepcma", SPACE, seed=3, sigma=0.2 * 8)
    assert torch.equal(large, sep.ask(sep.preferred_batch))  # the same search as sepcma, same seed
    # first steps 0.2 and 1/16 of the box width (8): images near the centre in the second generation
    assert spread(small) < 0.4 * spread(large)


def test_the_better_step_goes_on_alone():
    _, _, after_large, _ = trial(prefer_small=False)
    _, _, after_small, _ = trial(prefer_small=True)
    assert spread(after_small) < 0.4 * spread(after_large)
    # the large search goes on as sepcma would after the same first generation
    sep = OPTIMIZERS.create("sepcma", SPACE, seed=3, sigma=0.2 * 8)
    first = sep.ask(sep.preferred_batch)
    sep.tell(first, torch.full((len(first),), 0.5, dtype=torch.float64))
    assert torch.equal(after_large, sep.ask(sep.preferred_batch))


def test_a_foreign_candidate_during_the_trial_keeps_the_large_search():
    """A shared scan injects other units' images: the trial ends and the search is the large-step sepcma's."""
    opt, sep = OPTIMIZERS.create("sepcma-2step", SPACE, seed=1), OPTIMIZERS.create("sepcma", SPACE, seed=1,
                                                                                     sigma=0.2 * 8)
    foreign = torch.zeros(2, SPACE.dim, dtype=torch.float64)
    values = torch.tensor([0.3, 0.4], dtype=torch.float64)
    for o in (opt, sep):
        o.inject(foreign, values)
    for _ in range(3):
        z = opt.ask(opt.preferred_batch)
        assert torch.equal(z, sep.ask(sep.preferred_batch))
        v = -z.double().pow(2).sum(1)
        opt.tell(z, v)
        sep.tell(z, v)


def test_a_tell_in_any_pieces_reaches_the_search_that_asked():
    """One ask spanning both searches, told whole or in pieces that cross the searches' boundary: the same."""
    whole, pieces = (OPTIMIZERS.create("sepcma-2step", SPACE, seed=3) for _ in range(2))
    k = whole.preferred_batch
    z = whole.ask(2 * k)
    assert torch.equal(pieces.ask(2 * k), z)
    values = -(z ** 2).sum(1)
    whole.tell(z, values)
    for a, b in ((0, 5), (5, k + 3), (k + 3, 2 * k)):
        pieces.tell(z[a:b], values[a:b])
    assert whole.best == pieces.best and whole.best[0] != whole.best[1]
    assert torch.equal(whole.ask(k), pieces.ask(k))
