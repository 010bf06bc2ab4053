"""``--optimizer auto`` (the default): the method measured best for the generator's kind of latent.

* **Continuous latents** (SN-GAN, a box of floats), noise-free: ``image-model-sepcma``. Its first 240 images come
  from ``sepcma-2step`` (sep-CMA-ES whose first step is chosen from a large (0.2 box) and a small (1/16 box) one by
  one generation of each, :mod:`.two_step`); after them that search goes on, asking every other batch, and
  ``image-model``'s CNN models (:mod:`.image_model`), fitted on every image shown so far, ask the others
  (``alternate=true``). Sep-CMA-ES is the best method measured at 250 queries and the models the best at 1,000;
  the sep-CMA-ES's own batches keep a run whose models settle on a poor image improving up to 3,000. In the
  efficiency benchmark (mnist-snn, both draws, 5 seeds, told as the default runs; docs/benchmarks.md,
  "``image-model-sepcma``: the noise-free default") its median at 1,000
  queries reaches Portfolio's at 3,000 on 20 of the 22 units of the first draw that fire and 9 of 11 of the held-out
  draw (``sepcma-2step``: 19 and 8); over the 14 hidden-unit pairs that fire its median is above ``sepcma-2step``'s
  on 13 at 1,000 and on 10 at 3,000 (mean 0.519 against 0.498), and no baseline is ahead beyond the seed spread at
  any budget. On the default neuron it reaches 0.981 / 0.997 at
  500 / 1,000 queries against ``sepcma-2step``'s 0.922 / 0.956 (3 seeds). It costs about 0.1 s of CPU per image
  (a 3,000-query run: 2-4.5 minutes on one core, by how busy the machine is); a scan's units therefore keep
  ``sepcma-2step``, as does a generator whose images carry no gradient to the latent.
  **A noisy target** (``--noise``, a rig): ``image-model-noisy`` (:mod:`.image_model`) when the generator is a
  torch module whose images carry a gradient to the latent (else ``sepcma-2step``). Its CNN models are refitted to
  every response, so they average the trial-to-trial noise, where sep-CMA-ES ranks single trials at face value; its
  grid read-out (the models that weigh where a feature is) steers once its held-out error is lower at all
  (``grid_gain=1``), as noise pushes the ratio of errors towards 1. Under the efficiency benchmark's living-like
  noise (Poisson counts, slow drift; 5 seeds, the score being the noise-free response of the reported MEI) its
  median at 1,000 queries reaches Portfolio's at 3,000 on 42 of the 44 units that fire over three draws of units
  (cifar's with ``codes-noisy``; ``image-model``, the default before: 40), and one point in 88 is behind a
  baseline beyond the seed spread (four with ``image-model``). It mends class outputs whose runs had never let the
  grid steer (0.80 -> 0.95 at 250 queries on one) and gives up 0.01-0.03 on the ``lif1`` units, a channel's mean
  rate, where it stays above every baseline at 1,000 (docs/benchmarks.md, "``image-model-noisy``: the noisy
  default").
  With membrane noise on the default neuron (3 seeds) its reported MEI reads 0.947 / 0.988 noise-free at 250 /
  1,000 queries (``image-model``: 0.981 / 0.978; ``sepcma-2step``: 0.791 / 0.897; docs/benchmarks.md, "A noisy
  target"; ``benchmarks/results/optimizers-noisy-image-model-noisy``). It costs about 0.13 s of CPU per image:
  nothing beside a living neuron's presentation. A run with injected noise also re-measures its best candidates at
  the end (:data:`REMEASURE`) and reports the best *mean*; a rig run does so only when asked (``--remeasure N``),
  since its budget counts presentations.
* **Categorical latents** (the VQ-VAE's 8x8 codes of 512): ``codes``, a search that mutates codes as
  categories (:mod:`.discrete`). ``sepcma`` and the GA search a box mapped to codes by ``floor(x * 512)``,
  where neighbouring values are unrelated codes; on cifar-snn units ``codes`` ends far above both and above
  Nevergrad's NGOpt called directly over the codes (``benchmarks/categorical.py``, docs/benchmarks.md).
  **A noisy target**: ``codes-noisy``, the same search re-showing its parent every 4th ask and judging it
  by its mean, so a lucky count does not stay the parent (:class:`~.discrete.CodeSearch`, ``resample``).
  On a rig it shows blocks of :data:`RIG_BATCH` (20) images, not one at a time: blocks of 20 cost 10 % of
  the score at 1,000 presentations and 2 % at 3,000 under living-like noise (docs/benchmarks.md, "What
  batching costs ``codes``"), against a rig's time per block on every image.

**Silent units** (a spiking layer's unit of a noise-free model, no ``--readout`` given): the readout is
``rate+drive`` (:data:`DRIVE`). A unit that has not spiked yet tells the optimizer how close its membrane
came to the threshold, so the search climbs instead of wandering on a flat 0; from the batch of its first
spike on, the optimizer is told the rate itself, and the response recorded and reported is always the rate
(:mod:`mango.targets.drive`).
On codes, ``codes`` also starts over while nothing has responded (its ``restart``), every other time from
kicks of the best image so far (its ``kick``): with all three, 152, 153, 151, 153 and 151 of the 160 cifar-snn
``spiking1``/``spiking2`` units that some image makes fire did so within 1,000 queries with seeds 0-4 (5.0 %
still silent over the five; 153, 150, 152 and 152 with held-out seeds 5-8, 5.2 %; 148 with seed 0 before
restarts; ``benchmarks/silent.py``).

The choice is made once, when a run starts, and recorded: the run's ``config.json`` names the method chosen,
so a resumed run and its result say what actually ran.
"""
from __future__ import annotations

