"""Images as a rig receives them: ``uint8 [H, W, C]`` (C = 1 or 3), as PNG bytes or raw bytes.

Why a PNG encoder of our own: PIL's takes ~0.2 ms per small image (most of it object set-up), three
times the cost of writing the few PNG chunks directly with zlib; a block of 40 images is then ~1-3 ms
instead of ~9. Decoding goes through PIL, which reads any PNG a stimulus program might produce.
"""
from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np

from ..errors import MangoError

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 3: 2, 4: 6}  # grayscale, RGB, RGBA


def check_image(image: np.ndarray) -> np.ndarray:
    """``image`` as ``uint8 [H, W, C]``; a one-line MangoError for anything a rig could not show."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise MangoError(f"a rig image must be a numpy uint8 array [H, W, C], got {type(image).__name__} "
                         f"{getattr(image, 'dtype', '')}".rstrip())
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in _COLOR_TYPE or min(image.shape) < 1:
        raise MangoError(f"a rig image must be [H, W, C] with C = 1, 3 or 4, got shape {list(image.shape)}")
    return image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """A standard 8-bit PNG (grayscale, RGB or RGBA; no filter, zlib ``level``)."""
    image = check_image(image)
    h, w, c = image.shape
    rows = np.zeros((h, 1 + w * c), np.uint8)  # each scanline starts with filter type 0 (none)
    rows[:, 1:] = image.reshape(h, w * c)
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0)
    return (_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
            + _chunk(b"IEND", b""))


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> ``uint8 [H, W, C]`` (palette and 16-bit images converted to 8-bit RGB / gray)."""
    from PIL import Image

    if not data.startswith(_SIGNATURE):
        raise MangoError("not a PNG image (bad signature)")
    with Image.open(io.BytesIO(data)) as png:
        im = png.convert("RGBA" if "A" in png.getbands() else ("L" if png.mode in ("1", "I", "I;16") else "RGB")) \
            if png.mode not in ("L", "RGB", "RGBA") else png
        return check_image(np.asarray(im).copy())


def encode_raw(image: np.ndarray) -> tuple[bytes, list[int]]:
    """The pixels as C-order bytes and the shape ``[H, W, C]`` to rebuild them."""
    image = np.ascontiguousarray(check_image(image))
    return image.tobytes(), list(image.shape)


def decode_raw(data: bytes, shape: object) -> np.ndarray:
    """Raw C-order uint8 bytes of ``shape`` ``[H, W, C]`` -> the image; MangoError if they do not fit."""
    if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
        raise MangoError(f"raw image shape must be [H, W, C] of positive integers, got {shape!r}")
    if len(data) != shape[0] * shape[1] * shape[2]:
        raise MangoError(f"raw image of shape {shape} needs {shape[0] * shape[1] * shape[2]} bytes, got {len(data)}")
    return check_image(np.frombuffer(data, np.uint8).reshape(shape))


def image_sha1(image: np.ndarray) -> str:
    """SHA-1 of the pixels (``uint8 [H, W, C]`` in C order, shape not included): names an image in logs,
    identical whether it travelled as PNG or raw."""
    return hashlib.sha1(np.ascontiguousarray(check_image(image)).tobytes()).hexdigest()


def to_pixels(images: list[np.ndarray]) -> np.ndarray:
    """Same-shape ``uint8 [H, W, C]`` images -> ``float32 [B, C, H, W]`` plain pixels in [0, 1]."""
    stack = np.stack([check_image(im) for im in images])
    return np.ascontiguousarray(stack.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0
