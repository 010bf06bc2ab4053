"""Scans: many units of a layer searched together equal each unit searched alone; a killed scan rerun
equals an uninterrupted one; group objectives; bad input in one line."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import mango
from mango import MangoError
from mango.cli.main import app
from mango.scan import load_scan, scan, summary
from mango.scan.group import Ways

runner = CliRunner()
ARGS = dict(layers=["lif2"], units="0-3", budget=96, seeds=2, progress=False)


def history(run_dir) -> pd.DataFrame:
    h = mango.read_history(run_dir)
    return h[["query", "batch", "response", *[c for c in h.columns if c.startswith("z")]]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "ref"
    scan(out, **ARGS)
    return out


def test_units_searched_together_equal_each_unit_searched_alone(reference, tmp_path):
    df = load_scan(reference)
    assert list(df.columns[:6]) == ["layer", "unit", "seed", "best_response", "n_queries", "finished"]
    assert len(df) == 8 and df["finished"].all() and (df["n_queries"] == 96).all()
    for unit, seed in [(0, 0), (3, 1)]:
        alone = mango.run(target=f"lif2:{unit}", optimizer="sepcma-2step", budget=96, seed=seed,  # a scan's auto
                          out=tmp_path / f"u{unit}s{seed}", progress=False)
        pd.testing.assert_frame_equal(history(reference / "lif2" / f"u{unit:04d}-s{seed}"), history(alone.run_dir))
        row = df[(df["unit"] == unit) & (df["seed"] == seed)].iloc[0]
        assert row["best_response"] == alone.best_response


@pytest.mark.parametrize("together", [True, False])
def test_measuring_all_members_in_one_forward_or_each_apart_gives_the_same_runs(reference, tmp_path, monkeypatch,
                                                                               together):
    """The scan picks the faster way by timing it; whichever it picks, every history is the same."""
    chosen = []
    monkeypatch.setattr(Ways, "together", lambda self: chosen.append(together) or together)
    out = tmp_path / "forced"
    scan(out, **{**ARGS, "seeds": 1})
    assert chosen and set(chosen) == {together}
    for run_dir in sorted(out.glob("lif2/u*")):
        pd.testing.assert_frame_equal(history(run_dir), history(reference / "lif2" / run_dir.name))


def test_the_faster_way_is_chosen_and_the_other_tried_again_now_and_then():
    ways, picks = Ways(adaptive=True), []
    for _ in range(450):
        t = ways.together()
        picks.append(t)
        ways.record(t, 1.0 if t else 3.0, 10)  # together 3x cheaper per image
    assert picks[:3] == [False, False, True]  # warm-up, then one step each way
    assert picks[3:].count(False) == 2  # the slower way only every 200th step
    assert not Ways(adaptive=False).together()  # a rig or a noisy target: always member by member


@pytest.mark.parametrize("gen,model,optimizer,want", [
    ("patches", "rig:zmq:tcp://127.0.0.1:9", "auto", ("codes-noisy", 20)),
    ("patches", "rig:zmq:tcp://127.0.0.1:9", "codes", ("codes", 1)),
    ("patches", "mnist-snn", "auto", ("codes", 1)),
    ("sngan", "rig:zmq:tcp://127.0.0.1:9", "auto", ("image-model-noisy", 20)),
    ("sngan", "mnist-snn", "auto", ("sepcma-2step", 16))])
def test_members_take_the_method_and_batch_a_run_would(request, gen, model, optimizer, want):
    """As ``mango run``: on a rig, auto's codes show blocks of RIG_BATCH, and a continuous latent gets the noisy
    default (image-model-noisy, in blocks of 20); a chosen optimizer keeps its own batch. Noise-free on a continuous
    latent, not the run's image-model-sepcma but sep-CMA-ES: the models' CPU time would be spent on every unit."""
    from mango.scan.group import member_optimizer
    from mango.scan.plan import Member, ScanConfig

    cfg = ScanConfig(model=model, layers=["ch"], optimizer=optimizer, budget=100)
    run_cfg, _ = member_optimizer(cfg, Member("ch", 1, 0), request.getfixturevalue(gen))
    assert (run_cfg.optimizer, run_cfg.batch) == want


def test_rerunning_a_finished_scan_measures_nothing(reference):
    before = {p: p.stat().st_mtime_ns for p in reference.rglob("run.db")}
    scan(reference, **ARGS)
    assert {p: p.stat().st_mtime_ns for p in reference.rglob("run.db")} == before


def test_a_scan_killed_at_random_moments_and_rerun_equals_the_uninterrupted_one(reference, tmp_path):
    out, rng = tmp_path / "cut", random.Random(1)
    cmd = [sys.executable, "-m", "mango.cli", "scan", "--layers", "lif2", "--units", "0-3", "--budget", "96",
           "--seeds", "2", "--out", str(out), "--quiet"]
    for _ in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(2.0, 5.0))  # start-up is ~2 s; the scan itself a few seconds more
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for run_dir in sorted(reference.glob("lif2/u*")):
        pd.testing.assert_frame_equal(history(out / "lif2" / run_dir.name), history(run_dir))


def test_show_summarizes_a_scan_per_layer(reference):
    s = summary(reference)
    assert s.loc[0, "layer"] == "lif2" and s.loc[0, "units"] == 4 and s.loc[0, "done"] == 4
    res = runner.invoke(app, ["show", str(reference)])
    assert res.exit_code == 0 and "lif2" in res.output and "silent" in res.output
    runs = mango.analysis.load_runs(reference)  # every analysis reads a scan folder as it is
    assert len(runs) == 8


def test_a_contrast_objective_finds_a_selective_stimulus(tmp_path):
    """`u - mean(*)`: the MEI excites its own unit more than the layer's other units."""
    scan(tmp_path / "c", layers=["lif2"], units="12", budget=600, objective="u - mean(*)", progress=False)
    run = mango.load_run(tmp_path / "c" / "lif2" / "u0012-s0")
    every = mango.make_target("mnist-snn", "lif2:*")
    gen = mango.generators.make_generator("mnist-sngan")
    r = every.responses(gen.decode(run.best_latent[None]))[0].numpy()
    others = np.delete(r, 12)
    assert r[12] > others.mean() + 0.2 and r[12] > np.percentile(others, 90)
    assert run.best_response == pytest.approx(r[12] - r.mean(), abs=1e-6)


