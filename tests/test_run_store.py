"""The run store: exact records, damaged records reported and measured again, MANGO 0.1 folders, one writer."""
import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import mango
from mango import MangoError, Target, TorchTarget
from mango.cli.main import app
from mango.experiment.files import FolderLock
from mango.experiment.store import RunStore, encode_latent

runner = CliRunner()
KEY = ["query", "batch", "asked", "response", "value"]


def _cols(df):
    return KEY + [c for c in df.columns if c.startswith("z")]


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a[_cols(a)].reset_index(drop=True), b[_cols(b)].reset_index(drop=True))


def test_records_round_trip_exactly(tmp_path):
    z_int, z_float = np.array([0, 63, 5]), np.array([-4.0, 1 / 3, 3.9999999999999996])
    rows = [(0, 0, 3, float("nan"), 0.0, -np.inf, 0.1, 0.1, 0.01, *encode_latent(z_int)),
            (1, 0, 3, float("inf"), 0.5, -np.inf, 0.1, 0.1, 0.01, *encode_latent(z_int[::-1])),
            (2, 0, 3, 0.123456789012345678, 0.0, 0.123456789012345678, 0.1, 0.1, 0.01, *encode_latent(z_int + 1))]
    with RunStore.open(tmp_path, 3) as store:
        store.append(rows)
    with RunStore.read(tmp_path) as store:
        df, damage = store.history()
    assert not damage and df["query"].tolist() == [0, 1, 2] and df["z1"].dtype == np.int64
    assert np.isnan(df["response"][0]) and df["response"][1] == np.inf and df["response"][2] == rows[2][3]
    assert df[["z0", "z1", "z2"]].to_numpy()[1].tolist() == [5, 63, 0]
    (tmp_path / "f").mkdir()
    with RunStore.open(tmp_path / "f", 3) as store:
        store.append([(0, 0, 1, 1.0, 0.0, 1.0, 0.1, 0.1, 0.01, *encode_latent(z_float))])
        assert store.history()[0][["z0", "z1", "z2"]].to_numpy()[0].tolist() == z_float.tolist()  # bit-exact


def _damage(run_dir, query: int) -> None:
    """Garble one stored record behind the store's back (a bad sector, a hand edit)."""
    with sqlite3.connect(run_dir / "run.db") as conn:
        conn.execute("UPDATE queries SET response = response + 0.25 WHERE query = ?", (query,))


def test_damaged_record_is_reported_kept_and_measured_again(tmp_path, tiny_setup):
    gen, net = tiny_setup
    kw = dict(optimizer="sepcma", budget=60, batch=10, seed=1, generator=gen, progress=False)
    full = mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "full", **kw)
    mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "cut", **kw)
    _damage(tmp_path / "cut", 23)
    for read in (mango.read_history, mango.load_run):
        with pytest.raises(MangoError, match=r"damaged record at query 23 \(checksum mismatch\); nothing was dropped"):
            read(tmp_path / "cut")
    res = runner.invoke(app, ["show", str(tmp_path / "cut")])
    assert res.exit_code == 2 and "query 23" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    resumed = mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "cut", resume=True, **kw)
    _same(resumed.history, full.history)  # measured again, in its own place; every other record untouched
    with RunStore.read(tmp_path / "cut") as store:
        (kept,) = store.damaged()
        assert kept.position == "query 23" and "23" in kept.raw and "damaged" in store.events()["text"].str.cat()


def _as_legacy(run_dir) -> None:
    """Turn a run folder into a MANGO 0.1 one: history.csv (repr floats), no run.db, no result.json."""
    hist = mango.read_history(run_dir)
    (run_dir / "run.db").unlink()
    (run_dir / "result.json").unlink()
    hist.to_csv(run_dir / "history.csv", index=False)


