"""The MANGO release CIFAR-10 snnTorch network: loaded unchanged, simulated exactly, read out, made noisy."""
import os
from collections import OrderedDict

import pytest
import snntorch as snn
import torch
from snntorch import surrogate, utils
from torch import nn

from mango import MangoError, TorchTarget, make_target
from mango.checkpoints import find_release, release_dirs
from mango.targets.sequential import per_step_loop

PATH = find_release("snn_cifar10.pt")
MISSING = (f"MANGO release checkpoint snn_cifar10.pt not found in {', '.join(map(str, release_dirs()))} "
           "(set MANGO_RELEASE_DIR)")
pytestmark = pytest.mark.skipif(PATH is None and not os.environ.get("CI"), reason=MISSING)


@pytest.fixture(autouse=True, scope="module")
def _release_present():
    if PATH is None:  # only reached in CI (elsewhere the module is skipped): the files must be there
        pytest.fail(MISSING)
SPIKING = ("spiking0", "spiking1", "spiking2", "final_spiking")


def original_network() -> nn.Sequential:
    """The network as the original MANGO code built it: nn.Sequential, init_hidden Leaky layers."""
    g = surrogate.fast_sigmoid(slope=10)

    def leaky(**kw):
        return snn.Leaky(beta=0.9, init_hidden=True, spike_grad=g, **kw)

    net = nn.Sequential(OrderedDict([
        ("conv0", nn.Conv2d(3, 200, 5)), ("pool0", nn.MaxPool2d(3, 2, padding=1)), ("spiking0", leaky()),
        ("conv1", nn.Conv2d(200, 64, 5)), ("pool1", nn.MaxPool2d(2)), ("spiking1", leaky()),
        ("flatten", nn.Flatten()), ("linear1", nn.Linear(1600, 100)), ("spiking2", leaky()),
        ("linear2", nn.Linear(100, 10)), ("relu", nn.ReLU()), ("final_spiking", leaky(output=True))]))
    net.load_state_dict(torch.load(PATH, weights_only=True, map_location="cpu"))
    return net.eval()


@torch.no_grad()
def original_traces(x: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    """Spikes (and membranes) of every spiking layer at every step, ``[T, B, ...]``."""
    net = original_network()
    utils.reset(net)
    rec = {k: [] for k in SPIKING}
    mem = {k: [] for k in SPIKING}

    def hook(module, inp, out, k):
        rec[k].append(out[0] if isinstance(out, tuple) else out)
        mem[k].append(module.mem.clone())

    handles = [getattr(net, k).register_forward_hook(lambda m, i, o, k=k: hook(m, i, o, k)) for k in SPIKING]
    for _ in range(steps):
        net(x)
    for h in handles:
        h.remove()
    return {k: torch.stack(v) for k, v in rec.items()} | {f"{k}.mem": torch.stack(v) for k, v in mem.items()}


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(0)  # smooth random images in the normalized space: every layer spikes
    return nn.functional.avg_pool2d(torch.randn(12, 3, 32, 32) * 3, 3, 1, 1)


@pytest.fixture(scope="module")
def reference(images):
    return original_traces(images, 20)


def per_unit(trace, unit):
    t = trace[:, :, unit]
    return t.flatten(2).mean(2) if t.ndim > 2 else t


def lively(reference, layer):
    """The unit whose rate varies most across the images (active, not saturated)."""
    t = reference[layer]
    rates = (t.flatten(3).mean(3) if t.ndim > 3 else t).mean(0)  # [B, units]
    return int(rates.var(0).argmax())


@pytest.mark.parametrize("layer", SPIKING)
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "hooked"])
def test_responses_equal_the_original_code(images, reference, layer, fast):
    unit = lively(reference, layer)
    target = TorchTarget(make_target("cifar-snn", "class:0").model, f"{layer}:{unit}", fast=fast)
    want = per_unit(reference[layer], unit).mean(0)
    assert want.max() > 0  # the unit is active on these images
    torch.testing.assert_close(target.responses(images)[:, 0], want, rtol=0, atol=1e-6)


def test_class_output_and_membrane_readout(images, reference):
    k, u = lively(reference, "final_spiking"), lively(reference, "spiking1")
    cls = make_target("cifar-snn", f"class:{k}").responses(images)[:, 0]
    torch.testing.assert_close(cls, reference["final_spiking"][:, :, k].mean(0), rtol=0, atol=1e-6)
    assert cls.max() > 0
    mem = make_target("cifar-snn", f"spiking1:{u}", readout="membrane").responses(images)[:, 0]
    torch.testing.assert_close(mem, per_unit(reference["spiking1.mem"], u).mean(0), rtol=1e-5, atol=1e-5)