@pytest.mark.parametrize("args, needle", [
    (["--layers", "lif9"], "unknown layer of 'mnist-snn' 'lif9'"),
    (["--units", "40-45"], "unit 40 out of range for layer 'lif2': it has 32 units (0..31)"),
    (["--units", "5-3"], "empty unit set '--units 5-3'"),
    (["--objective", "u - u77"], "names unit 77, but the layer has 32 units"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
    (["--shared", "--workers", "2"], "--shared runs each seed's one stream of presentations in this process"),
    (["--model", "rig:zmq:tcp://127.0.0.1:1", "--layers", "lif2", "--shared"], "a rig's units are its channels"),
    (["--model", "rig:zmq:tcp://127.0.0.1:1", "--layers", "ch", "--units", "0-3"], "a scan of a rig's channels is "
                                                                                    "--shared"),
])
def test_bad_scan_input_is_one_line(tmp_path, args, needle):
    res = runner.invoke(app, ["scan", "--layers", "lif2", "--budget", "16", "--out", str(tmp_path / "s"), *args])
    assert res.exit_code == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.output


def test_a_bad_optimizer_option_fails_before_the_scan_folder_is_tied_to_it(tmp_path):
    out = tmp_path / "s"
    res = runner.invoke(app, ["scan", "--layers", "lif2", "--units", "0-1", "--budget", "20", "--opt", "bogus=1",
                              "--out", str(out)])
    assert res.exit_code == 2 and "unknown option 'bogus' for optimizer 'sepcma-2step'" in res.stderr
    assert not (out / "scan.json").exists()  # the corrected command is not refused as "other settings"
    res = runner.invoke(app, ["scan", "--layers", "lif2", "--units", "0-1", "--budget", "20", "--out", str(out)])
    assert res.exit_code == 0, res.output


def test_a_scan_folder_made_with_other_settings_is_refused(reference):
    with pytest.raises(MangoError, match=r"holds a scan made with other settings \(optimizer: scan has 'auto', "
                                         r"given 'ga'; readout: scan has 'rate\+drive', given None\)"):
        scan(reference, **{**ARGS, "optimizer": "ga"})
    with pytest.raises(MangoError, match="not a MANGO scan folder"):
        load_scan(Path(reference) / "lif2")
