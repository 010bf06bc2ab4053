"""``mango monitor RUN [--port P]``: serve a live view of a run on 127.0.0.1 until Ctrl-C or SIGTERM."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..monitor import DEFAULT_PORT


def monitor(run_dir: Path = typer.Argument(..., help="a run folder (running, finished, or not started yet)"),
            port: int = typer.Option(DEFAULT_PORT, "--port", help="port on 127.0.0.1; 0 picks a free one")) -> None:
    """Watch a run in the browser: best-so-far curve, latest images, current MEI, trial statuses."""
    from ..monitor import MonitorServer
    from .main import err, out, user_errors

    with user_errors():
        server = MonitorServer(run_dir, port)
    out.print(f"monitoring {run_dir} at {server.url} (Ctrl-C stops)", highlight=False, soft_wrap=True)
    sys.stdout.flush()  # the URL is read by scripts through a pipe
    try:
        import torch

        torch.set_num_threads(1)  # decoding a batch for the page is light; leave the cores to the run watched
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP turned into one by mango.cli.signals
        how = str(exc).removeprefix("stopped by ") or "Ctrl-C"
        err.print(f"monitor of {run_dir} stopped ({how})", highlight=False, soft_wrap=True)
    finally:
        server.server_close()
