"""16-bit grayscale PNG in and out; writes are atomic (temp file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a 2-D uint16 array (or float in [0, 1]) as a 16-bit grayscale PNG."""
    if image.dtype != np.uint16:
        image = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def read_png(path: str | Path) -> np.ndarray:
    """A grayscale PNG as float32 in [0, 1] (16-bit or 8-bit)."""
    with Image.open(path) as im:
        scale = 65535.0 if im.mode.startswith("I") else 255.0
        return np.asarray(im, dtype=np.float32) / scale


def read_pngs(paths, size: int) -> np.ndarray:
    """PNG files -> (N, 1, size, size) float32 in [0, 1], resized (anti-aliased) where needed."""
    out = np.empty((len(paths), 1, size, size), dtype=np.float32)
    for i, path in enumerate(paths):
        image = read_png(path)
        if image.shape != (size, size):
            image = np.asarray(Image.fromarray(image).resize(
                (size, size), Image.Resampling.BILINEAR, reducing_gap=2.0))
        out[i, 0] = image
    return out
