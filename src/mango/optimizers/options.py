"""Optimizer options, checked in one place against the type hints of the optimizer's constructor.

Options arrive as JSON (``--opt grid=true``, ``cma+popsize=20``, a stored config): a truthy string such as
``grid=maybe`` or a float popsize must be refused with one line, not accepted or turned into a traceback
deep inside a method. Every registered optimizer is a :class:`Preset` (class + preset defaults + fixed
arguments); calling it checks the options against ``cls.__init__``'s hints and builds the optimizer:

* ``bool``: only ``true``/``false``; ``int``: integers (an integral float such as ``20.0`` too), never
  bools; ``float``: finite numbers; ``str``: text; ``Literal[...]``: one of its values; ``X | None``: also
  ``null``. Values are converted (``int`` -> ``float``) before the constructor sees them.
* names other than the constructor's options are refused, listing the allowed ones; arguments a preset
  fixes (``sepcma``'s ``separable``, ``ng-cma``'s ``method``) are not options.

Range checks (``popsize >= 2``) stay in the classes, next to the meaning of the numbers.
"""
from __future__ import annotations

import inspect
import math
import typing
from functools import cache, partial
from numbers import Integral, Real
from types import NoneType, UnionType
from typing import Any, Literal

import numpy as np

from ..errors import MangoError
from .base import OPTIMIZERS, Optimizer


@cache
def option_hints(cls: type[Optimizer]) -> dict[str, Any]:
    """Option name -> type hint: the constructor's parameters after the space and the seed."""
    params = list(inspect.signature(cls.__init__).parameters.values())[2:]  # self, space
    hints = typing.get_type_hints(cls.__init__)
    return {p.name: hints.get(p.name, Any) for p in params
            if p.name not in ("seed", "generator") and p.kind is p.POSITIONAL_OR_KEYWORD}


def _convert(value: Any, hint: Any) -> tuple[bool, Any, str]:
    """``(ok, converted value, what is expected)`` for ``value`` against one type hint."""
    nullable = False
    if typing.get_origin(hint) in (typing.Union, UnionType):
        args = [a for a in typing.get_args(hint) if a is not NoneType]
        nullable, hint = len(args) < len(typing.get_args(hint)), args[0] if len(args) == 1 else Any
    is_bool = isinstance(value, (bool, np.bool_))
    if hint is bool:
        ok, out, what = is_bool, bool(value) if is_bool else value, "true or false"
    elif hint is int:
        ok = not is_bool and (isinstance(value, Integral)
                              or (isinstance(value, float) and math.isfinite(value) and value.is_integer()))
        out, what = int(value) if ok else value, "an integer"
    elif hint is float:
        ok = not is_bool and isinstance(value, Real) and math.isfinite(value)
        out, what = float(value) if ok else value, "a finite number"
    elif hint is str:
        ok, out, what = isinstance(value, str), value, "a string"
    elif typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        ok, out, what = value in choices, value, "one of " + ", ".join(map(repr, choices))
    else:
        ok, out, what = True, value, "anything"
    if value is None and nullable:
        return True, None, what
    return ok, out, what + (" or null" if nullable else "")


def check_options(label: str, cls: type[Optimizer], options: dict[str, Any],
                  fixed: frozenset[str] = frozenset()) -> dict:
    """``options`` checked and converted for optimizer ``label`` (built by ``cls``); one-line ``MangoError`` else."""
    hints = {k: v for k, v in option_hints(cls).items() if k not in fixed}
    out = {}
    for key, value in options.items():
        if key not in hints:
            allowed = ", ".join(sorted(hints)) or "none"
            raise MangoError(f"unknown option {key!r} for optimizer {label!r}; allowed: {allowed}")
        ok, out[key], what = _convert(value, hints[key])
        if not ok:
            raise MangoError(f"bad option {key}={value!r} for optimizer {label!r}: expected {what}")
    return out


class Preset:
    """A registered optimizer: ``cls`` with preset ``defaults`` (overridable) and ``fixed`` arguments.

    ``prefix_arg``: for a prefix family (``ng:NAME``) the registry passes the name's suffix first; it becomes
    this fixed argument (``method``).
    """

    def __init__(self, name: str, cls: type[Optimizer], fixed: dict | None = None, prefix_arg: str | None = None,
                 **defaults: Any) -> None:
        self.name, self.cls, self.prefix_arg = name, cls, prefix_arg
        self.fixed = dict(fixed or {})
        self.not_options = frozenset(self.fixed) | ({prefix_arg} if prefix_arg else set())
        self.defaults = check_options(name, cls, defaults, self.not_options)

    def options(self) -> list[str]:
        """The option names a user may set."""
        return sorted(set(option_hints(self.cls)) - self.not_options)

    def __call__(self, *args: Any, seed: int = 0, generator: Any = None, **options: Any) -> Optimizer:
        """``generator`` reaches only a method that searches through it (``needs_generator``)."""
        fixed, label, positional = dict(self.fixed), self.name, list(args)
        if self.prefix_arg is not None:
            suffix = positional.pop(0)
            fixed[self.prefix_arg], label = suffix, self.name + suffix
        space, *rest = positional
        if len(rest) > 1:
            raise TypeError(f"optimizer {label!r} takes (space, seed=0, **options), got {len(args)} positional args")
        seed = rest[0] if rest else seed
        checked = check_options(label, self.cls, options, frozenset(fixed))
        if getattr(self.cls, "needs_generator", False):
            fixed["generator"] = generator
        return self.cls(space, seed=seed, **{**self.defaults, **checked, **fixed})


def register(name: str, cls: type[Optimizer], doc: str, fixed: dict | None = None, **defaults: Any) -> Preset:
    """Register optimizer ``name`` (one line per entry): ``cls`` with preset defaults and fixed arguments."""
    preset = Preset(name, cls, fixed, **defaults)
    OPTIMIZERS.register(name, doc)(preset)
    return preset


def create(name: str, generator: Any, seed: int, options: dict) -> Optimizer:
    """Optimizer ``name`` over ``generator``'s latent, as runs and scans make it. A registered preset is also
    handed the generator, which only a method that searches through it (``needs_generator``) takes; a factory
    registered by hand is called as ``(space, seed=..., **options)``."""
    factory = OPTIMIZERS.get(name)
    preset = isinstance(factory.func if isinstance(factory, partial) else factory, Preset)
    return factory(generator.space, seed=seed, **({"generator": generator} if preset else {}), **options)
