"""Trial-to-trial variability, injected explicitly and seeded.

A LIF network shown a static image is deterministic (identical inputs give
bit-identical spike counts), so repeating a presentation only repeats the
cost. To study noisy neurons, add noise on purpose:

``input:S``     Gaussian pixel noise of sd S (in the network's input units) on
                every presentation; fresh at every time step in spiking networks
``membrane:S``  Gaussian current of sd S added to every spiking layer at every step
``poisson``     rate coding: each pixel (in [0, 1]) spikes at each step with
                probability equal to its intensity

Combine with commas, e.g. ``poisson,membrane:0.1``. The run seeds the noise
per batch, so a resumed run draws the same noise as an uninterrupted one.

Several units of one layer in one target (``lif2:*``): each unit gets exactly
the noise its one-unit target draws under the same seed, so each response
column is that target's, bit for bit. Input and Poisson noise (on the image)
and the membrane noise of layers computed whole are shared by all units
anyway. The spiking layers that the fast simulation (mnist-snn, cifar-snn)
computes only for the target channels -- the target layer, or the output layer
for ``class:N`` -- draw their membrane noise for one channel and add it to
each, as a one-unit target does: there the units' membrane noise is one draw,
fully correlated across units (as between one-unit targets of one layer under
one seed), and averaging responses over units does not average it out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import MangoError

FORMS = "input:SD, membrane:SD, poisson, comma-separated (e.g. input:0.1,membrane:0.05)"


def _level(value: str, text: str) -> float:
    """A noise SD: a finite number >= 0 (``inf`` would drown every response, ``nan`` poison it)."""
    try:
        sd = float(value)
    except ValueError:
        raise MangoError(f"bad noise level {value!r} in {text!r}: expected a number >= 0, e.g. input:0.1") from None
    if not (math.isfinite(sd) and sd >= 0):
        raise MangoError(f"noise level must be a finite number >= 0, got {value!r} in {text!r}")
    return sd


@dataclass(frozen=True)
class Noise:
    input_sd: float = 0.0
    membrane_sd: float = 0.0
    poisson: bool = False

    def __post_init__(self) -> None:
        for name in ("input", "membrane"):
            sd = getattr(self, f"{name}_sd")
            if isinstance(sd, bool) or not isinstance(sd, (int, float)) or not (math.isfinite(sd) and sd >= 0):
                raise MangoError(f"noise {name}_sd must be a finite number >= 0, got {sd!r}")
        if not isinstance(self.poisson, bool):
            raise MangoError(f"noise poisson must be true or false, got {self.poisson!r}")

    @classmethod
    def parse(cls, text: str | None) -> Noise | None:
        if text is None or not text.strip() or text.strip() == "none":
            return None
        kw: dict = {}
        for part in text.split(","):
            level: bool | float
            name, _, value = part.strip().partition(":")
            if name == "poisson" and not value:
                key, level = "poisson", True
            elif name in ("input", "membrane") and value:
                key, level = f"{name}_sd", _level(value, text)
            else:
                raise MangoError(f"bad noise {part.strip()!r} in {text!r}; allowed: {FORMS}")
            if key in kw:
                raise MangoError(f"noise {name!r} given twice in {text!r}; give each kind once: {FORMS}")
            kw[key] = level
        return cls(**kw)

    def __str__(self) -> str:
        parts = [f"input:{self.input_sd:g}"] * (self.input_sd > 0) + [f"membrane:{self.membrane_sd:g}"] * (
            self.membrane_sd > 0) + ["poisson"] * self.poisson
        return ",".join(parts) or "none"

    @property
    def per_step(self) -> bool:
        """Noise that needs the network's explicit time loop (not just a noisy image)."""
        return self.membrane_sd > 0 or self.poisson
