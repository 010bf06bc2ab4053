"""MANGO's own time per block of a closed-loop rig session, and its share of a session at 100 ms per image.

    python benchmarks/rig.py [--blocks 40] [--optimizer ga-ponce] [--per-image 0.1]

The whole loop, as `mango run --model rig:zmq:...` runs it: the optimizer asks 40 candidates, the generator
decodes them, the run store records the 40 trials (images as PNG, one fsynced transaction) before they are
sent over ZeroMQ, an echo rig in another process answers each at once, the block's statuses and answers are
recorded (a second transaction), the 40 queries are recorded (a third) and the optimizer is told. The echo
rig answers in microseconds, so the wall time per block is MANGO's own (plus the loopback round trip).
MANGO's share of a real session = its time / (its time + 40 x ``--per-image``). Writes
``benchmarks/results/rig.json``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rig_transport import echo_rig  # noqa: E402  (the same instant rig as the transport benchmark)

import mango  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session(address: str, optimizer: str, blocks: int, out: Path) -> dict:
    from mango.rig.target import RigTarget

    rig = RigTarget(f"zmq:{address}", "ch:3", (1, 28, 28))
    t0 = time.perf_counter()
    run = mango.run(target=rig, optimizer=optimizer, batch=40, budget=40 * blocks, out=out, progress=False)
    wall = time.perf_counter() - t0
    with sqlite3.connect(out / "run.db") as conn:
        sent = [r[0] for r in conn.execute("SELECT MIN(sent) FROM presentations GROUP BY block ORDER BY block")]
        statuses = dict(conn.execute("SELECT status, COUNT(*) FROM presentations GROUP BY status").fetchall())
    per_block = [b - a for a, b in zip(sent[:-1], sent[1:], strict=True)]  # block start to next block start
    h = run.history.groupby("batch")
    return {"optimizer": optimizer, "blocks": len(sent), "wall_s": round(wall, 3),
            "block_ms_median": round(1000 * statistics.median(per_block), 2),
            "block_ms_p90": round(1000 * sorted(per_block)[int(0.9 * len(per_block))], 2),
            "optimizer_ms_median": round(1000 * statistics.median(h["optimizer_s"].first()), 3),
            # the rig bridge alone: recording the trials (two fsynced transactions) + sending, receiving, judging
            "record_ms_per_block": round(1000 * rig.timing["record_s"] / rig.timing["blocks"], 2),
            "transport_ms_per_block": round(1000 * rig.timing["block_s"] / rig.timing["blocks"], 2),
            "statuses": statuses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=40)
    ap.add_argument("--optimizer", action="append", default=None)
    ap.add_argument("--per-image", type=float, default=0.1, help="seconds each image is on screen in a real session")
    args = ap.parse_args()
    address = f"tcp://127.0.0.1:{free_port()}"
    ready = mp.Event()
    rig = mp.Process(target=echo_rig, args=(address, 32, ready), daemon=True)
    rig.start()
    ready.wait(30)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for opt in args.optimizer or ["ga-ponce", "sepcma"]:
                rows.append(session(address, opt, args.blocks, Path(tmp) / opt))
    finally:
        rig.terminate()
    shown = 40 * args.per_image
    print(f"{'optimizer':<10} {'blocks':>6} {'ms/block':>9} {'p90':>7} {'optimizer':>9} {'record':>7} "
          f"{'transport':>9} {'share @ 100 ms/img':>19}")
    for r in rows:
        r["share_of_session"] = round(r["block_ms_median"] / 1000 / (r["block_ms_median"] / 1000 + shown), 5)
        print(f"{r['optimizer']:<10} {r['blocks']:>6} {r['block_ms_median']:>9.2f} {r['block_ms_p90']:>7.2f} "
              f"{r['optimizer_ms_median']:>9.3f} {r['record_ms_per_block']:>7.2f} {r['transport_ms_per_block']:>9.2f} "
              f"{100 * r['share_of_session']:>18.2f}%")
    record = {"benchmark": "rig", "per_image_s": args.per_image, "images_per_block": 40, "rows": rows,
              "machine": {"cpus": mp.cpu_count(), "python": platform.python_version()},
              "date": time.strftime("%Y-%m-%d")}
    path = Path(__file__).parent / "results" / "rig.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
