"""NWB export: every trial, status, response and image of a run reads back with pynwb as recorded."""
from __future__ import annotations

import io
import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pynwb import NWBHDF5IO
from typer.testing import CliRunner

import mango
from mango import MangoError
from mango.cli.main import app
from mango.experiment.history import latents
from mango.experiment.nwb import export_nwb
from mango.experiment.store import RunStore, encode_latent

runner = CliRunner()
TIMEOUT_S = 2.5


@pytest.fixture(scope="module")
def silico_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nwb") / "run"
    mango.run(budget=24, batch=8, seed=1, out=out, progress=False)
    return out


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_rig_run(folder: Path, blocks: int = 3, per_block: int = 4, channels: int = 3) -> dict:
    """A rig-style run folder as the rig loop records it: queries, presentations (one reference image per
    block, every status), images as PNG, and the block timeout in the settings. Returns what was written."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(mango.RunConfig(budget=blocks * per_block, batch=per_block).to_json())
    statuses = {5: "missing", 6: "malformed", 9: "late"}
    trials, pngs, t0 = [], {}, time.time()
    with RunStore.open(folder, 64) as store:
        store.log("start", "budget 12")
        store.set_meta("settings", {"target": {"name": "rig", "transport": "files", "timeout_s": TIMEOUT_S}})
        for b in range(blocks):
            shown = [(q, f"q{q:06d}", "search") for q in range(b * per_block, (b + 1) * per_block)]
            shown += [(None, "ref000", "reference")] + ([(10, "q000010", "search")] if b == 2 else [])
            rows = []
            for idx, (q, image, kind) in enumerate(shown):
                status = "duplicate" if idx == per_block + 1 else statuses.get(q, "ok")  # type: ignore[arg-type]
                sent = t0 + 10 * b + 0.1 * idx
                answered = None if status == "missing" else sent + 0.5
                resp = None if status in ("missing", "malformed") else rng.random(channels)
                trials.append((f"t{b}-{idx}", q, image, kind, None if q is None else b, b, idx, status, sent, answered,
                               None if resp is None else resp.astype("<f8").tobytes(),
                               {"missing": "no answer", "malformed": "bad JSON"}.get(status)))
                if image not in pngs:
                    shape = (12, 12, 3) if kind == "reference" else (12, 12)
                    pngs[image] = (kind, _png(rng.integers(0, 256, shape, dtype=np.uint8)))
                if q is not None and status == "ok" and idx < per_block:
                    rows.append((q, resp[0]))  # type: ignore[index]
            done = {q for q, _ in rows}
            rows += [(q, np.nan) for q in range(b * per_block, (b + 1) * per_block) if q not in done]
            store.append([(q, b, per_block, r, 0.0, r if np.isfinite(r) else -np.inf, 10.0 * b, 1.0, 0.1,
                           *encode_latent(rng.uniform(-4, 4, 64))) for q, r in sorted(rows)])
    conn = sqlite3.connect(folder / "run.db", isolation_level=None)
    with conn:
        conn.executemany("INSERT INTO presentations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", trials)
        conn.executemany("INSERT INTO images VALUES (?,?,?)", [(k, kind, png) for k, (kind, png) in pngs.items()])
    conn.close()
    return {"trials": trials, "pngs": pngs}


def _read(path: Path):
    io_ = NWBHDF5IO(str(path), "r")
    return io_, io_.read()


def test_in_silico_run_reads_back_as_its_history(silico_run, tmp_path):
    out = tmp_path / "run.nwb"
    res = runner.invoke(app, ["export", str(silico_run), "--format", "nwb", "--out", str(out)])
    assert res.exit_code == 0, res.output
    run = mango.load_run(silico_run)
    h = run.history
    io_, f = _read(out)
    with io_:
        t = f.trials.to_dataframe()
        assert len(t) == len(h) == 24
        assert np.array_equal(t["response"].to_numpy(), h["response"].to_numpy())
        assert t["query"].tolist() == h["query"].tolist() and set(t["status"]) == {"ok"}
        assert t["image"].tolist() == [f"q{q:06d}" for q in h["query"]]
        assert np.array_equal(np.stack(t["latent"].to_numpy()), h[[f"z{i}" for i in range(64)]].to_numpy())
        assert (t["stop_time"] >= t["start_time"]).all() and (t["start_time"] >= 0).all()
        assert run.config.optimizer in f.session_description and "lif2:12" in f.session_description
        assert f.source_script == f"mango {mango.__version__}" and json.loads(f.notes)["config"]["budget"] == 24
        stim = f.stimulus_template["stimulus_images"]
        shown = f.stimulus["stimulus_presentation"]
        order = [img.name for img in stim.order_of_images.data]
        assert [order[i] for i in shown.data[:]] == t["image"].tolist()
        assert np.array_equal(shown.timestamps[:], t["start_time"].to_numpy())
        gen = mango.generators.make_generator("mnist-sngan")
        for q in (0, 13, 23):
            want = gen.pixels(latents(h.iloc[q : q + 1]))[0, 0].numpy()
            got = stim.images[f"q{q:06d}"].data[:]
            assert got.shape == (28, 28) and np.allclose(got, want, atol=1e-5)
        first = f.identifier
    again = export_nwb(silico_run, out)  # an existing file is replaced whole
    io_, f = _read(again)
    with io_:
        assert f.identifier != first and len(f.trials) == 24
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nwb"]  # no temporary file left


def test_unfinished_run_exports_what_is_measured(silico_run, tmp_path):
    run_dir = tmp_path / "unfinished"
    shutil.copytree(silico_run, run_dir)
    (run_dir / "result.json").unlink()
    io_, f = _read(export_nwb(run_dir, tmp_path / "u.nwb"))
    with io_:
        assert len(f.trials) == 24 and "unfinished" in f.experiment_description


def test_rig_run_keeps_every_presentation_status_channel_and_image(tmp_path):
    made = make_rig_run(tmp_path / "rig")
    io_, f = _read(export_nwb(tmp_path / "rig", tmp_path / "rig.nwb"))
    with io_:
        t = f.trials.to_dataframe()
        trials = made["trials"]
        assert t["trial"].tolist() == [r[0] for r in trials]
        assert t["status"].tolist() == [r[7] for r in trials]
        assert t["image"].tolist() == [r[2] for r in trials]
        assert t["query"].tolist() == [-1 if r[1] is None else r[1] for r in trials]
        assert set(t.loc[t["kind"] == "reference", "batch"]) == {-1}
        for i, r in enumerate(trials):
            got = np.asarray(t["responses"].iloc[i])
            if r[10] is None:
                assert np.isnan(got).all()
            else:
                assert np.array_equal(got, np.frombuffer(r[10], "<f8"))
        dur = (t["stop_time"] - t["start_time"]).to_numpy()
        assert np.allclose(dur[t["status"] == "missing"], TIMEOUT_S) and np.allclose(dur[t["status"] == "ok"], 0.5)
        assert np.allclose(np.diff(t["start_time"].to_numpy())[:4], 0.1)
        h = mango.load_run(tmp_path / "rig", unfinished=True).history.set_index("query")
        ok = t[t["query"] >= 0]
        assert np.array_equal(ok["response"].to_numpy(), h.loc[ok["query"], "response"].to_numpy(), equal_nan=True)
        assert t.loc[t["status"] == "missing", "problem"].tolist() == ["no answer"]
        stim = f.stimulus_template["stimulus_images"]
        assert sorted(stim.images) == sorted(made["pngs"])
        for name in ("q000005", "ref000"):
            want = np.asarray(Image.open(io.BytesIO(made["pngs"][name][1])))
            assert np.array_equal(stim.images[name].data[:], want)
        assert type(stim.images["ref000"]).__name__ == "RGBImage"
        order = [img.name for img in stim.order_of_images.data]
        assert [order[i] for i in f.stimulus["stimulus_presentation"].data[:]] == t["image"].tolist()


def test_problems_are_one_line_errors(silico_run, tmp_path):
    with pytest.raises(MangoError, match="run folder not found"):
        export_nwb(tmp_path / "nope", tmp_path / "x.nwb")
    (tmp_path / "file").write_text("")
    with pytest.raises(MangoError, match="cannot write"):
        export_nwb(silico_run, tmp_path / "file" / "x.nwb")
    other = tmp_path / "othergen"
    shutil.copytree(silico_run, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "generator": "nope"}))
    with pytest.raises(MangoError, match="cannot rebuild the run's generator 'nope'") as err:
        export_nwb(other, tmp_path / "x.nwb")
    assert "\n" not in str(err.value)
    rig = tmp_path / "rig"
    make_rig_run(rig)
    with sqlite3.connect(rig / "run.db") as conn:
        conn.execute("UPDATE images SET png = ? WHERE image = 'q000001'", (b"not a png",))
        conn.execute("UPDATE queries SET crc = crc + 1 WHERE query = 3")
    with pytest.raises(MangoError, match="damaged record at query 3"):
        export_nwb(rig, tmp_path / "x.nwb")
    with sqlite3.connect(rig / "run.db") as conn:
        conn.execute("UPDATE queries SET crc = crc - 1 WHERE query = 3")
    with pytest.raises(MangoError, match="image 'q000001' of the run store is not a readable PNG"):
        export_nwb(rig, tmp_path / "x.nwb")
    assert not (tmp_path / "x.nwb").exists()


def test_a_run_made_with_a_generator_object_exports_with_it(tiny_setup, tmp_path):
    gen, net = tiny_setup
    tgt = mango.TorchTarget(net, "lif2:0", input_shape=(1, 28, 28))
    mango.run(generator=gen, target=tgt, budget=8, batch=4, out=tmp_path / "obj", progress=False)
    with pytest.raises(MangoError, match="cannot rebuild the run's generator 'tiny-gen'"):
        export_nwb(tmp_path / "obj", tmp_path / "o.nwb")
    io_, f = _read(export_nwb(tmp_path / "obj", tmp_path / "o.nwb", generator=gen))
    with io_:
        h = mango.load_run(tmp_path / "obj").history
        want = gen.pixels(latents(h.iloc[5:6]))[0, 0].numpy()
        assert np.allclose(f.stimulus_template["stimulus_images"].images["q000005"].data[:], want, atol=1e-5)
