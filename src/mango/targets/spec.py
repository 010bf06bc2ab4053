"""Target specs: what to maximize in a network, addressed by name.

``class:3``            the model's output number 3 (class logit / spike rate)
``layer1.0.conv1:17``  channel 17 of a layer, averaged over spatial positions
``features.3:17@4,5``  channel 17 at row 4, column 5
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import MangoError

_SPEC = re.compile(r"^(?P<layer>[A-Za-z_][\w.]*):(?P<unit>\d+)(?:@(?P<y>\d+),(?P<x>\d+))?$")
FORMS = "class:N, LAYER:UNIT or LAYER:UNIT@ROW,COL (e.g. class:3, lif2:17, conv1:5@4,4)"


@dataclass(frozen=True)
class TargetSpec:
    """A parsed target spec; ``layer is None`` means the model's class output."""

    layer: str | None
    unit: int
    position: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        def index(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 0

        if not index(self.unit):
            raise MangoError(f"target unit must be an integer >= 0, got {self.unit!r}; expected {FORMS}")
        if self.position is not None and not (len(self.position) == 2 and all(index(v) for v in self.position)):
            raise MangoError(f"target position must be two integers >= 0 (row, column), got {self.position!r}")

    @classmethod
    def parse(cls, text: str) -> TargetSpec:
        m = _SPEC.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise MangoError(f"malformed target spec {text!r}; expected {FORMS}")
        pos = (int(m["y"]), int(m["x"])) if m["y"] is not None else None
        if m["layer"] == "class":
            if pos is not None:
                raise MangoError(f"malformed target spec {text!r}: a class output has no position")
            return cls(None, int(m["unit"]))
        return cls(m["layer"], int(m["unit"]), pos)

    def __str__(self) -> str:
        head = "class" if self.layer is None else self.layer
        tail = f"@{self.position[0]},{self.position[1]}" if self.position else ""
        return f"{head}:{self.unit}{tail}"
