"""Target specs: what to maximize in a network, addressed by name.

One unit (``TargetSpec.unit``; responses ``[B, 1]``):

``class:3``            the model's output number 3 (class logit / spike rate)
``layer1.0.conv1:17``  channel 17 of a layer, averaged over spatial positions
``features.3:17@4,5``  channel 17 at row 4, column 5

Many units of one layer, measured by one forward pass (``TargetSpec.units``;
responses ``[B, U]``, one column per unit in the order written):

``lif2:*``             every unit of the layer (``units == "all"``, resolved against the
                       layer's unit count when the target is built)
``lif2:3-7``           units 3, 4, 5, 6, 7 (an inclusive range)
``lif2:1,5,9``         a list; its items may be ranges (``lif2:0-3,8``)
``conv2:1,5@1,1``      any of these at one position
``class:*``, ``class:0-4``, ``class:1,3``   class outputs

A unit set is never empty and names each unit once. ``str(spec)`` prints the
canonical form (ascending runs as ``A-B``), which parses back to an equal spec;
single-unit specs print exactly as before (run folders store them).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import MangoError

_SEL = r"\*|\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*"
_SPEC = re.compile(rf"^(?P<layer>[A-Za-z_][\w.]*):(?P<sel>{_SEL})(?:@(?P<y>\d+),(?P<x>\d+))?$")
FORMS = ("class:N, LAYER:UNIT or LAYER:UNIT@ROW,COL (e.g. class:3, lif2:17, conv1:5@4,4); "
         "many units: LAYER:*, LAYER:A-B, LAYER:i,j,k (also class:*, class:A-B, class:i,j)")
#: no layer has more units; a larger range is a typo, refused before a huge tuple is built
MAX_UNITS = 1 << 20

Units = tuple[int, ...] | Literal["all"]


def _index(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _duplicate(units: Sequence[int]) -> int | None:
    seen: set[int] = set()
    for u in units:
        if u in seen:
            return u
        seen.add(u)
    return None


def _runs(units: tuple[int, ...]) -> str:
    """``(1, 2, 3, 7)`` -> ``"1-3,7"``; a lone unit set prints ``"5-5"`` so it stays a set, not ``unit``."""
    if len(units) == 1:
        return f"{units[0]}-{units[0]}"
    parts, start = [], 0
    for i in range(1, len(units) + 1):
        if i == len(units) or units[i] != units[i - 1] + 1:
            a, b = units[start], units[i - 1]
            parts.append(str(a) if a == b else f"{a}-{b}")
            start = i
    return ",".join(parts)


def _unit_set(sel: str, text: str) -> Units:
    """The units named by the selector of ``text`` (``*``, ``A-B``, ``i,j,k`` or a mix of items)."""
    if sel == "*":
        return "all"
    units: list[int] = []
    for item in sel.split(","):
        a, _, b = item.partition("-")
        lo, hi = int(a), int(b or a)
        if hi < lo:
            raise MangoError(f"empty unit set {text!r}: range {item} runs backwards (write A-B with A <= B)")
        if len(units) + hi - lo + 1 > MAX_UNITS:
            raise MangoError(f"unit set {text!r} is too large: at most {MAX_UNITS} units")
        units.extend(range(lo, hi + 1))
    dup = _duplicate(units)
    if dup is not None:
        raise MangoError(f"unit {dup} appears twice in {text!r}; name each unit once")
    return tuple(units)


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target spec; ``layer is None`` means the model's class output.

    Exactly one of ``unit`` (one unit: the form every run folder before multi-unit targets
    stores) and ``units`` (a tuple of units in response order, or ``"all"``) is set.
    """

    layer: str | None
    unit: int | None = None
    position: tuple[int, int] | None = None
    units: Units | None = None

    def __post_init__(self) -> None:
        if self.units is None:
            if not _index(self.unit):
                raise MangoError(f"target unit must be an integer >= 0, got {self.unit!r}; expected {FORMS}")
        else:
            self._check_units()
        if self.position is not None and not (len(self.position) == 2 and all(_index(v) for v in self.position)):
            raise MangoError(f"target position must be two integers >= 0 (row, column), got {self.position!r}")

    def _check_units(self) -> None:
        if self.unit is not None:
            raise MangoError(f"a target spec takes unit or units, not both: got unit={self.unit!r}, "
                             f"units={self.units!r}")
        units = self.units
        if units == "all":
            return
        if isinstance(units, (list, range)):  # a sequence given by hand: stored as the tuple it means
            units = tuple(units)
            object.__setattr__(self, "units", units)
        if not isinstance(units, tuple) or not all(_index(u) for u in units):
            raise MangoError(f"target units must be 'all' or integers >= 0, got {self.units!r}; expected {FORMS}")
        if not units:
            raise MangoError("empty unit set: units=() selects no unit; give at least one")
        dup = _duplicate(units)
        if dup is not None:
            raise MangoError(f"unit {dup} appears twice in units {units}; name each unit once")

    @classmethod
    def parse(cls, text: str) -> TargetSpec:
        m = _SPEC.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise MangoError(f"malformed target spec {text!r}; expected {FORMS}")
        pos = (int(m["y"]), int(m["x"])) if m["y"] is not None else None
        layer = None if m["layer"] == "class" else m["layer"]
        if layer is None and pos is not None:
            raise MangoError(f"malformed target spec {text!r}: a class output has no position")
        if m["sel"].isdigit():
            return cls(layer, int(m["sel"]), pos)
        return cls(layer, position=pos, units=_unit_set(m["sel"], text.strip()))

    @property
    def multi(self) -> bool:
        """A unit set (``units``), even of one unit, rather than the single-unit form (``unit``)."""
        return self.units is not None

    def resolve(self, count: int, model: str = "model") -> tuple[int, ...]:
        """The selected units, in response order, of a layer (or class output) with ``count`` units.

        ``model`` names the network in the error for a class out of range, as for one unit.
        """
        if isinstance(self.units, tuple):
            units = self.units
        elif self.units == "all":
            units = tuple(range(count))
        else:
            units = (self.unit,) if self.unit is not None else ()
        if not units:
            raise MangoError(f"empty unit set {str(self)!r}: the layer has no units")
        bad = next((u for u in units if u >= count), None)
        if bad is None:
            return units
        where = f" (in {str(self)!r})" if self.multi else ""
        if self.layer is None:
            raise MangoError(f"class {bad} out of range for {model!r}: it has {count} outputs "
                             f"(0..{count - 1}){where}")
        raise MangoError(f"unit {bad} out of range for layer {self.layer!r}: it has {count} units "
                         f"(0..{count - 1}){where}")

    def __str__(self) -> str:
        head = "class" if self.layer is None else self.layer
        tail = f"@{self.position[0]},{self.position[1]}" if self.position else ""
        if self.units is None:
            sel = str(self.unit)
        else:
            sel = _runs(self.units) if isinstance(self.units, tuple) else "*"
        return f"{head}:{sel}{tail}"
