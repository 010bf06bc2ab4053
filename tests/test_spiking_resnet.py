"""SpikingJelly spiking ResNet-18 (CIFAR-10) through the generic hook path: layouts, readouts, state, training."""
import pytest
import torch

from mango import MODELS, MangoError, make_target
from mango.targets.layers import probe_layers
from mango.targets.spiking_resnet import CifarSpikingResNet18


@pytest.fixture(scope="module")
def net():
    return MODELS.create("cifar-spiking-resnet18")


def cifar_batch(n=3, seed=0):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def hooked(model, layer, x, membrane=False):
    """The layer's raw output (or membrane trace) from one plain forward."""
    module = dict(model.named_modules())[layer]
    seen = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append((m.v_seq if membrane else o).clone()))
    with torch.inference_mode():
        model(x)
    handle.remove()
    assert len(seen) == 1
    return seen[0]


def test_probe_lists_spiking_layers_time_major(net):
    infos = {i.name: i for i in probe_layers(net, net.input_shape)}
    spiking = [n for n, i in infos.items() if i.spiking]
    assert len(spiking) == 17 and spiking[0] == "sn1" and spiking[-1] == "layer4.1.sn2"
    assert all(infos[n].time == "major" and infos[n].calls == 1 for n in spiking)
    assert infos["layer4.1.sn2"].shape == (512, 4, 4) and infos["fc"].shape == (10,)
    # the static stem runs once per image, before time is introduced
    assert infos["conv1"].time == "step" and infos["bn1"].calls == 1 and not infos["bn1"].spiking


@pytest.mark.parametrize("layer, unit", [("sn1", 5), ("layer1.0.sn2", 7), ("layer1.1.sn1", 60)])
def test_rate_counts_spikes_over_all_steps(net, layer, unit):
    x = cifar_batch()
    spikes = hooked(net, layer, x)[:, :, unit]  # [T, B, H, W]
    steps, positions = spikes.shape[0], spikes[0, 0].numel()
    assert steps == net.num_steps
    want = spikes.sum((0, 2, 3)) / (steps * positions)
    got = make_target(net, f"{layer}:{unit}").responses(x)[:, 0]
    torch.testing.assert_close(got, want)
    assert (want > 0).all() and not torch.equal(want, spikes[0].mean((1, 2)))  # later steps count too


def test_state_is_reset_between_batches_and_models(net):
    target = make_target(net, "layer1.0.sn1:3")
    other = make_target(MODELS.create("cifar-spiking-resnet18"), "layer1.0.sn1:3")
    a = cifar_batch(4, seed=1)
    first = target.responses(a)
    target.responses(cifar_batch(7, seed=2) * 3)  # other size and content in between
    other.responses(cifar_batch(5, seed=3))
    torch.testing.assert_close(target.responses(a), first, rtol=0, atol=0)
    torch.testing.assert_close(target.responses(a[:1]), first[:1], rtol=0, atol=1e-6)


def test_membrane_readout_is_the_mean_stored_potential(net):
    x = cifar_batch()
    node = net.layer1[0].sn2
    assert not node.store_v_seq  # traces are kept only while a hook watches the node
    v = hooked(net, "layer1.0.sn2", x, membrane=True)[:, :, 4]  # [T, B, H, W]
    got = make_target(net, "layer1.0.sn2:4", readout="membrane").responses(x)[:, 0]
    torch.testing.assert_close(got, v.mean((0, 2, 3)))
    assert not node.store_v_seq


def test_stem_once_and_single_step_give_identical_outputs():
    x = cifar_batch()
    net = MODELS.create("cifar-spiking-resnet18")
    with torch.inference_mode():
        ref = net(x)
    ref_spikes = hooked(net, "layer1.0.sn1", x)
    for mode in ("m", "s"):
        for once in (True, False):
            net.set_step_mode(mode)
            net.stem_once = once
            with torch.inference_mode():
                torch.testing.assert_close(net(x), ref, rtol=0, atol=1e-6)
            got = make_target(net, "layer1.0.sn1:9").responses(x)[:, 0]
            torch.testing.assert_close(got, ref_spikes[:, :, 9].mean((0, 2, 3)))
    with pytest.raises(MangoError, match="does not expose its membrane potential"):  # single-step keeps no trace
        make_target(net, "sn1:0", readout="membrane").responses(x)


