"""Whole closed-loop sessions against the simulated rig, as a user runs them: `mango rig simulate` in one
process, `mango run --model rig:...` in another, 1,000 presentations with 10 % drops, 2 % duplicates and
1 % malformed answers, one crash of the rig and one kill -9 of MANGO (then --resume)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mango
from mango.experiment.store import RunStore
from mango.rig.images import image_sha1
from mango.rig.record import unpng
from mango.rig.simulate import layer_responses

FAULTS = ["--drop", "0.1", "--duplicate", "0.02", "--malformed", "0.01"]
BUDGET = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "mango.cli", *map(str, args)]


class Rig:
    """The simulator, restarted by a watcher when it crashes (as a lab restarts its rig)."""

    def __init__(self, transport: str, address: str, log: Path, *extra: str) -> None:
        self.args = ["rig", "simulate", "--transport", transport, "--address", address, "--model", "mnist-snn",
                     "--layer", "lif2", *FAULTS, "--log", log, *extra]
        self.crashes, self.stopping = 0, False
        self.proc = subprocess.Popen(cli(*self.args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        while not self.stopping:
            if self.proc.poll() is not None and not self.stopping:
                self.crashes += 1
                time.sleep(0.5)
                seed = ["--seed", str(100 + self.crashes)]  # a restarted rig does not crash again
                self.proc = subprocess.Popen(cli(*[a for a in self.args if a not in ("--crash-every", "400")], *seed),
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopping = True
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def count(run_dir: Path) -> int:
    try:
        with RunStore.read(run_dir) as store:
            return int(store.conn.execute("SELECT COUNT(*) FROM presentations").fetchone()[0])
    except mango.MangoError:
        return 0


def session(model: str, out: Path, optimizer: str, kill_at: int | None, budget: int = BUDGET,
            timeout: float = 0.5) -> None:
    """`mango run` on the rig; with ``kill_at``, killed -9 once that many presentations are on record, then resumed."""
    args = cli("run", "--model", model, "--target", "ch:12", "--optimizer", optimizer, "--budget", budget, "--out",
               out, "--timeout", timeout, "--references", "2", "--seed", "1", "--quiet")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_at is not None:
        while proc.poll() is None and count(out) < kill_at:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1]
        proc.kill()
        proc.wait()
        proc = subprocess.Popen([*args, "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


def check_accounting(out: Path, log: Path) -> pd.DataFrame:
    with RunStore.read(out) as store:
        p = pd.read_sql_query("SELECT p.*, i.png FROM presentations p LEFT JOIN images i ON p.image = i.image",
                              store.conn)
    # every presentation sent is accounted for exactly once, by one final status
    assert p["trial"].is_unique and set(p["status"]) <= {"ok", "missing", "malformed", "late"}
    assert BUDGET - 2 <= len(p) <= BUDGET + 40  # the budget counts presentations (re-shows cap at the budget)
    # no response is attached to another image: the rig's own log says which image it answered, and with what
    rig_log = {line["trial"]: line for line in map(json.loads, log.read_text().splitlines())}
    ok = p[p["status"] == "ok"]
    assert len(ok) > 0.7 * len(p)  # 10 % dropped, 1 % garbled, a block lost in each crash
    unlogged = 0
    for _, row in ok.iterrows():
        line = rig_log.get(row["trial"])
        if line is None:  # answered, then the rig crashed before it wrote its log line
            unlogged += 1
            continue
        assert line["sha1"] == image_sha1(unpng(row["png"])) and line["image"] == row["image"]
        assert np.array_equal(np.frombuffer(row["responses"], "<f8"), np.asarray(line["responses"], dtype=float))
    assert unlogged <= 45  # at most the block in flight when the rig crashed
    # and, noise-free, every stored response is the network's own response to the stored image
    want = layer_responses("mnist-snn", "lif2", [unpng(b) for b in ok["png"]])
    got = np.stack([np.frombuffer(r, "<f8") for r in ok["responses"]])
    np.testing.assert_allclose(got, want, atol=1e-6)
    return p


@pytest.mark.parametrize("transport", ["zmq", "files"])
def test_session_with_faults_and_crashes_loses_nothing_and_attaches_nothing_wrongly(tmp_path, transport):
    address = f"tcp://127.0.0.1:{free_port()}" if transport == "zmq" else str(tmp_path / "rigdir")
    if transport == "files":
        Path(address).mkdir()
    log = tmp_path / "rig.jsonl"
    rig = Rig(transport, address, log, "--crash-every", "400", "--seed", "7")
    try:
        session(f"rig:{transport}:{address}", tmp_path / "run", "ga-ponce", kill_at=550,
                timeout=0.5 if transport == "zmq" else 1.0)
    finally:
        rig.stop()
    assert rig.crashes == 1
    p = check_accounting(tmp_path / "run", log)
    assert {"ok", "missing"} <= set(p["status"])
    result = mango.load_run(tmp_path / "run")
    truth = layer_responses("mnist-snn", "lif2", [unpng(p.loc[p["image"] == f"q{result.best_query:06d}", "png"]
                                                          .iloc[0])])[0, 12]
    assert result.best_response == pytest.approx(truth)  # the reported MEI's response is the model's


def test_under_the_same_faults_mango_beats_random_search(tmp_path):
    best = {}
    for optimizer in ("ga-ponce", "random"):
        address, log = f"tcp://127.0.0.1:{free_port()}", tmp_path / f"{optimizer}.jsonl"
        rig = Rig("zmq", address, log, "--seed", "7")
        try:
            session(f"rig:zmq:{address}", tmp_path / optimizer, optimizer, kill_at=None, budget=400, timeout=0.3)
        finally:
            rig.stop()
        best[optimizer] = mango.load_run(tmp_path / optimizer).best_response
    assert best["ga-ponce"] > best["random"], best
