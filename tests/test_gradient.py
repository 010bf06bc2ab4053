"""The white-box ceiling (:mod:`mango.analysis.gradient`): Adam on the latent through generator and network
beats random latents, and what it reports is what the target says for the latent it returns."""
from __future__ import annotations

import pytest
import torch

import mango
from mango import MangoError
from mango.analysis.gradient import gradient_mei, gradient_meis

STEPS, RESTARTS, POOL = 30, 2, 32
SEEN = POOL + STEPS * RESTARTS  # images the gradient search measured or stepped through


@pytest.fixture(scope="module")
def mei(sngan, snn):
    return gradient_mei(sngan, snn, "lif2:12", steps=STEPS, restarts=RESTARTS, pool=POOL, check=10, seed=0)


def test_gradient_mei_beats_the_best_of_as_many_random_latents(mei, snn, sngan):
    target = mango.make_target(snn, "lif2:12")
    z = torch.randint(0, sngan.space.size, (SEEN, sngan.space.dim), generator=torch.Generator().manual_seed(123))
    random_best = float(target.responses(sngan.decode(z)).max())
    assert 0 < random_best <= mei.response
    assert mei.reachable and mei.steps == STEPS and len(mei.restarts) == RESTARTS
    assert mei.response == max(mei.restarts)


def test_reported_response_is_what_the_target_says_for_the_latent(mei, snn, sngan):
    assert mei.latent.shape == (sngan.space.dim,) and mei.latent.dtype == torch.float64
    assert bool((mei.latent.abs() <= 4).all())  # inside the generator's box
    x = sngan.decode(mei.latent[None])
    assert float(mango.make_target(snn, "lif2:12").responses(x)[0, 0]) == mei.response
    assert mei.value == mei.response  # the unit spiked: the drive value is the rate
    rate, value = mango.make_target(snn, "lif2:12", readout="rate+drive").evaluate(x)
    assert (float(rate[0, 0]), float(value[0, 0])) == (mei.response, mei.value)
    d = mei.to_dict()
    assert d["reachable"] and d["response"] == mei.response and len(d["latent"]) == sngan.space.dim


def test_deterministic_and_units_searched_together_match(sngan, snn):
    one = gradient_mei(sngan, snn, "lif2:26@3,0", steps=6, restarts=1, pool=8, check=3, seed=4)
    again = gradient_mei(sngan, snn, "lif2:26@3,0", steps=6, restarts=1, pool=8, check=3, seed=4)
    assert torch.equal(one.latent, again.latent) and one.response == again.response
    # a unit silent for random images: the search either makes it fire or reports how close it came
    x = sngan.decode(one.latent[None])
    rate, value = mango.make_target(snn, "lif2:26@3,0", readout="rate+drive").evaluate(x)
    assert (float(rate[0, 0]), float(value[0, 0])) == (one.response, one.value)
    both = gradient_meis(sngan, snn, "lif2:12,26", steps=0, restarts=1, pool=8, seed=0)
    assert [m.unit for m in both] == [12, 26] and all(m.steps == 0 for m in both)


@pytest.mark.parametrize("kw", [dict(pool=1, restarts=2), dict(restarts=0), dict(steps=-1), dict(temperature=0.0)])
def test_bad_settings_are_one_line_errors(sngan, snn, kw):
    with pytest.raises(MangoError) as err:
        gradient_meis(sngan, snn, "lif2:12", **kw)
    assert "\n" not in str(err.value)


def test_unsupported_inputs_are_one_line_errors(sngan, snn):
    with pytest.raises(MangoError, match="one unit"):
        gradient_mei(sngan, snn, "lif2:1,2")
    with pytest.raises(MangoError, match="spiking layer"):
        gradient_mei(sngan, snn, "conv2:3")
