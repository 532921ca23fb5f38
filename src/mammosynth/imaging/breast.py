"""Breast mask, crop, chest wall to the left, pad to square, anti-aliased resize.

The mask is found on a block-averaged copy (longest side ~256 px): threshold at half Otsu's level
(keeps the faint skin-line region), largest connected component (drops labels and markers),
holes filled. The chest wall side comes from the metadata's laterality (R is flipped) and, when
that is missing, from the image: the breast is widest at the chest wall.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from mammosynth.errors import ImageError

MASK_SIDE = 256


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def otsu(values: np.ndarray, bins: int = 256) -> float:
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    # Between background and breast the histogram is often empty, and the criterion is flat over
    # that gap: take the middle of the plateau, not its first bin (the top of the background).
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(centers[(best[0] + best[-1]) // 2])


def breast_mask(small: np.ndarray) -> np.ndarray:
    """Foreground mask of a small image in [0, 1]: the largest bright connected region."""
    mask = small > 0.5 * otsu(small)
    mask = ndimage.binary_opening(mask, iterations=1)
    labels, n = ndimage.label(mask)
    if n == 0:
        raise ImageError("no breast found: the image has no foreground above background")
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def chest_wall_side(mask: np.ndarray) -> str:
    """'L' or 'R': the side where the breast touches more of the image edge region."""
    band = max(1, mask.shape[1] // 5)
    return "L" if mask[:, :band].sum() >= mask[:, -band:].sum() else "R"


def preprocess_array(image: np.ndarray, laterality: str | None, size: int):
    """A [0, 1] mammogram -> (size x size uint16 with the chest wall on the left, info dict)."""
    factor = max(1, max(image.shape) // MASK_SIDE)
    small = block_mean(image, factor)
    mask = breast_mask(small)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    content_side = chest_wall_side(mask)
    side = laterality if laterality in ("L", "R") else content_side
    # block_mean drops up to factor-1 trailing rows/columns: a mask touching the last block
    # extends to the image edge (the chest wall of a right breast).
    r1f = image.shape[0] if r1 == mask.shape[0] else r1 * factor
    c1f = image.shape[1] if c1 == mask.shape[1] else c1 * factor
    crop = image[r0 * factor:r1f, c0 * factor:c1f]
    crop_mask = mask[r0:r1, c0:c1]
    if side == "R":
        crop, crop_mask = crop[:, ::-1], crop_mask[:, ::-1]
    h, w = crop.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray(np.ascontiguousarray(crop, dtype=np.float32), mode="F").resize(
        (nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0)
    keep = Image.fromarray(np.ascontiguousarray(crop_mask, dtype=np.uint8) * 255).resize(
        (nw, nh), Image.Resampling.NEAREST)
    out = np.zeros((size, size), dtype=np.float32)
    top = (size - nh) // 2
    out[top:top + nh, :nw] = np.asarray(resized) * (np.asarray(keep) > 0)
    info = {"orig_height": image.shape[0], "orig_width": image.shape[1],
            "flipped": side == "R", "laterality_from": "metadata" if laterality in ("L", "R")
            else "image", "chest_wall_seen": content_side}
    return np.round(np.clip(out, 0.0, 1.0) * 65535.0).astype(np.uint16), info
