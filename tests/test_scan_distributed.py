"""Scans on Dask: a local cluster, an existing scheduler, a worker killed mid-scan, the one-line errors.

Every Dask service here listens on 127.0.0.1 only and is started and stopped by the test.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mango
from mango.errors import MangoError
from mango.experiment.store import RunStore
from mango.scan import ScanConfig, groups, load_scan, scan
from mango.scan.distributed import auto_size, run_distributed, split
from mango.scan.plan import members, resolve_units, write_manifest

distributed = pytest.importorskip("distributed")

#: 6 units of lif2, 200 queries each: 6 tasks of one unit on 2 workers (the automatic group size)
SETTINGS = dict(model="mnist-snn", layers=["lif2"], units="0-5", budget=200, seeds=1)
COLS = ["query", "batch", "response"]


def history(run_dir: str | Path):
    df = mango.read_history(run_dir)
    return df[COLS + [c for c in df.columns if c.startswith("z")]].reset_index(drop=True)


def assert_same_runs(got: Path, want: Path) -> None:
    a, b = load_scan(got), load_scan(want)
    assert len(a) == len(b) == 6 and a["finished"].all() and (a["n_queries"] == SETTINGS["budget"]).all()
    for ra, rb in zip(a["run_dir"], b["run_dir"], strict=True):
        ha, hb = history(ra), history(rb)
        assert ha["query"].tolist() == list(range(SETTINGS["budget"]))  # each query once, none lost
        assert ha.equals(hb), f"{ra} differs from the local scan's {rb}"


def count(run_dir: Path) -> int:
    try:
        with sqlite3.connect(f"{(run_dir / 'run.db').as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM queries").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def local_scan(tmp_path_factory):
    """The reference: the same scan run in this process, one group of 8 units, without Dask."""
    out = tmp_path_factory.mktemp("local") / "scan"
    scan(out, progress=False, **SETTINGS)
    return out


@pytest.fixture(scope="module")
def cluster():
    """A running 2-worker Dask cluster on 127.0.0.1 (the 'existing scheduler' of --scheduler)."""
    lc = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR)
    client = distributed.Client(lc, set_as_default=False)
    yield lc, client
    client.close()
    lc.close()


def test_local_cluster_equals_local_scan(local_scan, tmp_path):
    out = tmp_path / "scan"
    df = scan(out, workers=2, progress=False, **SETTINGS)
    assert df["finished"].all()
    assert_same_runs(out, local_scan)


def test_worker_killed_mid_scan_loses_nothing(local_scan, cluster, tmp_path):
    lc, client = cluster
    out = tmp_path / "scan"
    failure: list[BaseException] = []

    def go() -> None:
        try:
            scan(out, scheduler=lc.scheduler_address, progress=False, **SETTINGS)
        except BaseException as exc:  # reported by the test's thread
            failure.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    pids = set(client.run(os.getpid).values())
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline and thread.is_alive():
        for lock in sorted(out.glob("lif2/*/.lock")):  # a run being written names its writer: "pid N on HOST"
            text = lock.read_text().split()
            n = count(lock.parent)
            if len(text) > 1 and text[0] == "pid" and int(text[1]) in pids and 0 < n < SETTINGS["budget"]:
                victim = (int(text[1]), lock.parent, n)
                os.kill(victim[0], signal.SIGKILL)
                break
        time.sleep(0.05)
    thread.join(180)
    assert not thread.is_alive(), "the scan did not finish after a worker was killed"
    assert not failure, failure
    assert victim is not None, "no worker was caught mid-run"
    pid, run_dir, n_before = victim
    with RunStore.read(run_dir) as store:
        kinds = store.events()["kind"].tolist()
    assert "resume" in kinds, f"{run_dir} was not resumed after its worker (pid {pid}) died at {n_before} queries"
    assert_same_runs(out, local_scan)
    assert len(client.nthreads()) == 2  # the local cluster restarted the dead worker
    cfg = ScanConfig(**SETTINGS)  # run again: every task finds its runs finished and measures nothing
    ms = members(cfg, resolve_units(cfg))
    records = run_distributed(cfg, groups(cfg, ms), out, scheduler=lc.scheduler_address, progress=False)
    assert sum(r["runs"] for r in records) == 6 and all(r["measured"] == 0 for r in records)
    assert sum(r["done"] for r in records) == 6 * SETTINGS["budget"]


def test_user_error_in_a_task_is_one_line(cluster, tmp_path):
    lc, _ = cluster
    cfg = ScanConfig(**{**SETTINGS, "units": "0"}).validate()
    units = resolve_units(cfg)
    write_manifest(tmp_path, cfg, units)
    ms = members(cfg, units)
    ms[0].run_dir(tmp_path).parent.mkdir(parents=True)
    ms[0].run_dir(tmp_path).write_text("not a folder")
    with pytest.raises(MangoError) as err:
        run_distributed(cfg, groups(cfg, ms), tmp_path, scheduler=lc.scheduler_address, progress=False)
    assert "is a file, not a folder" in str(err.value) and "\n" not in str(err.value)


def test_scheduler_without_the_scan_folder_is_one_line(cluster, tmp_path):
    lc, _ = cluster
    cfg = ScanConfig(**SETTINGS).validate()
    ms = members(cfg, resolve_units(cfg))  # no scan.json written: the workers do not see the scan
    with pytest.raises(MangoError, match="does not see the scan folder .* shares, at the same path"):
        run_distributed(cfg, groups(cfg, ms), tmp_path, scheduler=lc.scheduler_address, progress=False)


def test_unreachable_scheduler_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(MangoError) as err:
        scan(tmp_path / "scan", scheduler=address, progress=False, **SETTINGS)
    msg = str(err.value)
    assert msg.startswith(f"no Dask scheduler answers at {address}: start one (dask scheduler)") and "\n" not in msg
    assert time.monotonic() - t0 < 20


def test_without_dask_workers_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    cfg = ScanConfig(**SETTINGS).validate()
    with pytest.raises(MangoError, match=r'pip install "mango-am\[distributed\]"') as err:
        run_distributed(cfg, [], tmp_path, workers=2)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kw, msg", [({"workers": 0}, "workers must be a positive integer"),
                                     ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, "not both"),
                                     ({"workers": 2, "group_size": 0}, "group_size must be"),
                                     ({}, "needs workers")])
def test_bad_arguments(kw, msg, tmp_path):
    with pytest.raises(MangoError, match=msg):
        run_distributed(ScanConfig(**SETTINGS), [], tmp_path, **kw)


def test_split_keeps_seeds_of_a_unit_together():
    cfg = ScanConfig(**{**SETTINGS, "seeds": 2})
    ms = members(cfg, {"lif2": tuple(range(8))})
    parts = split(groups(cfg, ms), 3)
    assert [sorted({m.unit for m in g}) for g in parts] == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert all(len(g) == 2 * len({m.unit for m in g}) for g in parts)
    assert [m for g in parts for m in g] == ms
    assert auto_size(groups(cfg, ms), 2) == 2 and auto_size(groups(cfg, ms), 64) == 1
    assert auto_size(groups(cfg, members(cfg, {"lif2": tuple(range(128))})), 1) == 16


def test_scans_without_workers_never_import_dask(tmp_path):
    code = ("import sys, mango; from mango.scan import scan; "
            f"scan({str(tmp_path / 's')!r}, units='0', budget=20, progress=False); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
