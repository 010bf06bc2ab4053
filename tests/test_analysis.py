"""Analyses of finished runs (mango.analysis, `mango analyze`): tiny studies on the embedded models."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import mango
from mango import analysis
from mango.checkpoints import save_weights
from mango.cli.main import app
from mango.errors import MangoError
from mango.targets.spiking_cnn import SpikingCNN

runner = CliRunner()
TINY = {"in_channels": 1, "image_size": 28, "channels": [4, 8], "n_classes": 10, "beta": 0.9, "num_steps": 5}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two optimizers x two seeds on lif2:3, and one more neuron (lif1:0) searched by two seeds of one."""
    root = tmp_path_factory.mktemp("study")
    for opt, target, seed in [(o, "lif2:3", s) for o in ("random", "sepcma") for s in (0, 1)] + [
            ("random", "lif1:0", 0), ("random", "lif1:0", 1)]:
        mango.run(optimizer=opt, budget=40, batch=20, seed=seed, target=target, progress=False,
                  out=root / f"{target.replace(':', '_')}-{opt}-s{seed}")
    return root


def _forced_class(cls: int, seed: int) -> SpikingCNN:
    """A tiny spiking CNN whose output layer fires for class ``cls`` whatever the image."""
    torch.manual_seed(seed)
    net = SpikingCNN(**TINY)
    with torch.no_grad():
        net.fc1.weight.zero_()
        net.fc1.bias.fill_(-1.0)
        net.fc1.bias[cls] = 2.0
    return net


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Three checkpoints in `mango train target`'s layout; the preferred class goes 3, 3, 7."""
    d = tmp_path_factory.mktemp("ckpts")
    for epoch, cls in ((1, 3), (2, 3), (3, 7)):
        save_weights(_forced_class(cls, epoch), d / f"epoch_{epoch:03d}.safetensors", {"architecture": TINY})
    pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.0], "heldout_accuracy": [0.3, 0.6, 0.8],
                  "lr": 1e-3, "seconds": 1.0, "weights": [f"epoch_{e:03d}.safetensors" for e in (1, 2, 3)]}
                 ).to_csv(d / "metrics.csv", index=False)
    return d


@pytest.fixture(scope="module")
def evolved(ckpts):
    return analysis.evolution(ckpts, "lif2:0,lif1:1", budget=20, repeats=10)


def test_entropy_of_one_hot_is_0_and_of_uniform_is_1():
    h = analysis.normalized_entropy(np.array([[0, 0, 1, 0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0]]))
    assert h[0] == 0 and h[1] == pytest.approx(1) and h[2] == pytest.approx(0.5)


def test_class_probabilities_of_a_forced_classifier_pick_its_class():
    net = _forced_class(4, 0)
    p = analysis.class_probabilities(net, torch.rand(2, 1, 28, 28), repeats=7, noise="poisson")
    assert p.shape == (2, 10) and torch.allclose(p.sum(1), torch.ones(2, dtype=p.dtype))
    assert (p.argmax(1) == 4).all() and (analysis.normalized_entropy(p) < 0.3).all()
    images = torch.rand(2, 1, 28, 28)
    noisy = [analysis.class_probabilities(net, images, repeats=7, noise="membrane:3", seed=s) for s in (3, 3, 4)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], noisy[2])  # seeded noise
    assert torch.equal(analysis.class_probabilities(net, images, repeats=50, noise=None),
                       analysis.class_probabilities(net, images, repeats=1, noise="none"))  # noiseless: one is enough


def test_distances_of_identical_meis_are_zero(study, tmp_path):
    assert np.array_equal(analysis.pairwise_distances(torch.ones(3, 5)), np.zeros((3, 3)))
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    shutil.copytree(copy / "lif2_3-sepcma-s0", copy / "lif2_3-sepcma-s0-copy")
    table = analysis.diversity(copy).table
    same = table[table["run_a"].str.endswith("sepcma-s0") & table["run_b"].str.endswith("sepcma-s0-copy")]
    assert len(same) == 1 and same["latent_distance"].iloc[0] == 0 and same["image_distance"].iloc[0] == 0
    assert (table.drop(same.index)["latent_distance"] > 0).all()
    assert set(table["layer"]) == {"lif1", "lif2"} and len(table) == 1 + 10  # lif1: 1 pair; lif2: 5 runs -> 10


