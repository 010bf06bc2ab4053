"""A rig's answer files, read and written exactly as XDream (``utils.load_block_mat`` and
``load_h5_score_file``, used by ``EPhysScorer``) reads them.

``block{N:03d}.mat``: MATLAB v7.3 (an HDF5 file with a 512-byte MATLAB header). ``stimulusID`` is a
cell array of the image file names, one per response row: in MATLAB an n x 1 cell, which HDF5 (row-major,
so every MATLAB array appears transposed) holds as a ``(1, n)`` dataset of object references, each to a
``uint16 (L, 1)`` dataset of character codes in ``#refs#``. A name may carry a path: XDream keeps what
follows the last backslash. ``tEvokedResp`` is channels x images in MATLAB, so ``(n, channels)`` float
in HDF5: one row per ``stimulusID``.

``block{N:03d}.h5``: ``scores`` ``(n,)`` or ``(n, channels)``; optional ``indices`` ``(n,)``: row k
answers image ``sorted(file names of the block)[indices[k]]``, which for XDream's zero-padded names is the
image at position ``indices[k]`` in the block. Without ``indices`` there is one row per image of the
block, in that order.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

MAT_HEADER_SIZE = 512


class Unreadable(Exception):
    """An answer file that does not parse completely (yet); the message says what is wrong."""


def read_answer(path: Path, sent: list[str] | None) -> tuple[list[str], np.ndarray]:
    """Names answered and responses ``[n, channels]`` of a ``.mat`` or ``.h5`` answer file; whatever goes
    wrong reading it is :class:`Unreadable` (a rig's file must never crash MANGO).

    ``sent``: the block's image file names (needed to name the rows of an ``.h5`` file; None for a
    block never sent, whose rows are then named ``index K``).
    """
    try:
        return _read_answer(path, sent)
    except Unreadable:
        raise
    except Exception as exc:  # h5py raises many kinds on damaged files
        raise Unreadable(f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}") from None


def _read_answer(path: Path, sent: list[str] | None) -> tuple[list[str], np.ndarray]:
    if str(path).endswith(".mat"):
        names, resp = read_mat(path)
    else:
        indices, resp = read_h5(path)
        order = sorted(sent) if sent is not None else None
        if indices is None:
            if order is not None and len(resp) != len(order):
                raise Unreadable(f"'scores' has {len(resp)} rows for the {len(order)} images of the block and "
                                 "there are no 'indices' to say which images they answer")
            names = order if order is not None else [f"index {k}" for k in range(len(resp))]
        else:
            if order is not None and len(indices) and (indices.min() < 0 or indices.max() >= len(order)):
                raise Unreadable(f"'indices' {indices.min()}..{indices.max()} out of range for the "
                                 f"{len(order)} images of the block")
            names = [order[i] if order is not None else f"index {i}" for i in indices]
    if not names:
        return [], np.zeros((0, resp.shape[1] if resp.ndim == 2 else 1))
    return names, resp.reshape(len(names), -1)


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise Unreadable(f"not a complete HDF5 file ({str(exc).splitlines()[0][:120]})") from None


def _numbers(f, key: str) -> np.ndarray:
    if key not in f:
        raise Unreadable(f"no dataset {key!r} (has {sorted(f.keys())})")
    ds = f[key]
    cls = ds.attrs.get("MATLAB_class", b"")
    if ds.dtype.kind not in "iuf" or (isinstance(cls, bytes) and cls == b"char"):
        raise Unreadable(f"{key!r} is not numeric (HDF5 type {ds.dtype}, MATLAB class {cls!r})")
    try:
        return np.asarray(ds[()], dtype=np.float64)
    except OSError as exc:
        raise Unreadable(f"cannot read {key!r} ({str(exc).splitlines()[0][:120]})") from None


def read_mat(path: Path) -> tuple[list[str], np.ndarray]:
    """``stimulusID`` (names, paths stripped) and ``tEvokedResp`` ``[n, channels]`` of a v7.3 MAT file."""
    with _open(path) as f:
        if "stimulusID" not in f:
            raise Unreadable(f"no 'stimulusID' (has {sorted(f.keys())})")
        ds = f["stimulusID"]
        if ds.attrs.get("MATLAB_empty", 0):
            names: list[str] = []
        else:
            if ds.dtype.kind != "O" or ds.ndim > 2 or (ds.ndim == 2 and min(ds.shape) > 1):
                raise Unreadable(f"'stimulusID' must be an n x 1 cell array of strings, got HDF5 {ds.dtype} "
                                 f"{list(ds.shape)}")
            try:
                names = [_string(f, ref) for ref in np.asarray(ds[()]).reshape(-1)]
            except (OSError, KeyError, ValueError, TypeError) as exc:
                raise Unreadable(f"a 'stimulusID' entry is not a string ({type(exc).__name__})") from None
        resp = _numbers(f, "tEvokedResp")
    if resp.ndim == 1 or (resp.size == 0 and not names):
        resp = resp.reshape(len(names), -1) if len(names) else np.zeros((0, 1))
    if resp.ndim != 2 or resp.shape[0] != len(names):
        raise Unreadable(f"'tEvokedResp' has HDF5 shape {list(resp.shape)} for {len(names)} stimulusIDs; expected "
                         f"[{len(names)}, channels], i.e. channels x images in MATLAB")
    return names, resp


def _string(f, ref) -> str:
    ds = f[ref]
    if ds.attrs.get("MATLAB_empty", 0):
        return ""
    codes = np.asarray(ds[()])
    if codes.dtype.kind not in "iu":
        raise ValueError("not character codes")
    text = "".join(map(chr, codes.astype(np.uint32).reshape(-1)))
    return text.split("\\")[-1].split("/")[-1]


def read_h5(path: Path) -> tuple[np.ndarray | None, np.ndarray]:
    """``indices`` (None when absent) and ``scores`` of an ``.h5`` answer file."""
    with _open(path) as f:
        scores = _numbers(f, "scores")
        indices = _numbers(f, "indices") if "indices" in f else None
    if scores.ndim not in (1, 2):
        raise Unreadable(f"'scores' must be [images] or [images, channels], got shape {list(scores.shape)}")
    if indices is not None:
        if indices.ndim != 1 or len(indices) != len(scores) or not np.all(indices == np.round(indices)):
            raise Unreadable(f"'indices' must be {len(scores)} integers (one per row of 'scores'), got "
                             f"shape {list(indices.shape)}")
        indices = indices.astype(np.int64)
    return indices, scores


# -- writing (the simulated rig, tests, and a Python rig) ---------------------------------------
def write_mat(path: str | Path, names: list[str], responses: np.ndarray, atomic: bool = True) -> None:
    """A v7.3 MAT file as MATLAB's ``save(path, 'stimulusID', 'tEvokedResp', '-v7.3')`` writes it, with
    ``stimulusID`` an n x 1 cell of char and ``tEvokedResp`` channels x images (responses ``[n, C]``)."""
    import h5py

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp") if atomic else path
    resp = np.asarray(responses, dtype=np.float64).reshape(len(names), -1)
    with h5py.File(tmp, "w", userblock_size=MAT_HEADER_SIZE, libver="earliest") as f:
        refs = f.create_group("#refs#")
        ids = np.empty((1, len(names)), dtype=h5py.ref_dtype)
        for i, name in enumerate(names):
            codes = np.frombuffer(name.encode("utf-16-le"), dtype="<u2").reshape(-1, 1)
            ds = refs.create_dataset(_ref_name(i), data=codes)
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
            ids[0, i] = ds.ref
        cell = f.create_dataset("stimulusID", data=ids, dtype=h5py.ref_dtype)
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        f.create_dataset("tEvokedResp", data=resp).attrs["MATLAB_class"] = np.bytes_("double")
    _mat_header(tmp)
    if atomic:
        os.replace(tmp, path)


def _ref_name(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    name = ""
    while True:
        name, i = letters[i % 26] + name, i // 26 - 1
        if i < 0:
            return name


def _mat_header(path: Path) -> None:
    """MATLAB's 128-byte text header in the HDF5 user block (what makes ``load`` see a MAT-file)."""
    text = (f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {time.strftime('%a %b %d %H:%M:%S %Y')} "
            "HDF5 schema 1.00 .").encode().ljust(116)
    with open(path, "r+b") as f:
        f.write(text + b"\x00" * 8 + b"\x00\x02" + b"IM")


