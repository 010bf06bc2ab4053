"""Live view: the state follows a run as it writes, the page renders in a real browser, the command stops cleanly."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import mango
from mango.cli.main import app
from mango.experiment.files import FolderLock
from mango.experiment.store import RunStore, encode_latent
from mango.monitor import MonitorServer

runner = CliRunner()
BATCH = 8


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def _state(server: MonitorServer) -> dict:
    return json.loads(_get(server.url + "state.json"))


class Writer:
    """A run folder as ``mango run`` writes it (folder lock, config, store in WAL mode, start event), batch by batch."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.lock = FolderLock(folder).acquire()
        (folder / "config.json").write_text(mango.RunConfig(budget=4 * BATCH, batch=BATCH).to_json())
        self.store = RunStore.open(folder, 64)
        self.store.log("start", f"budget {4 * BATCH}")

    def batch(self, b: int, nan_at: int | None = None) -> None:
        rng = np.random.default_rng(b)
        r = rng.random(BATCH)
        if nan_at is not None:
            r[nan_at] = np.nan
        self.store.append([(b * BATCH + i, b, BATCH, r[i], 0.0, r[i] if np.isfinite(r[i]) else -np.inf, 1.0 + b,
                            0.5, 0.01, *encode_latent(rng.uniform(-4, 4, 64))) for i in range(BATCH)])

    def close(self) -> None:
        self.store.close()
        self.lock.release()


@pytest.fixture()
def served(tmp_path):
    """A monitor on a free port for ``tmp_path / 'run'`` (not created yet), stopped after the test."""
    server = MonitorServer(tmp_path / "run", port=0)
    server.start()
    yield server
    server.stop()


def test_state_follows_a_run_while_it_writes(served, tmp_path):
    folder = tmp_path / "run"
    assert _state(served)["phase"] == "waiting" and "run folder to appear" in _state(served)["message"]
    writer = Writer(folder)
    try:
        assert _state(served)["message"] == "waiting for the first batch"
        writer.batch(0)
        first = _state(served)
        assert first["phase"] == "running" and first["queries"] == BATCH and first["budget"] == 4 * BATCH
        writer.batch(1, nan_at=3)
        s = _state(served)
        assert s["queries"] == 2 * BATCH > first["queries"] and s["counts"] == {"ok": 2 * BATCH - 1, "failed": 1}
        assert s["latest"]["label"] == "batch 1" and len(s["latest"]["items"]) == BATCH
        assert s["latest"]["items"][3]["response"] is None and s["latest"]["items"][3]["status"] == "failed"
        assert len(s["curve"]["best"]) == 2 * BATCH and s["curve"]["best"][-1] == s["best"]["response"]
        png = _get(served.url.rstrip("/") + s["best"]["image"])
        assert png.startswith(b"\x89PNG") and png[16:24] == (28).to_bytes(4, "big") * 2
        for path in ("image/q999999.png", "nope"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                _get(served.url + path)
        before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
        for _ in range(3):
            _state(served)
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before  # the monitor never writes there
    finally:
        writer.close()
    assert _state(served)["phase"] == "stopped"  # unfinished, and no process holds the folder any more
    with sqlite3.connect(folder / "run.db") as conn:
        conn.execute("UPDATE queries SET crc = crc + 1 WHERE query = 5")
    s = _state(served)
    assert s["phase"] == "error" and "damaged record at query 5" in s["message"]


def test_rig_run_shows_statuses_and_the_latest_block(tmp_path):
    from test_nwb import make_rig_run

    made = make_rig_run(tmp_path / "rig")
    server = MonitorServer(tmp_path / "rig", port=0)
    server.start()
    try:
        s = _state(server)
        assert s["kind"] == "rig" and s["queries"] == 12
        assert s["counts"] == {"duplicate": 1, "late": 1, "malformed": 1, "missing": 1, "ok": 12}
        assert s["latest"]["label"] == "block 2" and len(s["latest"]["items"]) == 6
        ref = next(it for it in s["latest"]["items"] if it["id"] == "ref000")
        assert ref["query"] is None and len(ref["channels"]) == 3
        assert _get(server.url + "image/ref000.png") == made["pngs"]["ref000"][1]
    finally:
        server.stop()


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_page_renders_in_headless_chromium(served, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium; .ci/run installs it)")
    writer = Writer(tmp_path / "run")
    try:
        writer.batch(0)
        writer.batch(1)
        best = _state(served)["best"]
        args = [browser, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'chrome'}",
                "--virtual-time-budget=5000", "--window-size=1280,900"]
        dom = subprocess.run([*args, "--dump-dom", served.url], capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path / "monitor.png"
        subprocess.run([*args, f"--screenshot={shot}", served.url], capture_output=True, timeout=120)
    finally:
        writer.close()
    assert re.search(rf'id="queries">{2 * BATCH}<', dom) and re.search(rf'id="budget">{4 * BATCH}<', dom), dom[:2000]
    assert f'<img id="mei" class="px" alt="most exciting image so far" src="{best["image"]}">' in dom
    assert re.search(r'<polyline id="best-line" points="[\d.]+,[\d.]+ ', dom)
    assert f'data-status="ok">ok {2 * BATCH}<' in dom and dom.count('<figure') == BATCH
    assert '<span id="phase" class="badge running">running</span>' in dom  # the writer holds the folder
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_prints_its_url_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "mango.cli", "monitor", str(tmp_path / "later"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        assert json.loads(_get(url.group(0) + "state.json"))["phase"] == "waiting"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and err.strip().splitlines() == [f"monitor of {tmp_path / 'later'} stopped (SIGTERM)"]


def test_a_port_in_use_is_a_one_line_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        res = runner.invoke(app, ["monitor", str(tmp_path), "--port", str(port)])
    assert res.exit_code == 2 and f"port {port} on 127.0.0.1 is in use" in res.output
    assert len(res.output.strip().splitlines()) == 1
