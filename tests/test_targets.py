"""Hooks on every layer kind of the default SNN, spike-count readout, state reset, bad specs."""
import pytest
import torch
from typer.testing import CliRunner

from mango import MangoError, TorchTarget, make_target
from mango.cli.main import app
from mango.targets.layers import probe_layers


def reference_activity(net, images):
    """Straightforward per-step simulation (conv1 recomputed every step), recording every layer."""
    x = (images - net.in_mean) / net.in_std
    steps = net.num_steps
    rec = {k: 0 for k in ("conv1", "pool1", "lif1", "conv2", "pool2", "lif2", "fc1", "lif3")}
    mem1 = mem2 = mem3 = None
    for _ in range(steps):
        c1 = net.conv1(x)
        p1 = net.pool1(c1)
        mem1 = torch.zeros_like(p1) if mem1 is None else mem1
        s1, mem1 = net.lif1(p1, mem1)
        c2 = net.conv2(s1)
        p2 = net.pool2(c2)
        mem2 = torch.zeros_like(p2) if mem2 is None else mem2
        s2, mem2 = net.lif2(p2, mem2)
        f = net.fc1(s2.flatten(1))
        mem3 = torch.zeros_like(f) if mem3 is None else mem3
        s3, mem3 = net.lif3(f, mem3)
        for k, v in zip(rec, (c1, p1, s1, c2, p2, s2, f, s3), strict=True):
            rec[k] = rec[k] + v / steps
    return rec


def test_layers_are_probed_with_shapes_and_spiking_flags(snn):
    infos = {i.name: i for i in probe_layers(snn, snn.input_shape)}
    assert list(infos) == ["conv1", "pool1", "lif1", "conv2", "pool2", "lif2", "flatten", "fc1", "lif3"]
    assert infos["conv1"].shape == (12, 24, 24) and infos["conv1"].calls == 1
    assert infos["lif2"].shape == (32, 4, 4) and infos["lif2"].calls == snn.num_steps
    assert {n for n, i in infos.items() if i.spiking} == {"lif1", "lif2", "lif3"}


@pytest.mark.parametrize("layer, unit", [("conv1", 3), ("pool1", 5), ("lif1", 7), ("conv2", 1), ("pool2", 30),
                                         ("lif2", 12), ("fc1", 2), ("lif3", 9)])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "hooked"])
def test_every_layer_kind_matches_reference(snn, digits, layer, unit, fast):
    """The fast simulation (only up to the layer, only the unit's channel) and the hooked full
    forward both equal a straightforward per-step simulation."""
    images = digits[0][:16]
    with torch.no_grad():
        ref = reference_activity(snn, images)[layer][:, unit]
    ref = ref.mean((1, 2)) if ref.ndim == 3 else ref
    target = TorchTarget(snn, f"{layer}:{unit}", fast=fast)
    assert target.fast is fast
    got = target.responses(images)[:, 0]
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_spike_readout_counts_every_time_step(snn, digits):
    images = digits[0][:32]
    got = make_target("mnist-snn", "lif2:12").responses(images)[:, 0]
    assert ((got * snn.num_steps * 16) - (got * snn.num_steps * 16).round()).abs().max() < 1e-3  # counts/(T*positions)
    assert got.max() > 1.0 / snn.num_steps  # more than a single step's worth: all steps are counted
    assert (0 <= got).all() and (got <= 1).all()


def test_position_and_class_readouts(snn, digits):
    images, labels = digits[0][::10], digits[1][::10]  # 10 per class
    with torch.no_grad():
        ref = reference_activity(snn, images)
    pos = make_target("mnist-snn", "lif1:2@5,6").responses(images)[:, 0]
    torch.testing.assert_close(pos, ref["lif1"][:, 2, 5, 6])
    cls = make_target("mnist-snn", "class:7").responses(images)[:, 0]
    torch.testing.assert_close(cls, ref["lif3"][:, 7])
    assert cls[labels == 7].mean() > 5 * cls[labels != 7].mean()  # the class neuron prefers its digit


def test_spiking_state_is_reset_between_batches(digits):
    target = make_target("mnist-snn", "lif2:12")
    a, b = digits[0][:8], digits[0][8:40]
    first = target.responses(a)
    target.responses(b)  # other batch size and content in between
    torch.testing.assert_close(target.responses(a), first, rtol=0, atol=0)
    alone = target.responses(a[:1])
    torch.testing.assert_close(alone, first[:1], rtol=0, atol=1e-6)


def test_two_models_interleaved_do_not_share_state(digits):
    one, two = make_target("mnist-snn", "lif1:0"), make_target("mnist-snn", "lif1:0")
    x = digits[0][:4]
    r1 = one.responses(x)
    two.responses(digits[0][100:140])
    torch.testing.assert_close(one.responses(x), r1, rtol=0, atol=0)


@pytest.mark.parametrize("spec, needle", [
    ("lif9:0", "unknown layer"), ("lif2:32", "unit 32 out of range"), ("class:10", "class 10 out of range"),
    ("lif2:0@4,0", "position 4,0 out of range"), ("fc1:0@1,1", "no spatial position"),
])
def test_bad_specs_fail_with_one_line(spec, needle):
    with pytest.raises(MangoError) as exc:
        make_target("mnist-snn", spec)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_layer_lists_allowed_layers():
    with pytest.raises(MangoError, match="allowed: .*lif2"):
        make_target("mnist-snn", "nope:0")


