"""Your own network as a target, named where ``--model`` takes a registered name.

=====================================  =================================================
``mypkg.nets:make_net``                 ``make_net`` imported from module ``mypkg.nets``
``path/to/nets.py:Net``                 ``Net`` from a Python file (a class is instantiated
                                        without arguments, a function called)
``path/to/net.pt`` (or ``.ts``)         a TorchScript archive (``torch.jit.save``)
=====================================  =================================================

MANGO never guesses what a network expects, so the input is declared:

* a Python module sets ``input_space = mango.imagespace.ImageSpace((3, 32, 32), mean, std)``
  or just ``input_shape = (3, 32, 32)`` (plain pixels in [0, 1]) on itself;
* a TorchScript archive carries ``mango.json`` —
  ``torch.jit.save(m, f, _extra_files={"mango.json": json.dumps({"input_shape": [3, 32, 32],
  "mean": None, "std": None, "resize": False})})``.

TorchScript does not run Python forward hooks, so a scripted network is targeted
by its outputs only (``class:N``, or its one layer ``output``); load the Python
module to address hidden layers.
Weights (``--model-weights``, a .pth state_dict or .safetensors) load into Python modules.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..checkpoints import load_state
from ..errors import MangoError, first_line
from ..imagespace import ImageSpace
from .base import MODELS

FORMS = "package.module:factory, path/to/file.py:factory or a TorchScript file .pt/.ts"
USER_PATH = re.compile(r"^(?P<where>.+\.py|[A-Za-z_][\w.]*):(?P<attr>[A-Za-z_]\w*)$")
SCRIPT_SUFFIXES = (".pt", ".ts")
DECLARE = ("declare its input: set input_space = mango.imagespace.ImageSpace((C, H, W), mean, std) or "
           "input_shape = (C, H, W) (plain [0, 1] pixels) on the module")


def is_user_model(name: str) -> bool:
    """Does ``name`` look like a user module (rather than a misspelt registered model)?"""
    return bool(USER_PATH.match(name)) or name.lower().endswith(SCRIPT_SUFFIXES)


def space_from_json(data: object, where: str) -> ImageSpace:
    """``{"input_shape": [C, H, W], "mean": [...] | null, "std": [...] | null, "resize": bool}``."""
    keys = {"input_shape", "mean", "std", "resize"}
    if not isinstance(data, dict) or "input_shape" not in data or set(data) - keys:
        raise MangoError(f"{where} must be a JSON object with input_shape [C, H, W] and optional mean, std, "
                         f"resize; got {json.dumps(data)[:200]}")
    shape = data["input_shape"]
    if not (isinstance(shape, list) and len(shape) == 3 and all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise MangoError(f"{where}: input_shape must be three positive integers [C, H, W], got {shape!r}")
    try:
        return ImageSpace(tuple(shape), data.get("mean"), data.get("std"), data.get("resize", False))
    except (TypeError, ValueError) as exc:
        raise MangoError(f"{where}: {first_line(exc)}") from None


def declare_input(model: nn.Module, name: str) -> nn.Module:
    """Check the module's declared input and give it both ``input_space`` and ``input_shape``."""
    space, shape = getattr(model, "input_space", None), getattr(model, "input_shape", None)
    if isinstance(space, dict):
        space = space_from_json(space, f"input_space of {name!r}")
    if space is None and shape is not None:
        if not (isinstance(shape, (tuple, list, torch.Size)) and len(shape) == 3
                and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise MangoError(f"input_shape of {name!r} must be three positive integers (C, H, W), got {shape!r}")
        space = ImageSpace(tuple(shape))
    if not isinstance(space, ImageSpace):
        raise MangoError(f"model {name!r} does not declare its input; {DECLARE}")
    # plain attributes on the module (nn.Module types attribute assignment as tensors or submodules)
    model.input_space, model.input_shape = space, tuple(space.shape)  # type: ignore[assignment]
    return model


def import_module_of(where: str, name: str) -> object:
    """The Python module ``where`` (a dotted name or a .py file) of the user object named ``name``."""
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise MangoError(f"model file not found: {where} (in {name!r})")
        key = f"mango_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        if key not in sys.modules:
            spec = importlib.util.spec_from_file_location(key, path)
            if spec is None or spec.loader is None:  # never for a .py file
                raise MangoError(f"cannot import {where} (in {name!r})")
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module  # so classes defined there can be pickled / introspected
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
        return sys.modules[key]
    try:
        return importlib.import_module(where)
    except ModuleNotFoundError as exc:
        # the named module (or its package) is missing, not something it imports
        if exc.name and (where == exc.name or where.startswith(exc.name + ".")):
            raise MangoError(f"no Python module {where!r} (in {name!r}); is its package installed or on "
                             f"PYTHONPATH? expected {FORMS}") from None
        raise


def load_python(name: str, weights: str | None = None) -> nn.Module:
    """``module:factory`` -> the module the factory returns (a class is instantiated)."""
    m = USER_PATH.match(name)
    if m is None:
        raise MangoError(f"malformed model {name!r}; expected {FORMS}")
    module = import_module_of(m["where"], name)
    obj = getattr(module, m["attr"], None)
    if obj is None:
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise MangoError(f"{m['where']} has no {m['attr']!r}; callables there: {', '.join(found)}")
    model = obj if isinstance(obj, nn.Module) else obj() if callable(obj) else obj
    if not isinstance(model, nn.Module):
        raise MangoError(f"{name!r} gave a {type(model).__name__}, not a torch nn.Module")
    model = declare_input(model, name)
    if weights and weights != "none":
        load_state(model, weights)
    return model.eval()


class ScriptedModel(nn.Module):
    """A TorchScript network behind a plain module, its inner layers hidden from hooks.

    TorchScript runs its submodules without Python forward hooks (registering one
    raises), so only the outputs are addressable: ``class:N``, or the one listed
    layer ``output`` (the same values, read with the layer readouts).
    """

    def __init__(self, script: torch.jit.ScriptModule, space: ImageSpace) -> None:
        super().__init__()
        self.script, self.input_space, self.input_shape = script, space, tuple(space.shape)
        self.output = nn.Identity()

    def named_modules(self, memo=None, prefix: str = "", remove_duplicate: bool = True) -> Iterator:
        yield prefix, self
        yield prefix + ("." if prefix else "") + "output", self.output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.script(x))


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, str]:
    """A TorchScript archive and the text of its ``mango.json`` ("" when absent); one-line errors."""
    if not Path(path).is_file():
        raise MangoError(f"TorchScript file not found: {path}")
    extra = {"mango.json": ""}
    try:
        script = torch.jit.load(path, map_location="cpu", _extra_files=extra)
    except Exception as exc:  # a plain torch.save pickle, a truncated archive
        first = first_line(exc)[:160]
        raise MangoError(f"cannot load {path} as TorchScript (torch.jit.save): {type(exc).__name__}: {first}") from None
    text = extra["mango.json"]
    return script, text.decode() if isinstance(text, bytes) else text


def load_script(path: str, weights: str | None = None) -> ScriptedModel:
    """A TorchScript archive with its ``mango.json`` input declaration."""
    if weights and weights != "none":
        raise MangoError(f"TorchScript file {path} carries its own weights; do not pass weights {weights!r}")
    script, text = load_torchscript(path)
    if not text:
        raise MangoError(f"TorchScript file {path} does not declare its input: save it with torch.jit.save(m, f, "
                         f'_extra_files={{"mango.json": json.dumps({{"input_shape": [C, H, W], "mean": null, '
                         f'"std": null, "resize": false}})}})')
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MangoError(f"mango.json in {path} is not valid JSON: {exc}") from None
    return ScriptedModel(script, space_from_json(data, f"mango.json in {path}")).eval()


@MODELS.register_fallback("MODULE:FACTORY", is_user_model,
                          doc=f"your own network: {FORMS} (declares its input; see README)")
def user_model(name: str, weights: str | None = None) -> nn.Module:
    """A user network named by ``module:factory``, ``file.py:factory`` or a TorchScript path."""
    return load_script(name, weights) if name.lower().endswith(SCRIPT_SUFFIXES) else load_python(name, weights)