def write_h5(path: str | Path, scores: np.ndarray, indices: list[int] | np.ndarray | None = None,
             atomic: bool = True) -> None:
    """An ``.h5`` answer: ``scores`` ``[n]`` or ``[n, C]``, ``indices`` positions in the block (optional)."""
    import h5py

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp") if atomic else path
    with h5py.File(tmp, "w") as f:
        f.create_dataset("scores", data=np.asarray(scores, dtype=np.float64))
        if indices is not None:
            f.create_dataset("indices", data=np.asarray(indices, dtype=np.int64))
    if atomic:
        os.replace(tmp, path)


def write_answer(path: Path, names: list[str], responses: np.ndarray, indices: list[int] | None = None,
                 corrupt: str | None = None) -> None:
    """A ``.mat`` (``names``, ``responses``) or ``.h5`` (``responses``, ``indices``) answer written under a
    temporary name and renamed into place; ``corrupt`` writes a broken one, as rigs do: ``truncated`` (a
    copy cut short: full disk, a crash while copying), ``rows`` (one response row fewer than the images it
    names) or ``text`` (the responses saved as text)."""
    import h5py

    tmp = path.with_name(f".{path.name}.tmp")
    resp = np.asarray(responses, dtype=np.float64).reshape(len(names), -1)
    mat = path.suffix == ".mat"
    if mat:
        write_mat(tmp, names, resp if corrupt != "rows" else np.zeros_like(resp), atomic=False)
    else:
        write_h5(tmp, resp, indices if corrupt != "rows" else list(indices or range(len(names))), atomic=False)
    if corrupt in ("rows", "text"):
        key = "tEvokedResp" if mat else "scores"
        with h5py.File(tmp, "r+") as f:
            del f[key]
            if corrupt == "rows":
                f.create_dataset(key, data=resp[:-1] if len(resp) else np.zeros((1, resp.shape[1])))
            elif mat:  # MATLAB char: uint16 codes
                f.create_dataset(key, data=np.frombuffer(b"NaN " * max(len(names), 1), np.uint8).astype(np.uint16))
                f[key].attrs["MATLAB_class"] = np.bytes_("char")
            else:
                f.create_dataset(key, data=np.array([b"NaN"] * max(len(names), 1)))
    if corrupt == "truncated":
        os.truncate(tmp, os.path.getsize(tmp) // 2)
    elif corrupt not in (None, "rows", "text"):
        raise ValueError(f"unknown corruption {corrupt!r}; allowed: truncated, rows, text")
    os.replace(tmp, path)