def test_wrong_image_shape_is_rejected(snn):
    target = TorchTarget(snn, "lif2:0")
    with pytest.raises(MangoError, match=r"expects images \[batch, 1, 28, 28\], got \[2, 3, 32, 32\]"):
        target.responses(torch.zeros(2, 3, 32, 32))


def test_sub_batches_give_the_same_responses(snn, digits):
    images = digits[0][:40]
    target = TorchTarget(snn, "lif2:12")
    whole = target.responses(images)
    snn.micro_batch = 7
    try:
        torch.testing.assert_close(target.responses(images), whole, rtol=0, atol=0)
    finally:
        snn.micro_batch = 16


@pytest.mark.parametrize("kw, needle", [
    (dict(noise="input:inf"), "noise level must be a finite number >= 0, got 'inf' in 'input:inf'"),
    (dict(noise="membrane:nan"), "noise level must be a finite number >= 0, got 'nan'"),
    (dict(noise="input:-0.5"), "noise level must be a finite number >= 0, got '-0.5'"),
    (dict(noise="input:1e999"), "noise level must be a finite number >= 0, got '1e999'"),
    (dict(noise="input:abc"), "bad noise level 'abc'"),
    (dict(noise="membrane:0.1,membrane:0.2"), "noise 'membrane' given twice"),
    (dict(noise="poisson:2"), "bad noise 'poisson:2'"),
    (dict(readout="count:3-3"), "count:A-B needs A < B"),
    (dict(readout="count:-1-3"), "unknown readout 'count:-1-3'"),
    (dict(readout="count:0-inf"), "unknown readout 'count:0-inf'"),
    (dict(readout="count:0-21"), "window ends after the 20 time steps"),
    (dict(steps=0), "steps must be a positive integer (time steps), got 0"),
    (dict(steps=True), "steps must be a positive integer (time steps), got True"),
    (dict(steps=2.5), "steps must be a positive integer (time steps), got 2.5"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None)
def test_bad_numbers_in_specs_fail_with_one_line(kw, needle):
    with pytest.raises(MangoError) as exc:
        make_target("mnist-snn", "lif2:0", **kw)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_noise_readout_and_spec_objects_validate_their_numbers():
    from mango.targets import Noise, Readout, TargetSpec

    for bad in (dict(input_sd=float("inf")), dict(membrane_sd=-1.0), dict(input_sd=float("nan")), dict(poisson=1)):
        with pytest.raises(MangoError, match="noise"):
            Noise(**bad)
    with pytest.raises(MangoError, match="0 <= A < B"):
        Readout("count", 5, 2)
    with pytest.raises(MangoError, match="unknown readout"):
        Readout("spikes")
    with pytest.raises(MangoError, match="unit must be an integer >= 0"):
        TargetSpec("lif2", -1)
    with pytest.raises(MangoError, match="position must be two integers >= 0"):
        TargetSpec("lif2", 0, (-1, 2))


# -- `mango layers`: --model-weights, and the untrained architecture when default weights are unavailable --------


def test_layers_takes_model_weights_and_the_old_spelling(tmp_path):
    from mango.checkpoints import WEIGHTS_DIR

    w = str(WEIGHTS_DIR / "mnist_spiking_cnn.safetensors")
    res = CliRunner().invoke(app, ["layers", "mnist-snn", "--model-weights", w])
    assert res.exit_code == 0 and "lif2" in res.output and "note" not in res.output, res.output
    old = CliRunner().invoke(app, ["layers", "mnist-snn", "--weights", w])
    assert old.exit_code == 0 and "--weights is deprecated; use --model-weights" in old.output
    assert "--weights" not in CliRunner().invoke(app, ["layers", "--help"]).output.replace("--model-weights", "")
    res = CliRunner().invoke(app, ["layers", "mnist-snn", "--model-weights", str(tmp_path / "no.safetensors")])
    assert res.exit_code == 2 and "weights file not found" in res.output  # given weights never fall back


def test_layers_without_the_release_checkpoint_lists_the_untrained_architecture(tmp_path, monkeypatch):
    monkeypatch.setenv("MANGO_RELEASE_DIR", str(tmp_path))
    res = CliRunner().invoke(app, ["layers", "cifar-snn"])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "snn_cifar10.pt not found" in notes[0] and "untrained architecture" in notes[0]
    for layer in ("conv0", "spiking0", "spiking1", "linear2", "final_spiking"):
        assert layer in res.output
    assert "200x14x14" in res.output  # shapes as with the release weights


def test_cifar_snn_untrained_and_from_a_training_card(tmp_path):
    """weights 'none' needs no release file; a .safetensors from `mango train target` keeps its time steps."""
    from mango.checkpoints import save_weights
    from mango.targets import MODELS

    net = MODELS.create("cifar-snn", "none")
    assert net.num_steps == 20 and net.conv0.weight.shape == (200, 3, 5, 5)
    save_weights(net, tmp_path / "e.safetensors", {"arch": "cifar-snn", "architecture": {"num_steps": 7}})
    assert MODELS.create("cifar-snn", str(tmp_path / "e.safetensors")).num_steps == 7
    save_weights(net, tmp_path / "bad.safetensors", {"arch": "cifar-snn", "architecture": {"steps": 7}})
    with pytest.raises(MangoError, match=r"does not describe a MangoCifarSNN: unknown key 'steps' \(allowed: "
                                         r"num_steps, beta, n_classes\)"):
        MODELS.create("cifar-snn", str(tmp_path / "bad.safetensors"))