def test_every_time_step_is_counted_not_only_the_last(images, reference):
    """The original code read only the last step's spikes; the paper's normalized activity counts all T."""
    u = lively(reference, "spiking2")
    rate = make_target("cifar-snn", f"spiking2:{u}").responses(images)[:, 0]
    trace = reference["spiking2"][:, :, u]
    torch.testing.assert_close(rate, trace.sum(0) / 20)
    assert not torch.equal(rate, trace[-1])  # last-step-only would differ


@pytest.mark.parametrize("steps", [20, 100])
def test_optimized_simulation_equals_the_per_step_loop(images, reference, steps):
    net = make_target("cifar-snn", "class:0", steps=steps).model
    for layer in ("conv0", "spiking0", "spiking1", "spiking2"):
        unit = 11 if layer == "conv0" else lively(reference, layer)
        naive = per_unit(per_step_loop(net, images[:4], layer), unit).mean(0)
        got = TorchTarget(net, f"{layer}:{unit}").responses(images[:4])[:, 0]
        torch.testing.assert_close(got, naive, rtol=0, atol=1e-6)


def test_time_resolved_readouts(images, reference):
    u = lively(reference, "spiking2")
    trace = reference["spiking2"][:, :, u]  # [T, B]
    window = make_target("cifar-snn", f"spiking2:{u}", readout="count:5-15").responses(images)[:, 0]
    torch.testing.assert_close(window, trace[5:15].mean(0))
    latency = make_target("cifar-snn", f"spiking2:{u}", readout="latency").responses(images)[:, 0]
    first = torch.tensor([int(torch.nonzero(c)[0]) if c.any() else 20 for c in trace.T], dtype=torch.float32)
    torch.testing.assert_close(latency, 1 - first / 20)
    assert ((latency >= 0) & (latency <= 1)).all() and latency.max() > 0


@pytest.mark.parametrize("kw, needle", [
    (dict(spec="conv1:0", readout="latency"), "needs a spiking layer"),
    (dict(spec="class:0", readout="rate"), "use logit or prob"),
    (dict(spec="spiking1:0", readout="prob"), "applies to class:N only"),
    (dict(spec="spiking1:0", readout="count:5-30"), "window ends after the 20 time steps"),
    (dict(spec="spiking1:0", readout="speed"), "unknown readout 'speed'"),
    (dict(spec="spiking1:64"), "unit 64 out of range"),
    (dict(spec="spiking1:0", noise="membrane:-1"), "noise level must be a finite number >= 0, got '-1'"),
    (dict(spec="spiking1:0", noise="input:inf"), "noise level must be a finite number >= 0, got 'inf'"),
    (dict(spec="spiking1:0", noise="input:nan"), "noise level must be a finite number >= 0, got 'nan'"),
    (dict(spec="spiking1:0", noise="input:0.1,input:0.2"), "noise 'input' given twice"),
    (dict(spec="spiking1:0", noise="thermal:1"), "bad noise 'thermal:1'"),
])
def test_bad_readout_and_noise_fail_with_one_line(kw, needle):
    spec = kw.pop("spec")
    with pytest.raises(MangoError) as exc:
        make_target("cifar-snn", spec, **kw)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_deterministic_without_noise_and_seeded_with_it(images, reference):
    x = images[:1].repeat(16, 1, 1, 1)
    spec = f"spiking1:{lively(reference, 'spiking1')}"
    clean = make_target("cifar-snn", spec).responses(x)[:, 0]
    assert clean.std() == 0 and clean.max() > 0  # a LIF network on a static image is deterministic
    for noise in ("poisson", "membrane:0.3", "input:0.5"):
        target = make_target("cifar-snn", spec, noise=noise)
        target.reseed(1)
        a = target.responses(x)[:, 0]
        target.reseed(1)
        b = target.responses(x)[:, 0]
        target.reseed(2)
        c = target.responses(x)[:, 0]
        assert a.std() > 0, noise  # trial-to-trial variability
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # same seed, same noise
        assert not torch.equal(a, c)


def test_vqvae_images_drive_the_network_and_an_mei_beats_random(tmp_path):
    import mango

    kw = dict(generator="cifar-vqvae", model="cifar-snn", target="spiking1:7", budget=300, progress=False)
    rnd = mango.run(optimizer="random", out=tmp_path / "r", **kw)
    ga = mango.run(optimizer="ga", out=tmp_path / "g", **kw)
    assert ga.best_response > rnd.best_response
    assert (tmp_path / "g" / "mei.png").is_file()
