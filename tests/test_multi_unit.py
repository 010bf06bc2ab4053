"""Many units of one layer in one target: spec forms, exact equality with one-unit targets, batch independence."""
import os
from collections import OrderedDict

import pytest
import torch
from torch import nn

from mango import MangoError, TargetSpec, TorchTarget, make_target
from mango.checkpoints import find_release, release_dirs
from mango.experiment.measure import measure
from mango.targets import MODELS

KEY = 12345  # the noise seed of every target of a comparison (a run seeds each batch this way)


def stacked_singles(model, multi: TorchTarget, images, **kw) -> torch.Tensor:
    """The one-unit target of every unit of ``multi``, each measured alone, columns side by side."""
    cols = []
    for u in multi.units:
        one = TorchTarget(model, TargetSpec(multi.spec.layer, u, multi.spec.position), **kw)
        one.reseed(KEY)
        cols.append(one.responses(images))
    return torch.cat(cols, 1)


def assert_columns_exact(model, spec: str, images, **kw) -> torch.Tensor:
    multi = TorchTarget(model, spec, **kw)
    multi.reseed(KEY)
    got = multi.responses(images)
    assert got.shape == (len(images), len(multi.units)) and got.dtype == torch.float32
    want = stacked_singles(model, multi, images, **kw)
    diff = (got != want).any(0).nonzero().flatten().tolist()
    assert not diff, f"{spec} {kw}: units {[multi.units[i] for i in diff]} differ by {(got - want).abs().max()}"
    return got


@pytest.fixture(scope="module")
def x(digits):
    return digits[0][:8]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Hundreds of forwards on a few images: a second intra-op thread costs more than it gains (on a
    shared 2-core machine, measured 13 s on one thread vs 150 s on two); exactness holds on any number
    (the multi-unit target and the one-unit ones run the same way; see the two-thread test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the spec grammar -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, layer, units, pos, printed", [
    ("lif2:*", "lif2", "all", None, "lif2:*"),
    ("lif2:3-7", "lif2", (3, 4, 5, 6, 7), None, "lif2:3-7"),
    ("lif2:9,2,17", "lif2", (9, 2, 17), None, "lif2:9,2,17"),
    ("lif2:0-3,8", "lif2", (0, 1, 2, 3, 8), None, "lif2:0-3,8"),
    ("lif2:3,4", "lif2", (3, 4), None, "lif2:3-4"),
    ("lif2:5-5", "lif2", (5,), None, "lif2:5-5"),
    ("conv2:1,5@1,1", "conv2", (1, 5), (1, 1), "conv2:1,5@1,1"),
    ("lif1:*@3,4", "lif1", "all", (3, 4), "lif1:*@3,4"),
    ("class:*", None, "all", None, "class:*"),
    ("class:2-4", None, (2, 3, 4), None, "class:2-4"),
    ("class:1,3", None, (1, 3), None, "class:1,3"),
])
def test_multi_unit_specs_parse_and_print(text, layer, units, pos, printed):
    spec = TargetSpec.parse(text)
    assert (spec.layer, spec.unit, spec.units, spec.position, spec.multi) == (layer, None, units, pos, True)
    assert str(spec) == printed and TargetSpec.parse(printed) == spec


@pytest.mark.parametrize("text", ["lif2:12", "class:3", "conv1:5@4,4", "layer1.0.conv1:17"])
def test_single_unit_specs_are_unchanged(text):
    spec = TargetSpec.parse(text)
    assert isinstance(spec.unit, int) and spec.units is None and not spec.multi and str(spec) == text


@pytest.mark.parametrize("text, needle", [
    ("lif2:5-3", "empty unit set 'lif2:5-3': range 5-3 runs backwards"),
    ("lif2:3,3", "unit 3 appears twice in 'lif2:3,3'"),
    ("lif2:1-4,3", "unit 3 appears twice in 'lif2:1-4,3'"),
    ("lif2:0-9999999", "unit set 'lif2:0-9999999' is too large"),
    ("class:*@1,1", "a class output has no position"),
    ("lif2:*,1", "malformed target spec 'lif2:*,1'"), ("lif2:1,", "malformed"), ("lif2:1--3", "malformed"),
])
def test_bad_unit_sets_fail_with_one_line(text, needle):
    with pytest.raises(MangoError) as exc:
        TargetSpec.parse(text)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("kw, needle", [
    (dict(units=()), "empty unit set"), (dict(units=(1, 1)), "unit 1 appears twice"),
    (dict(unit=1, units=(2,)), "unit or units, not both"), (dict(units=(-1,)), "integers >= 0"),
])
def test_spec_objects_check_their_unit_sets(kw, needle):
    with pytest.raises(MangoError, match=needle):
        TargetSpec("lif2", **kw)
    assert TargetSpec("lif2", units=[3, 1]).units == (3, 1)  # a list given by hand is kept as its tuple


