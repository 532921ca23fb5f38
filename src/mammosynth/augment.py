"""Augmented copies of real training images for the control arm aug{n} (mammosynth.classify.data).

Mammography-safe augmentation of a preprocessed image (black background, chest wall on the left,
`imaging.breast`), in this order:
- vertical flip (p = 0.5); never a horizontal flip: the chest wall stays on the left;
- rotation (+-10 degrees) and scale (0.9-1.1) about the middle of the chest-wall edge, no
  translation or shear, so the breast keeps its place against the chest wall;
- mild elastic deformation: a smooth field (random values on an 8 x 8 grid, bicubic-upsampled)
  of at most `elastic_alpha` (0-1 %) of the image's longer side;
- gamma (0.8-1.25, log-uniform) on the breast, then Gaussian noise (sigma 0-0.01 of full scale)
  on the breast only;
- the background - everything outside the breast mask moved by the same geometry (nearest) - is
  exactly 0 afterwards, and the breast stays inside (0, 1].
Rotation and elastic shift tissue at the left edge: before the geometry the image is padded on the
left by repeating its first column (the breast continues into the chest), so the edge is filled
with tissue, not with a black wedge that would pull the breast away from the chest wall.

Library over hand-written: the warps are torchvision.transforms.v2.functional (`affine`,
`elastic`, `vertical_flip`, `pad`, `adjust_gamma`). The v2 random transforms (RandomAffine,
ElasticTransform, GaussianNoise) draw from torch's global RNG and take no generator, so the
parameters, the elastic field and the noise are drawn here from one torch.Generator seeded by the
copy's seed: a copy depends on (source pixels, seed) only, not on global RNG state or on the other
copies. The scalar parameters are drawn first, so they do not depend on the image size.

Copy i of a label's draws has seed `layout.copy_seed(seed, i)`: writing the first k draws gives
the same first k files as writing all of them (the draws are nested too, `control_draws`).
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from mammosynth import layout
from mammosynth.errors import UserError
from mammosynth.imaging.png import read_png, write_png
from mammosynth.runtime import publish_folder

ROTATION = 10.0  # degrees, either way
SCALE = (0.9, 1.1)
GAMMA = (0.8, 1.25)
NOISE_SIGMA = 0.01  # of full scale, at most
ELASTIC_ALPHA = 0.01  # largest displacement, as a fraction of the image's longer side
ELASTIC_GRID = 8  # control points per side of the elastic field
INDEX_COLUMNS = ["index", "source_image", "file", "seed", "rotation", "scale", "gamma",
                 "noise_sigma", "elastic_alpha", "vflip"]


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def draw_parameters(g: torch.Generator) -> dict:
    return {
        "vflip": bool(torch.rand((), generator=g) < 0.5),
        "rotation": _uniform(g, -ROTATION, ROTATION),
        "scale": _uniform(g, *SCALE),
        "gamma": math.exp(_uniform(g, math.log(GAMMA[0]), math.log(GAMMA[1]))),
        "noise_sigma": _uniform(g, 0.0, NOISE_SIGMA),
        "elastic_alpha": _uniform(g, 0.0, ELASTIC_ALPHA),
    }


def _displacement(g: torch.Generator, height: int, width: int, pixels: float) -> torch.Tensor:
    """A smooth field for v2.functional.elastic: (1, height, width, 2) in its normalised units
    (grid coordinates in [-1, 1]), at most ~`pixels` pixels along either axis."""
    coarse = torch.rand((1, 2, ELASTIC_GRID, ELASTIC_GRID), generator=g) * 2 - 1
    field = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic",
                                            align_corners=True).clamp(-1, 1)
    field = field * pixels * torch.tensor([2.0 / width, 2.0 / height]).view(1, 2, 1, 1)
    return field.permute(0, 2, 3, 1).contiguous()


def augment_image(image: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """A preprocessed (H, W) image in [0, 1] -> (its augmented copy, float32 (H, W) in [0, 1],
    the drawn parameters); deterministic in (image, seed). See the module docstring."""
    from torchvision.transforms import v2

    F = v2.functional
    if image.ndim != 2:
        raise ValueError(f"augment_image takes one (H, W) image, not shape {image.shape}")
    g = torch.Generator().manual_seed(int(seed))
    params = draw_parameters(g)
    height, width = image.shape
    side = max(height, width)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    mask = (x > 0).float()
    # left margin the rotation, scale and elastic field can pull into view, filled with tissue
    pad = math.ceil(side * (0.5 * math.sin(math.radians(ROTATION)) / SCALE[0]
                            + ELASTIC_ALPHA)) + 2
    both = F.pad(torch.cat([x, mask]), [pad, 0, 0, 0], padding_mode="edge")
    if params["vflip"]:
        both = F.vertical_flip(both)
    geometry = dict(angle=params["rotation"], translate=[0.0, 0.0], scale=params["scale"],
                    shear=[0.0, 0.0], fill=[0.0], center=[float(pad), height / 2])
    image_t = F.affine(both[:1], interpolation=v2.InterpolationMode.BILINEAR, **geometry)
    mask_t = F.affine(both[1:], interpolation=v2.InterpolationMode.NEAREST, **geometry)
    field = _displacement(g, height, width + pad, params["elastic_alpha"] * side)
    image_t = F.elastic(image_t, field, interpolation=v2.InterpolationMode.BILINEAR, fill=[0.0])
    mask_t = F.elastic(mask_t, field, interpolation=v2.InterpolationMode.NEAREST, fill=[0.0])
    image_t, breast = image_t[0, :, pad:].clamp(0, 1), mask_t[0, :, pad:] > 0.5
    image_t = F.adjust_gamma(image_t[None], params["gamma"])[0]
    noise = torch.randn((height, width), generator=g) * params["noise_sigma"]
    out = torch.where(breast, (image_t + noise).clamp(1.0 / 65535.0, 1.0), 0.0)
    return out.numpy(), params


def write_augmented(sources: list[tuple[str, str]], out_dir: str | Path, seed: int,
                    size: int | None = None) -> None:
    """Copy i of sources [(source image_id, png path)], augmented with seed
    layout.copy_seed(seed, i), as 16-bit {i:05d}.png in out_dir, plus index.csv (INDEX_COLUMNS: the drawn parameters).
    Each copy has its source's size (size: resized to size x size first, as read_pngs does).
    The folder is built beside out_dir and renamed into place when complete."""
    from mammosynth.imaging.breast import resize

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = []
    for i, (source, path) in enumerate(sources):
        if not Path(path).is_file():
            raise UserError(f"{path}: the training image {source} to augment is missing; "
                            "re-run the preprocess step")
        image = read_png(path)
        if size and image.shape != (size, size):
            image = np.clip(resize(image, size, size), 0.0, 1.0)
        s = layout.copy_seed(seed, i)
        copy, params = augment_image(image, s)
        name = f"{i:05d}.png"
        write_png(tmp / name, copy)
        rows.append({"index": i, "source_image": source, "file": name, "seed": s}
                    | params)
    publish_folder(tmp, out_dir, rows, INDEX_COLUMNS)


def augment_split(manifest, split, label: str, total: int, seed: int, labels: list[str],
                  out_dir: str | Path) -> None:
    """Rule augment: the `total` copies of `label` that aug{n} uses - the split's dup draws
    (classify.data.control_draws, seeded like dup), each label's copies with their own
    augmentation seeds - written to out_dir."""
    from mammosynth.classify.data import control_draws, real_images

    frame = real_images(manifest, split)
    train = frame[frame["subset"] == "train"]
    paths = train.set_index("image_id")["path"]
    draws = control_draws(train, label, total, seed, labels)
    write_augmented([(image_id, paths[image_id]) for image_id in draws], out_dir,
                    seed=layout.copy_seed(seed, label))


def read_augmented(folder: str | Path) -> list[tuple[str, str]]:
    """(source image_id, png path) of every copy in an augmented folder, in index order."""
    folder = Path(folder)
    index = folder / "index.csv"
    if not index.is_file():
        raise UserError(f"{index}: missing; delete {folder} and re-run (rule augment)")
    with open(index, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["index"]))
    if [int(r["index"]) for r in rows] != list(range(len(rows))):
        raise UserError(f"{index}: does not list copies 0..n-1 exactly once; delete {folder} "
                        "and re-run (rule augment)")
    return [(r["source_image"], str(folder / r["file"])) for r in rows]
