"""Conformance suites: every registered generator, target network and readout keeps the plug-in contracts.

Each suite is parametrized by the registry itself (``GENERATORS``, ``MODELS``, the readout names), so a new
registration is tested without editing this file. Entries:

* default weights that come from the internet (``factory.downloads``, the torchvision models) are replaced by
  weights ``"none"`` (the architecture untrained, seeded 0): the contracts do not depend on weights;
* entries whose default weights are a MANGO release checkpoint (``factory.release_file``) use the real file when
  it is found, are skipped with the reason when not -- and fail when the environment variable ``CI`` is set;
* other entries use their default weights, or ``"none"`` when they have none (e.g. ``cifar-sngan``);
* the user-module fallback (``MODULE:FACTORY``) is exercised with a small module file written for the test.

Cost: networks declaring ``resize`` (they take any image size) are swept at the smallest of 32x32 / 64x64 that
gives the same layers, and every target shares one probe per network (``torch_target.layers_of``).
"""
from __future__ import annotations

import json
import os
import textwrap

import pytest
import torch

from mango import MangoError
from mango.checkpoints import find_release, release_dirs
from mango.generators import GENERATORS
from mango.targets import MODELS, TorchTarget
from mango.targets.readout import CLASS, NAMES, SPIKING
from mango.targets.torch_target import layers_of

BATCH = 2

USER_NET = """
    import torch
    from torch import nn


    class Net(nn.Module):
        input_shape = (3, 16, 16)

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)
            self.act = nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.fc = nn.Linear(4 * 7 * 7, 5)

        def forward(self, x):
            return self.fc(self.pool(self.act(self.conv(x))).flatten(1))
"""

USER_GEN = """
    import torch
    from torch import nn
    import mango
    from mango.imagespace import ImageSpace


    class Gen(nn.Module):
        latent_space = mango.LatentSpace(6, 8, (-2.0, 2.0))
        image_space = ImageSpace((1, 8, 8))

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(6, 64)

        def forward(self, z):
            return torch.sigmoid(self.fc(z.float())).view(-1, 1, 8, 8)
"""


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Every workload here is a batch of 2 small images: one thread runs it faster than several (measured: the
    DenseNet-121 layer sweep takes 4.6 s on one thread, 8-43 s on two of a busy 2-core machine), and no result
    depends on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _kind(registry, name: str) -> str:
    """``"entry"``, ``"fallback"`` (a user-module label such as ``MODULE:FACTORY``) or ``"prefix"`` (``ng:NAME``)."""
    factory = registry._items[name]
    if any(factory is f for _, f in registry._fallbacks):
        return "fallback"
    if name.endswith("NAME") and name[:-4] in registry._prefixes:
        return "prefix"
    return "entry"


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user-plugins")
    (folder / "nets.py").write_text(textwrap.dedent(USER_NET))
    (folder / "gens.py").write_text(textwrap.dedent(USER_GEN))
    return {"model": f"{folder / 'nets.py'}:Net", "generator": f"{folder / 'gens.py'}:Gen"}


def _create(registry, name: str, user_files: dict, family: str):
    """The entry ``name`` built as the module docstring says (skipped / failed for a missing release file)."""
    kind = _kind(registry, name)
    if kind == "prefix":
        pytest.skip(f"{name!r} stands for a family of names; its factory is tested with a real suffix elsewhere")
    if kind == "fallback":
        return registry.create(user_files[family]), user_files[family]
    factory = registry.get(name)
    release = getattr(factory, "release_file", None)
    if release is not None:
        if find_release(release) is None:
            why = (f"MANGO release checkpoint {release} (default weights of {name!r}) not found in "
                   f"{', '.join(map(str, release_dirs()))}")
            if os.environ.get("CI"):
                pytest.fail(f"{why}; CI is set, so the release files must be there (set MANGO_RELEASE_DIR)")
            pytest.skip(f"{why} (set MANGO_RELEASE_DIR)")
        return factory(), name
    if getattr(factory, "downloads", False):
        return factory("none"), name
    try:
        return factory(), name
    except MangoError:  # no default weights (e.g. generators that must be trained first)
        return factory("none"), name


# -- target networks -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(MODELS))
def model(request, user_files):
    """(name as used, network, shape to measure at) for every entry of MODELS; module scope, so pytest runs all
    tests of one network together and frees it before building the next."""
    net, used = _create(MODELS, request.param, user_files, "model")
    return used, net, _work_shape(net)


def _declared(net) -> tuple[int, int, int]:
    space = getattr(net, "input_space", None)
    return tuple(space.shape if space is not None else net.input_shape)


