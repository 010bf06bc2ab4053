"""Your own generator, named where ``--generator`` takes a registered name.

``mypkg.gens:make_gen`` / ``path/to/gens.py:Gen`` name a factory (a class is
instantiated without arguments) returning either a :class:`Generator` or a
torch module that declares its latent space and images::

    class Gen(nn.Module):
        latent_space = mango.LatentSpace(128, 64, (-4.0, 4.0))   # what optimizers search
        image_space = mango.imagespace.ImageSpace((3, 32, 32))    # or image_shape = (3, 32, 32)
        def forward(self, z): ...                                 # latent values -> images

``path/to/gen.pt`` (or ``.ts``) is a TorchScript archive carrying the same
declaration as ``mango.json``: ``{"latent": {"dim": 128, "size": 64, "bounds":
[-4, 4]}, "image_shape": [3, 32, 32], "mean": null, "std": null}``.
Weights (``--generator-weights``) load into Python modules.
"""
from __future__ import annotations

import json

from torch import nn

from ..checkpoints import build, load_state
from ..errors import MangoError
from ..imagespace import ImageSpace
from ..targets.user_module import FORMS, SCRIPT_SUFFIXES, USER_PATH, import_module_of, is_user_model, load_torchscript
from .base import GENERATORS, Generator, TorchGenerator
from .space import LatentSpace

DECLARE = ("declare the latent space and images: set latent_space = mango.LatentSpace(dim, size, bounds) and "
           "image_space = mango.imagespace.ImageSpace((C, H, W), mean, std) (or image_shape) on the module")


def _space(data: object, where: str) -> LatentSpace:
    if isinstance(data, LatentSpace):
        return data
    if isinstance(data, dict) and {"dim", "size"} <= set(data) and set(data) <= {"dim", "size", "bounds"}:
        return build(LatentSpace, data, f"latent space of generator {where!r}")
    raise MangoError(f"generator {where!r}: latent space must be a LatentSpace or {{dim, size, bounds}}, got "
                     f"{data!r:.100}; {DECLARE}")


def _images(module: object, data: dict | None, where: str) -> ImageSpace:
    if data is not None:
        fields = {"shape": data.get("image_shape"), "mean": data.get("mean"), "std": data.get("std")}
        return build(ImageSpace, fields, f"mango.json of generator {where!r}")
    space = getattr(module, "image_space", None)
    shape = getattr(module, "image_shape", None)
    if isinstance(space, ImageSpace):
        return space
    if shape is not None:
        return build(ImageSpace, {"shape": shape}, f"image_shape of generator {where!r}")
    raise MangoError(f"generator {where!r} does not declare its images; {DECLARE}")


def wrap(module: nn.Module, name: str, declared: dict | None = None) -> TorchGenerator:
    """A declared torch module as a :class:`TorchGenerator`."""
    latent = declared.get("latent") if declared is not None else getattr(module, "latent_space", None)
    if latent is None:
        raise MangoError(f"generator {name!r} does not declare its latent space; {DECLARE}")
    images = _images(module, declared, name)
    return TorchGenerator(module, _space(latent, name), images.shape, name, images)


def load_python(name: str, weights: str | None = None) -> Generator:
    m = USER_PATH.match(name)
    if m is None:
        raise MangoError(f"malformed generator {name!r}; expected {FORMS}")
    module = import_module_of(m["where"], name)
    obj = getattr(module, m["attr"], None)
    if obj is None:
        raise MangoError(f"{m['where']} has no {m['attr']!r} (in generator {name!r})")
    made = obj() if callable(obj) and not isinstance(obj, (nn.Module, Generator)) else obj
    if isinstance(made, Generator):
        if weights:
            raise MangoError(f"generator {name!r} is a ready Generator: load its weights in the factory")
        return made
    if not isinstance(made, nn.Module):
        raise MangoError(f"{name!r} gave a {type(made).__name__}, not a mango Generator or a torch nn.Module")
    if weights:
        load_state(made, weights)
    return wrap(made, name)


def load_script(path: str, weights: str | None = None) -> Generator:
    if weights:
        raise MangoError(f"TorchScript file {path} carries its own weights; do not pass weights {weights!r}")
    script, text = load_torchscript(path)
    try:
        declared = json.loads(text) if text else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MangoError(f"mango.json in {path} is not valid JSON: {exc}") from None
    if not isinstance(declared, dict) or "latent" not in declared or "image_shape" not in declared:
        raise MangoError(f"TorchScript generator {path} needs mango.json with latent {{dim, size, bounds}} and "
                         "image_shape (torch.jit.save(m, f, _extra_files={'mango.json': ...}))")
    return wrap(script, path, declared)


@GENERATORS.register_fallback("MODULE:FACTORY", is_user_model,
                              doc="your own generator: package.module:factory, file.py:factory or a TorchScript "
                                  "file (declares its latent space and images; see README)")
def user_generator(name: str, weights: str | None = None) -> Generator:
    """A user generator named by ``module:factory``, ``file.py:factory`` or a TorchScript path."""
    return load_script(name, weights) if name.lower().endswith(SCRIPT_SUFFIXES) else load_python(name, weights)