@pytest.mark.parametrize("spec, needle", [
    ("lif2:30-40", "unit 32 out of range for layer 'lif2': it has 32 units (0..31) (in 'lif2:30-40')"),
    ("lif2:0,40", "unit 40 out of range for layer 'lif2': it has 32 units (0..31)"),
    ("class:8-12", "class 10 out of range for 'mnist-snn': it has 10 outputs (0..9)"),
    ("lif2:*@9,9", "position 9,9 out of range"), ("fc1:*@1,1", "no spatial position"),
])
def test_out_of_range_unit_sets_fail_with_one_line(spec, needle):
    with pytest.raises(MangoError) as exc:
        make_target("mnist-snn", spec)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


# -- exactness: each column is the one-unit target's responses, bit for bit --------------------------------------

SPIKING = [None, "count:2-9", "latency", "membrane"]  # None: the layer's default (rate / mean / logit)
FAST = [("lif1:*", SPIKING), ("lif2:*", SPIKING), ("lif2:3-7", SPIKING), ("lif2:30,2,17", [None]),
        ("lif1:*@3,4", [None, "membrane"]), ("lif3:*", [None, "latency", "membrane"]),
        ("conv1:*", [None, "relu"]), ("conv2:1,5@1,1", [None, "relu"]), ("pool2:0-9", [None]),
        ("fc1:*", [None, "relu"]), ("class:*", [None, "prob"]), ("class:2-4", [None])]
HOOKED = [("lif2:*", [None, "membrane"]), ("lif1:3-7@3,4", ["latency"]), ("conv2:1,5@1,1", [None]),
          ("fc1:*", ["relu"]), ("class:*", [None, "prob"])]  # a full forward per step: slower, fewer cases


@pytest.mark.parametrize("fast, spec, readouts", [(True, *c) for c in FAST] + [(False, *c) for c in HOOKED],
                         ids=[f"fast-{s}" for s, _ in FAST] + [f"hooked-{s}" for s, _ in HOOKED])
def test_mnist_snn_multi_unit_equals_single_units(snn, x, spec, readouts, fast):
    for readout in readouts:
        got = assert_columns_exact(snn, spec, x, readout=readout, fast=fast)
        assert got.std() > 0  # not a silent layer


@pytest.mark.parametrize("spec, readout, noise", [
    ("lif2:*", None, "membrane:0.5"), ("lif2:0-7", "latency", "poisson"),
    ("lif1:*", "membrane", "membrane:0.3,poisson"), ("conv2:*", None, "input:0.3"), ("fc1:2,7", None, "membrane:0.5"),
    ("class:*", None, "membrane:0.5"), ("class:*", "prob", "poisson"),
])
def test_seeded_noise_is_each_units_own(snn, x, spec, readout, noise):
    """Every column gets exactly the noise its one-unit target draws under the same seed."""
    got = assert_columns_exact(snn, spec, x, readout=readout, noise=noise)
    t = TorchTarget(snn, spec, readout=readout, noise=noise)
    t.reseed(KEY)
    assert torch.equal(t.responses(x), got)  # reproducible
    t.reseed(KEY + 1)
    assert not torch.equal(t.responses(x), got)  # and really noisy


def test_exact_on_two_threads_too(snn, x):
    torch.set_num_threads(2)
    try:
        assert_columns_exact(snn, "lif2:14-17", x, readout="membrane")  # across the blocks 0-15 and 16-31
        assert_columns_exact(snn, "class:2-4", x, readout="prob", fast=False)
    finally:
        torch.set_num_threads(1)


def test_hooked_input_noise_is_each_units_own(snn, x):
    assert_columns_exact(snn, "lif2:3-7", x, noise="input:0.3", fast=False)


def test_torchvision_model_hooked(x):
    model = MODELS.create("resnet18", "none")
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for spec, readout in [("layer1.0.conv1:10-29", None), ("layer3.1.bn2:0-9@1,1", None),
                          ("layer2.0.relu:5,60,3", "relu"), ("avgpool:100-110", None), ("class:7,3", "prob")]:
        assert_columns_exact(model, spec, images, readout=readout, input_shape=(3, 64, 64))


