"""Silent units: other searches tried on the units the default leaves silent (issue 14, goal 2).

    python benchmarks/silent_search.py                # every variant, the units below, seeds 0-4 (resumes)
    python benchmarks/silent_search.py --table-only
    python benchmarks/silent_search.py --variants "no kicks,edges" --seeds 2
    python benchmarks/silent_search.py --variants "no kicks,kick,edges" --first-seed 5 --seeds 10 \
        --runs benchmarks/results/silent-search-heldout-runs.jsonl --out benchmarks/results/silent-search-heldout.json

Each run is the silent phase of ``codes`` without kicks (the default when these were tried;
``benchmarks/silent.py``: readout ``rate+drive``, stopped at the first spike or after ``--budget`` queries) with
one thing changed; the record is the query of the first spike. The units: every reachable unit that some seed
of that search left silent, and four that fire late or not with every seed (``spiking1:1``, ``spiking1:10``,
``spiking2:38``, ``spiking2:88``).

The variants (only ``kick`` was adopted: it is ``codes``' default now, ``CodeSearch(kick=2)``; the others
live here only, each built on ``kick=0``):

* ``restart 10`` / ``restart 40``: ``codes`` starting over after 10 or 40 stale asks instead of 25;
* ``edges``: every restart's survey shows, half the time, two codes split by a straight edge (horizontal,
  vertical or diagonal, at a random offset) instead of one flat code: a unit tuned to an edge or a colour
  border gets one from the start;
* ``near 0.25`` / ``near 0.5``: that share of mutations moves k cells (heavy-tailed, as ``codes``' point
  mutation) each to one of the 16 nearest codes of its code in the codebook (Euclidean distance of the
  VQ-VAE's embeddings): a small step in the image instead of a jump to any of 512 textures;
* ``focus 2``: point mutations pick their cells by how often a change there changed the value (see
  :class:`FocusedCodes`), not uniformly;
* ``kick`` / ``kick always``: every other (or every) restart while silent starts from strong perturbations
  of the best image so far instead of new flat codes (iterated local search; ``CodeSearch``'s ``kick``);
* ``soft 0.05`` / ``soft 0.2``: the silent value from a soft peak over the channel's positions,
  ``tau * (logsumexp(membrane / tau) - log(positions))``, instead of the hard maximum, so that a membrane
  rising anywhere near the top counts, not only at the one highest position;
* ``model screen`` (built on ``codes`` with kicks, the default since): while the unit is silent, each mutation
  asked is the best of 32 unseen mutations of the parent by a CNN ensemble fitted to the drive of every image
  so far (:class:`ModelScreen`): ``image-model``'s idea on the codes, whose images carry no gradient to them.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS, Objective, append, read_runs
from silent import default_search
from torch import nn

import mango
from mango.optimizers.auto import DRIVE
from mango.optimizers.discrete import CodeSearch
from mango.optimizers.options import register
from mango.targets import drive

UNITS = [f"spiking1:{u}" for u in (1, 5, 10, 17, 21, 24, 36, 44, 52, 55, 63)] + \
        ["spiking2:38", "spiking2:57", "spiking2:88"]
#: name -> (optimizer entry, soft-peak temperature or 0 for the hard peak)
VARIANTS = {"no kicks": ("codes+kick=0", 0.0), "restart 10": ("codes+restart=10+kick=0", 0.0),
            "restart 40": ("codes+restart=40+kick=0", 0.0), "edges": ("codes-edges", 0.0),
            "near 0.25": ("codes-near+near=0.25", 0.0), "near 0.5": ("codes-near+near=0.5", 0.0),
            "soft 0.05": ("codes+kick=0", 0.05), "soft 0.2": ("codes+kick=0", 0.2), "focus 2": ("codes-focus", 0.0),
            "kick": ("codes", 0.0), "kick always": ("codes+kick=1", 0.0),
            "model screen": ("codes-screen+steps=10", 0.0)}
BASE = "no kicks"  # the default when the variants were tried: each is that search with one thing changed


class EdgeSurveys(CodeSearch):
    """``codes`` whose restart surveys show two-code images split by a straight edge half the time."""

    def __init__(self, space, seed: int = 0, restart: int = 25, edges: float = 0.5) -> None:
        super().__init__(space, seed, restart=restart, kick=0)
        self.edges, self.restarted = float(edges), False

    def _start_over(self) -> None:
        super()._start_over()
        self.restarted = True

    def _survey_image(self) -> np.ndarray:
        z = super()._survey_image()
        if not self.restarted or self.rng.random() >= self.edges:
            return z
        other = super()._survey_image()  # the next flat code
        r, c = np.mgrid[0:self.rows, 0:self.cols]
        proj = [r, c, r + c, r - c + self.cols - 1][int(self.rng.integers(4))]
        cut = int(self.rng.integers(1, proj.max() + 1))
        return np.where(proj.reshape(-1) < cut, z, other).astype(np.int64)


class NearCodes(CodeSearch):
    """``codes`` where a share ``near`` of the mutations moves cells to codebook neighbours of their code
    (``table``: ``[size, >= k]`` nearest codes, bound by a subclass)."""

    table: np.ndarray

    def __init__(self, space, seed: int = 0, restart: int = 25, near: float = 0.5, k: int = 16) -> None:
        super().__init__(space, seed, restart=restart, kick=0)
        self.near, self.k = float(near), int(k)

    def _mutate(self, parent: np.ndarray) -> np.ndarray:
        if self.rng.random() >= self.near:
            return super()._mutate(parent)
        child = parent.copy()
        n = 1 + int(self.rng.choice(len(self.p_k), p=self.p_k))
        for i in self.rng.choice(parent.size, n, replace=False):
            child[i] = self.table[parent[i], self.rng.integers(self.k)]
        return child


class FocusedCodes(CodeSearch):
    """``codes`` whose point mutations favour the cells that mattered: a silent unit's value is the peak
    membrane at one position, which depends only on the cells under that position's receptive field, so
    most cells are neutral. Each cell keeps (value changed + 1) / (mutated + 2) over the mutations that
    touched it since the last restart; a point mutation picks its cells with probability proportional to
    that share to the power ``focus``."""

    def __init__(self, space, seed: int = 0, restart: int = 25, focus: float = 2.0) -> None:
        super().__init__(space, seed, restart=restart, kick=0)
        self.focus = float(focus)
        self.tried, self.changed = np.zeros(space.dim), np.zeros(space.dim)
        self.pending: dict[bytes, tuple[np.ndarray, float]] = {}  # candidate -> (cells changed, parent value)

    def _cells(self, k: int) -> np.ndarray:
        share = ((self.changed + 1) / (self.tried + 2)) ** self.focus
        return self.rng.choice(self.space.dim, k, replace=False, p=share / share.sum())

    def _mutate(self, parent: np.ndarray) -> np.ndarray:
        child = super()._mutate(parent)
        self.pending[child.tobytes()] = (np.flatnonzero(child != parent), self.value)
        return child

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        for z, v in zip(candidates.numpy(), values.tolist(), strict=True):
            cells, before = self.pending.pop(z.tobytes(), (None, 0.0))
            if cells is not None and len(cells) and not np.isnan(v):
                self.tried[cells] += 1
                self.changed[cells] += v != before
        super()._tell(candidates, values)

    def _start_over(self) -> None:
        super()._start_over()
        self.tried[:], self.changed[:] = 0, 0
        self.pending.clear()


class PeakNet(nn.Module):
    """Two 5x5 conv layers and a read-out of each channel's *peak* over positions (the drive is a peak)."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, channels, 5, padding=2), nn.Softplus(), nn.MaxPool2d(2),
                               nn.Conv2d(channels, channels, 5, padding=2), nn.Softplus())
        self.out = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.f(x).amax((2, 3))).squeeze(1)


