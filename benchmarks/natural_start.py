"""Issue 14's "start from encoded natural images" (XDream starts from natural images), tried on the VQ-VAE codes.

    python benchmarks/natural_start.py                # 12 cifar units of the efficiency draw, 3 seeds (resumes)
    python benchmarks/natural_start.py --table-only

**Images:** no CIFAR-10 is available offline, so the natural images are 1,024 32x32 patches of the two photos
scikit-learn ships (``load_sample_images``: china.jpg and flower.jpg), shrunk 2, 4, 8 or 12 times, cropped at
seeded random places and mirrored half the time; :meth:`VQVAEGenerator.encode` turns them into codes.

**Variant:** ``codes`` (``codes-noisy`` under noise) whose first ``N`` asks are ``N`` of these encoded patches
(seeded choice) instead of the flat textures; the best of them becomes the parent. Everything else as the
default: readout ``rate+drive`` while silent (clean), the noisy default's re-measurement, the same noise
streams and scoring as ``benchmarks/efficiency.py``, whose ``auto`` runs (seeds 0-2) it is compared with,
run by run (same unit, condition and seed). ``--silent`` also runs it on the units the default left silent
with some seed (``benchmarks/silent.py``), to the first spike within 1,000 queries.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import efficiency
import numpy as np
import torch
import torch.nn.functional as F
from _common import RESULTS, Objective, append, read_runs
from silent import default_search

import mango
from mango.optimizers.auto import DRIVE
from mango.optimizers.discrete import CodeSearch
from mango.optimizers.options import register

#: the reachable units some seed of the default left silent (silent-seed{0,1,2}-runs.jsonl)
SILENT = ["spiking1:5", "spiking1:17", "spiking1:21", "spiking1:24", "spiking1:36", "spiking1:44", "spiking1:52",
          "spiking1:55", "spiking1:63", "spiking2:57"]


def natural_patches(n: int = 1024, seed: int = 0) -> torch.Tensor:
    """``n`` 32x32 RGB patches in [0, 1] of scikit-learn's two sample photos."""
    from sklearn.datasets import load_sample_images
    rng = np.random.default_rng(seed)
    photos = [torch.tensor(i).permute(2, 0, 1).float()[None] / 255 for i in load_sample_images().images]
    out = []
    for _ in range(n):
        small = F.interpolate(photos[rng.integers(2)], scale_factor=1 / [2, 4, 8, 12][rng.integers(4)], mode="area")
        r, c = rng.integers(small.shape[-2] - 31), rng.integers(small.shape[-1] - 31)
        patch = small[0, :, r:r + 32, c:c + 32]
        out.append(patch.flip(-1) if rng.random() < 0.5 else patch)
    return torch.stack(out)


class NaturalStart(CodeSearch):
    """``codes`` whose first ``natural`` asks are encoded natural patches: ``CODES`` of a subclass made by
    :func:`with_codes` (optimizer options are scalars, so the codes cannot be one)."""

    CODES: np.ndarray = np.zeros((0, 64), dtype=np.int64)

    def __init__(self, space, seed: int = 0, batch: int = 1, start: int = 8, restart: int = 25, resample: int = 0,
                 natural: int = 16, kick: int = 2) -> None:
        super().__init__(space, seed=seed, batch=batch, start=start, restart=restart, resample=resample, kick=kick)
        self.natural = int(natural)
        self.start_rows = self.CODES[np.random.default_rng([seed, 99]).choice(len(self.CODES), natural, False)]
        self.survey_end = max(self.survey_end, self.natural)

    def _survey_image(self) -> np.ndarray:
        if self.asked < self.natural:
            return self.start_rows[self.asked].copy()
        return super()._survey_image()


