"""Weights as safetensors plus a JSON card; never pickles of whole objects.

Loading failures (missing, truncated or corrupt file, wrong architecture, NaN/inf values) become one-line
:class:`MangoError` messages naming the file. Architectures described by a card are checked against the
constructor they are meant for (:func:`build_from_card`), so a card for another model is a one-line error too.

The original MANGO release checkpoints (third-party files, never committed) are looked up by
:func:`release_file`: ``$MANGO_RELEASE_DIR`` if set, else the user cache folder, else a source checkout's
``../shared/assets/mango-release``; their sha256 is checked once per process.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file, save_file

from .errors import MangoError, first_line

T = TypeVar("T")
M = TypeVar("M", bound=torch.nn.Module)


def save_weights(module: torch.nn.Module, path: str | Path, card: dict) -> None:
    """Write ``module``'s state to ``path`` (.safetensors) and ``card`` next to it (.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"card": json.dumps(card)})
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def check_finite(state: dict, path: str | Path) -> None:
    """Refuse a state dict holding NaN or infinite values (a diverged training run, a corrupt file)."""
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise MangoError(f"weights file {path} has non-finite values in {key!r} (NaN or inf); "
                             "use weights from a run that did not diverge")


def load_weights(module: M, path: str | Path) -> M:
    """Load ``path`` into ``module`` strictly; any failure is a one-line MangoError."""
    path = Path(path)
    if not path.is_file():
        raise MangoError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for bad files
        raise MangoError(f"cannot read weights file {path}: not a valid safetensors file "
                         f"({type(exc).__name__})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MangoError(f"weights file {path} does not fit {type(module).__name__}: {mismatch(exc)}") from None
    check_finite(state, path)
    return module


def mismatch(exc: BaseException, limit: int = 300) -> str:
    """``load_state_dict``'s multi-line complaint (missing/unexpected keys, size mismatches) on one line."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def read_card(path: str | Path) -> dict:
    """The JSON card stored next to a weights file (which must exist)."""
    if not Path(path).is_file():
        raise MangoError(f"weights file not found: {path}")
    card = Path(path).with_suffix(".json")
    try:
        data = json.loads(card.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MangoError(f"cannot read model card {card}: {first_line(exc)}") from None
    if not isinstance(data, dict):
        raise MangoError(f"model card {card} must hold a JSON object, got {type(data).__name__}")
    return data


# -- architectures described by cards or options ---------------------------------------------------------------
def expected_type(default: object) -> str | None:
    """What a keyword whose default is ``default`` takes, in words (``None``: anything)."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a finite number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (tuple, list)) and default:
        inner = expected_type(default[0])
        if inner is None or any(expected_type(d) != inner for d in default):
            return None
        plural = {"an integer": "integers", "a finite number": "finite numbers", "a string": "strings",
                  "true or false": "booleans"}[inner]
        return f"a list of {len(default)} {plural}"
    return None


def fits_default(value: object, default: object) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list)) and len(value) == len(default) and all(
            fits_default(v, d) for v, d in zip(value, default, strict=True))
    return True


