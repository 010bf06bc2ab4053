"""Weights as safetensors plus a JSON card; never pickles of whole objects.

Loading failures (missing, truncated or corrupt file, wrong architecture)
become one-line :class:`MangoError` messages naming the file.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import MangoError


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
        first = str(exc).strip().splitlines()[0]
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