from ..generators.base import Generator
from .image_model import SEPSTART, ascendable

AUTO = "auto"
#: the default readout of a spiking unit in a noise-free run, and why
DRIVE = "rate+drive"
DRIVE_WHY = ("a spiking unit: until it spikes, its membrane's closeness to threshold guides the search; the "
             "reported response stays the spike rate")
#: a noisy run's default ``remeasure``: its 5 best candidates are shown this many more times at the end
REMEASURE = 5
#: a rig run's default batch (images per block) when the method chosen prefers fewer, and why
RIG_BATCH = 20
RIG_BATCH_WHY = ("a rig shows images in blocks, and a block of one image pays the rig's and MANGO's time per "
                 "block on every image")


def default_batch(preferred: int, budget: int, rig: bool) -> tuple[int, str | None]:
    """The batch when none is given: the method's preferred one, but at least :data:`RIG_BATCH` on a rig whose
    method ``auto`` chose (and why, when that applies). Runs and scans both take it from here."""
    if rig and preferred < RIG_BATCH:
        return min(RIG_BATCH, budget), RIG_BATCH_WHY
    return min(preferred, budget), None


def choose(gen: Generator, noisy: bool = False, scan: bool = False) -> tuple[str, str]:
    """The optimizer for ``gen``'s latent (and a noisy target; a scan's member) and why, in a few words."""
    space = gen.space
    if space.bounds is None:
        if noisy:
            return "codes-noisy", (f"the latent is categorical ({space.dim} codes of {space.size}) and the target "
                                   "noisy: codes, re-showing its parent and judging it by its mean")
        return "codes", (f"the latent is categorical ({space.dim} codes of {space.size}): codes mutates them as "
                         "categories")
    if noisy and ascendable(gen):
        return "image-model-noisy", (f"the latent is continuous ({space.dim} values) and the target noisy: a CNN "
                                     "model of the unit, fitted to every response (which averages the trial-to-trial "
                                     "noise), ascended through the generator; its read-out that weighs where a feature "
                                     "is steers once it predicts better at all")
    box = f"the latent is continuous ({space.dim} values in {list(space.bounds)})"
    if not scan and ascendable(gen):
        return "image-model-sepcma", (f"{box}: sep-CMA-ES for the first {SEPSTART} images, then it and a CNN model "
                                      "of the unit (fitted to every response, ascended through the generator) take "
                                      "turns; --optimizer sepcma-2step spends less CPU")
    return "sepcma-2step", (f"{box}: sep-CMA-ES, its first step chosen from two (one generation each)"
                            + ("; in a scan, not the model's CPU time (0.1 s an image) on every unit" if scan else ""))


def resolve(name: str, gen: Generator, noisy: bool = False, scan: bool = False) -> str:
    """``name``, or the method :func:`choose` picks when it is ``auto``."""
    return choose(gen, noisy, scan)[0] if name == AUTO else name
