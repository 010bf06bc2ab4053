"""``image-model``: a CNN ensemble fitted to the unit's responses, ascended through the generator each batch.

Determinism, exact replay, failed and missing values, injection and option checks are covered for every
registered optimizer in ``test_optimizer_conformance.py`` (with a tiny generator), a killed run's exact resume
in ``test_optimizers_continuous.py``; this file checks that the loop hands it the generator, that it beats
random search on a real unit, and the one-line refusals.
"""
from __future__ import annotations

import pytest
import torch

import mango
from mango.errors import MangoError
from mango.generators.space import LatentSpace
from mango.optimizers import OPTIMIZERS


def test_beats_random_search_on_a_unit_of_the_embedded_network(tmp_path):
    """mnist-snn ``lif1:4`` with mnist-sngan, 160 presentations: the model's best image beats random search's."""
    kwargs = dict(model="mnist-snn", target="lif1:4", budget=160, seed=0, progress=False)
    model = mango.run(optimizer="image-model", out=tmp_path / "model", **kwargs)
    rand = mango.run(optimizer="random", out=tmp_path / "random", **kwargs)
    assert model.best_response > rand.best_response + 0.05, (model.best_response, rand.best_response)
    assert model.history["response"].iloc[40:].mean() > rand.history["response"].iloc[40:].mean()


def test_refusals_are_one_line(tiny_setup):
    gen, _ = tiny_setup
    cases = [(lambda: OPTIMIZERS.create("image-model", LatentSpace(6, 16), generator=gen), "categorical"),
             (lambda: OPTIMIZERS.create("image-model", gen.space), "NoneType, not a mango.TorchGenerator"),
             (lambda: OPTIMIZERS.create("image-model", gen.space, generator=gen, ensemble=1), "ensemble >= 2"),
             (lambda: OPTIMIZERS.create("image-model", gen.space, generator=gen, sigma=-1.0), "sigma >= 0"),
             (lambda: OPTIMIZERS.create("image-model", gen.space, generator=gen, grid=-1), "grid >= 0"),
             (lambda: OPTIMIZERS.create("image-model", gen.space, generator=gen, grid_gain=0.0), "0 < grid_gain <= 1"),
             (lambda: OPTIMIZERS.create("image-model", gen.space, generator=gen, start="cma"), "prior or sepcma-2step"),
             (lambda: OPTIMIZERS.create("image-model", gen.space, generator=detached(gen)), "carry no gradient")]
    for call, match in cases:
        with pytest.raises(MangoError, match=match) as exc:
            call()
        assert "\n" not in str(exc.value)


def test_the_generator_collects_no_gradients(tiny_setup):
    """The ascent asks for the latent's gradient alone: the user's generator module is left as it was."""
    gen, _ = tiny_setup
    opt = OPTIMIZERS.create("image-model", gen.space, seed=0, generator=gen, init=4)
    for _ in range(3):
        z = opt.ask(4)
        opt.tell(z, -z.pow(2).sum(1))
    assert all(p.grad is None for p in gen.module.parameters())


def test_the_trust_region_narrows_while_nothing_improves(tiny_setup):
    """After ``patience`` batches without a new best the step around the parents halves; with ``patience=0``
    it never narrows."""
    gen, _ = tiny_setup

    def spread(patience: int) -> float:
        """Mean distance of the last batch from its nearest parent (a flat unit: no batch brings a new best)."""
        opt = OPTIMIZERS.create("image-model", gen.space, seed=0, generator=gen, init=8, steps=2, ascent=2,
                                patience=patience)
        for _ in range(12):
            z = opt.ask(8)
            opt.tell(z, [1.0] * 8)
        return float(torch.cdist(z, opt.z[:8]).amin(1).mean())  # ties: the parents are the first 8 latents

    fixed, narrowed = spread(0), spread(2)
    assert narrowed < 0.2 * fixed, (narrowed, fixed)  # 11 batches after the first: 5 halvings, 1/32 of the step


