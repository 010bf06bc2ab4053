"""``mango check gen NAME``: sample grid, reconstructions and class coverage of a generator.

The work is :func:`mango.training.check.check_generator`; this module only parses and prints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

app: typer.Typer = typer.Typer(add_completion=False, no_args_is_help=True,
                               help="Check models before using them for MEI search.")
from ..errors import MangoError  # noqa: E402
from .main import err, out, user_errors  # noqa: E402  (after app: main.py imports this module to register it)


@app.callback()
def _group() -> None:
    """Check models before using them for MEI search."""


@app.command()
def gen(
    name: str = typer.Argument(..., help="a registered generator (`mango list generators`)"),
    generator_weights: Optional[str] = typer.Option(None, help="generator weights file (.safetensors from `mango train "
                                                "gen`; default: the generator's own)"),
    weights: Optional[str] = typer.Option(None, "--weights", hidden=True, help="deprecated spelling of "
                                          "--generator-weights"),
    classifier: Optional[str] = typer.Option(None, help="target network judging coverage (default: mnist-snn for "
                                             "28x28 digits, cifar-snn for CIFAR generators; 'none' skips it)"),
    classifier_weights: Optional[str] = typer.Option(None, help="weights file for --classifier"),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: checks/NAME)"),
    n: int = typer.Option(400, help="generated samples for coverage"),
    dataset: Optional[str] = typer.Option(None, help="reconstruct this dataset's held-out images (generators "
                                          "with encode; default: the generator's own samples)"),
    resize: bool = typer.Option(False, help="pad/resize dataset images and repeat channels to fit the generator"),
    seed: int = typer.Option(0, help="seed of the random latents"),
    root: Optional[Path] = typer.Option(None, help="dataset folder (default: $MANGO_DATA_DIR)"),
    download: bool = typer.Option(False, help="download the dataset if missing"),
) -> None:
    """Write samples.png, reconstructions.png (if it encodes) and check.json; print the coverage."""
    from ..training.check import check_generator

    with user_errors():
        if weights is not None and generator_weights is not None and weights != generator_weights:
            raise MangoError(f"--weights {weights!r} and --generator-weights {generator_weights!r} disagree; give "
                             "--generator-weights only (--weights is its old spelling)")
        if weights is not None:
            err.print("note: --weights is deprecated; use --generator-weights", highlight=False, soft_wrap=True)
        r = check_generator(name, weights=generator_weights or weights, classifier=classifier,
                            classifier_weights=classifier_weights, out_dir=out_dir, n=n, dataset=dataset,
                            resize=resize, seed=seed, root=root, download=download)
    t = Table(title=f"check of {name}", show_header=False)
    t.add_row("samples", f"{r['samples']} random grid latents; pixel std across samples "
                         f"{r['pixel_std_across_samples']}")
    if "reconstruction" in r:
        rec = r["reconstruction"]
        t.add_row("reconstruction", f"MSE {rec['mse_pixels']} (pixels in [0, 1]) on {rec['images']} of {rec['source']}"
                  + (f"; codes recovered {rec['code_agreement']:.1%}" if "code_agreement" in rec else ""))
    if "coverage" in r:
        c = r["coverage"]
        hist = " ".join(f"{k}:{v}" for k, v in c["histogram"].items())
        t.add_row("coverage", f"{c['classifier']}: {c['classes_hit']}/{c['n_classes']} classes, "
                  f"mean max-prob {c['mean_max_prob']:.3f}, entropy {c['histogram_entropy_bits']:.2f} of "
                  f"{c['max_entropy_bits']:.2f} bits")
        t.add_row("histogram", hist)
    if "coverage_skipped" in r:
        t.add_row("coverage", r["coverage_skipped"])
    t.add_row("written", r["out_dir"])
    out.print(t)
