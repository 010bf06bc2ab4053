"""The shipped weights load, match their model cards, and bad files fail clearly; release checkpoints are found."""
import json
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file

from mango import MangoError, checkpoints
from mango.checkpoints import (
    RELEASE_FILES,
    WEIGHTS_DIR,
    ReleaseMissing,
    load_state,
    load_weights,
    read_card,
    release_dirs,
    release_file,
)
from mango.generators import GENERATORS
from mango.targets import MODELS
from mango.targets.spiking_cnn import SpikingCNN
from mango.training.spiking_cnn import accuracy


def test_spiking_cnn_reproduces_card_accuracy(snn, digits):
    card = read_card(WEIGHTS_DIR / "mnist_spiking_cnn.safetensors")
    acc = accuracy(snn, *digits)
    assert acc >= 0.95
    assert acc == pytest.approx(card["heldout_accuracy"], abs=0.002)


def test_generator_makes_digits_the_snn_recognizes(sngan, snn):
    """Coverage check: random grid latents decode to images the classifier reads as many classes."""
    g = torch.Generator().manual_seed(0)
    z = torch.randint(0, sngan.space.size, (400, sngan.space.dim), generator=g)
    images = sngan.decode(z)
    assert images.shape == (400, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    with torch.no_grad():
        classes = snn(images).argmax(1)
    assert len(torch.unique(classes)) >= 8


def test_weights_files_are_small_safetensors():
    for name in ("mnist_spiking_cnn", "mnist_sngan"):
        path = WEIGHTS_DIR / f"{name}.safetensors"
        assert path.stat().st_size < 5_000_000
        assert path.read_bytes()[8:9] == b"{"  # safetensors header, not a pickle


def test_corrupt_weights_fail_with_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(MangoError, match="not a valid safetensors file") as exc:
        load_weights(SpikingCNN(), bad)
    assert "\n" not in str(exc.value)


def test_truncated_weights_fail(tmp_path):
    src = (WEIGHTS_DIR / "mnist_spiking_cnn.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(src[: len(src) // 2])
    with pytest.raises(MangoError, match="cut.safetensors"):
        load_weights(SpikingCNN(), cut)


def test_weights_of_another_architecture_fail(tmp_path):
    with pytest.raises(MangoError, match="does not fit SpikingCNN"):
        load_weights(SpikingCNN(channels=(8, 8)), WEIGHTS_DIR / "mnist_spiking_cnn.safetensors")


def test_missing_weights_file_fails():
    with pytest.raises(MangoError, match="not found"):
        MODELS.create("mnist-snn", "/nonexistent/w.safetensors")
    with pytest.raises(MangoError, match="not found"):
        GENERATORS.create("mnist-sngan", "/nonexistent/w.safetensors")


def test_unreadable_model_card_fails(tmp_path):
    w = tmp_path / "w.safetensors"
    w.write_bytes((WEIGHTS_DIR / "mnist_sngan.safetensors").read_bytes())
    w.with_suffix(".json").write_text("{not json")
    with pytest.raises(MangoError, match="cannot read model card"):
        GENERATORS.create("mnist-sngan", str(w))


# -- non-finite weights, cards describing another architecture -------------------------------------------------


SNN_WEIGHTS = WEIGHTS_DIR / "mnist_spiking_cnn.safetensors"
GAN_WEIGHTS = WEIGHTS_DIR / "mnist_sngan.safetensors"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_non_finite_weights_are_refused(tmp_path, bad, fmt):
    state = {k: v.clone().contiguous() for k, v in SpikingCNN().state_dict().items()}
    state["conv2.weight"][0, 0, 0, 0] = bad
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        save_file(state, str(path))
        shutil.copy(SNN_WEIGHTS.with_suffix(".json"), path.with_suffix(".json"))
        calls = [lambda: load_weights(SpikingCNN(), path), lambda: MODELS.create("mnist-snn", str(path))]
    else:
        torch.save(state, path)
        calls = [lambda: load_state(SpikingCNN(), path)]
    for call in calls:
        with pytest.raises(MangoError) as exc:
            call()
        msg = str(exc.value)
        assert f"weights file {path} has non-finite values in 'conv2.weight'" in msg and "\n" not in msg


def _card_copy(tmp_path, weights, change):
    """A copy of ``weights`` whose JSON card is edited by ``change(card)``."""
    path = tmp_path / weights.name
    shutil.copy(weights, path)
    card = json.loads(weights.with_suffix(".json").read_text())
    change(card)
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


@pytest.mark.parametrize("change, reason", [
    (lambda c: c.update(architecture={"in_channels": 1, "foo": 3}), "unknown key 'foo' (allowed: in_channels"),
    (lambda c: c["architecture"].update(channels="ab"), 'channels must be a list of 2 integers, got "ab"'),
    (lambda c: c["architecture"].update(channels=[12, 32, 64]), "channels must be a list of 2 integers"),
    (lambda c: c["architecture"].update(num_steps=2.5), "num_steps must be an integer, got 2.5"),
    (lambda c: c["architecture"].update(num_steps=0), "num_steps must be a positive integer"),
    (lambda c: c["architecture"].update(beta="high"), 'beta must be a finite number, got "high"'),
    (lambda c: c["architecture"].update(image_size=8), "image_size must be at least 16"),
    (lambda c: c.update(architecture=[1, 2]), "must be a JSON object of SpikingCNN arguments, got [1, 2]"),
    (lambda c: c.pop("architecture"), "it has no 'architecture' entry"),
], ids=["unknown-key", "str-for-list", "list-length", "float-for-int", "zero-steps", "str-for-float", "too-small",
        "not-an-object", "missing"])
def test_card_of_another_architecture_is_one_line(tmp_path, change, reason):
    path = _card_copy(tmp_path, SNN_WEIGHTS, change)
    with pytest.raises(MangoError) as exc:
        MODELS.create("mnist-snn", str(path))
    msg = str(exc.value)
    assert msg.startswith(f"weights card {path.with_suffix('.json')} does not describe a SpikingCNN: ")
    assert reason in msg and "\n" not in msg


@pytest.mark.parametrize("change, cls, reason", [
    (lambda c: c["architecture"].update(width="wide"), "SNGANGenerator", 'width must be an integer, got "wide"'),
    (lambda c: c["architecture"].update(depth=3), "SNGANGenerator", "unknown key 'depth'"),
    (lambda c: c["latent_space"].update(bounds=[4, -4]), "LatentSpace", "bounds must be two finite numbers low < high"),
    (lambda c: c["latent_space"].update(size="64"), "LatentSpace", "integers dim >= 1 and size >= 2"),
    (lambda c: c["latent_space"].pop("dim"), "LatentSpace", "missing key 'dim'"),
    (lambda c: c.pop("latent_space"), "LatentSpace", "no 'latent_space' entry"),
], ids=["width", "unknown-key", "bounds", "size", "no-dim", "no-space"])
def test_generator_card_of_another_architecture_is_one_line(tmp_path, change, cls, reason):
    path = _card_copy(tmp_path, GAN_WEIGHTS, change)
    with pytest.raises(MangoError) as exc:
        GENERATORS.create("mnist-sngan", str(path))
    msg = str(exc.value)
    assert msg.startswith(f"weights card {path.with_suffix('.json')} does not describe a {cls}: ")
    assert reason in msg and "\n" not in msg


def test_untrained_embedded_architectures():
    """weights 'none': the embedded architectures, untrained and seeded (what `mango layers` falls back to)."""
    a, b = MODELS.create("mnist-snn", "none"), MODELS.create("mnist-snn", "none")
    torch.testing.assert_close(a.conv1.weight, b.conv1.weight, rtol=0, atol=0)
    trained = MODELS.create("mnist-snn")
    assert a.conv1.weight.shape == trained.conv1.weight.shape and not torch.equal(a.conv1.weight, trained.conv1.weight)
    gen = GENERATORS.create("mnist-sngan", "none")
    assert gen.space == GENERATORS.create("mnist-sngan").space and gen.image_shape == (1, 28, 28)


# -- the MANGO release checkpoints: where they are looked for, their hashes -----------------------------------


@pytest.fixture()
def no_release(tmp_path, monkeypatch):
    """No $MANGO_RELEASE_DIR, an empty user cache and no source-checkout folder."""
    monkeypatch.delenv("MANGO_RELEASE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(checkpoints, "_checkout_dir", lambda: tmp_path / "checkout")
    return tmp_path


def test_release_dirs_order(no_release, monkeypatch):
    assert release_dirs() == [no_release / "cache" / "mango" / "release", no_release / "checkout"]
    monkeypatch.setenv("MANGO_RELEASE_DIR", str(no_release / "mine"))
    assert release_dirs() == [no_release / "mine"]  # set: the only place looked


def test_missing_release_file_names_every_place_and_the_source(no_release):
    with pytest.raises(ReleaseMissing) as exc:
        release_file("snn_cifar10.pt")
    msg = str(exc.value)
    assert isinstance(exc.value, MangoError) and "\n" not in msg
    for place in (no_release / "cache" / "mango" / "release", no_release / "checkout"):
        assert str(place / "snn_cifar10.pt") in msg
    assert "https://github.com/iabs-neuro/mango/raw/8b96b583/model/snn_cifar10/snn_cifar10.pt" in msg
    assert "MANGO_RELEASE_DIR" in msg


def test_release_file_is_found_in_the_cache_and_its_hash_checked(no_release, monkeypatch):
    cache = no_release / "cache" / "mango" / "release"
    cache.mkdir(parents=True)
    (cache / "vae_vq_cifar10.pt").write_bytes(b"not the release file")
    (no_release / "checkout").mkdir()
    (no_release / "checkout" / "vae_vq_cifar10.pt").write_bytes(b"never read: the cache comes first")
    with pytest.raises(MangoError) as exc:
        GENERATORS.create("cifar-vqvae")
    msg = str(exc.value)
    assert str(cache / "vae_vq_cifar10.pt") in msg and RELEASE_FILES["vae_vq_cifar10.pt"][0] in msg
    assert checkpoints.sha256(cache / "vae_vq_cifar10.pt") in msg and "\n" not in msg
    # a file with the right hash is accepted (the hash is all that is checked)
    monkeypatch.setitem(RELEASE_FILES, "vae_vq_cifar10.pt",
                        (checkpoints.sha256(cache / "vae_vq_cifar10.pt"), RELEASE_FILES["vae_vq_cifar10.pt"][1]))
    assert release_file("vae_vq_cifar10.pt") == cache / "vae_vq_cifar10.pt"


def test_release_hash_is_computed_once_per_process(tmp_path, monkeypatch):
    import hashlib

    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    path = tmp_path / "f.pt"
    path.write_bytes(b"x" * 1000)
    first = checkpoints.sha256(path)
    assert checkpoints.sha256(path) == first == real(b"x" * 1000).hexdigest() and len(calls) == 1
    path.write_bytes(b"y" * 1001)  # changed: hashed again
    assert checkpoints.sha256(path) != first and len(calls) == 2


@pytest.mark.parametrize("name", sorted(RELEASE_FILES))
def test_release_files_when_present_have_the_published_hash(name):
    path = checkpoints.find_release(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"MANGO release checkpoint {name} missing in CI (looked in {release_dirs()})")
        pytest.skip(f"MANGO release checkpoint {name} not found (looked in {release_dirs()})")
    assert release_file(name) == path and checkpoints.sha256(path) == RELEASE_FILES[name][0]