def test_alternate_lets_the_start_search_on_every_other_batch(tiny_setup):
    """``alternate=true`` after a sep-CMA-ES start of 16 images: the first models' batch is the one without it, then
    every other batch is the start's sep-CMA-ES going on exactly as it would alone (told only its own images'
    values), and the models learn from every image."""
    gen, _ = tiny_setup

    def run(**options) -> tuple:
        opt = OPTIMIZERS.create("image-model", gen.space, seed=2, generator=gen, start="sepcma-2step", init=16,
                                steps=2, ascent=2, **options)
        batches = []
        for _ in range(9):
            batches.append(opt.ask(8))
            opt.tell(batches[-1], -(batches[-1] - 1).pow(2).sum(1))
        opt.close()
        return opt, batches

    (opt, batches), (_, plain) = run(alternate=True), run()
    sep = OPTIMIZERS.create("sepcma-2step", gen.space, seed=2)
    alone = []
    for _ in range(5):
        alone.append(sep.ask(8))
        sep.tell(alone[-1], -(alone[-1] - 1).pow(2).sum(1))
    assert all(torch.equal(a, b) for a, b in zip(batches[:3], plain[:3], strict=True))
    assert torch.equal(torch.cat(batches[:2] + batches[3::2]), torch.cat(alone))  # the start, then batches 3, 5, 7
    assert not any(torch.isclose(batches[i], b).all(1).any() for i in (4, 6, 8) for b in alone)  # the models'
    assert len(opt.y) == 72 and opt.hyperparameters()["alternate"] is True


def test_a_sepcma_start_hands_its_images_to_the_models(tiny_setup):
    """``start=sepcma-2step``: the first ``init`` images are ``sepcma-2step``'s own (same seed, told the same
    values, a foreign batch injected on the way), then the models, fitted on them, propose; one seed, one run."""
    gen, _ = tiny_setup
    foreign = torch.linspace(-1, 1, 3 * gen.space.dim, dtype=torch.float64).view(3, -1)

    def asks(name: str, **options) -> torch.Tensor:
        opt = OPTIMIZERS.create(name, gen.space, seed=3, generator=gen, **options)
        out = []
        for i in range(5):
            z = opt.ask(6)
            opt.tell(z, -(z - 1).pow(2).sum(1))
            out.append(z)
            if i == 1:
                opt.inject(foreign, -(foreign - 1).pow(2).sum(1))
        opt.close()
        return torch.cat(out)

    quick = dict(start="sepcma-2step", init=18, steps=2, ascent=2)
    started, again, sep = asks("image-model", **quick), asks("image-model", **quick), asks("sepcma-2step")
    assert torch.equal(started, again)
    assert torch.equal(started[:18], sep[:18])
    assert not torch.isclose(started[18:], sep[18:]).all(1).any()  # the models' images, none of sep-CMA-ES's


def test_held_out_error_picks_the_read_out_that_weighs_where(tiny_setup):
    """Each batch is predicted before the models are fitted on it; on a unit that weighs where a feature is
    (left half minus right half, as a class output's fully connected read-out does) the grid read-out's error
    ends well under the spatial mean's, so its models steer the ascent."""
    gen, _ = tiny_setup
    opt = OPTIMIZERS.create("image-model", gen.space, seed=0, generator=gen, init=16, ascent=2, steps=60)
    for _ in range(8):
        z = opt.ask(8)
        with torch.no_grad():
            x = gen.module(z.float())
        opt.tell(z, (x[..., :14].mean((1, 2, 3)) - x[..., 14:].mean((1, 2, 3))).double())
    mean, grid = opt.errors
    assert not opt.families[0][0].grid and opt.families[1][0].grid == 4
    assert grid < 0.5 * mean, (grid, mean)