class ModelScreen(CodeSearch):
    """``codes`` (with kicks) whose mutations, while the unit is silent and ``warm`` values are known, are each the
    best of ``screen`` unseen mutations of the parent by an ensemble's mean + ``kappa`` x spread; the ensemble is
    refitted (``steps`` Adam steps, minibatches of 128) every ``refit`` values told."""

    needs_generator = True

    def __init__(self, space, seed: int = 0, generator=None, screen: int = 32, warm: int = 24, refit: int = 8,
                 steps: int = 20, ensemble: int = 2, kappa: float = 1.0) -> None:
        super().__init__(space, seed)
        self.gen, self.screen, self.warm, self.refit, self.steps, self.kappa = \
            generator, screen, warm, refit, steps, kappa
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.models = [PeakNet() for _ in range(ensemble)]
        self.opts = [torch.optim.Adam(m.parameters(), lr=3e-3) for m in self.models]
        self.draws = torch.Generator().manual_seed(self.seed)
        self.x: list[torch.Tensor] = []
        self.y: list[float] = []
        self.since, self.fitted, self.mu, self.sd = 0, False, 0.0, 1.0

    def _image(self, z: np.ndarray) -> torch.Tensor:
        return self.gen.decode(torch.as_tensor(np.asarray(z), dtype=torch.int64))

    def _mutate(self, parent: np.ndarray) -> np.ndarray:
        if not (self.screen > 1 and len(self.y) >= self.warm and self.best <= 0):
            return super()._mutate(parent)
        if self.since >= self.refit or not self.fitted:
            self._fit()
        kids = []
        for _ in range(self.screen * 3):
            c = super()._mutate(parent)
            if c.tobytes() not in self.seen:
                kids.append(c)
            if len(kids) >= self.screen:
                break
        if not kids:
            return super()._mutate(parent)
        x = (self._image(np.stack(kids)) - self.mu) / self.sd
        with torch.no_grad():
            p = torch.stack([m(x) for m in self.models])
        return kids[int(torch.argmax(p.mean(0) + self.kappa * p.std(0)))]

    def _fit(self) -> None:
        self.since, self.fitted = 0, True
        x, y = torch.cat(self.x), torch.tensor(self.y, dtype=torch.float32)
        self.mu, self.sd = float(x.mean()), float(x.std()) + 1e-6
        x, y = (x - self.mu) / self.sd, (y - y.mean()) / (y.std() + 1e-9)
        with torch.inference_mode(False), torch.enable_grad():
            x, y = x.clone(), y.clone()
            for m, opt in zip(self.models, self.opts, strict=True):
                for _ in range(self.steps):
                    i = torch.randint(len(x), (min(128, len(x)),), generator=self.draws)
                    loss = ((m(x[i]) - y[i]) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()

    def _tell(self, candidates: torch.Tensor, values: torch.Tensor) -> None:
        super()._tell(candidates, values)
        keep = torch.isfinite(values)
        if bool(keep.any()):
            self.x.append(self._image(candidates[keep].numpy()).clone())
            self.y.extend(values[keep].tolist())
            self.since += int(keep.sum())


@contextmanager
def soft_peak(tau: float) -> Iterator[None]:
    """The drive's peak over positions taken soft (see the module note) while inside; tau 0: unchanged."""
    hard = drive.peak_positions

    def soft(membrane: torch.Tensor, position: tuple[int, int] | None) -> torch.Tensor:
        if position is not None or membrane.ndim <= 3:
            return hard(membrane, position)
        m = membrane.flatten(3)
        return tau * torch.logsumexp(m / tau, 3) - tau * torch.log(torch.tensor(float(m.shape[3])))

    drive.peak_positions = soft if tau > 0 else hard
    try:
        yield
    finally:
        drive.peak_positions = hard


def summary(runs: list[dict], variants: list[str]) -> dict:
    """Per variant: runs, units fired, and against ``BASE`` on the same (unit, seed) runs."""
    default = {(r["unit"], r["seed"]): r["first_spike"] for r in runs if r["variant"] == BASE}
    out = {}
    for name in variants:
        rs = [r for r in runs if r["variant"] == name]
        same = [r for r in rs if (r["unit"], r["seed"]) in default]
        per_unit: dict[str, int] = {}
        for r in rs:
            per_unit[r["unit"]] = per_unit.get(r["unit"], 0) + (r["first_spike"] is not None)
        out[name] = {"runs": len(rs), "fired": sum(r["first_spike"] is not None for r in rs),
                     "base_on_same_runs": sum(default[(r["unit"], r["seed"])] is not None for r in same)
                     if len(same) == len(rs) else None,  # None: BASE has not run them all
                     "fired_per_unit": per_unit}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1 "
                   "(5 and on: seeds no variant was chosen on)")
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--runs", type=Path, default=RESULTS / "silent-search-runs.jsonl")
    p.add_argument("--out", type=Path, default=RESULTS / "silent-search.json")
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    names = a.variants.split(",")
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        p.error(f"unknown variant {bad[0]!r}; allowed: {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    gen = mango.GENERATORS.create("cifar-vqvae")
    w = gen.model._vq_vae._embedding.weight.detach()
    d = torch.cdist(w, w).fill_diagonal_(float("inf"))
    register("codes-focus", FocusedCodes, "codes with point mutations on the cells that mattered (benchmark only)")
    register("codes-edges", EdgeSurveys, "codes with edge surveys (benchmark only)")
    register("codes-screen", ModelScreen, "codes with model-screened mutations while silent (benchmark only)")
    register("codes-near", type("BoundNearCodes", (NearCodes,), {"table": d.argsort(1)[:, :32].numpy()}),
             "codes with codebook-neighbour mutations (benchmark only)")
    runs = read_runs(a.runs)
    done = {(r["variant"], r["unit"], r["seed"]) for r in runs}
    for name in [] if a.table_only else names:
        entry, tau = VARIANTS[name]
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            for unit in UNITS:
                if (name, unit, seed) in done:
                    continue
                t0 = time.perf_counter()
                with soft_peak(tau):
                    f = Objective(gen, mango.make_target("cifar-snn", unit, readout=DRIVE))
                    first = default_search(f, gen.space, a.budget, seed, entry)
                rec = {"variant": name, "entry": entry, "soft": tau, "unit": unit, "seed": seed, "budget": a.budget,
                       "first_spike": first, "seconds": round(time.perf_counter() - t0, 1)}
                append(a.runs, rec)
                runs.append(rec)
                print(json.dumps(rec), flush=True)
    table = summary(runs, names)
    print(f"| variant | runs | fired within {a.budget} | {BASE} on the same runs |\n|---|---|---|---|")
    for name, s in table.items():
        same = s["base_on_same_runs"]
        print(f"| {name} | {s['runs']} | {s['fired']} | {'-' if same is None else same} |")
    seeds = [a.first_seed, a.first_seed + a.seeds - 1]
    a.out.write_text(json.dumps({"meta": {"model": "cifar-snn", "generator": "cifar-vqvae", "budget": a.budget,
                                          "units": UNITS, "seeds": seeds, "date": time.strftime("%Y-%m-%d")},
                                 "summary": table}, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
