"""Is a (trained) generator any good for MEI search?  ``check_generator`` / ``mango check gen``.

Three looks, each cheap and written to a folder:

* ``samples.png`` -- 64 images from random grid latents: what an optimizer sees before it has learnt anything;
* ``reconstructions.png`` (generators with ``encode``, e.g. the VQ-VAE) -- rows of originals, each followed
  by their reconstructions, from a dataset's held-out images or else the generator's own samples: can a real
  image be placed in the latent space at all?
* coverage -- a classifier's class histogram and mean max-probability on ``n`` generated samples: does the
  latent space reach every class, and with confident (image-like) samples?  ``mnist-sngan`` is judged by
  ``mnist-snn``, the CIFAR generators by ``cifar-snn`` (a MANGO release file, see
  :func:`mango.checkpoints.release_file`); ``classifier="none"`` skips it.

Everything also goes to ``check.json``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from ..errors import MangoError
from ..generators import Generator, make_generator
from ..generators.base import Encoder
from ..imagespace import ImageSpace, adapter
from ..targets import make_model
from ..targets.base import model_input_space
from .common import input_fitter, load_batch, positive, training_data
from .targets import class_logits

DEFAULT_CLASSIFIER = {"mnist-sngan": "mnist-snn", "cifar-vqvae": "cifar-snn", "cifar-sngan": "cifar-snn",
                      "cifar-sngan-lite": "cifar-snn"}
CHUNK = 100


@torch.no_grad()
def _decode(gen: Generator, z: torch.Tensor) -> torch.Tensor:
    return torch.cat([gen.decode(z[i:i + CHUNK]) for i in range(0, len(z), CHUNK)])


def coverage(images: torch.Tensor, space: ImageSpace, classifier: str, weights: str | None = None) -> dict:
    """Class histogram, classes reached, histogram entropy and mean max-probability of ``classifier`` on images."""
    net = make_model(classifier, weights).eval()
    net_space = model_input_space(net)
    convert = adapter(space, net_space, "generator", f"classifier {classifier!r}")
    with torch.no_grad():
        logits = torch.cat([class_logits(net, convert(x) if convert else x) for x in images.split(CHUNK)])
    prob = logits.softmax(1)
    counts = torch.bincount(prob.argmax(1), minlength=prob.shape[1])
    freq = counts[counts > 0].double() / len(images)
    return {"classifier": classifier, "samples": len(images), "n_classes": prob.shape[1],
            "classes_hit": int((counts > 0).sum()),
            "histogram": {str(c): int(counts[c]) for c in counts.nonzero()[:, 0].tolist()},
            "histogram_entropy_bits": round(float(-(freq * freq.log2()).sum()), 4),
            "max_entropy_bits": round(math.log2(prob.shape[1]), 4),
            "mean_max_prob": round(float(prob.max(1).values.mean()), 4)}


def reconstructions(gen: Generator, path: Path, dataset: str | None = None, resize: bool = False, n: int = 16,
                    seed: int = 0, root: str | Path | None = None, download: bool = False) -> dict:
    """Encode then decode ``n`` images (a dataset's held-out ones, else the generator's own samples); save a grid."""
    if not isinstance(gen, Encoder):
        raise MangoError(f"generator {gen.name!r} has no encode(images): it cannot reconstruct images")
    g = torch.Generator().manual_seed(seed + 1)
    codes = None
    if dataset is not None:
        ds = training_data(dataset, "val" if dataset == "imagenet" else "test", None, seed, root, download)
        fit = input_fitter(dataset, ds[0][0].shape, gen.image_space, resize, f"generator {gen.name!r}")
        originals = fit(load_batch(ds, torch.randperm(len(ds), generator=g)[:n])[0])
        source = f"{dataset} held-out images"
    else:
        codes = torch.randint(0, gen.space.size, (n, gen.space.dim), generator=g)
        originals, source = _decode(gen, codes), "the generator's own samples (random codes)"
    encoded = gen.encode(originals)
    recon = _decode(gen, encoded)
    unit_o, unit_r = (gen.image_space.to_unit(x).clamp(0, 1) for x in (originals, recon))
    rows = [t for i in range(0, len(unit_o), 8) for t in (unit_o[i:i + 8], unit_r[i:i + 8])]
    save_image(torch.cat(rows), path, nrow=8)
    mse = round(float((unit_o - unit_r).pow(2).mean()), 5)
    report = {"source": source, "images": len(originals), "mse_pixels": mse, "grid": path.name}
    if codes is not None:
        report["code_agreement"] = round(float((encoded.cpu() == codes).float().mean()), 4)
    return report


def check_generator(name: str, weights: str | None = None, classifier: str | None = None,
                    classifier_weights: str | None = None, out_dir: str | Path | None = None, n: int = 400,
                    dataset: str | None = None, resize: bool = False, seed: int = 0,
                    root: str | Path | None = None, download: bool = False) -> dict:
    """Sample grid, reconstructions (if the generator encodes) and classifier coverage of generator ``name``.

    ``classifier`` defaults to the generator's natural judge (``DEFAULT_CLASSIFIER``); ``"none"`` skips
    coverage. Writes ``samples.png``, ``reconstructions.png`` and ``check.json`` into ``out_dir``
    (default ``checks/NAME``) and returns the report.
    """
    positive("n", n)
    gen = make_generator(name, weights)
    out = Path(out_dir) if out_dir is not None else Path("checks") / name
    out.mkdir(parents=True, exist_ok=True)
    z = torch.randint(0, gen.space.size, (n, gen.space.dim), generator=torch.Generator().manual_seed(seed))
    images = _decode(gen, z)
    unit = gen.image_space.to_unit(images).clamp(0, 1)
    save_image(unit[:64], out / "samples.png", nrow=8)
    report: dict = {"generator": name, "weights": None if weights is None else str(weights), "samples": n,
                    "seed": seed, "image_space": gen.image_space.describe(),
                    "pixel_std_across_samples": round(float(unit.std(0).mean()), 4), "grid": "samples.png"}
    if isinstance(gen, Encoder):
        report["reconstruction"] = reconstructions(gen, out / "reconstructions.png", dataset, resize, seed=seed,
                                                   root=root, download=download)
    judge = classifier or DEFAULT_CLASSIFIER.get(name)
    if judge and judge != "none":
        try:
            report["coverage"] = coverage(images, gen.image_space, judge, classifier_weights)
        except MangoError as exc:
            if classifier is not None:  # asked for by name: its failure is the user's to fix
                raise
            report["coverage_skipped"] = f"default classifier {judge!r} unavailable: {exc}"
    (out / "check.json").write_text(json.dumps(report, indent=2) + "\n")
    report["out_dir"] = str(out)
    return report