def argument_problem(cls: type, kwargs: dict) -> str | None:
    """Why ``cls(**kwargs)`` is malformed -- an unknown or missing keyword, or a value whose type differs from the
    keyword's default (an integer, a finite number, a list of N integers, ...); ``None`` when it looks right."""
    params = {n: p for n, p in inspect.signature(cls).parameters.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key in kwargs:
        if key not in params:
            return f"unknown key {key!r} (allowed: {', '.join(params) or 'none'})"
    for name, p in params.items():
        if p.default is p.empty and name not in kwargs:
            return f"missing key {name!r}"
    for key, value in kwargs.items():
        default = params[key].default
        expected = expected_type(default) if default is not params[key].empty else None
        if expected is not None and not fits_default(value, default):
            return f"{key} must be {expected}, got {json.dumps(value) if _jsonable(value) else repr(value)}"
    return None


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def build(cls: type[T], kwargs: object, where: str) -> T:
    """``cls(**kwargs)`` checked first by :func:`argument_problem`; any failure is one line
    ``WHERE does not describe a CLS: reason`` (e.g. ``weights card x.json does not describe a SpikingCNN: ...``)."""
    name = cls.__name__
    what = f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"
    if not isinstance(kwargs, dict):
        raise MangoError(f"{where} does not describe {what}: its architecture must be a JSON object of {name} "
                         f"arguments, got {json.dumps(kwargs) if _jsonable(kwargs) else type(kwargs).__name__}")
    problem = argument_problem(cls, kwargs)
    if problem is not None:
        raise MangoError(f"{where} does not describe {what}: {problem}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:  # e.g. a zero width
        raise MangoError(f"{where} does not describe {what}: {first_line(exc)}") from None


def card_where(path: str | Path) -> str:
    """How errors name the card of weights file ``path``."""
    return f"weights card {Path(path).with_suffix('.json')}"


def build_from_card(cls: type[T], path: str | Path, card: dict | None = None, key: str = "architecture",
                    required: bool = True) -> T:
    """``cls(**card[key])`` for the card of weights file ``path``; a one-line MangoError when the card does not
    describe a ``cls`` (unknown or missing keys, values of the wrong type, a constructor that refuses them)."""
    card = read_card(path) if card is None else card
    if key not in card:
        if not required:
            return build(cls, {}, card_where(path))
        raise MangoError(f"{card_where(path)} does not describe a {cls.__name__}: it has no {key!r} entry "
                         f"(the {cls.__name__} arguments)")
    return build(cls, card[key], card_where(path))


WEIGHTS_DIR = Path(__file__).parent / "weights"


def untrained(cls: type[M], **kwargs) -> M:
    """``cls(**kwargs)`` freshly initialized with seed 0, leaving the caller's random state alone: what weights
    ``"none"`` give (the architecture without training; for `mango layers`, tests and training from scratch)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls(**kwargs)


def has_card(path: str | Path | None) -> bool:
    """Is ``path`` a ``.safetensors`` weights file with a JSON card beside it?"""
    return path is not None and Path(path).suffix == ".safetensors" and Path(path).with_suffix(".json").is_file()


def load_state(module: M, path: str | Path) -> M:
    """Load weights into ``module`` strictly from our ``.safetensors`` or a plain torch state_dict file
    (``.pt``/``.pth``, read with ``weights_only``: no pickled code; a training checkpoint's
    ``state_dict`` entry is accepted). Every failure is a one-line MangoError naming the file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_weights(module, path)
    if not path.is_file():
        raise MangoError(f"weights file not found: {path}")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # truncated zip, not a torch file, unsafe pickle: several types
        raise MangoError(f"cannot read checkpoint {path}: not a valid torch state_dict "
                         f"({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MangoError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict")
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, AttributeError, TypeError) as exc:
        raise MangoError(f"checkpoint {path} does not fit {type(module).__name__}: {mismatch(exc)}") from None
    check_finite(state, path)
    return module


# -- the original MANGO release checkpoints ---------------------------------------------------------------------
RELEASE_ENV = "MANGO_RELEASE_DIR"
RELEASE_REPO, RELEASE_COMMIT = "iabs-neuro/mango", "8b96b583"
#: name -> (sha256, path in the original repository at RELEASE_COMMIT)
RELEASE_FILES: dict[str, tuple[str, str]] = {
    "snn_cifar10.pt": ("0931bb64a7206ce59c6477021d9cb0bd058e5504a1f9762ce330d653b2f6c0fd",
                       "model/snn_cifar10/snn_cifar10.pt"),
    "vae_vq_cifar10.pt": ("339808c6f0ec73496146689cb5dc683db88edd68ee669d421fb464743ef04ad5",
                          "gen/vae_vq_cifar10/data/vae_vq_cifar10.pt"),
}


class ReleaseMissing(MangoError):
    """A MANGO release checkpoint is in none of the places looked (a user's machine without the files)."""


def release_cache_dir() -> Path:
    """The user cache folder of the release checkpoints: ``$XDG_CACHE_HOME/mango/release`` (default
    ``~/.cache/mango/release``)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path("~/.cache").expanduser()
    return base / "mango" / "release"


def _checkout_dir() -> Path | None:
    """``<repo>/../shared/assets/mango-release`` when this package runs from a source checkout."""
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "assets" / "mango-release" if (repo / "pyproject.toml").is_file() else None


def release_dirs() -> list[Path]:
    """Where release checkpoints are looked for, in order: ``$MANGO_RELEASE_DIR`` alone when it is set; else the
    user cache folder, then (a source checkout) ``../shared/assets/mango-release``."""
    env = os.environ.get(RELEASE_ENV)
    if env:
        return [Path(env).expanduser()]
    checkout = _checkout_dir()
    return [release_cache_dir()] + ([checkout] if checkout is not None else [])


def release_dir() -> Path:
    """The first folder of :func:`release_dirs` that exists (else the first): where the release files are read."""
    dirs = release_dirs()
    return next((d for d in dirs if d.is_dir()), dirs[0])


def find_release(name: str) -> Path | None:
    """The path of release checkpoint ``name`` in the first folder holding it, or ``None`` (no hash check)."""
    return next((d / name for d in release_dirs() if (d / name).is_file()), None)


def release_url(name: str) -> str:
    return f"https://github.com/{RELEASE_REPO}/raw/{RELEASE_COMMIT}/{RELEASE_FILES[name][1]}"


_HASHES: dict[tuple[str, int, int], str] = {}


def sha256(path: Path) -> str:
    """The sha256 of a file, computed once per process (and again only if its size or mtime changes)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def release_file(name: str) -> Path:
    """Path of one release checkpoint (``snn_cifar10.pt`` or ``vae_vq_cifar10.pt``), its sha256 checked.

    A missing file is a one-line :class:`ReleaseMissing` naming every place looked and where to get the file;
    a file with another hash is a one-line MangoError (expected vs found hash, the path).
    """
    if name not in RELEASE_FILES:
        raise MangoError(f"unknown MANGO release checkpoint {name!r}; allowed: {', '.join(RELEASE_FILES)}")
    path = find_release(name)
    if path is None:
        env = os.environ.get(RELEASE_ENV)
        looked = (f"${RELEASE_ENV}={env} ({Path(env).expanduser() / name})" if env
                  else ", ".join(str(d / name) for d in release_dirs()))
        raise ReleaseMissing(
            f"MANGO release checkpoint {name} not found; looked in {looked}. Download it from {release_url(name)} "
            f"(repository {RELEASE_REPO}, commit {RELEASE_COMMIT}, MIT) into {release_cache_dir()} or into the "
            f"folder named by ${RELEASE_ENV}, or pass a weights file")
    expected, found = RELEASE_FILES[name][0], sha256(path)
    if found != expected:
        raise MangoError(f"MANGO release checkpoint {path} has sha256 {found}, expected {expected}; replace it "
                         f"with the original file from {release_url(name)}")
    return path
