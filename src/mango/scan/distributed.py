"""Scans on a Dask cluster: groups of units run as Dask tasks, on a local cluster or an existing scheduler.

``workers=N`` starts a :class:`distributed.LocalCluster` of N single-threaded worker processes on
127.0.0.1 for the scan and closes it afterwards; ``scheduler=ADDRESS`` sends the tasks to a running
scheduler (``dask scheduler`` + ``dask worker ADDRESS`` on each machine). One task is one group of
units of one layer (:func:`mango.scan.group.run_group`): it writes its members' run folders into the
scan folder, which must be the same path on every worker -- a shared file system on a real cluster.

Nothing is lost or counted twice when a worker dies: every measured batch is one committed transaction
of its run store, the run folder's ``flock`` dies with the process, and Dask runs the task again
(elsewhere, or on the worker the local cluster restarts), which skips finished members and resumes the
others by replaying their records -- the same as rerunning the scan by hand.

Dask is optional (``pip install "mango-am[distributed]"``): nothing here is imported by a scan without
``workers`` or ``scheduler``, and this module imports Dask only when a distributed scan starts.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from ..errors import MangoError, first_line
from ..experiment.loop import RunInterrupted
from .plan import Member, ScanConfig

INSTALL = 'pip install "mango-am[distributed]"'
#: the topic of the workers' progress events (``{"task": key, "done": queries measured by its members}``)
TOPIC = "mango-scan-progress"
#: the largest group of units one task runs when ``group_size`` is not given
MAX_GROUP = 16
#: tasks per worker thread the automatic group size aims at (load balance, little lost with a worker)
TASKS_PER_THREAD = 3


class ScanInterrupted(RunInterrupted):
    """Ctrl-C during a distributed scan: every measured batch is kept; the same scan command continues it."""

    def __init__(self, root: Path, done: int, total: int) -> None:
        KeyboardInterrupt.__init__(self, f"interrupted after {done} of {total} queries; every measured batch is "
                                   f"kept in the run folders under {root}; run the same scan again to continue it")
        self.run_dir = root


def _dask() -> Any:
    """The ``distributed`` package, or a one-line error saying how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise MangoError(f"scans on several workers need Dask ({exc.name or 'distributed'} is not installed): "
                         f"{INSTALL}") from None
    return distributed


# --- on the workers -------------------------------------------------------------------------------------

def run_group_task(settings: dict, group: list[Member], root: str, key: str = "", tune: bool = False) -> dict:
    """One Dask task: run (or resume) ``group``'s runs; what it did (:func:`run_distributed`'s records).

    A :class:`MangoError` (a user error: it would fail the same way on any worker) comes back as
    ``{"error": one line}``, not raised, so Dask does not retry it; anything else is raised and retried.
    """
    import torch

    from .group import run_group

    t0, c0, started = time.perf_counter(), time.process_time(), time.time()
    torch.set_num_threads(1)  # one task per worker thread
    if tune:  # a worker process this scan started (a local cluster): see mango.perf
        from ..perf import tune_allocator

        tune_allocator()
    cfg = ScanConfig(**settings)
    path = Path(root)
    before = _measured(group, path)
    report = _Reporter(key, before)
    try:
        run_group(cfg, group, path, report.step)
    except MangoError as exc:
        return {"error": first_line(exc)}
    done = _measured(group, path)
    report.send(done)
    return {"task": key, "layer": group[0].layer, "units": sorted({m.unit for m in group}), "runs": len(group),
            "done": done, "measured": done - before, "started": started, "seconds": time.perf_counter() - t0,
            "cpu_seconds": time.process_time() - c0, "worker": getattr(report.worker, "address", "")}


def _measured(group: list[Member], root: Path) -> int:
    """Queries recorded in the members' run stores (read on the worker that is about to write them)."""
    from ..experiment.store import DB_NAME, RunStore

    n = 0
    for m in group:
        if (m.run_dir(root) / DB_NAME).is_file():
            try:
                with RunStore.read(m.run_dir(root)) as store:
                    n += store.count()
            except Exception:  # damaged or half-created: the group reports (and repairs) it
                pass
    return n


