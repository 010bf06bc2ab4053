"""The loop: MEIs beat random images, resume equals an uninterrupted run, bad input fails clearly."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import mango
from mango import MangoError, RunConfig, Target, TorchTarget
from mango.experiment.history import latent_columns, latents


def test_mei_beats_best_of_random_latents_on_default_target(tmp_path, sngan):
    budget = 500
    result = mango.run(budget=budget, seed=0, out=tmp_path / "run", progress=False)
    target = mango.make_target(RunConfig.model, RunConfig.target)
    g = torch.Generator().manual_seed(123)
    z = torch.randint(0, sngan.space.size, (budget, sngan.space.dim), generator=g)
    random_best = float(target.responses(sngan.decode(z)).max())
    assert result.n_queries == budget
    assert result.best_response > random_best
    # the reported best is what the target says for the reported latent
    again = float(target.responses(sngan.decode(result.best_latent[None]))[0, 0])
    assert again == pytest.approx(result.best_response, abs=1e-6)


def test_run_folder_contents(tmp_path, tiny_setup):
    gen, net = tiny_setup
    res = mango.run(optimizer="random", budget=60, batch=20, generator=gen, target=TorchTarget(net, "lif1:0"),
                    out=tmp_path / "r", progress=False)
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "run.db", "result.json", "mei.png", "top16.png", "convergence.png", "evolution.gif"} <= files
    summary = json.loads((tmp_path / "r" / "result.json").read_text())
    for key in ("best_response", "best_latent", "n_queries", "wall_time_s", "optimizer", "target", "seed"):
        assert key in summary
    hist = mango.read_history(tmp_path / "r")
    assert len(hist) == 60 and hist["query"].tolist() == list(range(60))
    assert summary["best_response"] == pytest.approx(hist["response"].max())
    pd.testing.assert_frame_equal(hist, res.history)
    loaded = mango.load_run(tmp_path / "r")
    assert loaded.best_latent.tolist() == res.best_latent.tolist() and loaded.n_queries == 60
    # each plug-in's effective settings are recorded, so a changed preset cannot silently change a run's meaning
    assert summary["settings"]["optimizer"]["class"] == "RandomSearch"
    assert summary["settings"]["generator"]["space"]["dim"] == 8 and summary["config"]["batch"] == 20


class Interrupting(Target):
    """Raises after ``after`` batches, like a crash or Ctrl-C mid-run."""

    def __init__(self, inner: Target, after: int) -> None:
        self.inner, self.after, self.calls = inner, after, 0
        self.name, self.input_shape = inner.name, inner.input_shape
        self.spec = inner.spec

    def responses(self, images):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner.responses(images)

    def reseed(self, key: int) -> None:
        self.inner.reseed(key)


@pytest.mark.parametrize("optimizer", ["random", "tt-s", "ga", "ttopt", "sepcma"])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, tiny_setup, optimizer):
    gen, net = tiny_setup
    kwargs = dict(optimizer=optimizer, budget=120, batch=10, seed=3, generator=gen, progress=False)
    full = mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "full", **kwargs)
    with pytest.raises(KeyboardInterrupt, match=r"after 50 of 120 queries.*continue with: mango run --resume --out"):
        mango.run(target=Interrupting(TorchTarget(net, "lif2:1"), after=5), out=tmp_path / "cut", **kwargs)
    assert len(mango.read_history(tmp_path / "cut")) == 50  # every measured batch was kept
    resumed = mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "cut", resume=True, **kwargs)
    cols = ["query", "batch", "response", *latent_columns(gen.space.dim)]
    pd.testing.assert_frame_equal(resumed.history[cols], full.history[cols])
    assert resumed.best_response == full.best_response
    assert torch.equal(resumed.best_latent, full.best_latent)


def test_noisy_target_resumes_with_the_same_noise(tmp_path, tiny_setup):
    """Noise is seeded per (run seed, batch): a resumed run draws what the uninterrupted one drew."""
    gen, net = tiny_setup
    kwargs = dict(optimizer="ga", budget=60, batch=10, seed=2, generator=gen, progress=False)
    full = mango.run(target=TorchTarget(net, "lif2:1", noise="membrane:0.5"), out=tmp_path / "full", **kwargs)
    with pytest.raises(KeyboardInterrupt):
        mango.run(target=Interrupting(TorchTarget(net, "lif2:1", noise="membrane:0.5"), after=3),
                  out=tmp_path / "cut", **kwargs)
    resumed = mango.run(target=TorchTarget(net, "lif2:1", noise="membrane:0.5"), out=tmp_path / "cut",
                        resume=True, **kwargs)
    assert resumed.history["response"].tolist() == full.history["response"].tolist()
    other = mango.run(target=TorchTarget(net, "lif2:1", noise="membrane:0.5"), out=tmp_path / "other",
                      **{**kwargs, "optimizer": "random", "seed": 3})
    z = latents(full.history.iloc[:10], gen.space.dim)
    again = TorchTarget(net, "lif2:1", noise="membrane:0.5")
    again.reseed(0)
    first = again.responses(gen.decode(z))
    again.reseed(1)
    assert not torch.equal(first, again.responses(gen.decode(z)))  # the noise is real
    assert other.history["response"].std() > 0


def test_resume_can_extend_the_budget(tmp_path, tiny_setup):
    gen, net = tiny_setup
    kw = dict(optimizer="tt-s", batch=10, seed=1, generator=gen, target=TorchTarget(net, "lif1:2"), progress=False)
    long = mango.run(budget=80, out=tmp_path / "long", **kw)
    mango.run(budget=40, out=tmp_path / "short", **kw)
    extended = mango.run(budget=80, out=tmp_path / "short", resume=True, **kw)
    assert extended.history["response"].tolist() == long.history["response"].tolist()


class Flaky(Target):
    """Returns NaN or inf for some images (a broken electrode, a diverging model)."""

    name, input_shape = "flaky", (1, 28, 28)

    def responses(self, images):
        r = images.mean((1, 2, 3))
        r[::3] = float("nan")
        r[1::7] = float("inf")
        return r[:, None]


def test_nan_and_inf_responses_are_recorded_and_treated_as_worst(tmp_path, tiny_setup):
    gen, _ = tiny_setup
    res = mango.run(optimizer="tt-s", budget=100, batch=10, generator=gen, target=Flaky(), out=tmp_path / "f",
                    progress=False)
    hist = res.history
    assert hist["response"].isna().sum() >= 30 and np.isinf(hist["response"]).sum() >= 10
    assert (hist.loc[~np.isfinite(hist["response"]), "value"] == -np.inf).all()
    assert np.isfinite(res.best_response)
    assert res.best_response == hist.loc[np.isfinite(hist["response"]), "response"].max()


def test_all_nan_responses_fail_clearly_but_keep_history(tmp_path, tiny_setup):
    gen, _ = tiny_setup

    class Dead(Flaky):
        def responses(self, images):
            return torch.full((len(images), 1), float("nan"))

    with pytest.raises(MangoError, match="no finite response"):
        mango.run(optimizer="random", budget=20, batch=10, generator=gen, target=Dead(), out=tmp_path / "d",
                  progress=False)
    assert len(mango.read_history(tmp_path / "d")) == 20


@pytest.mark.parametrize("kwargs, needle", [
    (dict(optimizer="nope"), "unknown optimizer 'nope'; allowed: "),
    (dict(budget=5, batch=10), "budget 5 is smaller than batch 10"),
    (dict(budget=0), "budget must be a positive integer"),
    (dict(repeats=0), "repeats must be a positive integer, got 0"),
    (dict(remeasure=-1), "remeasure must be a non-negative integer, got -1"),
    (dict(generator="nope"), "unknown generator 'nope'"),
    (dict(model="nope"), "unknown model 'nope'"),
    (dict(target="lif2:99"), "unit 99 out of range"),
    (dict(target="lif2"), "malformed target spec 'lif2'"),
    (dict(optimizer_options={"bogus": 1}), "unknown option 'bogus' for optimizer 'image-model-sepcma'; allowed: "),
    (dict(optimizer="cma", optimizer_options={"popsize": "abc"}), "bad option popsize='abc' for optimizer 'cma'"),
    (dict(seed=1.5), "seed must be an integer, got 1.5"),
    (dict(optimizer="sepcma-2step", optimizer_options={"grid": "maybe"}),
     "bad option grid='maybe' for optimizer 'sepcma-2step': expected true or false"),
])
def test_bad_run_arguments_fail_with_one_line(tmp_path, kwargs, needle):
    with pytest.raises(MangoError) as exc:
        mango.run(out=tmp_path / "x", progress=False, **{"budget": 20, **kwargs})
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_generator_that_does_not_fit_target(tmp_path, tiny_setup):
    _, net = tiny_setup

    class Colour(mango.Generator):
        name, space, image_shape = "colour", mango.LatentSpace(4, 8, (-1.0, 1.0)), (3, 32, 32)

        def decode(self, z):
            return torch.zeros(len(z), *self.image_shape)

    class Large(Colour):
        name, image_shape = "large", (1, 32, 32)

    with pytest.raises(MangoError, match=r"makes 3-channel images .* but target .* expects 1 channels"):
        mango.run(budget=10, generator=Colour(), target=TorchTarget(net, "lif1:0"), out=tmp_path / "c",
                  progress=False)
    with pytest.raises(MangoError, match=r"makes images of shape \[1, 32, 32\] but target .* expects \[1, 28, 28\] "
                                         r"and does not resize"):
        mango.run(budget=10, generator=Large(), target=TorchTarget(net, "lif1:0"), out=tmp_path / "l",
                  progress=False)


def test_existing_run_folder_needs_resume_and_same_settings(tmp_path, tiny_setup):
    gen, net = tiny_setup
    kw = dict(optimizer="random", budget=20, batch=10, generator=gen, progress=False, out=tmp_path / "r")
    mango.run(target=TorchTarget(net, "lif1:0"), **kw)
    with pytest.raises(MangoError, match="already holds a run"):
        mango.run(target=TorchTarget(net, "lif1:0"), **kw)
    with pytest.raises(MangoError, match="cannot resume .*seed: run has 0, given 5"):
        mango.run(target=TorchTarget(net, "lif1:0"), resume=True, **{**kw, "seed": 5})
    with pytest.raises(MangoError, match="nothing to resume"):
        mango.run(target=TorchTarget(net, "lif1:0"), resume=True, **{**kw, "out": tmp_path / "empty"})


class Noisy(Target):
    """A neuron with trial-to-trial noise: mean image brightness plus seeded Gaussian noise."""

    name, input_shape = "noisy", (1, 28, 28)

    def __init__(self, sigma: float) -> None:
        self.sigma, self.calls, self.g = sigma, 0, torch.Generator().manual_seed(0)

    @staticmethod
    def clean(images):
        return images.mean((1, 2, 3))

    def responses(self, images):
        self.calls += len(images)
        return (self.clean(images) + self.sigma * torch.randn(len(images), generator=self.g))[:, None]


def test_repeats_record_mean_and_spread(tmp_path, tiny_setup):
    gen, _ = tiny_setup
    tgt = Noisy(0.05)
    res = mango.run(optimizer="random", budget=40, batch=10, repeats=4, generator=gen, target=tgt,
                    out=tmp_path / "n", progress=False)
    assert tgt.calls == 160 and res.summary()["presentations"] == 160
    h = res.history
    assert (h["response_sd"] > 0).all()
    clean = Noisy.clean(gen.decode(torch.tensor(h[latent_columns(8)].to_numpy())).double())
    assert np.abs(h["response"].to_numpy() - clean.numpy()).mean() < 0.05  # mean of 4 is within 1 sigma


def test_remeasure_corrects_a_lucky_single_measurement(tmp_path, tiny_setup):
    gen, _ = tiny_setup
    kw = dict(optimizer="random", budget=300, batch=50, generator=gen, progress=False)
    plain = mango.run(target=Noisy(0.2), out=tmp_path / "a", **kw)
    checked = mango.run(target=Noisy(0.2), remeasure=30, out=tmp_path / "b", **kw)
    truth = float(Noisy.clean(checked.best_image[None]))
    recorded = checked.summary()["remeasured"]["recorded_response"]
    assert plain.best_response - float(Noisy.clean(plain.best_image[None])) > 0.2  # winner's curse without it
    assert abs(checked.best_response - truth) < 0.1 < abs(recorded - truth)
    assert (tmp_path / "b" / "remeasured.csv").exists()
