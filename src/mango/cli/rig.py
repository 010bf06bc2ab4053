"""``mango rig simulate``: a simulated recording rig, to try MANGO's rig targets without an animal.

The simulator module (torch, the model) is imported inside the command, so ``mango --help`` stays fast.
"""
from __future__ import annotations

import signal
import threading
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import MangoError

app: typer.Typer = typer.Typer(add_completion=False, no_args_is_help=True,
                               help="A recording rig in the loop: a simulated rig that misbehaves like real ones.")
from .main import err, out, user_errors  # noqa: E402  (after app: main.py imports this module to register it)


class TransportKind(str, Enum):
    files = "files"
    zmq = "zmq"


class AnswerFormat(str, Enum):
    mat = "mat"
    h5 = "h5"


class NoiseKind(str, Enum):
    none = "none"
    poisson = "poisson"


@app.command()
def simulate(
    transport: TransportKind = typer.Option(..., help="files (XDream-style folder) or zmq (ZeroMQ ROUTER)"),
    address: str = typer.Option(..., help="the folder (files) or tcp://HOST:PORT to bind (zmq)"),
    model: str = typer.Option("mnist-snn", help="any MANGO model name (mango list targets)"),
    layer: str = typer.Option(..., help="its layer: every unit is one channel (mango layers MODEL)"),
    drop: float = typer.Option(0.0, min=0.0, max=1.0, help="probability that a trial gets no answer"),
    duplicate: float = typer.Option(0.0, min=0.0, max=1.0, help="probability that an answer is sent twice"),
    malformed: float = typer.Option(0.0, min=0.0, max=1.0, help="probability that an answer is garbled (files: per "
                                    "answer file: truncated, a row short, or text)"),
    latency: float = typer.Option(0.0, min=0.0, help="seconds before each answer (files: each answer file)"),
    jitter: float = typer.Option(0.0, min=0.0, help="plus a uniform random delay of up to this many seconds"),
    noise: NoiseKind = typer.Option(NoiseKind.none, help="poisson: each answer is a spike count / --count-scale"),
    count_scale: float = typer.Option(20.0, min=1e-9, help="spikes for a rate of 1 (the Poisson mean is rate x this)"),
    drift: float = typer.Option(0.0, min=0.0, max=0.99, help="slow gain drift: 1 + F sin(2 pi n / --drift-period)"),
    drift_period: int = typer.Option(3000, min=1, help="presentations per drift cycle"),
    crash_every: Optional[int] = typer.Option(None, min=1, help="exit abruptly (status 3) after N presentations"),
    seed: int = typer.Option(0, help="seed of the faults, delays and noise"),
    log: Optional[Path] = typer.Option(None, help="JSON-lines log, one line per trial answered or dropped"),
    answer_format: AnswerFormat = typer.Option(AnswerFormat.mat, help="files: block{N:03d}.mat (v7.3) or .h5"),
    steps: Optional[int] = typer.Option(None, min=1, help="time steps of a spiking model"),
    model_weights: Optional[str] = typer.Option(None, help="weights file for the model (default: its own)"),
    threads: int = typer.Option(1, min=1, help="torch threads (1: the simulator shares the machine with MANGO)"),
) -> None:
    """Serve every unit of LAYER of MODEL as one channel of a rig, until SIGTERM or Ctrl-C."""
    stop, stopped_by = threading.Event(), ["end"]

    def _stop(signum: int, frame: object) -> None:
        stopped_by[0] = signal.Signals(signum).name
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    with user_errors():  # before the model loads: a wrong address fails at once
        from ..rig.zmq import check_address

        if transport is TransportKind.zmq:
            check_address(address)
        elif not Path(address).is_dir():
            raise MangoError(f"rig folder {address} not found: create it first")
    import torch

    from ..rig.simulate import Faults, SimulatedRig, serve_files, serve_zmq

    torch.set_num_threads(threads)

    with user_errors():
        rig = SimulatedRig(model, layer, Faults(drop, duplicate, malformed, latency, jitter, crash_every),
                           weights=model_weights, steps=steps, noise=noise.value, count_scale=count_scale,
                           drift=drift, drift_period=drift_period, seed=seed, log_file=log)
        rig.stop = stop
        try:
            err.print(f"rig simulator: {transport.value} {address}, {model} {layer} ({rig.channels} channels), "
                      f"session {rig.session}", highlight=False, soft_wrap=True)
            if transport is TransportKind.files:
                serve_files(rig, address, answer_format.value)
            else:
                serve_zmq(rig, address)
        finally:
            rig.close()
    out.print(f"rig simulator stopped ({stopped_by[0]}): {rig.presented} presentations, session {rig.session}",
              highlight=False, soft_wrap=True)
