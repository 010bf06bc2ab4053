"""The CIFAR-10 VQ-VAE generator: release checkpoint fidelity, encode/decode, errors, training."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from mango import MangoError
from mango.checkpoints import find_release, release_dirs, save_weights
from mango.generators import GENERATORS
from mango.generators.vqvae import VQVAE, VQVAEGenerator
from mango.imagespace import CIFAR10_MEAN, CIFAR10_STD

RELEASE = find_release("vae_vq_cifar10.pt")
MISSING = (f"MANGO release checkpoint vae_vq_cifar10.pt not found in {', '.join(map(str, release_dirs()))} "
           "(set MANGO_RELEASE_DIR)")
needs_release = pytest.mark.skipif(RELEASE is None and not os.environ.get("CI"), reason=MISSING)


@pytest.fixture(scope="module")
def release() -> VQVAEGenerator:
    if RELEASE is None:  # only reached in CI (CI set): the files must be there
        pytest.fail(MISSING)
    return GENERATORS.create("cifar-vqvae")


def tiny_model(seed: int = 0) -> VQVAE:
    torch.manual_seed(seed)
    return VQVAE(num_hiddens=16, num_residual_layers=1, num_residual_hiddens=8, num_embeddings=16, embedding_dim=8)


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """Natural-ish normalized CIFAR-10 images: smooth random colour fields (no downloads)."""
    g = torch.Generator().manual_seed(seed)
    unit = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=32, mode="bicubic", align_corners=False).clamp(0, 1)
    return (unit - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)


def reference_decode(sd: dict, codes: torch.Tensor) -> torch.Tensor:
    """The release decoder written out with plain functional calls on the state-dict tensors.

    The release's residual blocks begin with an in-place ReLU, so each block adds to relu(input).
    """
    q = sd["_vq_vae._embedding.weight"][codes].view(-1, 8, 8, 64).permute(0, 3, 1, 2)
    x = F.conv2d(q, sd["_decoder._conv_1.weight"], sd["_decoder._conv_1.bias"], padding=1)
    for i in range(2):
        p = f"_decoder._residual_stack._layers.{i}._block"
        h = F.relu(x)
        x = h + F.conv2d(F.relu(F.conv2d(h, sd[f"{p}.1.weight"], padding=1)), sd[f"{p}.3.weight"])
    x = F.relu(x)
    x = F.relu(F.conv_transpose2d(x, sd["_decoder._conv_trans_1.weight"], sd["_decoder._conv_trans_1.bias"],
                                  stride=2, padding=1))
    return F.conv_transpose2d(x, sd["_decoder._conv_trans_2.weight"], sd["_decoder._conv_trans_2.bias"],
                              stride=2, padding=1)


@needs_release
def test_release_decode_matches_reference(release):
    assert release.space.dim == 64 and release.space.size == 512 and release.space.bounds is None
    assert release.image_space.mean == CIFAR10_MEAN and release.image_space.std == CIFAR10_STD
    codes = torch.randint(0, 512, (4, 64), generator=torch.Generator().manual_seed(0))
    sd = torch.load(RELEASE, weights_only=True, map_location="cpu")
    images = release.decode(codes)
    assert images.shape == (4, 3, 32, 32)
    torch.testing.assert_close(images, reference_decode(sd, codes), atol=1e-5, rtol=0)


@needs_release
def test_release_encode_decode_round_trip(release):
    images = smooth_images(8)
    codes = release.encode(images)
    assert codes.shape == (8, 64) and codes.dtype == torch.int64
    recon = release.decode(codes)
    random = release.decode(torch.randint(0, 512, (8, 64), generator=torch.Generator().manual_seed(1)))
    assert F.mse_loss(recon, images) < 0.25 * F.mse_loss(random, images)
    # the codes of a decoded image are (mostly) the codes it was decoded from
    assert (release.encode(recon) == codes).float().mean() > 0.8


@needs_release
def test_truncated_release_copy_is_one_line_error(tmp_path, release):
    bad = tmp_path / "vae_vq_cifar10.pt"
    bad.write_bytes(RELEASE.read_bytes()[: RELEASE.stat().st_size // 2])
    with pytest.raises(MangoError) as err:
        GENERATORS.create("cifar-vqvae", str(bad))
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_missing_release_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("MANGO_RELEASE_DIR", str(tmp_path))
    with pytest.raises(MangoError, match="MANGO_RELEASE_DIR") as err:
        GENERATORS.create("cifar-vqvae")
    assert str(tmp_path / "vae_vq_cifar10.pt") in str(err.value) and "\n" not in str(err.value)
    assert "iabs-neuro/mango/raw/8b96b583/gen/vae_vq_cifar10/data/vae_vq_cifar10.pt" in str(err.value)


def test_untrained_release_architecture():
    gen = GENERATORS.create("cifar-vqvae", "none")
    assert gen.space.size == 512 and gen.space.dim == 64 and gen.space.bounds is None
    codes = torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(gen.decode(codes), GENERATORS.create("cifar-vqvae", "none").decode(codes))


@pytest.mark.parametrize("arch, reason", [
    ({"num_embeddings": "many"}, 'num_embeddings must be an integer, got "many"'),
    ({"codebook": 16}, "unknown key 'codebook' (allowed: num_hiddens,"),
    ({"decay": None}, "decay must be a finite number, got null"),
    ({"num_hiddens": 1}, "VQVAE: "),  # a constructor that refuses: half of 1 channel
    ("vqvae", 'its architecture must be a JSON object of VQVAE arguments, got "vqvae"'),
])
def test_card_of_another_architecture_is_one_line(tmp_path, arch, reason):
    model = tiny_model()
    path = tmp_path / "my_vqvae.safetensors"
    save_weights(model, path, {"architecture": arch})
    with pytest.raises(MangoError) as err:
        GENERATORS.create("cifar-vqvae", str(path))
    msg = str(err.value)
    assert msg.startswith(f"weights card {path.with_suffix('.json')} does not describe a VQVAE: ") and reason in msg
    assert "\n" not in msg


@pytest.mark.parametrize("bad", [
    torch.full((2, 64), 16), torch.full((2, 64), -1), torch.zeros(2, 63, dtype=torch.long),
    torch.zeros(64, dtype=torch.long), torch.zeros(2, 64),  # floats: the space is categorical
])
def test_generator_rejects_bad_codes(bad):
    gen = VQVAEGenerator(tiny_model())
    assert gen.space.size == 16
    with pytest.raises(MangoError):
        gen.decode(bad)
    with pytest.raises(MangoError, match="shape"):
        gen.encode(torch.zeros(2, 1, 32, 32))


def test_corrupt_files_are_one_line_errors(tmp_path):
    state = tmp_path / "tiny.pt"
    torch.save(tiny_model().state_dict(), state)
    state.write_bytes(state.read_bytes()[:1000])
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    junk.with_suffix(".json").write_text("{}")
    for path in (state, junk, tmp_path / "absent.pt"):
        with pytest.raises(MangoError) as err:
            GENERATORS.create("cifar-vqvae", str(path))
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_wrong_architecture_is_one_line_error(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_model().state_dict(), path)
    with pytest.raises(MangoError, match="does not fit VQVAE") as err:
        GENERATORS.create("cifar-vqvae", str(path))
    assert "\n" not in str(err.value)


def test_safetensors_round_trip(tmp_path):
    model = tiny_model()
    path = tmp_path / "my_vqvae.safetensors"
    save_weights(model, path, {"architecture": model.config})
    gen = GENERATORS.create("cifar-vqvae", str(path))
    codes = torch.randint(0, 16, (3, 64), generator=torch.Generator().manual_seed(0))
    assert gen.space.size == 16
    torch.testing.assert_close(gen.decode(codes), model.eval().decode_codes(codes))


def test_training_reduces_loss_and_updates_codebook_by_ema():
    model = tiny_model().train()
    images = smooth_images(32, seed=2)
    ema_before = model._vq_vae._ema_w.clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(200):  # ~1 s
        batch = images[(step % 4) * 8:(step % 4 + 1) * 8]
        loss, out = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert out.recon.shape == batch.shape and out.codes.shape == (8, 64)
    assert sum(losses[-8:]) < 0.6 * sum(losses[:8])
    assert out.perplexity > 4  # several codes in use, not a collapsed codebook
    vq = model._vq_vae
    assert not torch.equal(vq._ema_w, ema_before)
    torch.testing.assert_close(vq._embedding.weight, vq._ema_w / vq._ema_cluster_size.unsqueeze(1))
    # encode/decode never touch the codebook
    model.eval()
    before = vq._embedding.weight.clone()
    model.decode_codes(model.encode(images))
    assert torch.equal(vq._embedding.weight, before)
