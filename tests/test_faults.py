"""Faults injected as a user meets them: kill -9 at random instants, signals, a second writer, a full disk.

Each test runs the real ``mango`` command in a subprocess and checks the run folder afterwards: no
measured row is ever lost or changed, and a resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import mango
from mango import MangoError
from mango.cli.main import app

runner = CliRunner()

# the embedded default unit; sep-CMA-ES, the default's first 240 images, so 1,500 queries take seconds (the
# default's models cost about 0.1 s an image after that; their resume is exact: test_optimizers_continuous)
ARGS = ["--budget", "1500", "--optimizer", "sepcma-2step", "--quiet"]
COLS = ["query", "batch", "asked", "response", "response_sd", "value", *[f"z{i}" for i in range(64)]]


def mango_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mango.cli", *map(str, args)]


def _default_sigint() -> None:
    """A process started in the background by a non-interactive shell inherits SIGINT ignored, and Python
    then installs no KeyboardInterrupt handler; MANGO run from a terminal has the default, so test that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    resume = ["--resume"] if (run_dir / "config.json").exists() else []
    return subprocess.Popen(mango_cmd("run", *ARGS, "--out", run_dir, *resume, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)


def stored(run_dir: Path) -> pd.DataFrame:
    """What a reader sees now, timings left out (nothing, before the store exists)."""
    try:
        return mango.read_history(run_dir).drop(columns=["elapsed_s", "batch_s", "optimizer_s"])
    except MangoError:
        return pd.DataFrame(columns=COLS)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, made by the same command."""
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(mango_cmd("run", *ARGS, "--out", out), check=True, capture_output=True, timeout=300)
    return mango.load_run(out)


def count(run_dir: Path) -> int:
    """Records committed so far (a cheap look, for timing the kills)."""
    try:
        with sqlite3.connect(f"{(run_dir / 'run.db').resolve().as_uri()}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM queries").fetchone()[0])
    except sqlite3.Error:
        return 0


def _wait_for_rows(run_dir: Path, proc: subprocess.Popen, rows: int = 1, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while proc.poll() is None and count(run_dir) < rows and time.monotonic() - t0 < timeout:
        time.sleep(0.02)


def test_kill_9_at_random_instants_never_loses_a_measured_row(tmp_path, reference):
    """21 kills, in turn during start-up (or a resume's replay), measurement, and the finish (pictures, result)."""
    rng, run_dir, kills, phases = random.Random(0), tmp_path / "run", 0, set()
    ref = stored(reference.run_dir)
    while kills < 21:
        at_start = count(run_dir)
        proc = start(run_dir)
        phase = ("start", "measure", "finish")[kills % 3]
        if phase == "start":  # importing torch, building the models, replaying the records: ~2 s
            time.sleep(rng.uniform(0.0, 1.0))
        elif phase == "measure":
            _wait_for_rows(run_dir, proc, rows=at_start + 1)
            time.sleep(rng.uniform(0.0, 1.0))
        else:
            _wait_for_rows(run_dir, proc, rows=len(ref))
            time.sleep(rng.uniform(0.0, 0.3))
        before = stored(run_dir)
        if proc.poll() is not None:  # it finished before the kill: start over in a new folder
            assert proc.returncode == 0, proc.stderr.read()
            run_dir = tmp_path / f"run{kills}"
            continue
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        after = stored(run_dir)
        phases.add("finish" if len(after) == len(ref) else "measure" if len(after) > at_start else "start")
        # every row a reader saw before the kill is still there, unchanged; and equals the uninterrupted run's
        assert len(after) >= len(before)
        if len(before):
            pd.testing.assert_frame_equal(after.iloc[: len(before)], before)
        if len(after):
            pd.testing.assert_frame_equal(after, ref.iloc[: len(after)])
    assert phases == {"start", "measure", "finish"}, phases  # every phase was hit
    done = subprocess.run(mango_cmd("run", "--resume", "--out", run_dir, "--quiet"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    final = mango.load_run(run_dir)
    pd.testing.assert_frame_equal(stored(run_dir), ref)
    assert final.best_response == reference.best_response
    assert final.best_latent.tolist() == reference.best_latent.tolist()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_stop_cleanly_and_say_how_to_resume(tmp_path, sig):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    _wait_for_rows(run_dir, proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    n = len(stored(run_dir))
    assert err.strip().splitlines() == [f"interrupted after {n} of 1500 queries; every measured batch is kept in "
                                        f"{run_dir / 'run.db'}; continue with: mango run --resume --out {run_dir}"]


@pytest.mark.ci_may_skip("needs Linux /proc")
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc to see torch being loaded")
def test_ctrl_c_during_start_up_is_one_line(tmp_path):
    proc = start(tmp_path / "run")
    while "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text() and proc.poll() is None:
        time.sleep(0.01)  # Ctrl-C while torch is imported, before anything is measured
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip() == "interrupted before the search started: nothing new was measured"


def test_a_second_writer_is_refused_while_the_run_goes(tmp_path):
    run_dir = tmp_path / "run"
    first = start(run_dir)
    _wait_for_rows(run_dir, first)
    first.send_signal(signal.SIGSTOP)  # the first run still holds the folder, however fast it would have finished
    try:
        second = subprocess.run(mango_cmd("run", "--resume", "--budget", "3000", "--out", run_dir, "--quiet"),
                                capture_output=True, text=True, timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    first.communicate(timeout=120)
    assert second.returncode == 2 and len(second.stderr.strip().splitlines()) == 1
    assert f"run folder {run_dir} is in use by pid {first.pid}" in second.stderr
    final = mango.load_run(run_dir)
    assert final.n_queries == 1500 and final.history["query"].tolist() == list(range(1500))


@pytest.fixture()
def tmpfs(tmp_path, request):
    """A small RAM file system of our own, where the disk can really fill up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        if request.node.get_closest_marker("ci_may_skip") is None:
            request.node.add_marker(pytest.mark.ci_may_skip("mounting a tmpfs needs root or CAP_SYS_ADMIN"))
        pytest.skip(f"cannot mount a tmpfs here ({exc}); needs root or CAP_SYS_ADMIN")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


class Filling(mango.Target):
    """Fills the disk after ``at`` calls: the next record (or picture) finds no space."""

    def __init__(self, inner, at: int, folder: Path) -> None:
        self.inner, self.at, self.folder, self.calls = inner, at, folder, 0
        self.name, self.input_shape, self.spec = inner.name, inner.input_shape, inner.spec

    def responses(self, images):
        self.calls += 1
        if self.calls == self.at:
            _fill(self.folder)
        return self.inner.responses(images)


@pytest.mark.ci_may_skip("mounting a tmpfs needs root or CAP_SYS_ADMIN")
@pytest.mark.parametrize("at, where, kept", [(5, "recording a batch", 40), (7, "writing the run's pictures", 60)])
def test_a_full_disk_ends_in_one_line_and_a_resumable_folder(tmp_path, tmpfs, tiny_setup, at, where, kept):
    """The disk fills up before the 5th batch is recorded, or after the last (the 7th call re-measures the best)."""
    gen, net = tiny_setup
    kw = dict(optimizer="sepcma", budget=60, batch=10, seed=4, remeasure=1, generator=gen, progress=False)
    mango.run(target=mango.TorchTarget(net, "lif2:1"), out=tmp_path / "full", **kw)
    run_dir = tmpfs / "run"
    with pytest.raises(MangoError) as exc:
        mango.run(target=Filling(mango.TorchTarget(net, "lif2:1"), at, tmpfs), out=run_dir, **kw)
    msg = str(exc.value)
    assert msg.startswith(f"disk full while {where} in {run_dir}")
    assert msg.endswith(f"mango run --resume --out {run_dir}")
    assert len(stored(run_dir)) == kept
    (tmpfs / "filler").unlink()
    mango.run(target=mango.TorchTarget(net, "lif2:1"), out=run_dir, resume=True, **kw)
    pd.testing.assert_frame_equal(stored(run_dir), stored(tmp_path / "full"))


@pytest.mark.parametrize("case", ["file", "unwritable", "read-only"])
def test_out_that_cannot_hold_a_run_is_one_line(tmp_path, request, case):
    if case == "file":
        (tmp_path / "file").write_text("x")
        out, needle = tmp_path / "file", "is a file, not a folder"
    elif case == "unwritable":
        out, needle = Path("/proc/self/mango-run"), "while creating it: choose another --out"
    else:
        disk = request.getfixturevalue("tmpfs")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, timeout=30)
        out, needle = disk / "run", "(Read-only file system) while creating it: choose another --out"
    res = runner.invoke(app, ["run", "--budget", "20", "--out", str(out)])
    assert res.exit_code == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.output


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "run"
    mango.run(budget=32, out=out, progress=False)
    return out


@pytest.mark.parametrize("write, needle", [
    (lambda d: (d / "config.json").write_text("[]"), "must be a JSON object of run settings, got list"),
    (lambda d: (d / "config.json").write_text("null"), "must be a JSON object of run settings, got NoneType"),
    (lambda d: (d / "config.json").write_bytes(os.urandom(64)), "cannot read run config"),
    (lambda d: (d / "config.json").write_text('{"seed": 1.5}'), "seed must be an integer, got 1.5"),
    (lambda d: (d / "run.db").write_bytes(b""), "run.db"),
    (lambda d: (d / "run.db").write_bytes(os.urandom(4096)), "run.db"),
])
def test_damaged_run_files_are_one_line_for_show_resume_and_export(tmp_path, small_run, write, needle):
    run_dir = tmp_path / "run"
    shutil.copytree(small_run, run_dir)
    write(run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    for cmd in (["show", run_dir], ["run", "--resume", "--out", run_dir, "--quiet"],
                ["export", run_dir, "--format", "csv", "--out", tmp_path / "h.csv"]):
        res = runner.invoke(app, list(map(str, cmd)))
        assert res.exit_code == 2 and needle in res.stderr, (cmd, res.output)
        assert len(res.stderr.strip().splitlines()) == 1 and res.exception is None or isinstance(res.exception,
                                                                                                  SystemExit)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"} == \
        {k: v for k, v in before.items() if k != ".lock"}  # nothing was changed


def test_damaged_mango_01_history_is_reported_before_any_query(tmp_path, small_run):
    """A non-number in a response cell used to fail only after spending the whole budget."""
    run_dir = tmp_path / "run"
    shutil.copytree(small_run, run_dir)
    hist = mango.read_history(run_dir)
    (run_dir / "run.db").unlink()
    (run_dir / "result.json").unlink()
    hist.to_csv(run_dir / "history.csv", index=False)
    lines = (run_dir / "history.csv").read_text().splitlines()
    lines[5] = ",".join(v if i != 3 else "abc" for i, v in enumerate(lines[5].split(",")))
    (run_dir / "history.csv").write_text("\n".join(lines) + "\n")
    res = runner.invoke(app, ["show", str(run_dir)])
    assert res.exit_code == 2 and "damaged record at history.csv line 6 (could not convert" in res.stderr
    (run_dir / "history.csv").write_text("")
    for cmd in (["show", str(run_dir)], ["run", "--resume", "--out", str(run_dir)]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 2 and res.stderr.strip() == f"error: {run_dir / 'history.csv'} is empty", res.stderr
