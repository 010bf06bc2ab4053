"""torchvision classifiers and user modules as targets, through the generic hook path (random init, offline)."""
import json
import textwrap
import urllib.error

import pytest
import torch
from typer.testing import CliRunner

import mango
from mango import MODELS, MangoError, make_target
from mango.cli.main import app
from mango.imagespace import IMAGENET_MEAN, IMAGENET_STD
from mango.targets import torch_target
from mango.targets.layers import probe_layers


@pytest.fixture(scope="module")
def models():
    built = {}

    def get(arch):
        if arch not in built:
            built[arch] = MODELS.create(arch, "none")
        return built[arch]

    return get


@pytest.fixture()
def probe_once(monkeypatch):
    """TorchTarget probes its model when built; probe each model once for the tests that build one per layer."""
    cache = {}

    def cached(model, shape):
        key = (id(model), tuple(shape))
        if key not in cache:
            cache[key] = probe_layers(model, shape)
        return cache[key]

    monkeypatch.setattr(torch_target, "probe_layers", cached)
    return cached


def imagenet_batch(n=2):
    return torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def direct(model, x, units):
    """Each layer's unit averaged over positions (and over its calls), from one plain hooked forward."""
    seen, handles = {}, []
    for name, module in model.named_modules():
        if name in units:
            def hook(mod, inp, out, name=name):
                v = out[:, units[name]]  # reduced now: a later in-place ReLU may overwrite ``out``
                seen.setdefault(name, []).append(v.reshape(len(v), -1).mean(1).clone())
            handles.append(module.register_forward_hook(hook))
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return {k: torch.stack(v).mean(0) for k, v in seen.items()}


