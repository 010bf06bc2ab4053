"""Resumable training checkpoints: everything a run needs to continue bit-exactly, and nothing pickled.

A checkpoint is a folder of three files, replaced atomically (each written beside, then renamed; the JSON
last, so a crash mid-write leaves the previous checkpoint readable or a step mismatch that is reported):

* ``checkpoint.safetensors`` -- every module's state (``<name>.<key>``), the random generators' states
  (``rng.<name>``: the trainer's own generators and torch's global CPU/CUDA ones) and the step;
* ``optimizer.pt`` -- ``{name: optimizer.state_dict()}``, tensors and numbers only, read back with
  ``torch.load(weights_only=True)`` (no code can be unpickled);
* ``checkpoint.json`` -- the step and the training settings, which a resume must repeat.

Any unreadable, truncated or inconsistent file is a one-line :class:`MangoError` naming it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..checkpoints import mismatch
from ..errors import MangoError

TENSORS, OPTIMIZERS, META = "checkpoint.safetensors", "optimizer.pt", "checkpoint.json"
#: settings a resume may change: the length of the run and how often it writes files
MAY_CHANGE = ("steps", "epochs", "checkpoint_every", "sample_every")


def exists(folder: Path) -> bool:
    return (Path(folder) / META).exists()


def folder(out_dir: str | Path, resume: bool) -> Path:
    """The checkpoint folder of a training run in ``out_dir``; refuses to start over an existing one."""
    out = Path(out_dir)
    ckpt = out / "checkpoint"
    if not resume and exists(ckpt):
        raise MangoError(f"{out} already holds a training checkpoint; pass resume=True (--resume) to continue it, "
                         "or choose another output folder")
    return ckpt


def _rng_states(own: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    states = {f"rng.{k}": g.get_state() for k, g in own.items()} | {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["rng.cuda"] = torch.cuda.get_rng_state()
    return states


def save(folder: Path, step: int, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
         rngs: dict[str, torch.Generator], settings: dict) -> None:
    """Write the checkpoint of a run after ``step`` steps (or epochs) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, m in modules.items()
               for k, v in m.state_dict().items()}
    tensors |= _rng_states(rngs) | {"step": torch.tensor(step)}
    tmp = {p: folder / f".{p}.tmp" for p in (TENSORS, OPTIMIZERS, META)}
    save_file(tensors, str(tmp[TENSORS]))
    torch.save({k: o.state_dict() for k, o in optimizers.items()}, tmp[OPTIMIZERS])
    tmp[META].write_text(json.dumps({"step": step, "settings": settings}, indent=2) + "\n")
    for name in (TENSORS, OPTIMIZERS, META):
        os.replace(tmp[name], folder / name)


def _read_meta(folder: Path) -> dict:
    path = folder / META
    if not path.is_file():
        raise MangoError(f"nothing to resume: no checkpoint at {path}; drop resume (--resume) to start a new run")
    try:
        meta = json.loads(path.read_text())
        return {"step": int(meta["step"]), "settings": dict(meta["settings"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MangoError(f"cannot read checkpoint file {path}: {type(exc).__name__}") from None


def check_settings(stored: dict, given: dict, folder: Path) -> None:
    """A resume must repeat the stored settings (except those in ``MAY_CHANGE``)."""
    given = json.loads(json.dumps(given))  # compare as stored (tuples -> lists)
    for key in sorted(set(stored) | set(given)):
        if key not in MAY_CHANGE and stored.get(key) != given.get(key):
            raise MangoError(f"cannot resume {folder}: {key}={given.get(key)!r} differs from the checkpoint's "
                             f"{stored.get(key)!r}; use the same settings (or another output folder)")


def load(folder: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
         rngs: dict[str, torch.Generator], settings: dict) -> int:
    """Restore modules, optimizers and random states from ``folder``; returns the step to continue from."""
    folder = Path(folder)
    meta = _read_meta(folder)
    check_settings(meta["settings"], settings, folder)
    path = folder / TENSORS
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for missing/bad files
        raise MangoError(f"cannot read checkpoint file {path}: not a valid safetensors file "
                         f"({type(exc).__name__})") from None
    if "step" not in tensors or int(tensors["step"]) != meta["step"]:
        raise MangoError(f"checkpoint file {path} does not match {folder / META} (interrupted while writing?); "
                         "delete the folder's checkpoint files to start again")
    for name, m in modules.items():
        prefix = f"{name}."
        try:
            m.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
        except RuntimeError as exc:
            raise MangoError(f"checkpoint file {path} does not fit {type(m).__name__}: {mismatch(exc)}") from None
    opt_path = folder / OPTIMIZERS
    try:
        states = torch.load(opt_path, weights_only=True, map_location="cpu")
        for name, opt in optimizers.items():
            opt.load_state_dict(states[name])
    except Exception as exc:  # truncated zip, unpickling refused, missing key, wrong shapes
        raise MangoError(f"cannot read checkpoint file {opt_path}: {type(exc).__name__}") from None
    for name, g in rngs.items():
        g.set_state(tensors[f"rng.{name}"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return meta["step"]
