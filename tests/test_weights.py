"""The shipped weights load, match their model cards, and bad files fail clearly."""
import pytest
import torch

from mango import MangoError
from mango.checkpoints import WEIGHTS_DIR, load_weights, read_card
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