def test_compare_has_one_curve_per_optimizer_with_correct_medians(study, tmp_path):
    res = analysis.compare(study, tmp_path)
    conv = res.tables["convergence"]
    lif2 = conv[conv["neuron"] == "mnist-snn lif2:3"]
    assert sorted(lif2["method"].unique()) == ["random", "sepcma"]
    for method in ("random", "sepcma"):
        curves = [np.maximum.accumulate(mango.read_history(study / f"lif2_3-{method}-s{s}")["response"])
                  for s in (0, 1)]
        got = lif2[lif2["method"] == method].sort_values("query")
        assert list(got["query"]) == list(range(1, 41))
        np.testing.assert_allclose(got["median"], np.median(curves, 0))
        np.testing.assert_allclose(got["q75"], np.percentile(curves, 75, 0))
    summary = res.tables["summary"]
    assert len(summary) == 3 and (summary["seeds"] == 2).all()
    assert len(res.figures) == 4 and all(p.is_file() and p.suffix == ".png" for p in res.figures)
    assert {p.name for p in res.files} == {"compare.csv", "compare_summary.csv"}


def test_selectivity_table_is_deterministic_and_normalized(study):
    runs = analysis.load_runs(study)
    a = analysis.selectivity(runs, repeats=8).table
    b = analysis.selectivity(runs, repeats=8).table
    pd.testing.assert_frame_equal(a, b)
    probs = a[[f"p{k}" for k in range(10)]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1)
    assert (a["preferred_class"] == probs.argmax(1)).all() and a["entropy"].between(0, 1).all()
    assert set(a["layer"]) == {"lif1", "lif2"} and len(a) == 6


def test_selectivity_can_read_the_classifier_over_more_steps(study):
    """Class logits are spike counts: more steps, larger counts, a sharper softmax (lower entropy)."""
    from mango.analysis.selectivity import Classifiers

    runs = analysis.load_runs(study)
    assert Classifiers(None, 60).get(runs[0]).model.num_steps == 60
    short = analysis.selectivity(runs, noise="none").table["entropy"]
    long = analysis.selectivity(runs, noise="none", steps=60).table["entropy"]
    assert long.mean() < short.mean()


def test_evolution_grid_is_neurons_by_epochs_and_flags_the_class_switch(evolved, ckpts):
    assert evolved.images.shape[:2] == (2, 3)
    t = evolved.table
    assert len(t) == 6 and list(t["heldout_accuracy"][:3]) == [0.3, 0.6, 0.8]
    assert list(t["preferred_class"]) == [3, 3, 7] * 2
    assert list(t["changed"]) == [False, False, True] * 2 and t["switched"].all()
    assert {p.name for p in evolved.figures} == {"evolution_grid.png", "evolution_selectivity.png"}
    runs = sorted((ckpts / "evolution" / "runs").glob("epoch_*/*/result.json"))
    assert len(runs) == 6 and json.loads(runs[0].read_text())["n_queries"] == 20
    stamps = [p.stat().st_mtime_ns for p in runs]
    again = analysis.evolution(ckpts, ["lif2:0", "lif1:1"], budget=20, repeats=10)  # reuses the stored runs
    assert [p.stat().st_mtime_ns for p in runs] == stamps
    pd.testing.assert_frame_equal(again.table, t)


def test_report_embeds_every_figure(study, tmp_path):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    analysis.compare(copy, copy / "analysis")
    analysis.distributions(copy, copy / "analysis")
    page = analysis.report(copy).read_text()
    pngs = list(copy.rglob("*.png"))
    assert page.count("<img") == len(pngs) > 6 * 3
    assert "compare_summary.csv" in page and "<table" in page
    single = analysis.report(copy / "lif1_0-random-s0").read_text()
    assert single.count("<img") == len(list((copy / "lif1_0-random-s0").glob("*.png")))