def test_under_noise_the_noisy_preset_lets_the_grid_steer_where_three_quarters_does_not(tiny_setup):
    """The left-minus-right unit above with trial-to-trial noise as large as its spread: noise adds the same variance
    to both held-out errors, so the grid's share of the mean's stays between 3/4 and 1. With the default
    ``grid_gain`` the mean keeps steering (the search is exactly the one without the grid); with ``grid_gain=1``
    (``image-model-noisy``, the noisy default) the grid steers from the first batch after its error is lower."""
    gen, _ = tiny_setup

    def run(name: str = "image-model", **options) -> tuple:
        opt = OPTIMIZERS.create(name, gen.space, seed=0, generator=gen, init=16, ascent=2, steps=60, **options)
        noise, shares, batches = torch.Generator().manual_seed(1), [], []
        for _ in range(6):
            batches.append(opt.ask(8))
            with torch.no_grad():
                x = gen.module(batches[-1].float())
            unit = (x[..., :14].mean((1, 2, 3)) - x[..., 14:].mean((1, 2, 3))).double()
            opt.tell(batches[-1], unit + 0.0015 * torch.randn(8, generator=noise, dtype=torch.float64))
            shares.append(opt.errors[-1] / opt.errors[0] if opt.errors[0] else None)
        return batches, shares

    (plain, _), (default, shares), (steered, _) = run(grid=0), run(), run("image-model-noisy")
    assert all(0.75 < s < 1 for s in shares[2:]), shares  # predicted from the third batch on
    assert all(torch.equal(a, b) for a, b in zip(plain, default, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(steered[:3], default[:3], strict=True))
    assert not torch.equal(steered[3], default[3])


def test_the_default_for_a_noisy_target_on_a_continuous_latent(tiny_setup):
    """``auto``: image-model when the target is noisy and the generator a torch module it can ascend through;
    noise-free, or a generator that is not a torch module, sep-CMA-ES (two first steps)."""
    from mango.generators.base import Generator
    from mango.optimizers.auto import choose

    gen, _ = tiny_setup

    class Opaque(Generator):  # e.g. images rendered by another program: no gradient through it
        space, image_shape = gen.space, gen.image_shape

        def decode(self, z: torch.Tensor) -> torch.Tensor:
            return gen.decode(z)

    name, why = choose(gen, noisy=True)
    assert name == "image-model-noisy" and "noisy" in why
    assert choose(gen)[0] == "image-model-sepcma"  # noise-free: sep-CMA-ES's first images, then the models
    assert choose(gen, scan=True)[0] == choose(Opaque())[0] == choose(detached(gen))[0] == "sepcma-2step"
    assert choose(Opaque(), noisy=True)[0] == choose(detached(gen), noisy=True)[0] == "sepcma-2step"


def detached(gen: mango.TorchGenerator) -> mango.TorchGenerator:
    """``gen``'s module behind a ``.detach()``, as a renderer outside torch would be: no gradient to the latent."""
    return mango.TorchGenerator(lambda z: gen.module(z.detach()), gen.space, gen.image_shape, "detached")


def test_on_a_noisy_target_its_mei_beats_the_noise_free_default(tmp_path):
    """mnist-snn ``lif1:2`` with Poisson counts, 160 presentations, no ``--optimizer``: the run chooses
    image-model-noisy, and its reported MEI, scored without noise, beats sep-CMA-ES's (the default for a noise-free
    target) on the same noisy target (measured: 0.57 against 0.42)."""
    kwargs = dict(model="mnist-snn", target="lif1:2", noise="poisson", budget=160, seed=0, progress=False)
    auto = mango.run(out=tmp_path / "auto", **kwargs)
    sep = mango.run(optimizer="sepcma-2step", out=tmp_path / "sep", **kwargs)
    assert auto.config.optimizer == "image-model-noisy" and auto.config.remeasure == 5
    gen, clean = mango.GENERATORS.create("mnist-sngan"), mango.make_target("mnist-snn", "lif1:2")
    with torch.inference_mode():
        score = [float(clean.responses(gen.decode(r.best_latent[None])).mean()) for r in (auto, sep)]
    assert score[0] > score[1] + 0.05, score
