"""Pieces the efficiency benchmarks share: a memoized objective, a run driven like the loop, JSON-lines records."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import mango
from mango.optimizers.base import parse_entry
from mango.optimizers.options import create
from mango.targets.drive import until_spike

RESULTS = Path(__file__).parent / "results"


class Objective:
    """Latents ``[k, dim]`` -> noise-free responses of one unit (float64), memoized (the target is
    deterministic; categorical searches propose the same codes again). :meth:`evaluate` also gives the values
    an optimizer is told (the responses, or with readout ``rate+drive`` the drive of silent images)."""

    def __init__(self, gen, tgt) -> None:
        self.gen, self.tgt, self.cache = gen, tgt, {}
        self.seconds = 0.0

    def evaluate(self, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        z = torch.as_tensor(z).reshape(-1, self.gen.space.dim)
        keys = [row.numpy().tobytes() for row in z]
        todo = [i for i, k in enumerate(keys) if k not in self.cache]
        if todo:
            t0 = time.perf_counter()
            with torch.inference_mode():
                r, v = (t.double().mean(1).numpy() for t in self.tgt.evaluate(self.gen.decode(z[todo])))
            self.seconds += time.perf_counter() - t0
            for i, a, b in zip(todo, r, v, strict=True):
                self.cache[keys[i]] = (float(a), float(b))
        if len(self.cache) > 200_000:
            self.cache.clear()
        pairs = np.array([self.cache[k] for k in keys]).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]

    def __call__(self, z: torch.Tensor) -> np.ndarray:
        return self.evaluate(z)[0]


class UntilSpike:
    """``f``'s values told as ``mango run`` tells them (:func:`mango.targets.drive.until_spike`: the drive of a
    silent unit until its first spike, then the rates), with every batch's noise-free rates kept in ``rates``."""

    def __init__(self, f: Objective) -> None:
        self.f, self.spiked = f, False
        self.rates: list[np.ndarray] = []

    def __call__(self, z: torch.Tensor) -> np.ndarray:
        r, v = self.f.evaluate(z)
        v = until_spike(torch.from_numpy(r), torch.from_numpy(v), self.spiked).numpy()
        self.spiked = self.spiked or bool((r > 0).any())
        self.rates.append(r)
        return v


def drive(f, entry: str, seed: int, budget: int, space,
          generator=None) -> tuple[np.ndarray, torch.Tensor, float, int, dict]:
    """A MANGO optimizer driven like the loop (``ask(min(batch, left))``, measure with ``f``, ``tell``); returns
    (values told, latents asked, optimizer seconds, batch, the optimizer's description). ``entry``:
    ``NAME+key=value+...``, optionally ``@BATCH`` (default: the optimizer's preferred batch, as the loop).
    ``generator``: made as runs make it, handed the generator (a method that searches through it needs it)."""
    name, _, batch_text = entry.partition("@")
    opt_name, options = parse_entry(name)
    opt = (mango.OPTIMIZERS.create(opt_name, space, seed=seed, **options) if generator is None
           else create(opt_name, generator, seed, options))
    batch = int(batch_text) if batch_text else min(opt.preferred_batch, budget)
    values: list[float] = []
    asked: list[torch.Tensor] = []
    spent = 0.0
    try:
        while len(values) < budget:
            t0 = time.perf_counter()
            z = opt.ask(min(batch, budget - len(values)))
            spent += time.perf_counter() - t0
            v = f(z)
            t0 = time.perf_counter()
            opt.tell(z, v)
            spent += time.perf_counter() - t0
            values.extend(v.tolist())
            asked.append(torch.as_tensor(z).reshape(len(v), -1))
        described = opt.describe()
    finally:
        opt.close()
    return np.array(values), torch.cat(asked), spent, batch, described


def read_runs(path: Path) -> list[dict]:
    """The records so far. A line cut short (the benchmark killed while appending it) is skipped with a
    warning: the run it held is not recorded, so it is simply done again."""
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"warning: {path}: line {i + 1} is cut short (an interrupted append); its run will be done again")
    return out


def append(path: Path, record: dict) -> None:
    """One record per line, appended and flushed: an interrupted benchmark resumes from what is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab+") as fh:  # writes go to the end
        torn = False
        if fh.seek(0, 2):
            fh.seek(-1, 2)
            torn = fh.read(1) != b"\n"  # the last line was cut short by a kill: start a new one
        fh.write((("\n" if torn else "") + json.dumps(record) + "\n").encode())


def shard(text: str) -> tuple[int, int]:
    """``--shard I/N`` (this process does every N-th run of the plan, from I) as ``(I, N)``; else one line."""
    i, _, n = text.partition("/")
    if not (i.isdigit() and n.isdigit() and 0 <= int(i) < int(n)):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N (e.g. 0/2), got {text!r}")
    return int(i), int(n)


def record_args(p: argparse.ArgumentParser, runs: str, out: str, seeds: int) -> None:
    """The options of a resumable benchmark: seeds, a shard of the plan, its records (``RESULTS/runs``, appended
    to and resumed from) and its table (``RESULTS/out``)."""
    p.add_argument("--seeds", type=int, default=seeds)
    p.add_argument("--shard", type=shard, default=(0, 1), help="I/N: this process does every N-th run, from I")
    p.add_argument("--runs", type=Path, default=RESULTS / runs)
    p.add_argument("--out", type=Path, default=RESULTS / out)
    p.add_argument("--table-only", action="store_true", help="only the table, from the records so far")