class _Reporter:
    """Sends the task's measured queries to the client as Dask events, at most every ``every`` seconds."""

    def __init__(self, key: str, done: int, every: float = 0.5) -> None:
        self.key, self.done, self.every, self.last = key, done, every, 0.0
        try:
            from distributed import get_worker

            self.worker: Any = get_worker()
        except (ImportError, ValueError):  # not in a Dask task
            self.worker = None
        self.send(done)

    def step(self, k: int) -> None:
        self.done += k
        if time.monotonic() - self.last >= self.every:
            self.send(self.done)

    def send(self, done: int) -> None:
        self.done, self.last = done, time.monotonic()
        if self.worker is not None and self.key:
            self.worker.log_event(TOPIC, {"task": self.key, "done": done})


def _probe(root: str) -> dict:
    """What the client checks on every worker of an existing cluster before it sends tasks."""
    import socket

    import mango

    return {"mango": mango.__version__, "sees": (Path(root) / "scan.json").is_file(), "host": socket.gethostname()}


# --- on the client --------------------------------------------------------------------------------------

def split(gs: list[list[Member]], size: int) -> list[list[Member]]:
    """Each group cut into groups of at most ``size`` units (every seed of a unit stays with it)."""
    out = []
    for g in gs:
        units = sorted({m.unit for m in g})
        for i in range(0, len(units), size):
            chunk = set(units[i:i + size])
            out.append([m for m in g if m.unit in chunk])
    return [g for g in out if g]


def auto_size(gs: list[list[Member]], threads: int) -> int:
    """Units per task: about ``TASKS_PER_THREAD`` tasks per worker thread, at most ``MAX_GROUP`` units."""
    units = sum(len({m.unit for m in g}) for g in gs)
    return max(1, min(MAX_GROUP, math.ceil(units / (TASKS_PER_THREAD * max(threads, 1)))))


def _positive(name: str, v: object) -> None:
    if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
        raise MangoError(f"{name} must be a positive integer, got {v!r}")


def run_distributed(cfg: ScanConfig, groups: list[list[Member]], root: str | Path, *, workers: int | None = None,
                    scheduler: str | None = None, progress: bool = True, group_size: int | None = None,
                    retries: int = 3, timeout: float = 5.0) -> list[dict]:
    """Run (or resume) every group's runs as Dask tasks; returns, when all are finished, one record per task.

    ``workers``: a local cluster of that many single-threaded worker processes, closed at the end;
    ``scheduler``: the address of a running Dask scheduler (``tcp://HOST:8786``), whose workers must
    have this MANGO installed and see ``root`` at the same path. ``group_size`` units per task (default:
    about three tasks per worker thread, at most 16 units). ``retries``: how often Dask runs a task
    again after it failed with an unexpected error or its worker died (a local cluster's scheduler
    allows that many worker deaths per task; an existing scheduler uses its own
    ``distributed.scheduler.allowed-failures``). ``timeout``: seconds to reach the scheduler.

    A task's record: ``task`` (its Dask key), ``layer``, ``units``, ``runs``, ``done`` (queries its runs
    hold), ``measured`` (queries its last attempt measured), ``started`` (that attempt's start, Unix time on
    its worker), ``seconds`` (its wall time, setup and finishing included), ``cpu_seconds`` (the CPU time of
    its worker process meanwhile), ``worker`` (its address); in the order of the tasks (the groups given,
    cut into ``group_size`` units).
    """
    if workers is not None and scheduler:
        raise MangoError("give workers (a local cluster) or a scheduler address, not both")
    _positive("workers", workers)
    _positive("group_size", group_size)
    if workers is None and not scheduler:
        raise MangoError("a distributed scan needs workers (a local cluster) or a scheduler address")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise MangoError(f"retries must be a non-negative integer, got {retries!r}")
    dd = _dask()
    path = Path(root).resolve()
    with _client(dd, workers, scheduler, timeout, retries) as client:
        if scheduler:
            _check_workers(client, path, str(scheduler))
        threads = sum(client.nthreads().values()) or (workers or 1)
        tasks = split(groups, group_size or auto_size(groups, threads))
        return _execute(dd, client, cfg, tasks, path, progress, retries, tune=workers is not None)