def test_user_module_hooked():
    """A plain nn.Sequential of the user's: conv, linear and one-value-per-image layers."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 6, 3), relu=nn.ReLU(), flat=nn.Flatten(),
                                      fc=nn.Linear(6 * 10 * 10, 20), tanh=nn.Tanh(), out=nn.Linear(20, 1),
                                      squeeze=nn.Flatten(0)))
    model.input_shape = (1, 12, 12)
    images = torch.rand(5, 1, 12, 12)
    for spec in ("conv:*", "conv:1,4@2,3", "fc:*", "tanh:5-15", "squeeze:*"):
        assert_columns_exact(model, spec, images)


def test_spiking_resnet_multi_step_hooked():
    model = MODELS.create("cifar-spiking-resnet18", "none")
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for spec, readouts in [("layer1.0.sn1:0-15", [None, "membrane", "latency"]), ("layer1.0.bn1:40-50", [None, "relu"]),
                           ("class:2-4", ["prob"])]:
        for readout in readouts:
            assert_columns_exact(model, spec, images, readout=readout)


PATH = find_release("snn_cifar10.pt")
MISSING = (f"MANGO release checkpoint snn_cifar10.pt not found in {', '.join(map(str, release_dirs()))} "
           "(set MANGO_RELEASE_DIR)")


@pytest.mark.skipif(PATH is None and not os.environ.get("CI"), reason=MISSING)
def test_cifar_snn_multi_unit_equals_single_units():
    if PATH is None:  # only reached in CI (elsewhere the test is skipped): the file must be there
        pytest.fail(MISSING)
    model = make_target("cifar-snn", "class:0").model
    torch.manual_seed(0)  # smooth random images in the normalized space: every layer spikes
    images = nn.functional.avg_pool2d(torch.randn(3, 3, 32, 32) * 3, 3, 1, 1)
    for spec, readout in [("spiking1:*", None), ("spiking0:0-7", "membrane"), ("spiking2:10,50,3", None),
                          ("class:*", None)]:
        got = assert_columns_exact(model, spec, images, readout=readout)
        assert got.std() > 0


# -- batch composition, and what the rest of MANGO sees ---------------------------------------------------------

@pytest.mark.parametrize("fast, spec, readout", [
    (True, "lif2:*", None), (True, "lif1:*", "membrane"), (True, "conv1:*", None), (True, "fc1:*", "relu"),
    (True, "class:*", "prob"), (False, "lif2:*", None), (False, "lif1:*", "latency"), (False, "class:*", "prob"),
])  # hooked: the model's own forward, e.g. fc1 as a GEMV for one image and a GEMM for a batch (1 ulp apart)
def test_an_image_alone_gets_its_responses_in_a_batch(snn, digits, spec, readout, fast):
    images = digits[0][:20]  # more than micro_batch (16): two sub-batches on the fast path
    target = TorchTarget(snn, spec, readout=readout, fast=fast)
    batch = target.responses(images)
    for i in (0, 7, 19):
        assert torch.equal(target.responses(images[i:i + 1]), batch[i:i + 1]), (spec, i)


def test_target_reports_its_units_and_the_loop_averages_them(snn, x):
    target = make_target("mnist-snn", "lif2:0-3,8")
    assert target.units == (0, 1, 2, 3, 8) and str(target.spec) == "lif2:0-3,8"
    d = target.describe()
    assert d["spec"] == "lif2:0-3,8" and d["units"] == [0, 1, 2, 3, 8]
    assert TorchTarget(target.model, "lif2:*").units == tuple(range(32))
    assert TorchTarget(target.model, "class:*").describe()["units"] == list(range(10))
    one = TorchTarget(target.model, "lif2:3")
    assert one.units == (3,) and "units" not in one.describe()  # one-unit targets describe themselves as before
    mean, _ = measure(target, x)
    torch.testing.assert_close(mean, target.responses(x).double().mean(1), rtol=0, atol=0)


def test_simulate_takes_one_unit_or_many(snn, x):
    """The fast simulator returns [T, B, U, ...] for a sequence of units, [T, B, 1, ...] for one."""
    many = snn.simulate(x, "lif2", [5, 1])
    assert many.shape == (snn.num_steps, len(x), 2, 4, 4)
    assert torch.equal(many[:, :, 1:2], snn.simulate(x, "lif2", 1))



def test_the_fast_path_computes_only_the_blocks_of_the_units(snn, x, monkeypatch):
    """conv2 (32 channels) before lif2 runs on the 16-channel blocks holding the units, never whole."""
    a, b = TorchTarget(snn, "lif2:3-7"), TorchTarget(snn, "lif2:20,3")  # (built first: a probe runs conv2 whole)
    widths: list[int] = []
    original = snn.conv2._conv_forward
    monkeypatch.setattr(snn.conv2, "_conv_forward", lambda inp, w, b: widths.append(len(w)) or original(inp, w, b))
    a.responses(x)
    one_block = len(widths)
    assert one_block > 0 and set(widths) == {16}
    b.responses(x)  # blocks 0-15 and 16-31: twice the calls, same width
    assert set(widths) == {16} and len(widths) == 3 * one_block


@pytest.mark.parametrize("layer", [nn.Conv2d(64, 40, 1), nn.Conv2d(200, 40, 3, padding=1), nn.Linear(300, 40)],
                         ids=["conv1x1", "conv3x3", "linear"])
def test_channels_are_the_same_bits_however_many_are_asked_for(layer):
    """Shapes where one call computing several channels rounds differently from one computing a single
    channel (measured with oneDNN / MKL on one image); channels() never lets the request change the call."""
    from mango.targets.channels import channels

    g = torch.Generator().manual_seed(0)
    shape = (1, 300) if isinstance(layer, nn.Linear) else (1, layer.in_channels, 8, 8)
    x = torch.randn(shape, generator=g)
    units = (5, 39, 17, 2)
    with torch.inference_mode():
        many = channels(layer, x, units)
        for i, u in enumerate(units):
            assert torch.equal(many[:, i:i + 1], channels(layer, x, (u,)))