def _work_shape(net) -> tuple[int, int, int]:
    """The declared input shape; for a network that resizes any input, the smallest of 32x32 / 64x64 giving the
    same layers (a sweep over every layer of DenseNet-121 at 224x224 is minutes on a CPU)."""
    shape = _declared(net)
    if not net.input_space.resize:
        return shape
    names = [i.name for i in layers_of(net, shape)]
    for side in (32, 64):
        small = (shape[0], side, side)
        try:
            if [i.name for i in layers_of(net, small)] == names:
                return small
        except MangoError:  # too small for its pooling
            continue
    return shape


def _images(net, shape, n: int = BATCH, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (spiking networks respond to them), in the network's declared space."""
    g = torch.Generator().manual_seed(seed)
    unit = torch.nn.functional.interpolate(torch.rand(n, shape[0], 4, 4, generator=g), size=shape[1:],
                                           mode="bilinear", align_corners=False)
    unit = (unit - 0.5) * 2 + 0.5  # more contrast, then clipped to valid pixels
    return net.input_space.from_unit(unit.clamp(0, 1))


def test_every_listed_layer_is_hookable(model):
    name, net, shape = model
    listed = layers_of(net, _declared(net))  # probe_layers: what `mango layers` prints
    assert listed and len({i.name for i in listed}) == len(listed), name
    assert [i.name for i in layers_of(net, shape)] == [i.name for i in listed]
    x = _images(net, shape)
    for info in listed:
        target = TorchTarget(net, f"{info.name}:0", input_shape=shape, name=name)
        r = target.responses(x)
        assert r.shape == (BATCH, 1) and r.dtype.is_floating_point, info.name
        assert torch.isfinite(r).all(), info.name
        if info.spiking:  # default readout: rate = spike count / T
            assert str(target.readout) == "rate" and ((0 <= r) & (r <= 1)).all(), info.name
    target = TorchTarget(net, "class:0", input_shape=shape, name=name)
    r = target.responses(x)
    assert r.shape == (BATCH, 1) and torch.isfinite(r).all()
    json.dumps(target.describe())


def _leak_specs(net, shape) -> list[str]:
    """The first and last spiking layers (state carried over would show there), one other layer, class:0."""
    infos = layers_of(net, shape)
    spiking = [i.name for i in infos if i.spiking]
    other = [i.name for i in infos if not i.spiking]
    picked = ([spiking[0], spiking[-1]] if spiking else []) + other[len(other) // 2:][:1]
    return [f"{layer}:0" for layer in dict.fromkeys(picked)] + ["class:0"]


def test_responses_do_not_depend_on_earlier_calls_or_batch_company(model):
    """[a, b] twice, [b] alone and [b, a] give each image the same response: no state (e.g. a spiking
    membrane) leaks from one call into the next, nor from one image of a batch into another."""
    name, net, shape = model
    x = _images(net, shape, 2, seed=1)
    a, b = x[:1], x[1:]
    active = False
    for spec in _leak_specs(net, shape):
        target = TorchTarget(net, spec, input_shape=shape, name=name)
        first = target.responses(torch.cat([a, b]))
        torch.testing.assert_close(target.responses(torch.cat([a, b])), first, rtol=0, atol=0, msg=spec)
        torch.testing.assert_close(target.responses(b), first[1:], rtol=1e-5, atol=1e-6, msg=spec)
        torch.testing.assert_close(target.responses(torch.cat([b, a])), first.flip(0), rtol=1e-5, atol=1e-6,
                                   msg=spec)
        active = active or bool((first != 0).any())
    assert active, f"{name}: every response is 0, so this test shows nothing; use images it responds to"


# -- readouts --------------------------------------------------------------------------------------------------
def _readout_text(kind: str, steps: int | None) -> str:
    return f"count:0-{max(1, (steps or 2) // 2)}" if kind == "count" else kind


@pytest.mark.parametrize("readout", NAMES)
def test_every_readout_on_spiking_and_other_layers(model, readout):
    """On a spiking layer, another layer and the class outputs: a response [B, 1] in range and repeatable, or a
    one-line MangoError where the readout does not apply (spiking readouts on other layers, class readouts on
    layers, layer readouts on class outputs)."""
    name, net, shape = model
    infos = layers_of(net, shape)
    layers = [next((i for i in infos if i.spiking), None), next((i for i in infos if not i.spiking), None)]
    x = _images(net, shape, seed=2)
    text = _readout_text(readout, getattr(net, "num_steps", None))
    for info in [i for i in layers if i is not None] + [None]:
        spec = "class:0" if info is None else f"{info.name}:0"
        if info is None:
            applies = readout in CLASS
        else:
            applies = readout not in CLASS and (info.spiking or readout not in SPIKING)
        if not applies:
            with pytest.raises(MangoError) as exc:
                TorchTarget(net, spec, input_shape=shape, name=name, readout=text)
            assert "\n" not in str(exc.value) and text in str(exc.value), (spec, readout)
            continue
        target = TorchTarget(net, spec, input_shape=shape, name=name, readout=text)
        r = target.responses(x)
        assert r.shape == (BATCH, 1) and torch.isfinite(r).all(), (spec, readout)
        torch.testing.assert_close(target.responses(x), r, rtol=0, atol=0, msg=f"{spec} {readout}")
        if readout in ("rate", "count", "latency"):
            assert ((0 <= r) & (r <= 1)).all(), (spec, readout, r)
        if readout == "prob":
            assert ((0 <= r) & (r <= 1)).all(), (spec, r)


# -- generators ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=list(GENERATORS))
def generator(request, user_files):
    """Every entry of GENERATORS, built once for its tests."""
    return _create(GENERATORS, request.param, user_files, "generator")[0]


def _every_index(space) -> torch.Tensor:
    """int64 latents using every index 0..size-1 of every coordinate's range, plus all-0 and all-(size-1) rows."""
    rows = -(-space.size // space.dim)
    z = torch.arange(rows * space.dim).remainder(space.size).view(rows, space.dim)
    return torch.cat([z, torch.zeros(1, space.dim, dtype=torch.long), torch.full((1, space.dim), space.size - 1)])


def test_generator_decodes_declared_images(generator):
    gen, space = generator, generator.space
    assert tuple(gen.image_space.shape) == tuple(gen.image_shape)
    z = _every_index(space)
    assert z.dtype == torch.int64 and set(z.flatten().tolist()) == set(range(space.size))
    images = gen.decode(z)
    assert images.shape == (len(z), *gen.image_shape) and images.dtype.is_floating_point
    assert torch.isfinite(images).all()
    # range: pixels() in [0, 1]; decode = from_unit(pixels) wherever the pixel is not clamped
    pixels = gen.pixels(z)
    assert pixels.shape == images.shape and ((0 <= pixels) & (pixels <= 1)).all()
    unit = gen.image_space.to_unit(images)
    inside = (unit >= 0) & (unit <= 1)
    assert inside.float().mean() > 0.5  # mostly valid pixels
    torch.testing.assert_close(gen.image_space.from_unit(pixels)[inside], images[inside], rtol=1e-4, atol=1e-4)
    if not gen.image_space.normalized:  # declared plain pixels: the images themselves are in [0, 1]
        assert ((0 <= images) & (images <= 1)).all()
    # deterministic, and independent of the rest of the batch
    torch.testing.assert_close(gen.decode(z), images, rtol=0, atol=0)
    torch.testing.assert_close(gen.decode(z[1:2]), images[1:2], rtol=1e-5, atol=1e-5)
    json.dumps(gen.describe())


def test_generator_takes_values_in_its_box(generator):
    gen, space = generator, generator.space
    if space.bounds is None:  # categorical codes: values are refused, in one line
        with pytest.raises(MangoError) as exc:
            gen.decode(torch.rand(2, space.dim, dtype=torch.float64))
        assert "\n" not in str(exc.value)
        return
    lo, hi = space.bounds
    z = lo + (hi - lo) * torch.rand(3, space.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z = torch.cat([z, torch.full((1, space.dim), lo, dtype=torch.float64), torch.full((1, space.dim), hi,
                                                                                     dtype=torch.float64)])
    images = gen.decode(z)
    assert images.shape == (len(z), *gen.image_shape) and torch.isfinite(images).all()
    # a grid index and its grid value give the same image
    idx = _every_index(space)[:1]
    torch.testing.assert_close(gen.decode(space.grid()[idx].double()), gen.decode(idx), rtol=1e-5, atol=1e-5)


def test_generator_rejects_malformed_latents(generator):
    gen, space = generator, generator.space
    bad = [torch.zeros(2, space.dim + 1, dtype=torch.long), torch.zeros(space.dim, dtype=torch.long),
           torch.zeros(2, space.dim, 1, dtype=torch.long), torch.full((2, space.dim), space.size),
           torch.full((2, space.dim), -1)]
    for z in bad:
        with pytest.raises(MangoError) as exc:
            gen.decode(z)
        assert "\n" not in str(exc.value), list(z.shape)
