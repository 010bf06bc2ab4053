"""Group objectives: a weighted sum of units of one layer, e.g. a unit against the others.

    u3 + u7                 two units together
    u3 - mean(*)            unit 3 against the layer's mean: a *selective* stimulus for unit 3
    u - 0.5*mean(0-31)      in a scan, ``u`` is the unit being scanned
    2*u3 - u4 - u5          any linear combination; coefficients are numbers

Terms are ``[COEF*]uK``, ``[COEF*]u`` or ``[COEF*]mean(SEL)`` with ``SEL`` a unit selector (``*``, ``A-B``,
``i,j,k``), joined by ``+`` and ``-``. The objective is linear in the units' responses, so a
multi-unit target computes it from one forward pass.
"""
from __future__ import annotations

import re

import torch

from ..errors import MangoError
from .base import Target

_TERM = re.compile(r"\s*(?P<sign>[+-])?\s*(?:(?P<coef>\d+(?:\.\d*)?(?:e-?\d+)?)\s*\*\s*)?"
                   r"(?:u(?P<unit>\d+)?|mean\((?P<sel>[^)]*)\))\s*")


def parse_objective(expr: str, n_units: int, unit: int | None = None) -> dict[int, float]:
    """``expr`` -> weight per unit (units with weight 0 left out); one-line MangoError naming a bad term."""
    from .spec import _unit_set

    if not isinstance(expr, str) or not expr.strip():
        raise MangoError(f"empty objective {expr!r}; e.g. 'u3 - mean(*)'")
    weights: dict[int, float] = {}
    pos, text = 0, expr.strip()
    while pos < len(text):
        m = _TERM.match(text, pos)
        if m is None or m.end() == pos or (pos > 0 and m["sign"] is None):
            raise MangoError(f"malformed objective {expr!r} at {text[pos:pos + 12]!r}; terms are [COEF*]uK, "
                             "[COEF*]u or [COEF*]mean(SEL) joined by + and -, e.g. 'u3 - mean(*)'")
        coef = float(m["coef"] or 1.0) * (-1.0 if m["sign"] == "-" else 1.0)
        if m["sel"] is not None:
            sel = m["sel"].strip()
            chosen = _unit_set(sel, f"mean({sel})")
            members: list[int] = list(range(n_units)) if chosen == "all" else list(chosen)
        elif m["unit"] is not None:
            members = [int(m["unit"])]
        elif unit is not None:
            members = [unit]
        else:
            raise MangoError(f"objective {expr!r} uses 'u' (the scanned unit) outside a scan; name the unit: uK")
        bad = [u for u in members if u >= n_units]
        if bad:
            raise MangoError(f"objective {expr!r} names unit {bad[0]}, but the layer has {n_units} units "
                             f"(0..{n_units - 1})")
        for u in members:
            weights[u] = weights.get(u, 0.0) + coef / len(members)
        pos = m.end()
    out = {u: w for u, w in sorted(weights.items()) if w != 0.0}
    if not out:
        raise MangoError(f"objective {expr!r} cancels out: every unit has weight 0")
    return out


class WeightedTarget(Target):
    """One response per image: ``weights . responses`` of a multi-unit target's units."""

    def __init__(self, inner: Target, weights: dict[int, float], units: tuple[int, ...], expr: str) -> None:
        self.inner, self.expr = inner, expr
        self.name, self.input_shape = inner.name, inner.input_shape
        self.spec = getattr(inner, "spec", None)
        self._input_space = inner.input_space
        self.w = torch.tensor([weights.get(u, 0.0) for u in units], dtype=torch.float64)

    def responses(self, images: torch.Tensor) -> torch.Tensor:
        return (torch.as_tensor(self.inner.responses(images)).double() @ self.w)[:, None]

    def reseed(self, key: int) -> None:
        self.inner.reseed(key)

    def describe(self) -> dict:
        return {**self.inner.describe(), "objective": self.expr}
