"""Continuous-box optimizers (cmaes, (1+1)-ES, Nevergrad): grid mode, the box, progress, resume, Nevergrad's threads.

Shapes, dtypes, determinism, failed values and bad calls are checked for every optimizer in
test_optimizer_conformance.py.
"""
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import torch

import mango
from mango import OPTIMIZERS, LatentSpace, MangoError, Target, TorchTarget
from mango.experiment.history import latent_columns
from mango.optimizers.continuous import Box, Losses

BOUNDED, CATEGORICAL = LatentSpace(5, 16, (-4.0, 4.0)), LatentSpace(5, 16)


def _rounds(name, latent, seed, rounds=3, k=6, **kwargs):
    """Asks of a few ask/tell rounds against fixed values (one failed measurement per batch)."""
    opt = OPTIMIZERS.create(name, latent, seed=seed, **kwargs)
    g, asked = torch.Generator().manual_seed(7), []
    for _ in range(rounds):
        z = opt.ask(k)
        asked.append(z)
        values = torch.randn(k, generator=g, dtype=torch.float64)
        values[0] = -torch.inf
        opt.tell(z, values)
    return torch.cat(asked)


@pytest.mark.parametrize("name, kwargs", [("cma", {"grid": True}), ("oneplusone", {"grid": True}),
                                          ("ng-portfolio", {"space": "grid"}), ("ng:DE", {"grid": True})])
def test_grid_mode_sends_grid_indices(name, kwargs):
    z = _rounds(name, BOUNDED, seed=0, **kwargs)
    assert z.dtype == torch.int64 and int(z.min()) >= 0 and int(z.max()) < BOUNDED.size
    assert torch.equal(z, _rounds(name, BOUNDED, seed=0, **kwargs))


def test_box_maps_points_to_candidates():
    x = np.array([[-5.0, -4.0, 0.1, 3.99, 9.0]])
    assert Box(BOUNDED).candidates(x).tolist() == [[-4.0, -4.0, 0.1, 3.99, 4.0]]
    assert Box(BOUNDED, grid=True).candidates(x).tolist() == [[0, 0, 8, 15, 15]]  # nearest of 16 points on [-4, 4]
    assert Box(CATEGORICAL).candidates(np.array([[-1.0, 0.0, 0.0624, 0.0625, 1.0]])).tolist() == [[0, 0, 0, 1, 15]]
    assert Box(CATEGORICAL).describe().startswith("[0, 1]^5")


def test_failed_measurements_become_the_worst_finite_loss_and_left_out_ones_stay_nan():
    losses = Losses()
    first = losses(torch.tensor([-np.inf, np.nan]))
    assert first[0] == 1e9 and np.isnan(first[1])  # NaN = left out (never measured): the method drops it
    out = losses(torch.tensor([2.0, -3.0, -np.inf]))
    assert out[:2].tolist() == [-2.0, 3.0] and np.isfinite(out[2]) and out[2] > 3.0