@contextmanager
def _client(dd: Any, workers: int | None, scheduler: str | None, timeout: float, retries: int) -> Iterator[Any]:
    """A connected ``distributed.Client``: to a local cluster started here, or to ``scheduler``."""
    import dask

    if scheduler:
        try:
            client = dd.Client(scheduler, timeout=timeout, set_as_default=False)
        except Exception as exc:
            raise MangoError(f"no Dask scheduler answers at {scheduler}: start one (dask scheduler) or check the "
                             f"address ({first_line(exc)})") from None
        try:
            try:
                client.wait_for_workers(1, timeout=max(30.0, timeout))
            except (TimeoutError, OSError):
                raise MangoError(f"the Dask scheduler at {scheduler} has no workers: start some with "
                                 f"dask worker {scheduler}") from None
            yield client
        finally:
            client.close()
        return
    try:
        with dask.config.set({"distributed.scheduler.allowed-failures": retries}):
            cluster = dd.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                      dashboard_address=None, silence_logs=logging.ERROR)
    except Exception as exc:
        raise MangoError(f"cannot start a local Dask cluster of {workers} workers: {first_line(exc)}") from None
    try:
        client = dd.Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _check_workers(client: Any, root: Path, scheduler: str) -> None:
    """Every worker runs this MANGO and sees the scan folder (one line naming the first that does not)."""
    import mango

    try:
        info = client.run(_probe, str(root))
    except Exception as exc:
        raise MangoError(f"a worker of the Dask scheduler at {scheduler} cannot run MANGO ({first_line(exc)}): "
                         "install the same MANGO on every worker") from None
    for addr, got in sorted(info.items()):
        if got["mango"] != mango.__version__:
            raise MangoError(f"worker {addr} runs MANGO {got['mango']}, this one is {mango.__version__}: install "
                             "the same MANGO on every worker")
        if not got["sees"]:
            raise MangoError(f"worker {addr} ({got['host']}) does not see the scan folder {root}: the output folder "
                             "must be on a file system every worker shares, at the same path")


def _execute(dd: Any, client: Any, cfg: ScanConfig, tasks: list[list[Member]], root: Path, progress: bool,
             retries: int, tune: bool) -> list[dict]:
    """Submit one task per group, follow them as they complete, raise the first failure as one line."""
    total = cfg.budget * sum(len(g) for g in tasks)
    token = uuid.uuid4().hex[:8]
    keys = [f"mango-scan-{token}-{i:05d}-{g[0].layer}-u{g[0].unit}" for i, g in enumerate(tasks)]
    ours = set(keys)  # other scans on the same scheduler send events on the same topic
    live: dict[str, int] = {}  # measured queries per task, from the workers' events
    lock = threading.Lock()

    def on_event(event: tuple[float, Any]) -> None:
        msg = event[1]
        if isinstance(msg, dict) and msg.get("task") in ours:
            with lock:
                live[str(msg["task"])] = int(msg["done"])

    client.subscribe_topic(TOPIC, on_event)
    settings = cfg.to_dict()
    futures = [client.submit(run_group_task, settings, g, str(root), key, tune, key=key, pure=False, retries=retries)
               for key, g in zip(keys, tasks, strict=True)]
    done: dict[str, dict] = {}

    def measured() -> int:
        with lock:
            return sum(done[k]["done"] if k in done else v for k, v in live.items()) + \
                sum(r["done"] for k, r in done.items() if k not in live)

    bar: Any = nullcontext(None)
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn())
    ac = dd.as_completed(futures, loop=client.loop)
    try:
        with bar as b:
            t_tasks = b.add_task("tasks", total=len(tasks)) if b else None
            t_queries = b.add_task("queries", total=total) if b else None
            while not ac.is_empty():
                for f in ac.next_batch(block=False):
                    done[f.key] = _result(dd, f, root)
                if b:
                    b.update(t_tasks, completed=len(done))
                    b.update(t_queries, completed=min(measured(), total))
                if not ac.is_empty():
                    time.sleep(0.25)
    except KeyboardInterrupt:
        client.cancel(futures)
        raise ScanInterrupted(root, measured(), total) from None
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        client.unsubscribe_topic(TOPIC)
    return [done[f.key] for f in futures]


def _result(dd: Any, future: Any, root: Path) -> dict:
    """A finished task's record; its failure as one line (a user error) or as it came (a bug)."""
    try:
        res = future.result()
    except dd.KilledWorker as exc:
        raise MangoError(f"scan task {future.key} stopped: {first_line(exc)} (out of memory?); the run folders "
                         f"under {root} keep every measured batch: run the same scan again to continue") from None
    if "error" in res:
        raise MangoError(res["error"])
    return res
