"""``--optimizer auto`` (the default): the method measured best for the generator's kind of latent.

* **Continuous latents** (SN-GAN, a box of floats): ``sepcma``. On the default neuron it reaches the best
  result at 3,000 queries of every method measured (README, "Why sepcma is the default").
* **Categorical latents** (the VQ-VAE's 8x8 codes of 512): ``codes``, a search that mutates codes as
  categories (:mod:`.discrete`). ``sepcma`` and the GA search a box mapped to codes by ``floor(x * 512)``,
  where neighbouring values are unrelated codes; on cifar-snn units ``codes`` ends far above both and above
  Nevergrad's NGOpt called directly over the codes (``benchmarks/categorical.py``, docs/benchmarks.md).

The choice is made once, when a run starts, and recorded: the run's ``config.json`` names the method chosen,
so a resumed run and its result say what actually ran.
"""
from __future__ import annotations

from ..generators.space import LatentSpace

AUTO = "auto"


def choose(space: LatentSpace) -> tuple[str, str]:
    """The optimizer for ``space`` and why, in a few words."""
    if space.bounds is None:
        return "codes", (f"the latent is categorical ({space.dim} codes of {space.size}): codes mutates them as "
                         "categories")
    return "sepcma", f"the latent is continuous ({space.dim} values in {list(space.bounds)}): sep-CMA-ES"


def resolve(name: str, space: LatentSpace) -> str:
    """``name``, or the method :func:`choose` picks when it is ``auto``."""
    return choose(space)[0] if name == AUTO else name
