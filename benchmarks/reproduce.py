"""Every analysis figure of the paper, from scratch, at a chosen scale, into ``docs/figures/``.

    python benchmarks/reproduce.py --scale tiny          # minutes on 2 CPU cores: checks the pipeline
    python benchmarks/reproduce.py --scale small         # a real but small study
    python benchmarks/reproduce.py --scale paper         # the paper's budgets (10,000 queries, many neurons)
    python benchmarks/reproduce.py --suite cifar \
        --generators cifar-vqvae,cifar-sngan-lite=runs/gen/generator.safetensors

Steps: (1) a study: for every generator, layer, unit, optimizer and seed one MEI search
(``mango.run``); (2) ``mango.analysis`` compare, selectivity, diversity and distributions over it;
(3) a target network trained for a few epochs (every epoch kept) and the evolution of the MEIs of a few
neurons across its checkpoints; (4) one HTML report of the figures. Run folders and checkpoints live in
``--work`` (default ``runs/reproduce``) and are reused, so an interrupted reproduction continues and a
larger scale extends the runs it shares with a smaller one. Any scale setting can be overridden
(``--budget``, ``--seeds``, ``--units``, ``--methods``, ...). Prints the wall time of each step.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import mango
from mango import analysis
from mango.optimizers.base import parse_entry
from mango.training.targets import train_target

ROOT = Path(__file__).resolve().parent.parent
#: per scale: queries per search, seeds, units per layer, optimizers, presentations for selectivity,
#: training epochs / images, evolution neurons / queries
SCALES = {
    "tiny": dict(budget=100, seeds=2, units=2, methods="random,sepcma", repeats=20, epochs=3, limit=512,
                 evo_neurons=2, evo_budget=100),
    "small": dict(budget=1000, seeds=3, units=4, methods="tt-b,tt-s,sepcma,ng-portfolio,random", repeats=100,
                  epochs=5, limit=5000, evo_neurons=4, evo_budget=500),
    "paper": dict(budget=10000, seeds=5, units=10, methods="tt-b,tt-s,protes,ng-portfolio,ng-oneplusone,"
                  "ng-noisybandit,ng-spsa", repeats=100, epochs=10, limit=None, evo_neurons=6, evo_budget=2000),
}
#: per suite: target network, its spiking layers, default generators, training data set
SUITES = {
    "mnist": dict(model="mnist-snn", layers="lif1,lif2", generators="mnist-sngan", dataset="digits"),
    "cifar": dict(model="cifar-snn", layers="spiking0,spiking1,spiking2", generators="cifar-vqvae",
                  dataset="cifar10"),
}


def study(a: argparse.Namespace, work: Path) -> Path:
    """One MEI search per generator, layer, unit, optimizer and seed (finished runs are reused, others resumed)."""
    root = work / "study"
    for gen_entry in a.generators.split(","):
        gen, _, weights = gen_entry.partition("=")
        for layer in a.layers.split(","):
            for unit in range(a.units):
                for method in a.methods.split(","):
                    opt, options = parse_entry(method)
                    for seed in range(a.seeds):
                        out = root / gen / f"{layer}_{unit}" / f"{method.replace(':', '_')}-s{seed}"
                        if (out / "result.json").is_file() and json.loads((out / "result.json").read_text())[
                                "n_queries"] >= a.budget:
                            continue
                        mango.run(optimizer=opt, optimizer_options=options, budget=a.budget, seed=seed,
                                  target=f"{layer}:{unit}", model=a.model, generator=gen,
                                  generator_weights=weights or None, out=out, progress=False,
                                  resume=(out / "config.json").is_file())
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    p.add_argument("--suite", choices=sorted(SUITES), default="mnist")
    for key in ("budget", "seeds", "units", "repeats", "epochs", "limit", "evo_neurons", "evo_budget"):
        p.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    for key in ("methods", "layers", "generators", "model", "dataset"):
        p.add_argument(f"--{key}", default=None)
    p.add_argument("--no-evolution", action="store_true", help="skip the training-dynamics part")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "reproduce")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    a = p.parse_args()
    for key, value in {**SCALES[a.scale], **SUITES[a.suite]}.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    work = a.work / f"{a.suite}-{a.scale}"
    a.out.mkdir(parents=True, exist_ok=True)
    times = {}

    t = time.perf_counter()
    runs_dir = study(a, work)
    times["study runs"] = time.perf_counter() - t
    runs = analysis.load_runs(runs_dir)
    layers = a.layers.split(",")
    for name, call in [("compare", lambda: analysis.compare(runs, a.out)),
                       ("selectivity", lambda: analysis.selectivity(runs, a.repeats, "poisson", out=a.out,
                                                                    layers=layers)),
                       ("diversity", lambda: analysis.diversity(runs, a.out, layers)),
                       ("distributions", lambda: analysis.distributions(runs, a.out, layers))]:
        t = time.perf_counter()
        call()
        times[name] = time.perf_counter() - t

    if not a.no_evolution:
        t = time.perf_counter()
        ckpt = work / "training"
        train_target(a.model, a.dataset, a.epochs, ckpt, limit=a.limit, seed=0, show_progress=False,
                     resume=(ckpt / "checkpoint").exists())
        times["training"] = time.perf_counter() - t
        t = time.perf_counter()
        last = layers[-1]
        neurons = [f"{last}:{u}" for u in range(a.evo_neurons)]
        evo = analysis.evolution(ckpt, neurons, a.generators.split(",")[0].partition("=")[0], a.model,
                                 a.evo_budget, "sepcma", 0, repeats=a.repeats, out=work / "evolution")
        for path in [*evo.figures, *evo.files]:
            shutil.copy(path, a.out / path.name)
        times["evolution"] = time.perf_counter() - t

    t = time.perf_counter()
    analysis.report(a.out, title=f"MANGO analyses: {a.suite} suite, {a.scale} scale")
    times["report"] = time.perf_counter() - t
    print(f"{len(runs)} runs in {runs_dir}; figures in {a.out}")
    for step, seconds in times.items():
        print(f"  {step:<14} {seconds:8.1f} s")
    print(f"  {'total':<14} {sum(times.values()):8.1f} s")


if __name__ == "__main__":
    main()
