"""Queries per second of a scan on a local Dask cluster of 1 and of 2 workers, and what a full scan would take.

    python benchmarks/scan_workers.py [--workers 1,2] [--budget-mnist 400] [--budget-cifar 300] [--units 0-7]

Each scan (the same settings, a fresh folder) runs through ``mango.scan.distributed.run_distributed`` on a
``LocalCluster`` of N single-threaded worker processes, groups of ``--group-size`` units per task (the same
tasks for every N). Its rate is all queries / the scan's wall time, the cluster's start and every run's
finishing (pictures) included; "tasks only" is from the first task's start to the last one's end. Scans:

- mnist-snn ``lif2`` (mnist-sngan), ``--units`` units;
- cifar-snn (release checkpoint, T=20, cifar-vqvae): ``--units`` units of each of spiking0, spiking1,
  spiking2 and class -- skipped, with the reason, when the release files are not found.

The projection (a projection from the measured cost, not a measurement): every unit of cifar-snn (374:
spiking0 200, spiking1 64, spiking2 100, class 10) at 10,000 queries and 5 seeds. Each layer's cost per
query is its tasks' CPU seconds (of the worker process) / queries, over the cifar scans (a task's setup
and its runs' finishing are included, spread over its queries; the cluster's start is not): CPU time,
because on a shared machine wall time is inflated by other processes. N workers, each on an otherwise
idle core, divide the total by N; the CPU cost per query with 1 and 2 workers side by side shows whether
running in parallel adds any. The time at the wall rate measured here is printed too.
Prints tables and writes ``benchmarks/results/scan_workers.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mango.errors import MangoError
from mango.scan import ScanConfig, groups
from mango.scan.distributed import run_distributed
from mango.scan.plan import members, resolve_units, write_manifest

#: every unit of cifar-snn, for the projection
CIFAR_UNITS = {"spiking0": 200, "spiking1": 64, "spiking2": 100, "class": 10}
FULL_BUDGET, FULL_SEEDS = 10_000, 5


def one_scan(cfg: ScanConfig, workers: int, size: int, where: Path) -> dict:
    """Run ``cfg`` in a fresh folder on a local cluster of ``workers``; its wall time and task records."""
    root = where / f"{cfg.model}-{workers}w"
    shutil.rmtree(root, ignore_errors=True)
    units = resolve_units(cfg)
    write_manifest(root, cfg, units)
    ms = members(cfg, units)
    t0 = time.perf_counter()
    records = run_distributed(cfg, groups(cfg, ms), root, workers=workers, group_size=size, progress=False)
    wall = time.perf_counter() - t0
    queries = sum(r["measured"] for r in records)
    assert queries == cfg.budget * len(ms), (queries, cfg.budget * len(ms))
    span = max(r["started"] + r["seconds"] for r in records) - min(r["started"] for r in records)
    return {"workers": workers, "tasks": len(records), "runs": len(ms), "queries": queries,
            "wall_s": round(wall, 1), "queries_per_s": round(queries / wall, 1), "tasks_span_s": round(span, 1),
            "queries_per_s_tasks": round(queries / span, 1),
            "task_s": round(sum(r["seconds"] for r in records), 1), "records": records}


def per_layer(records: list[dict]) -> dict[str, float]:
    """CPU seconds per query of each layer (its tasks' worker CPU time, setup and finishing included)."""
    out: dict[str, list[float]] = {}
    for r in records:
        s, q = out.setdefault(r["layer"], [0.0, 0.0])
        out[r["layer"]] = [s + r["cpu_seconds"], q + r["measured"]]
    return {k: s / q for k, (s, q) in out.items()}


def fmt_time(s: float) -> str:
    d, rest = divmod(s, 86400)
    return f"{int(d)} d {rest / 3600:.1f} h" if d else f"{s / 3600:.1f} h"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--units", default="0-7")
    p.add_argument("--budget-mnist", type=int, default=400)
    p.add_argument("--budget-cifar", type=int, default=300)
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--skip-mnist", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scan_workers.json")
    a = p.parse_args()
    counts = [int(x) for x in a.workers.split(",")]
    scans = {}
    if not a.skip_mnist:
        scans["mnist lif2"] = ScanConfig(model="mnist-snn", generator="mnist-sngan", layers=["lif2"],
                                             units=a.units, budget=a.budget_mnist).validate()
    skipped = None
    try:
        scans["cifar 4 layers"] = ScanConfig(model="cifar-snn", generator="cifar-vqvae", steps=20,
                                                   layers=list(CIFAR_UNITS), units=a.units,
                                                   budget=a.budget_cifar).validate()
    except MangoError as exc:
        skipped = str(exc)
    console = Console(width=None if sys.stdout.isatty() else 150)
    if skipped:
        console.print(f"cifar-snn skipped: {skipped}")
    rows = []
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in scans.items():
            for n in counts:
                r = one_scan(cfg, n, a.group_size, Path(tmp))
                r["scan"] = name
                rows.append(r)
                console.print(f"{name}: {n} worker(s) {r['queries']} queries in {r['wall_s']} s = "
                              f"{r['queries_per_s']} queries/s")
    load1 = os.getloadavg()

    table = Table(title=f"scan on a local Dask cluster ({os.cpu_count()} cores; group of {a.group_size} units "
                  "per task)")
    for col in ("scan", "workers", "tasks", "queries", "wall s", "queries/s", "speed-up", "tasks only: s",
                "queries/s"):
        table.add_column(col)
    for r in rows:
        base = next(x for x in rows if x["scan"] == r["scan"] and x["workers"] == min(counts))
        r["speedup"] = round(base["wall_s"] / r["wall_s"], 2)
        table.add_row(r["scan"], str(r["workers"]), str(r["tasks"]), str(r["queries"]), str(r["wall_s"]),
                      str(r["queries_per_s"]), f"{r['speedup']}x", str(r["tasks_span_s"]),
                      str(r["queries_per_s_tasks"]))
    console.print(table)

    projection = None
    cifar = [r for r in rows if r["scan"].startswith("cifar")]
    if cifar:
        cost = per_layer([t for r in cifar for t in r["records"]])  # CPU seconds per query, every cifar scan
        cpu_q = {r["workers"]: sum(t["cpu_seconds"] for t in r["records"]) / r["queries"] for r in cifar}
        work = {k: n * FULL_BUDGET * FULL_SEEDS * cost[k] for k, n in CIFAR_UNITS.items()}
        total = sum(work.values())  # CPU seconds
        queries = sum(CIFAR_UNITS.values()) * FULL_BUDGET * FULL_SEEDS
        per_n = {n: total / n for n in (1, 2, 4, 8, 16, 32, 64)}
        here = max(cifar, key=lambda r: r["workers"])
        projection = {
            "what": "PROJECTION from the measured CPU cost per query, not a measurement: every unit of cifar-snn "
                    "(spiking0 200, spiking1 64, spiking2 100, class 10 = 374 units), 10,000 queries, 5 seeds, "
                    "one worker per otherwise idle core",
            "queries": queries, "layer_queries_per_cpu_s": {k: round(1 / v, 1) for k, v in cost.items()},
            "cpu_s_per_query_by_workers": {n: round(v, 5) for n, v in cpu_q.items()},
            "cpu_hours": round(total / 3600, 1),
            "hours_by_workers": {n: round(t / 3600, 1) for n, t in per_n.items()},
            "queries_per_s_per_worker": round(queries / total, 1),
            "at_measured_wall_rate": {"workers": here["workers"], "queries_per_s": here["queries_per_s_tasks"],
                                      "hours": round(queries / here["queries_per_s_tasks"] / 3600, 1)},
        }
        t2 = Table(title=f"PROJECTION from the measured CPU cost per query: all 374 cifar-snn units x "
                   f"{FULL_BUDGET:,} queries x {FULL_SEEDS} seeds = {queries:,} queries, one worker per idle core")
        t2.add_column("workers")
        t2.add_column("time")
        t2.add_column("queries/s")
        for n, t in per_n.items():
            mark = " (this machine's cores)" if n == os.cpu_count() else ""
            t2.add_row(f"{n}{mark}", fmt_time(t), f"{queries / t:.0f}")
        console.print(t2)
        console.print("queries per CPU second, by layer: " + ", ".join(f"{k} {1 / v:.1f}" for k, v in cost.items())
                      + f"; each extra worker (core) adds ~{queries / total:.0f} queries/s. CPU s per query with "
                      + ", ".join(f"{n} worker(s) {v * 1000:.2f} ms" for n, v in cpu_q.items())
                      + f". At the wall rate measured here with {here['workers']} worker(s) "
                      f"({here['queries_per_s_tasks']} queries/s, load average {os.getloadavg()[0]:.1f}): "
                      f"{fmt_time(queries / here['queries_per_s_tasks'])}")

    result = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "loadavg_before": [round(x, 2) for x in load0],
                          "loadavg_after": [round(x, 2) for x in load1]},
              "settings": vars(a) | {"out": str(a.out)}, "cifar_skipped": skipped,
              "scans": [{k: v for k, v in r.items() if k != "records"} | {"tasks_detail": [
                  {k: (round(v, 2) if isinstance(v, float) else v) for k, v in t.items()} for t in r["records"]]}
                  for r in rows],
              "projection": projection}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {a.out}")


if __name__ == "__main__":  # the local cluster's worker processes import this file again
    main()
