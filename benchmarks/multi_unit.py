"""Queries per second of one 32-unit target vs 32 one-unit targets on the same images.

    python benchmarks/multi_unit.py [--threads 1] [--batch 64] [--rounds 3] [--nets mnist-snn,cifar-snn]

A *query* is one image measured on all 32 units: one ``responses`` call of the
multi-unit target (``lif2:0-31``) gives a batch of them; the one-unit targets
(``lif2:0`` ... ``lif2:31``) need 32 calls for the same batch. Both are timed in
the same process, in alternating rounds (the best round of each counts), after
checking that the multi-unit responses equal the 32 one-unit responses bit for
bit. With one thread (the default) a round is timed in CPU seconds of this
process, which on an idle machine equal wall seconds and on a shared one are not
inflated by other processes; with more threads, in wall seconds. Prints a table
and writes ``benchmarks/results/multi_unit.json``.

cifar-snn needs the MANGO release checkpoint (see README); without it that row
is skipped with the reason.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import mango
from mango import TargetSpec, TorchTarget

#: (network, layer, time steps, fast path): 32 units of each
CASES = {
    "mnist-snn": [("lif2", 20, True), ("lif2", 20, False)],
    "cifar-snn": [("spiking1", 20, True)],
}
UNITS = tuple(range(32))


def images(model: torch.nn.Module, batch: int) -> torch.Tensor:
    """Smooth random images in the network's input space (every layer spikes on them)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *model.input_shape, generator=g) * 3
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1).clamp(-3, 3) if model.input_shape[0] == 3 else x.sigmoid()


#: how a round is timed (set in main: CPU time with one thread, wall time with more)
CLOCK = time.process_time


def _timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def measure(net: str, layer: str, steps: int, fast: bool, batch: int, rounds: int) -> dict:
    model = mango.make_target(net, f"{layer}:0", steps=steps).model
    x = images(model, batch)
    multi = TorchTarget(model, TargetSpec(layer, units=UNITS), name=net, fast=fast)
    singles = [TorchTarget(model, TargetSpec(layer, u), name=net, fast=fast) for u in UNITS]
    got = multi.responses(x)
    want = torch.cat([s.responses(x) for s in singles], 1)
    if not torch.equal(got, want):
        raise SystemExit(f"{net} {layer}: multi-unit responses differ from the one-unit ones by "
                         f"{(got - want).abs().max():.3g}")
    t_multi, t_singles = [], []
    for _ in range(rounds):  # alternating, so a change in machine load hits both
        t_multi.append(_timed(lambda: multi.responses(x)))
        t_singles.append(_timed(lambda: [s.responses(x) for s in singles]))
    q_multi, q_singles = batch / min(t_multi), batch / min(t_singles)
    return {"network": net, "target": str(multi.spec), "path": "fast" if multi.fast else "hooked", "T": steps,
            "batch": batch, "units": len(UNITS), "multi_queries_s": round(q_multi, 1),
            "singles_queries_s": round(q_singles, 1), "ratio": round(q_multi / q_singles, 1),
            "exact": True, "mean_rate": round(float(got.mean()), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default=",".join(CASES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "multi_unit.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    global CLOCK
    CLOCK = time.process_time if a.threads == 1 else time.perf_counter
    console = Console(width=130)
    rows, skipped = [], []
    for net in a.nets.split(","):
        for layer, steps, fast in CASES[net]:
            try:
                rows.append(measure(net, layer, steps, fast, a.batch, a.rounds))
            except mango.MangoError as exc:  # e.g. the release checkpoint is not here
                skipped.append(f"{net} {layer}: {exc}")
                console.print(f"[yellow]skip {net} {layer}: {exc}")
                continue
            console.print(rows[-1])
    table = Table(title=f"32 units: one multi-unit target vs 32 one-unit targets, queries/s "
                        f"(batch {a.batch}, {a.threads} thread(s))")
    cols = ["network", "target", "path", "T", "multi_queries_s", "singles_queries_s", "ratio", "exact"]
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*[str(r[c]) for c in cols])
    console.print(table)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "threads": a.threads,
                                 "clock": "process CPU time" if a.threads == 1 else "wall time",
                                 "torch": torch.__version__, "rounds": a.rounds, "rows": rows,
                                 "skipped": skipped}, indent=1) + "\n")
    console.print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