def check_layers(model, probe_once, names):
    infos = {i.name: i for i in probe_once(model, model.input_shape)}
    units = {n: (infos[n].units - 1) // 2 for n in names}
    x = imagenet_batch()
    want = direct(model, x, units)
    for name in names:
        got = make_target(model, f"{name}:{units[name]}").responses(x)
        assert got.shape == (2, 1), name
        torch.testing.assert_close(got[:, 0], want[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("arch", ["alexnet", "resnet18"])
def test_every_layer_matches_a_direct_hook(models, probe_once, arch):
    model = models(arch)
    names = [i.name for i in probe_once(model, model.input_shape)]
    assert {"alexnet": "features.8", "resnet18": "layer2.0.conv1"}[arch] in names
    check_layers(model, probe_once, names)


@pytest.mark.parametrize("arch, every", [("vgg16", 15), ("vgg19", 23), ("densenet121", 37)])
def test_a_sample_of_layers_matches_a_direct_hook(models, probe_once, arch, every):
    model = models(arch)
    names = [i.name for i in probe_once(model, model.input_shape)]
    check_layers(model, probe_once, names[::every] + names[-2:])


def test_named_units_of_the_readme(models):
    x = imagenet_batch(1)
    assert make_target(models("alexnet"), "features.8:17").responses(x).shape == (1, 1)
    assert make_target(models("resnet18"), "layer2.0.conv1:5@3,4").responses(x).shape == (1, 1)


def test_declared_input_space_resizes_imagenet_normalized():
    space = MODELS.create("resnet18", "none").input_space
    assert space.shape == (3, 224, 224) and space.resize
    assert space.mean == IMAGENET_MEAN and space.std == IMAGENET_STD


def test_class_logit_and_prob(models):
    model, x = models("alexnet"), imagenet_batch(3)
    with torch.inference_mode():
        logits = model(x)
    probs = logits.softmax(1)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    for k in (0, 3, 999):
        logit = make_target(model, f"class:{k}").responses(x)[:, 0]
        prob = make_target(model, f"class:{k}", readout="prob").responses(x)[:, 0]
        torch.testing.assert_close(logit, logits[:, k])
        torch.testing.assert_close(prob, probs[:, k])
        assert ((0 <= prob) & (prob <= 1)).all()


def test_offline_download_is_one_line_error(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    for arch in ("alexnet", "densenet121"):
        with pytest.raises(MangoError) as exc:
            make_target(arch, "class:0")
        msg = str(exc.value)
        assert "cannot download" in msg and "'none'" in msg and arch in msg and "\n" not in msg


def test_random_init_is_seeded_and_local_weights_load(tmp_path):
    a, b = MODELS.create("resnet18", "none"), MODELS.create("resnet18", "none")
    torch.testing.assert_close(a.fc.weight, b.fc.weight, rtol=0, atol=0)
    from safetensors.torch import save_file

    with torch.no_grad():
        a.fc.bias.fill_(0.5)
    torch.save(a.state_dict(), tmp_path / "w.pth")
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pth", "w.safetensors"):
        loaded = MODELS.create("resnet18", str(tmp_path / name))
        assert (loaded.fc.bias == 0.5).all()
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(MangoError, match="cannot read checkpoint .*bad.pth"):
        MODELS.create("alexnet", str(tmp_path / "bad.pth"))
    with pytest.raises(MangoError, match="does not fit"):
        MODELS.create("alexnet", str(tmp_path / "w.pth"))


@pytest.mark.parametrize("spec, readout, needle", [
    ("features.99:0", None, "unknown layer"), ("features.8:256", None, "unit 256 out of range"),
    ("features.8:3", "latency", "needs a spiking layer"), ("class:1000", None, "class 1000 out of range"),
])
def test_bad_specs_fail_with_one_line(models, spec, readout, needle):
    with pytest.raises(MangoError) as exc:
        make_target(models("alexnet"), spec, readout=readout)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


# -- user modules -----------------------------------------------------------------------------------
NET = """
    import torch
    from torch import nn
    from mango.imagespace import ImageSpace


    class Net(nn.Module):
        input_space = ImageSpace((1, 28, 28))

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(1, 4, 5)
            self.fc = nn.Linear(4 * 24 * 24, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).flatten(1))


    def make_net():
        return Net()


    class Undeclared(nn.Linear):
        def __init__(self):
            super().__init__(4, 2)
"""


@pytest.fixture()
def user_file(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(textwrap.dedent(NET))
    return path


def test_python_file_factory_and_class(user_file):
    x = torch.rand(5, 1, 28, 28)
    for name in (f"{user_file}:make_net", f"{user_file}:Net"):
        assert name in MODELS
        target = make_target(name, "conv:2")
        net = target.model
        with torch.no_grad():
            want = net.conv(x)[:, 2].mean((1, 2))
            logits = net(x)
        torch.testing.assert_close(target.responses(x)[:, 0], want)
        torch.testing.assert_close(make_target(name, "class:1").responses(x)[:, 0], logits[:, 1])
        assert target.input_shape == (1, 28, 28)


def test_dotted_module_from_the_command_line(user_file, tmp_path, monkeypatch):
    pkg = tmp_path / "mango_test_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(user_file.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    res = CliRunner().invoke(app, ["run", "--model", "mango_test_pkg.nets:Net", "--target", "class:1", "--optimizer",
                                   "random", "--budget", "20", "--batch", "10", "--out", str(tmp_path / "run"),
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "result.json").read_text())["n_queries"] == 20
    layers = CliRunner().invoke(app, ["layers", f"{user_file}:make_net"])
    assert layers.exit_code == 0 and "conv" in layers.output


def test_torchscript_with_mango_json(user_file, tmp_path):
    net = MODELS.create(f"{user_file}:make_net")
    x = torch.rand(3, 1, 28, 28)
    traced = torch.jit.trace(net, x)
    path = tmp_path / "net.pt"
    meta = {"input_shape": [1, 28, 28], "mean": [0.5], "std": [0.25], "resize": False}
    torch.jit.save(traced, str(path), _extra_files={"mango.json": json.dumps(meta)})
    target = make_target(str(path), "class:2")
    assert target.input_space.mean == (0.5,) and target.input_space.std == (0.25,)
    with torch.no_grad():
        torch.testing.assert_close(target.responses(x)[:, 0], net(x)[:, 2])
    torch.testing.assert_close(make_target(str(path), "output:2").responses(x), target.responses(x))
    with pytest.raises(MangoError, match="unknown layer .*allowed: output$"):  # TorchScript hides its layers
        make_target(str(path), "conv:0")
    listed = CliRunner().invoke(app, ["layers", str(path)])
    assert listed.exit_code == 0 and "output" in listed.output


@pytest.mark.parametrize("kind", ["python", "torchscript", "missing-module", "missing-factory"])
def test_user_module_errors_are_one_line(user_file, tmp_path, kind):
    if kind == "python":
        name, needle = f"{user_file}:Undeclared", "does not declare its input"
    elif kind == "torchscript":
        name, needle = str(tmp_path / "bare.ts"), "does not declare its input"
        torch.jit.save(torch.jit.script(torch.nn.Linear(4, 2)), name)
    elif kind == "missing-module":
        name, needle = "no_such_pkg_xyz.nets:Net", "no Python module 'no_such_pkg_xyz.nets'"
    else:
        name, needle = f"{user_file}:nope", "has no 'nope'"
    with pytest.raises(MangoError) as exc:
        make_target(name, "class:0")
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_model_still_lists_registered_names():
    with pytest.raises(MangoError, match="unknown model 'resnet999'; allowed: .*cifar-spiking-resnet18.*resnet18"):
        MODELS.get("resnet999")


BAD_NETS = """
    import torch
    from torch import nn


    class Base(nn.Module):
        input_shape = (1, 8, 8)

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc = nn.Linear(4 * 6 * 6, 3)

        def logits(self, x):
            return self.fc(self.conv(x).flatten(1))


    class Numpy(Base):
        def forward(self, x):
            return self.logits(x).numpy()


    class Listed(Base):
        def forward(self, x):
            return [self.logits(x)]


    class Flat(Base):
        def forward(self, x):
            return self.logits(x).flatten()


    class Wide(Base):
        def forward(self, x):
            return self.logits(x)[:, :, None]


    class Miscounted(Base):
        '''Runs its conv on the first image only after the probe: a batch-dependent layer.'''
        def forward(self, x):
            if not getattr(self, "probed", False):
                self.probed = True
                return self.logits(x)
            self.conv(x[:1])
            return self.logits(x)


    class WrongInput(Base):
        input_shape = (3, 8, 8)

        def forward(self, x):
            return self.logits(x)
"""


@pytest.fixture()
def bad_nets(tmp_path):
    path = tmp_path / "bad_nets.py"
    path.write_text(textwrap.dedent(BAD_NETS))
    return path


@pytest.mark.parametrize("cls, spec, needle", [
    ("Numpy", "class:0", "returned a numpy.ndarray from forward; expected a torch.Tensor of class outputs "
                         "[batch, classes]"),
    ("Listed", "class:0", "returned a list from forward; expected a torch.Tensor of class outputs"),
    ("Flat", "class:0", "returned class outputs of shape [3] for 1 images; expected a torch.Tensor of class outputs "
                        "[batch, classes] = [1, N]"),
    ("Wide", "class:0", "returned class outputs of shape [1, 3, 1] for 1 images"),
    ("Miscounted", "conv:0", "gave an output of shape [1, 4, 6, 6] for 2 images; when probed it gave [4, 6, 6] "
                             "per image"),
    ("WrongInput", "conv:0", "fails on its declared input [batch, 3, 8, 8]: RuntimeError"),
])
def test_user_network_with_wrong_outputs_fails_with_one_line(bad_nets, cls, spec, needle):
    with pytest.raises(MangoError) as exc:
        make_target(f"{bad_nets}:{cls}", spec).responses(torch.rand(2, 1, 8, 8))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_hooked_layers_of_user_networks_need_no_class_outputs(bad_nets):
    """A network whose forward returns something odd still has addressable layers (read by hooks)."""
    x = torch.rand(2, 1, 8, 8)
    for cls in ("Numpy", "Listed", "Flat"):
        target = make_target(f"{bad_nets}:{cls}", "conv:1")
        with torch.no_grad():
            want = target.model.conv(x)[:, 1].mean((1, 2))
        torch.testing.assert_close(target.responses(x)[:, 0], want)


def test_torch_target_needs_a_declared_input():
    with pytest.raises(MangoError, match="does not declare its input: pass input_shape"):
        mango.TorchTarget(torch.nn.Conv2d(1, 2, 3), "class:0")
    with pytest.raises(MangoError, match=r"three positive integers \(C, H, W\), got \(1, 8\)"):
        mango.TorchTarget(torch.nn.Conv2d(1, 2, 3), "class:0", input_shape=(1, 8))


def test_layers_of_torchvision_models_offline(monkeypatch):
    """Offline, `mango layers vgg16` lists the untrained architecture (torchvision's layer names) and says so."""
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    res = CliRunner().invoke(app, ["layers", "alexnet"])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "cannot download torchvision's ImageNet weights" in notes[0]
    assert "features.10" in res.output and "classifier.6" in res.output
