"""Shared presentations (``mango scan --shared``): one stream of images serves every unit's search."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

import mango
from mango import MangoError
from mango.scan import load_scan, scan

ARGS = dict(layers=["lif2"], units="0-3", budget=240, seeds=1, shared=True, progress=False)


def history(run_dir) -> pd.DataFrame:
    h = mango.read_history(run_dir)
    return h[["query", "batch", "response", "value", *[c for c in h.columns if c.startswith("z")]]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("shared") / "ref"
    scan(out, **ARGS)
    return out


def test_every_unit_scores_every_image_of_the_stream(reference):
    """Each member's history is the whole stream (the same images, query numbers 0..budget-1), with its own
    unit's responses: equal to measuring those images on the unit alone."""
    df = load_scan(reference)
    assert len(df) == 4 and df["finished"].all() and (df["n_queries"] == 240).all()
    hs = {u: mango.read_history(reference / "lif2" / f"u{u:04d}-s0") for u in range(4)}
    zcols = [c for c in hs[0].columns if c.startswith("z")]
    assert list(hs[0]["query"]) == list(range(240))
    gen = mango.generators.make_generator("mnist-sngan")
    for u, h in hs.items():
        pd.testing.assert_frame_equal(h[zcols], hs[0][zcols])
        z = torch.tensor(h[zcols].to_numpy())
        alone = mango.make_target("mnist-snn", f"lif2:{u}").responses(gen.decode(z))[:, 0].double().numpy()
        assert (h["response"].to_numpy() == alone).all()
    # the units took turns proposing: every unit's best comes from the same 240 presentations
    assert df["best_response"].tolist() == [float(hs[u]["response"].max()) for u in range(4)]


def test_shared_search_beats_random_presentations_for_every_unit(tmp_path):
    """The same total of presentations, shown at random: every unit's best is lower than with the shared search."""
    args = {**ARGS, "budget": 600}
    searched = scan(tmp_path / "s", **args)
    rand = scan(tmp_path / "r", **{**args, "optimizer": "random"})
    assert (searched["best_response"].to_numpy() > rand["best_response"].to_numpy()).all(), (searched, rand)


def test_a_shared_scan_killed_at_random_moments_and_rerun_equals_the_uninterrupted_one(reference, tmp_path):
    out, rng = tmp_path / "cut", random.Random(2)
    cmd = [sys.executable, "-m", "mango.cli", "scan", "--layers", "lif2", "--units", "0-3", "--budget", "240",
           "--shared", "--out", str(out), "--quiet"]
    for _ in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(2.0, 5.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for u in range(4):
        name = f"lif2/u{u:04d}-s0"
        pd.testing.assert_frame_equal(history(out / name), history(reference / name))


def test_a_member_of_a_shared_scan_continues_only_with_its_scan(reference):
    member = reference / "lif2" / "u0001-s0"
    with pytest.raises(MangoError, match="one unit of a shared scan .* run the same mango scan again"):
        mango.run(target="lif2:1", budget=300, out=member, resume=True, progress=False)
    before = history(member)
    scan(reference, **ARGS)  # rerunning the finished scan measures nothing
    pd.testing.assert_frame_equal(history(member), before)


def test_a_shared_scan_of_a_rigs_channels(tmp_path):
    """The living-network case: `mango scan --model rig:zmq:... --layers ch --shared` against the simulated rig
    (10 % of answers dropped). Every trial is recorded once, with every channel, in the first unit's store; each
    unit's history holds the stream's images with its channel's answer (NaN: never answered, left out); and,
    noise-free, every answer is the network's response to that image."""
    from test_rig_session import Rig, free_port

    from mango.experiment.store import RunStore
    from mango.rig.record import unpng
    from mango.rig.simulate import layer_responses

    address = f"tcp://127.0.0.1:{free_port()}"
    rig = Rig("zmq", address, tmp_path / "rig.jsonl", "--seed", "3")
    try:
        df = scan(tmp_path / "s", model=f"rig:zmq:{address}", layers=["ch"], units="10-13", budget=160,
                  shared=True, optimizer="ga", timeout=0.3, progress=False)
    finally:
        rig.stop()
    assert df["finished"].all() and len(df) == 4
    with RunStore.read(tmp_path / "s" / "ch" / "u0010-s0") as store:
        p = pd.read_sql_query("SELECT p.*, i.png FROM presentations p LEFT JOIN images i ON p.image = i.image",
                              store.conn)
    assert p["trial"].is_unique and 140 <= len(p) <= 160  # the budget counts presentations, re-shows included
    ok = p[p["status"] == "ok"].drop_duplicates("image")
    want = layer_responses("mnist-snn", "lif2", [unpng(b) for b in ok["png"]])
    for u in range(10, 14):
        h = mango.read_history(tmp_path / "s" / "ch" / f"u{u:04d}-s0").set_index("query")
        got = h.loc[[int(i[1:]) for i in ok["image"]], "response"].to_numpy()
        assert (got == want[:, u]).all()
        assert df.loc[df["unit"] == u, "best_response"].iloc[0] == pytest.approx(want[:, u].max())