def test_mango_01_folder_loads_converts_and_resumes(tmp_path, tiny_setup):
    gen, net = tiny_setup
    kw = dict(optimizer="ga", budget=60, batch=10, seed=2, generator=gen, progress=False)
    full = mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "full", **kw)
    mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "old", **{**kw, "budget": 40})
    _as_legacy(tmp_path / "old")
    _same(mango.read_history(tmp_path / "old"), full.history.iloc[:40])  # read as it is
    lines = (tmp_path / "old" / "history.csv").read_text().splitlines()
    lines[13] = lines[13][:25] + "x" + lines[13][26:]  # one garbled line mid-file (query 12)
    (tmp_path / "old" / "history.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(MangoError, match="damaged record at history.csv line 14"):
        mango.read_history(tmp_path / "old")
    res = runner.invoke(app, ["convert", str(tmp_path)])
    assert res.exit_code == 0 and "39 records" in res.output and "line 14" in res.output
    assert (tmp_path / "old" / "history.v0.csv").read_text().splitlines()[13] == lines[13]  # kept, not edited
    resumed = mango.run(target=TorchTarget(net, "lif2:1"), out=tmp_path / "old", resume=True, **kw)
    _same(resumed.history, full.history)  # every later line kept, the damaged one measured again


def test_one_writer_per_run_folder(tmp_path, tiny_setup):
    gen, net = tiny_setup
    kw = dict(optimizer="random", budget=20, batch=10, generator=gen, progress=False)
    mango.run(target=TorchTarget(net, "lif1:0"), out=tmp_path / "r", **kw)
    before = (tmp_path / "r" / "run.db").read_bytes()
    with FolderLock(tmp_path / "r"):  # a run still going in another process
        with pytest.raises(MangoError, match=r"run folder .* is in use by pid \d+ on .*one process writes a run"):
            mango.run(target=TorchTarget(net, "lif1:0"), out=tmp_path / "r", resume=True, **{**kw, "budget": 40})
    assert (tmp_path / "r" / "run.db").read_bytes() == before
    assert mango.run(target=TorchTarget(net, "lif1:0"), out=tmp_path / "r", resume=True,
                     **{**kw, "budget": 40}).n_queries == 40  # the lock of a finished (or dead) writer is gone


class Peeking(Target):
    """Reads its own run folder mid-run, as `mango show` or a live monitor would from another process."""

    def __init__(self, inner: Target, run_dir) -> None:
        self.inner, self.run_dir, self.seen = inner, run_dir, []
        self.name, self.input_shape, self.spec = inner.name, inner.input_shape, inner.spec

    def responses(self, images):
        try:
            self.seen.append(mango.load_run(self.run_dir, unfinished=True).n_queries)
        except MangoError as exc:
            self.seen.append(str(exc))
        return self.inner.responses(images)


def test_readers_read_while_the_run_writes(tmp_path, tiny_setup):
    gen, net = tiny_setup
    peek = Peeking(TorchTarget(net, "lif1:0"), tmp_path / "r")
    mango.run(optimizer="random", budget=50, batch=10, generator=gen, target=peek, out=tmp_path / "r", progress=False)
    assert "holds no measured queries yet" in peek.seen[0]
    assert peek.seen[1:] == [10, 20, 30, 40]  # every committed batch is visible at once


def test_new_run_never_touches_files_it_did_not_write(tmp_path, tiny_setup):
    gen, net = tiny_setup
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "history.csv").write_text("someone else's data\n")
    with pytest.raises(MangoError, match=r"holds history.csv but no config.json: not a run MANGO can continue"):
        mango.run(optimizer="random", budget=20, batch=10, generator=gen, target=TorchTarget(net, "lif1:0"),
                  out=tmp_path / "r", progress=False)
    assert (tmp_path / "r" / "history.csv").read_text() == "someone else's data\n"


def test_resume_with_a_lower_budget_is_refused_and_changes_nothing(tmp_path, tiny_setup):
    gen, net = tiny_setup
    kw = dict(optimizer="random", batch=10, generator=gen, target=TorchTarget(net, "lif1:0"), progress=False)
    mango.run(budget=40, out=tmp_path / "r", **kw)
    config = (tmp_path / "r" / "config.json").read_text()
    with pytest.raises(MangoError, match="budget 20: 40 queries are already measured; use --budget 40 or more"):
        mango.run(budget=20, out=tmp_path / "r", resume=True, **kw)
    assert (tmp_path / "r" / "config.json").read_text() == config and json.loads(config)["budget"] == 40


@pytest.mark.parametrize("returned, needle", [
    (lambda n: torch.zeros(n + 1, 1), r"returned responses of shape \[11, 1\] for 10 images"),
    (lambda n: torch.zeros(n, 2, 3), r"shape \[10, 2, 3\]"),
    (lambda n: ["a"] * n, "returned list, not numbers"),
    (lambda n: None, r"returned NoneType"),
])
def test_user_target_returning_bad_responses_fails_in_one_line(tmp_path, tiny_setup, returned, needle):
    gen, _ = tiny_setup

    class Mine(Target):
        name, input_shape = "mine", (1, 28, 28)

        def responses(self, images):
            return returned(len(images))

    with pytest.raises(MangoError, match=needle):
        mango.run(optimizer="cma", budget=20, batch=10, generator=gen, target=Mine(), out=tmp_path / "m",
                  progress=False)


def test_user_target_may_return_numpy_or_lists(tmp_path, tiny_setup):
    gen, _ = tiny_setup

    class Plain(Target):
        name, input_shape = "plain", (1, 28, 28)

        def responses(self, images):
            means = images.mean((1, 2, 3)).numpy()
            return means if len(images) % 2 else means.tolist()

    res = mango.run(optimizer="cma", budget=30, batch=10, generator=gen, target=Plain(), out=tmp_path / "p",
                    progress=False)
    assert res.n_queries == 30 and np.isfinite(res.best_response)