@pytest.mark.parametrize("name", ["cma", "sepcma", "oneplusone", "ng-oneplusone"])
def test_beats_random_search_on_a_smooth_objective(name):
    space, budget = LatentSpace(16, 64, (-4.0, 4.0)), 1500
    target = torch.rand(16, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 6 - 3

    def best(opt):
        done, top = 0, -np.inf
        while done < budget:
            z = opt.ask(min(opt.preferred_batch, budget - done))
            v = -((space.values(z).double() - target) ** 2).sum(1)
            opt.tell(z, v)
            done, top = done + len(z), max(top, float(v.max()))
        return top

    random_best = best(OPTIMIZERS.create("random", space, seed=0))
    assert best(OPTIMIZERS.create(name, space, seed=0)) > random_best / 10  # random: ~-30, these: ~0


def test_prefix_family_in_registry(tmp_path, tiny_setup):
    assert "ng:DE" in OPTIMIZERS and "ng:NAME" in OPTIMIZERS.describe() and "ng:DE" not in OPTIMIZERS.describe()
    with pytest.raises(MangoError, match=r"unknown optimizer 'nope'; allowed: .*ng:NAME"):
        OPTIMIZERS.get("nope")
    gen, net = tiny_setup
    with pytest.raises(MangoError) as exc:
        mango.run(optimizer="ng:NoSuchOptimizer", budget=10, generator=gen, target=TorchTarget(net, "lif1:0"),
                  out=tmp_path / "x", progress=False)
    assert "unknown Nevergrad optimizer 'NoSuchOptimizer'" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(MangoError, match="bad option space='cube' for optimizer 'ng-cma': expected one of 'box'"):
        OPTIMIZERS.create("ng-cma", BOUNDED, space="cube")
    with pytest.raises(MangoError, match="bad option grid='maybe' for optimizer 'cma': expected true or false$"):
        OPTIMIZERS.create("cma", BOUNDED, grid="maybe")
    with pytest.raises(MangoError, match="bad option budget=1.5 for optimizer 'ng:DE': expected an integer or null$"):
        OPTIMIZERS.create("ng:DE", BOUNDED, budget=1.5)
    with pytest.raises(MangoError, match="unknown option 'separable' for optimizer 'sepcma'; allowed: grid, penalty"):
        OPTIMIZERS.create("sepcma", BOUNDED, separable=False)  # fixed by the preset
    assert OPTIMIZERS.create("cma", BOUNDED, popsize=12.0, sigma=1).hyperparameters()["popsize"] == 12


class Interrupting(Target):
    """Raises after ``after`` batches, like Ctrl-C mid-run."""

    def __init__(self, inner: Target, after: int) -> None:
        self.inner, self.after, self.calls = inner, after, 0
        self.name, self.input_shape, self.spec = inner.name, inner.input_shape, inner.spec

    def responses(self, images):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner.responses(images)


@pytest.mark.parametrize(("optimizer", "options"), [
    ("cma", {}), ("ng-oneplusone", {}), ("image-model", {}), ("image-model-sepstart", {"init": 20}),
    ("image-model-sepcma", {"init": 20})])
def test_float_latents_are_recorded_and_resume_is_exact(tmp_path, tiny_setup, optimizer, options):
    """image-model-sepstart with its models steering after 20 of sep-CMA-ES's images, not 240; image-model-sepcma
    (the noise-free default) is that with ``alternate=true``: the sep-CMA-ES asks every other batch after that (the
    run is killed while its first one is shown)."""
    gen, net = tiny_setup
    kwargs = dict(optimizer=optimizer, budget=60, batch=10, seed=3, generator=gen, progress=False,
                  optimizer_options=options)
    full = mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "full", **kwargs)
    hist = mango.read_history(tmp_path / "full")
    z = hist[latent_columns(gen.space.dim)].to_numpy()
    assert z.dtype == np.float64 and (z != np.round(z)).any() and np.abs(z).max() <= 4.0
    with pytest.raises(KeyboardInterrupt):
        mango.run(target=Interrupting(TorchTarget(net, "lif2:1"), after=3), out=tmp_path / "cut", **kwargs)
    resumed = mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "cut", resume=True, **kwargs)
    cols = ["query", "batch", "response", *latent_columns(gen.space.dim)]
    pd.testing.assert_frame_equal(resumed.history[cols], full.history[cols])
    assert torch.equal(resumed.best_latent, full.best_latent)


def test_oneplusone_restarts_when_its_step_size_collapses():
    """A quantized, multimodal response (spike counts) collapses a (1+1)-ES step size; restarts keep it searching."""
    space = LatentSpace(16, 64, (-4.0, 4.0))

    def spikes(z):  # a count that only a large move can raise: many local plateaus
        x = torch.as_tensor(z, dtype=torch.float64)
        return (torch.cos(3 * x).sum(1) * 2).round()

    for min_sigma, expect_restarts in ((1e-2, True), (0.0, False)):
        opt = OPTIMIZERS.create("oneplusone", space, seed=0, min_sigma=min_sigma)
        for _ in range(150):
            z = opt.ask(8)
            opt.tell(z, spikes(z))
            assert opt.sigma >= opt.min_sigma or min_sigma == 0
        assert (opt.restarts > 0) is expect_restarts
        if not expect_restarts:  # without restarts the step size collapses below a useful size
            assert opt.sigma < 1e-2 * opt.box.width


def test_nevergrad_recast_threads_never_block_exit():
    """Callback-style Nevergrad methods (here Cobyla, chosen by NGOpt at batch 1) run in a thread blocked on
    a queue; left running at exit it used to keep the interpreter alive forever."""
    code = ("import torch; from mango.optimizers import OPTIMIZERS; from mango.generators.space import LatentSpace\n"
            "opt = OPTIMIZERS.create('ng:NGOpt', LatentSpace(128, 64, (-4.0, 4.0)), seed=0, budget=300)\n"
            "for _ in range(3):\n    z = opt.ask(1); opt.tell(z, torch.rand(1, dtype=torch.float64))\n"
            "print('done')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]


@pytest.mark.filterwarnings("ignore::UserWarning")  # scipy's COBYLA on its settings
def test_nevergrad_close_stops_recast_threads_and_refuses_a_blocking_batch():
    before = set(threading.enumerate())
    opt = OPTIMIZERS.create("ng:Cobyla", BOUNDED, seed=0)
    assert opt.preferred_batch == 1
    z = opt.ask(1)
    opt.tell(z, [1.0])
    z = opt.ask(1)
    with pytest.raises(MangoError, match="Cobyla.*one candidate at a time.*batch 1"):
        opt.ask(1)  # Cobyla waits for the value of the first: asking again would block forever
    started = [t for t in threading.enumerate() if t not in before]
    assert started and all(t.daemon for t in started)
    opt.close()
    for thread in started:
        thread.join(10)
        assert not thread.is_alive()
    with pytest.raises(MangoError, match="Nevergrad NGOpt needs a budget"):
        OPTIMIZERS.create("ng:NGOpt", BOUNDED, seed=0).ask(10)