def test_steps_change_time_steps():
    target = make_target("cifar-spiking-resnet18", "sn1:2", steps=2)
    assert target.model.num_steps == 2 and target.steps == 2
    x = cifar_batch()
    assert hooked(target.model, "sn1", x).shape[0] == 2
    got = target.responses(x)[:, 0] * 2 * 32 * 32  # spike counts
    torch.testing.assert_close(got, got.round())
    assert target.layers["sn1"].time == "major"


def test_class_output_is_mean_fc_over_steps(net):
    x = cifar_batch()
    fc = hooked(net, "fc", x)  # [T, B, 10]
    torch.testing.assert_close(make_target(net, "class:3").responses(x)[:, 0], fc[:, :, 3].mean(0))
    prob = make_target(net, "class:3", readout="prob").responses(x)[:, 0]
    torch.testing.assert_close(prob, fc.mean(0).softmax(1)[:, 3])


def test_one_training_step_changes_weights_and_loss():
    torch.manual_seed(0)
    net = CifarSpikingResNet18(num_steps=2).train()
    x, y = cifar_batch(4), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    before = net.layer1[0].conv1.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert net.conv1.weight.grad.abs().sum() > 0  # through the spikes: surrogate gradients
    opt.step()
    assert not torch.equal(before, net.layer1[0].conv1.weight)
    assert torch.nn.functional.cross_entropy(net(x), y).item() != loss.item()


def test_weights_files_round_trip(tmp_path):
    from mango.checkpoints import save_weights

    trained = MODELS.create("cifar-spiking-resnet18", "none")
    with torch.no_grad():
        trained.fc.bias.fill_(0.25)
    save_weights(trained, tmp_path / "w.safetensors", {"arch": "cifar-spiking-resnet18"})
    torch.save(trained.state_dict(), tmp_path / "w.pth")
    x = cifar_batch()
    for name in ("w.safetensors", "w.pth"):
        loaded = MODELS.create("cifar-spiking-resnet18", str(tmp_path / name))
        with torch.inference_mode():
            torch.testing.assert_close(loaded(x), trained.eval()(x), rtol=0, atol=0)
    torch.save({k: v for k, v in trained.state_dict().items() if not k.startswith("fc.")}, tmp_path / "part.pth")
    with pytest.raises(MangoError, match="does not fit CifarSpikingResNet18"):
        MODELS.create("cifar-spiking-resnet18", str(tmp_path / "part.pth"))


@pytest.mark.parametrize("spec, readout, needle", [
    ("layer9.0.sn1:0", None, "unknown layer"), ("layer2.0.sn1:128", None, "unit 128 out of range"),
    ("layer1.0.conv1:3", "latency", "needs a spiking layer"), ("sn1:0", "count:0-9", "window ends after"),
])
def test_bad_specs_fail_with_one_line(net, spec, readout, needle):
    with pytest.raises(MangoError) as exc:
        make_target(net, spec, readout=readout)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_time_steps_come_from_the_training_card(tmp_path):
    """`mango train target --steps 2` writes {"architecture": {"num_steps": 2}}: loading it keeps T=2."""
    from mango.checkpoints import save_weights

    net = MODELS.create("cifar-spiking-resnet18", "none")
    save_weights(net, tmp_path / "w.safetensors", {"arch": "cifar-spiking-resnet18", "architecture": {"num_steps": 2}})
    assert MODELS.create("cifar-spiking-resnet18", str(tmp_path / "w.safetensors")).num_steps == 2
    for arch, reason in (({"num_steps": "2"}, 'num_steps must be an integer, got "2"'),
                         ({"num_steps": 0}, "num_steps must be a positive integer"),
                         ({"layers": 34}, "unknown key 'layers' (allowed: num_steps, num_classes, stem_once)")):
        save_weights(net, tmp_path / "bad.safetensors", {"architecture": arch})
        with pytest.raises(MangoError) as exc:
            MODELS.create("cifar-spiking-resnet18", str(tmp_path / "bad.safetensors"))
        msg = str(exc.value)
        assert msg.startswith(f"weights card {tmp_path / 'bad.json'} does not describe a CifarSpikingResNet18: ")
        assert reason in msg and "\n" not in msg
