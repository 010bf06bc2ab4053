"""Training: losses go down, checkpoints reload and resume bit-exactly, bad inputs fail in one line, CLI works.

Everything runs on tiny models and data subsets (a few seconds each, one CPU thread).
"""
import csv
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from mango import MangoError
from mango.cli.main import app
from mango.generators import GENERATORS
from mango.generators.sngan32 import SNGAN32Discriminator, SNGAN32Generator, generator_gflop
from mango.targets import MODELS
from mango.training.common import BatchOrder, reshape_images, training_data
from mango.training.gan import train_generator
from mango.training.targets import accuracy, train_target

runner = CliRunner()
LITE = dict(batch=8, limit=64, resize=True, checkpoint_every=4, sample_every=4, show_progress=False,
            options={"width": 16, "d_width": 16, "n_dis": 2})
TINY_VQ = dict(num_hiddens=16, num_residual_hiddens=8, num_embeddings=16, embedding_dim=8)
SNN = dict(limit=512, eval_limit=200, num_steps=5, batch=32, show_progress=False)


def tensors_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def rows(path, drop=()):
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """sngan32-lite (tiny widths), 8 steps straight on digits padded to 3x32x32."""
    out = tmp_path_factory.mktemp("lite")
    return out, train_generator("sngan32-lite", "digits", 8, out, **LITE)


@pytest.fixture(scope="module")
def snn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("snn")
    return out, train_target("mnist-snn", "digits", 2, out, **SNN)