def with_codes(codes: np.ndarray) -> type[NaturalStart]:
    return type("NaturalStart", (NaturalStart,), {"CODES": codes})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--natural", default="16,32", help="numbers of natural images to start from")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--silent", action="store_true", help="also the units the default left silent")
    p.add_argument("--runs", type=Path, default=RESULTS / "natural-start-runs.jsonl")
    p.add_argument("--out", type=Path, default=RESULTS / "natural-start.json")
    p.add_argument("--table-only", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    gen = mango.GENERATORS.create("cifar-vqvae")
    codes = gen.encode(gen.image_space.from_unit(natural_patches())).cpu().numpy().astype(np.int64)
    sizes = [int(n) for n in a.natural.split(",") if n.strip().isdigit()]
    if len(sizes) != len(a.natural.split(",")) or not all(1 <= n <= len(codes) for n in sizes):
        p.error(f"--natural takes numbers of images from 1 to {len(codes)}, comma-separated, got {a.natural!r}")
    cls = with_codes(codes)
    for n in sizes:
        # kick=0: measured against the default of its day, codes without kicks (its records stay reproducible)
        register(f"codes-nat{n}", cls, "natural start (benchmark only)", natural=n, kick=0)
        register(f"codes-noisy-nat{n}", cls, "natural start, noisy (benchmark only)", natural=n, resample=4, kick=0)
    draw = efficiency.draw(24, 0)
    units = [u for u in draw if u[0] == "cifar-snn"]
    done = {(r["kind"], r["unit"], r["condition"], r["method"], r["seed"]) for r in read_runs(a.runs)}
    for seed in range(a.seeds) if not a.table_only else ():
        for model, unit in units:
            for condition in ("clean", "noisy"):
                for n in sizes:
                    method = f"codes-nat{n}"
                    if ("run", efficiency.name(model, unit), condition, method, seed) in done:
                        continue
                    entry = method if condition == "clean" else f"codes-noisy-nat{n}"
                    readout = DRIVE if condition == "clean" and not unit.startswith("class:") else None
                    f = Objective(gen, mango.make_target(model, unit, readout=readout))
                    rec = efficiency.run_one(f, efficiency.name(model, unit), entry, seed, condition, gen.space,
                                             draw.index((model, unit)), remeasure=True)  # as the default runs
                    append(a.runs, {**rec, "method": method})
                    print(rec["unit"], condition, entry, seed, rec["at"], flush=True)
        for unit in SILENT if a.silent else ():
            for n in sizes:
                if ("silent", unit, "clean", f"codes-nat{n}", seed) in done:
                    continue
                f = Objective(gen, mango.make_target("cifar-snn", unit, readout=DRIVE))
                first = default_search(f, gen.space, 1000, seed, f"codes-nat{n}")
                append(a.runs, {"kind": "silent", "unit": unit, "condition": "clean", "method": f"codes-nat{n}",
                                "seed": seed, "first_spike": first})
                print(unit, f"codes-nat{n}", seed, "first spike", first, flush=True)
    summary = report(read_runs(a.runs), a.seeds)
    a.out.write_text(json.dumps({"meta": {"patches": len(codes), "natural": sizes, "seeds": a.seeds,
                                          "compared_with": "efficiency-runs.jsonl auto, same unit/condition/seed",
                                          "torch": torch.__version__}, "summary": summary}, indent=1) + "\n")
    print(f"wrote {a.out}")


def report(runs: list[dict], seeds: int) -> dict:
    """Paired with the default's run of the same unit, condition and seed: mean difference, wins and losses."""
    summary: dict = {}
    base = {(r["unit"], r["condition"], r["seed"]): r for r in read_runs(RESULTS / "efficiency-runs.jsonl")
            if r["kind"] == "run" and r["method"] == "auto"}
    print("| variant | condition | runs | @250 | @1000 | @3000 |\n|---|---|---|---|---|---|")
    for method in sorted({r["method"] for r in runs}):
        for condition in ("clean", "noisy"):
            pairs = [(r, base[(r["unit"], condition, r["seed"])]) for r in runs if r["kind"] == "run"
                     and r["method"] == method and r["condition"] == condition and r["seed"] < seeds]
            cells = []
            for b in ("250", "1000", "3000"):
                d = np.array([r["at"][b] - o["at"][b] for r, o in pairs])
                summary.setdefault(method, {}).setdefault(condition, {})[b] = {
                    "runs": len(d), "mean_difference": round(float(d.mean()), 4) if len(d) else None,
                    "better": int((d > 0).sum()), "worse": int((d < 0).sum())}
                cells.append(f"{d.mean():+.3f} ({(d > 0).sum()} up, {(d < 0).sum()} down)" if len(d) else "-")
            print(f"| {method} | {condition} | {len(pairs)} | " + " | ".join(cells) + " |")
    silent_default = {}
    for seed in range(seeds):
        name = "silent-runs.jsonl" if seed == 0 else f"silent-seed{seed}-runs.jsonl"
        for r in read_runs(RESULTS / name):
            silent_default[(r["unit"], seed)] = r["first_spike"]
    for method in sorted({r["method"] for r in runs if r["kind"] == "silent"}):
        rs = [r for r in runs if r["kind"] == "silent" and r["method"] == method]
        for seed in sorted({r["seed"] for r in rs}):
            mine = [r for r in rs if r["seed"] == seed]
            still = sum(r["first_spike"] is None for r in mine)
            default = sum(silent_default.get((r["unit"], seed), 0) is None for r in mine)
            summary.setdefault(method, {}).setdefault("silent", {})[str(seed)] = {
                "units": len(mine), "still_silent": still, "default_still_silent": default}
            print(f"{method} seed {seed}: still silent {still} of {len(mine)} (default: {default})")
    return summary


if __name__ == "__main__":
    main()