@pytest.mark.parametrize("damage, needle", [
    (lambda d: (d / "run.db").unlink(), "holds no measured queries"),
    (lambda d: (d / "run.db").write_text("garbage\n\x00\x01"), "cannot read"),
    (lambda d: (d / "run.db").write_text(""), "run.db"),
    (lambda d: (d / "config.json").write_text("{not json"), "config.json"),
    (lambda d: (d / "config.json").unlink(), "config.json is missing"),
    (lambda d: (d / "result.json").unlink(), "did not finish"),
    (lambda d: (d / "result.json").write_text("[1, 2"), "result.json"),
])
def test_broken_run_folders_fail_in_one_line_naming_the_file(study, tmp_path, damage, needle):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    damage(copy / "lif2_3-random-s1")
    for call in (analysis.load_runs, analysis.compare, analysis.distributions, analysis.report):
        with pytest.raises(MangoError) as exc:
            call(copy)
        assert needle in str(exc.value) and "\n" not in str(exc.value)
    res = runner.invoke(app, ["analyze", "compare", str(copy)])
    assert res.exit_code == 2 and needle in res.output


def test_empty_folder_and_broken_checkpoints_fail_in_one_line(tmp_path, ckpts):
    with pytest.raises(MangoError, match="no runs in"):
        analysis.load_runs(tmp_path)
    bad = tmp_path / "ckpts"
    shutil.copytree(ckpts, bad, ignore=shutil.ignore_patterns("evolution"))
    (bad / "metrics.csv").unlink()
    with pytest.raises(MangoError, match="metrics.csv is missing"):
        analysis.evolution(bad, "lif2:0", budget=20)
    (bad / "metrics.csv").write_text("epoch,loss\n1,x\n")
    with pytest.raises(MangoError, match="metrics.csv is corrupt"):
        analysis.evolution(bad, "lif2:0", budget=20)
    shutil.copy(ckpts / "metrics.csv", bad / "metrics.csv")
    (bad / "epoch_002.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(MangoError, match="epoch_002.safetensors") as exc:
        analysis.evolution(bad, "lif2:0", budget=20)
    assert "\n" not in str(exc.value)


def test_cli_commands_write_their_files(study, tmp_path, evolved, ckpts):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    for args in (["compare"], ["selectivity", "--repeats", "5"], ["diversity", "--layers", "lif2,lif1"],
                 ["distributions"]):
        res = runner.invoke(app, ["analyze", *args, str(copy)])
        assert res.exit_code == 0, res.output
    names = {p.name for p in (copy / "analysis").iterdir()}
    assert {"compare.csv", "compare_summary.csv", "selectivity.csv", "selectivity.png", "diversity.csv",
            "diversity.png", "diversity_heatmaps.png", "distributions.csv", "distributions.png"} <= names
    assert sum(n.startswith("compare_convergence_") for n in names) == 2
    res = runner.invoke(app, ["analyze", "evolution", str(ckpts), "--neurons", "lif2:0,lif1:1", "--budget", "20",
                              "--repeats", "10", "--quiet"])  # the runs of `evolved` are reused
    assert res.exit_code == 0, res.output
    assert "lif2:0" in res.output and (ckpts / "evolution" / "evolution_grid.png").is_file()
    res = runner.invoke(app, ["analyze", "report", str(copy)])
    assert res.exit_code == 0 and (copy / "report.html").is_file()


def test_silent_checkpoints_do_not_count_as_class_changes():
    import pandas as pd

    from mango.analysis.evolution import _flag_changes

    table = pd.DataFrame({"neuron_order": [0] * 4, "epoch": [1, 2, 3, 4], "preferred_class": [0, 8, 8, 2],
                          "best_response": [0.0, 0.3, 0.0, 0.4]})
    flagged = _flag_changes(table)
    assert flagged["silent"].tolist() == [True, False, True, False]
    assert flagged["changed"].tolist() == [False, False, False, True]  # 8 -> (silent) -> 2 is one change