def test_sngan32_architecture_cost_and_range():
    g, d = SNGAN32Generator(), SNGAN32Discriminator()
    z = torch.rand(2, 128) * 8 - 4
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        x = g.eval()(z)
    assert x.shape == (2, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert counter.get_total_flops() / 2 / 1e9 == pytest.approx(generator_gflop(256)) == pytest.approx(3.36, abs=0.01)
    assert generator_gflop(64) == pytest.approx(0.213, abs=0.001)
    assert d(x).shape == (2,)


def test_gan_discriminator_learns_to_separate_real_from_fake(tmp_path):
    r = train_generator("sngan28", "digits", 24, tmp_path, batch=16, limit=256, sample_every=12,
                        options={"width": 32, "d_width": 16}, show_progress=False)
    h = r["history"]
    first, last = h[:4], h[-4:]
    assert sum(s["loss_d"] for s in last) < 0.6 * sum(s["loss_d"] for s in first)  # hinge loss from ~2 down
    assert min(s["d_gap"] for s in last) > max(s["d_gap"] for s in first)  # D(real) - D(fake) grows
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_000012.png", "step_000024.png"]
    gen = GENERATORS.create("mnist-sngan", str(r["weights"]))  # the embedded model's loader reads our card
    assert gen.decode(torch.zeros(3, 64, dtype=torch.long)).shape == (3, 1, 28, 28)


def test_vqvae_reconstruction_loss_goes_down(tmp_path):
    r = train_generator("vqvae", "digits", 40, tmp_path, batch=16, limit=256, resize=True, lr=3e-3,
                        options=TINY_VQ, sample_every=20, show_progress=False)
    recon = [s["recon"] for s in r["history"]]
    assert sum(recon[-5:]) < 0.7 * sum(recon[:5])
    card = json.loads((tmp_path / "generator.json").read_text())
    assert card["latent_space"] == {"dim": 64, "size": 16, "bounds": None}
    assert card["image_space"]["mean"] is not None  # trained in the normalized CIFAR-10 space it declares
    gen = GENERATORS.create("cifar-vqvae", str(r["weights"]))
    assert gen.space.size == 16


def test_checkpoint_reloads_bit_exactly(lite):
    out, r = lite
    gen = GENERATORS.create("cifar-sngan-lite", str(out / "generator.safetensors"))
    assert tensors_equal(gen.module.state_dict(), r["module"].state_dict())
    z = torch.randint(0, 64, (5, 128), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = r["module"](gen.space.values(z))
    assert torch.equal(gen.decode(z), expected)
    ckpt = load_file(str(out / "checkpoint" / "checkpoint.safetensors"))
    final = load_file(str(out / "generator.safetensors"))
    assert tensors_equal({k[2:]: v for k, v in ckpt.items() if k.startswith("g.")}, final)
    card = json.loads((out / "generator.json").read_text())
    assert card["arch"] == "sngan32-lite" and card["image_space"]["mean"] is None
    assert card["latent_space"] == {"dim": 128, "size": 64, "bounds": [-4.0, 4.0]}
    with pytest.raises(MangoError, match="trained as arch 'sngan32-lite'"):
        GENERATORS.create("cifar-sngan", str(out / "generator.safetensors"))


def test_generator_resume_equals_straight_run(lite, tmp_path):
    straight, _ = lite
    train_generator("sngan32-lite", "digits", 4, tmp_path, **LITE)
    r = train_generator("sngan32-lite", "digits", 8, tmp_path, resume=True, **LITE)
    assert [s["step"] for s in r["history"]] == [5, 6, 7, 8]  # continued, not restarted
    for name in ("generator.safetensors", "checkpoint/checkpoint.safetensors"):
        assert tensors_equal(load_file(str(straight / name)), load_file(str(tmp_path / name)))
    assert rows(straight / "metrics.csv") == rows(tmp_path / "metrics.csv")
    with pytest.raises(MangoError, match="batch=4 differs"):
        train_generator("sngan32-lite", "digits", 9, tmp_path, resume=True, **(LITE | {"batch": 4}))
    with pytest.raises(MangoError, match="already holds a training checkpoint"):
        train_generator("sngan32-lite", "digits", 9, tmp_path, **LITE)


@pytest.mark.parametrize("name", ["checkpoint.safetensors", "optimizer.pt", "checkpoint.json"])
def test_corrupt_checkpoint_fails_in_one_line_naming_the_file(lite, tmp_path, name):
    shutil.copytree(lite[0], tmp_path, dirs_exist_ok=True)
    path = tmp_path / "checkpoint" / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(MangoError) as err:
        train_generator("sngan32-lite", "digits", 9, tmp_path, resume=True, **LITE)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("call, needle", [
    (lambda d: train_generator("sngan32", "digits", 2, d), "has 1x28x28 images but arch 'sngan32' needs 3x32x32"),
    (lambda d: train_target("cifar-snn", "digits", 1, d), "needs 3x32x32 images; pass resize=True (--resize)"),
    (lambda d: train_target("resnet18", "digits", 1, d), "needs 3-channel images (any size: it resizes)"),
    (lambda d: train_generator("sngan64", "digits", 2, d), "unknown generator arch 'sngan64'"),
    (lambda d: train_generator("sngan28", "digits", 2, d, options={"depth": 3}), "unknown option"),
    (lambda d: train_target("lenet", "digits", 1, d), "unknown target arch 'lenet'"),
    (lambda d: train_generator("sngan28", "digits", 0, d), "steps must be a positive finite number, got 0"),
    (lambda d: train_generator("sngan28", "digits", 2, d, lr=float("inf")), "lr must be a positive finite number"),
    (lambda d: train_generator("sngan28", "digits", 2, d, resume=True), "nothing to resume"),
    (lambda d: train_generator("sngan32-lite", "digits", 2, d, options={"width": "abc"}),
     "option width for arch 'sngan32-lite' must be a positive integer, got 'abc' (e.g. --opt width=64)"),
    (lambda d: train_generator("sngan28", "digits", 2, d, options={"n_dis": 1.5}),
     "option n_dis for arch 'sngan28' must be a positive integer, got 1.5"),
    (lambda d: train_generator("sngan28", "digits", 2, d, options={"width": 2}),
     "option width for arch 'sngan28' must be an integer >= 4, got 2"),
    (lambda d: train_generator("sngan28", "digits", 2, d, options={"dim": True}),
     "option dim for arch 'sngan28' must be a positive integer, got True"),
    (lambda d: train_generator("vqvae", "digits", 2, d, options={"decay": "fast"}),
     "option decay for arch 'vqvae' must be a positive finite number, got 'fast'"),
    (lambda d: train_generator("vqvae", "digits", 2, d, options={"num_hiddens": 1}),
     "option num_hiddens for arch 'vqvae' must be an integer >= 2, got 1"),
    (lambda d: train_generator("vqvae", "digits", 2, d, options={"decay": 2.0}, resize=True, limit=16, batch=8,
                               show_progress=False),
     "arch 'vqvae' cannot be built with options decay=2.0: VQVAE needs commitment_cost >= 0 and 0 < decay <= 1"),
    (lambda d: train_target("mnist-snn", "digits", 1, d, num_steps=2.5),
     "num_steps must be a positive integer (time steps), got 2.5"),
], ids=["gen-shape", "target-shape", "target-channels", "gen-arch", "gen-option", "target-arch", "steps", "lr",
        "resume", "opt-type", "opt-float", "opt-small", "opt-bool", "vq-opt-type", "vq-opt-small", "vq-decay",
        "target-steps"])
def test_bad_settings_fail_clearly(tmp_path, call, needle):
    with pytest.raises(MangoError, match=needle.replace("(", r"\(").replace(")", r"\)")) as err:
        call(tmp_path)
    assert "\n" not in str(err.value)


def test_target_checkpoint_per_epoch_with_accuracy(snn_run):
    out, r = snn_run
    metrics = rows(out / "metrics.csv")
    assert [m["epoch"] for m in metrics] == ["1", "2"] and [m["weights"] for m in metrics] == [
        "epoch_001.safetensors", "epoch_002.safetensors"]
    accs = [float(m["heldout_accuracy"]) for m in metrics]
    assert accs == pytest.approx(r["accuracy_per_epoch"], abs=1e-6) and accs[0] > 0.25  # chance: 0.1
    net = MODELS.create("mnist-snn", str(out / "epoch_002.safetensors"))  # the registry loader reads our card
    assert net.num_steps == 5
    held_out = training_data("digits", "test", 200, 0, None, False)  # the subset train_target measured
    assert accuracy(net, held_out.images, held_out.labels) == pytest.approx(accs[1])
    assert json.loads((out / "epoch_001.json").read_text())["heldout_accuracy"] == pytest.approx(accs[0])


def test_target_resume_equals_straight_run(snn_run, tmp_path):
    straight, _ = snn_run
    train_target("mnist-snn", "digits", 1, tmp_path, **SNN)
    train_target("mnist-snn", "digits", 2, tmp_path, resume=True, **SNN)
    for name in ("epoch_001.safetensors", "epoch_002.safetensors", "checkpoint/checkpoint.safetensors"):
        assert tensors_equal(load_file(str(straight / name)), load_file(str(tmp_path / name)))
    assert rows(straight / "metrics.csv", drop={"seconds"}) == rows(tmp_path / "metrics.csv", drop={"seconds"})


def test_resize_pads_small_images_and_repeats_channels():
    x = torch.rand(2, 1, 28, 28)
    y = reshape_images(x, (3, 32, 32))
    assert y.shape == (2, 3, 32, 32) and torch.equal(y[:, 2, 2:30, 2:30], x[:, 0]) and y[:, :, :2].abs().sum() == 0
    assert reshape_images(torch.rand(2, 3, 32, 32), (1, 224, 224)).shape == (2, 1, 224, 224)


def test_batch_order_is_a_function_of_seed_and_batch_index():
    a, b = BatchOrder(10, 3, seed=5), BatchOrder(10, 3, seed=5)
    later = [b.indices(i) for i in (7, 0, 4)]
    assert all(torch.equal(a.indices(i), t) for i, t in zip((7, 0, 4), later, strict=True))
    assert sorted(torch.cat([a.indices(i) for i in range(3)]).tolist()) == sorted(set(a.epoch(0)[:9].tolist()))


def test_cli_train_and_check(tmp_path, lite):
    gen_dir, tgt_dir = tmp_path / "gen", tmp_path / "tgt"
    res = runner.invoke(app, ["train", "gen", "--arch", "sngan28", "--dataset", "digits", "--steps", "3", "--batch",
                              "8", "--limit", "32", "--opt", "width=16", "--opt", "d_width=8", "--out", str(gen_dir),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    assert "GFLOP/image" in res.output and (gen_dir / "generator.safetensors").is_file()
    res = runner.invoke(app, ["train", "target", "--arch", "mnist-snn", "--dataset", "digits", "--epochs", "1",
                              "--limit", "64", "--eval-limit", "50", "--steps", "3", "--out", str(tgt_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tgt_dir / "epoch_001.safetensors").is_file() and len(rows(tgt_dir / "metrics.csv")) == 1

    res = runner.invoke(app, ["check", "gen", "mnist-sngan", "--generator-weights",
                              str(gen_dir / "generator.safetensors"), "--n", "40", "--out", str(tmp_path / "check")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "check" / "check.json").read_text())
    assert (tmp_path / "check" / "samples.png").is_file()
    cov = report["coverage"]
    assert cov["classifier"] == "mnist-snn" and sum(cov["histogram"].values()) == 40
    assert 0.1 <= cov["mean_max_prob"] <= 1

    res = runner.invoke(app, ["check", "gen", "cifar-sngan-lite", "--generator-weights",
                              str(lite[0] / "generator.safetensors"), "--classifier", "mnist-snn", "--n", "8", "--out",
                              str(tmp_path / "c2")])
    assert res.exit_code == 2 and "3-channel images" in res.output and len(res.output.strip().splitlines()) == 1


def test_cli_check_reconstructions_and_errors(tmp_path, monkeypatch):
    vq = train_generator("vqvae", "digits", 2, tmp_path / "vq", batch=8, limit=32, resize=True, options=TINY_VQ,
                         show_progress=False)
    monkeypatch.setenv("MANGO_RELEASE_DIR", str(tmp_path / "no-release"))  # default judge cifar-snn missing
    res = runner.invoke(app, ["check", "gen", "cifar-vqvae", "--generator-weights", str(vq["weights"]), "--n", "8",
                              "--out", str(tmp_path / "skip")])
    assert res.exit_code == 0, res.output
    assert "snn_cifar10.pt not found" in json.loads((tmp_path / "skip" / "check.json").read_text())["coverage_skipped"]
    for extra in ([], ["--dataset", "digits", "--resize"]):
        out = tmp_path / f"check{len(extra)}"
        res = runner.invoke(app, ["check", "gen", "cifar-vqvae", "--generator-weights", str(vq["weights"]),
                                  "--classifier", "none", "--n", "16", "--out", str(out), *extra])
        assert res.exit_code == 0, res.output
        rec = json.loads((out / "check.json").read_text())["reconstruction"]
        assert (out / "reconstructions.png").is_file() and rec["images"] == 16
        assert ("digits" in rec["source"]) == bool(extra)
    for args, needle in ((["check", "gen", "cifar-sngan"], "no pretrained weights ship for cifar-sngan"),
                         (["train", "gen", "--arch", "sngan32", "--dataset", "digits", "--steps", "2", "--out",
                           str(tmp_path / "x")], "--resize"),
                         (["train", "target", "--arch", "nope", "--dataset", "digits", "--epochs", "1", "--out",
                           str(tmp_path / "y")], "unknown target arch 'nope'"),
                         (["train", "gen", "--arch", "sngan32-lite", "--dataset", "digits", "--steps", "2", "--opt",
                           "width=abc", "--out", str(tmp_path / "z")],
                          "option width for arch 'sngan32-lite' must be a positive integer, got 'abc'"),
                         (["check", "gen", "mnist-sngan", "--weights", "a.safetensors", "--generator-weights",
                           "b.safetensors"], "--weights 'a.safetensors' and --generator-weights 'b.safetensors' "
                                             "disagree")):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and needle in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_check_gen_keeps_the_old_weights_spelling(tmp_path, lite):
    res = runner.invoke(app, ["check", "gen", "cifar-sngan-lite", "--weights", str(lite[0] / "generator.safetensors"),
                              "--classifier", "none", "--n", "8", "--out", str(tmp_path / "old")])
    assert res.exit_code == 0, res.output
    assert "--weights is deprecated; use --generator-weights" in res.output
    assert "--weights" not in runner.invoke(app, ["check", "gen", "--help"]).output.replace("--generator-weights", "")
