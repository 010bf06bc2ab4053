"""MANGO's own time per block of 40 images over ZeroMQ on localhost (the rig's time excluded).

    python benchmarks/rig_transport.py [--blocks 200] [--shape 28,28,1] [--channels 32]

An echo rig in another process answers every trial at once with ``--channels`` numbers. For each block
MANGO ``send``s 40 trials (encoding included), then -- once the 40 answers are waiting in the socket --
``receive`` parses them. Reported per block, median over ``--blocks`` blocks, for raw and PNG images:
``send_ms``, ``receive_ms`` and their sum ``mango_ms`` (what the target asked for: < 5 ms), the same as
CPU time of MANGO's thread (``mango_cpu_ms``: what a shared, noisy machine inflates least), plus the
round trip (``roundtrip_ms``, includes the echo rig and the loopback). Writes
``benchmarks/results/rig_transport.json``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def echo_rig(address: str, channels: int, ready) -> None:
    import zmq

    from mango.rig.zmq import pack, parse_header

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    ready.set()
    values = [0.5] * channels
    while True:
        peer, head, *_ = sock.recv_multipart()
        h = parse_header(head)
        if h["type"] == "trial":
            sock.send_multipart([peer, pack("answer", trial=h["trial"], image=h["image"], block=h["block"],
                                            responses=values)])
        elif h["type"] in ("hello", "ping"):
            sock.send_multipart([peer, pack("hello" if h["type"] == "hello" else "pong", session="echo",
                                            channels=channels)])
        elif h["type"] == "stop":
            break
    sock.close(0)
    ctx.term()


def measure(address: str, fmt: str, blocks: int, shape: tuple[int, ...], per_block: int = 40) -> dict:
    from mango.rig.protocol import Trial
    from mango.rig.zmq import ZmqTransport

    tr = ZmqTransport(address, image_format=fmt)
    tr.open()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(per_block)]
    send, recv, trip, cpu = [], [], [], []
    for b in range(blocks + 10):  # 10 warm-up blocks
        trials = [Trial(f"{fmt}{b}-{i}", f"q{i:06d}", b, i, img) for i, img in enumerate(images)]
        c0, t0 = time.thread_time(), time.perf_counter()
        tr.send(trials)
        t1, c1 = time.perf_counter(), time.thread_time()
        got, spent, spent_cpu = 0, 0.0, c1 - c0
        while got < per_block:
            assert tr._sock is not None and tr._sock.poll(5000)  # wait, untimed, until answers are there
            time.sleep(0.0005)
            c2, t2 = time.thread_time(), time.perf_counter()
            got += len(tr.receive(0))
            spent += time.perf_counter() - t2
            spent_cpu += time.thread_time() - c2
        if b >= 10:
            send.append(t1 - t0)
            recv.append(spent)
            trip.append(time.perf_counter() - t0)
            cpu.append(spent_cpu)
    tr.close()
    med = statistics.median
    return {"format": fmt, "send_ms": 1e3 * med(send), "receive_ms": 1e3 * med(recv),
            "mango_ms": 1e3 * med(s + r for s, r in zip(send, recv, strict=True)), "roundtrip_ms": 1e3 * med(trip),
            "mango_ms_p90": 1e3 * sorted(s + r for s, r in zip(send, recv, strict=True))[int(0.9 * len(send))],
            "mango_cpu_ms": 1e3 * med(cpu)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=200)
    ap.add_argument("--shape", default="28,28,1", help="H,W,C of the images")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rig_transport.json")
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    rig = ctx.Process(target=echo_rig, args=(address, args.channels, ready), daemon=True)
    rig.start()
    ready.wait(30)
    try:
        rows = [measure(address, fmt, args.blocks, shape) for fmt in ("raw", "png")]
    finally:
        rig.terminate()
    for r in rows:
        print(f"{r['format']:>4}: MANGO {r['mango_ms']:.2f} ms per block of 40 (send {r['send_ms']:.2f} + receive "
              f"{r['receive_ms']:.2f}; p90 {r['mango_ms_p90']:.2f}; CPU {r['mango_cpu_ms']:.2f}), round trip "
              f"{r['roundtrip_ms']:.2f} ms")
    record = {"benchmark": "rig_transport", "blocks": args.blocks, "images_per_block": 40, "image_shape": list(shape),
              "channels": args.channels, "results": rows, "python": platform.python_version(),
              "machine": platform.machine(), "processor": platform.processor(), "cpus": mp.cpu_count(),
              "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
