"""Weights as safetensors plus a JSON card; never pickles of whole objects.

Loading failures (missing, truncated or corrupt file, wrong architecture)
become one-line :class:`MangoError` messages naming the file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import MangoError, first_line


def save_weights(module: torch.nn.Module, path: str | Path, card: dict) -> None:
    """Write ``module``'s state to ``path`` (.safetensors) and ``card`` next to it (.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(path), metadata={"card": json.dumps(card)})
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def load_weights(module: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load ``path`` into ``module`` strictly; any failure is a one-line MangoError."""
    path = Path(path)
    if not path.is_file():
        raise MangoError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for bad files
        raise MangoError(f"cannot read weights file {path}: not a valid safetensors file ({type(exc).__name__})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = first_line(exc)
        raise MangoError(f"weights file {path} does not fit {type(module).__name__}: {first}") from None
    return module


def read_card(path: str | Path) -> dict:
    """The JSON card stored next to a weights file (which must exist)."""
    if not Path(path).is_file():
        raise MangoError(f"weights file not found: {path}")
    card = Path(path).with_suffix(".json")
    try:
        return json.loads(card.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MangoError(f"cannot read model card {card}: {exc}") from None


WEIGHTS_DIR = Path(__file__).parent / "weights"
RELEASE_ENV = "MANGO_RELEASE_DIR"


def load_state(module: torch.nn.Module, path: str | Path) -> torch.nn.Module:
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
        raise MangoError(f"cannot read checkpoint {path}: not a valid torch state_dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise MangoError(f"checkpoint {path} holds a {type(state).__name__}, not a state_dict")
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise MangoError(f"checkpoint {path} does not fit {type(module).__name__}: {detail}") from None
    return module


def release_dir() -> Path:
    """Folder of the original MANGO release checkpoints (third-party files, looked up, never committed).

    ``$MANGO_RELEASE_DIR`` if set, else ``<repo>/../shared/assets/mango-release`` (a source checkout).
    """
    env = os.environ.get(RELEASE_ENV)
    default = Path(__file__).resolve().parents[3] / "shared" / "assets" / "mango-release"
    return Path(env).expanduser() if env else default


def release_file(name: str) -> Path:
    """Path of one release checkpoint (e.g. ``vae_vq_cifar10.pt``); a one-line MangoError when it is missing."""
    path = release_dir() / name
    if not path.is_file():
        env = os.environ.get(RELEASE_ENV)
        where = f"${RELEASE_ENV}={env}" if env else f"the default folder; ${RELEASE_ENV} is not set"
        raise MangoError(f"MANGO release checkpoint {name} not found at {path} (looked in {where}); set "
                         f"{RELEASE_ENV} to the folder holding it, or pass the file as weights")
    return path
