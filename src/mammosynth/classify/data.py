"""Scenario composition and image loading for the classifiers.

A scenario adds `n` synthetic images to a split's real training images, `n / len(labels)` per
label, always the first ones of each label's sequence (so scenario 100's images are inside 250's).
Synthetic images only ever join the training subset; validation and test stay real.
"""

from __future__ import annotations

import pandas as pd
import torch

from mammosynth.errors import UserError
from mammosynth.imaging.png import read_pngs


def per_label(n: int, labels: list[str]) -> int:
    if n % len(labels):
        raise UserError(f"config scenarios: {n} synthetic images cannot be split evenly over "
                        f"{len(labels)} labels; use a multiple of {len(labels)}")
    return n // len(labels)


def compose(manifest: pd.DataFrame, split: pd.DataFrame, synthetic: dict[str, list[str]],
            n: int, labels: list[str]) -> dict[str, pd.DataFrame]:
    """-> {'train', 'val', 'test'}: DataFrames (image_id, path, label, y, synthetic)."""
    frame = split.merge(manifest[["image_id", "image_path", "label"]], on="image_id")
    frame = frame.rename(columns={"image_path": "path"})
    frame["synthetic"] = False
    subsets = {s: frame[frame["subset"] == s].drop(columns="subset") for s in ("train", "val",
                                                                              "test")}
    k = per_label(n, labels)
    extra = []
    for label in labels:
        paths = synthetic.get(label, [])
        if len(paths) < k:
            raise UserError(f"scenario synth{n} needs {k} synthetic {label} images, "
                            f"{len(paths)} exist")
        extra += [{"image_id": f"synthetic-{label}-{i:05d}", "path": str(p), "label": label,
                   "synthetic": True} for i, p in enumerate(paths[:k])]
    subsets["train"] = pd.concat([subsets["train"], pd.DataFrame(extra)], ignore_index=True)
    for name, sub in subsets.items():
        sub["y"] = sub["label"].map({label: i for i, label in enumerate(labels)}).astype(int)
        subsets[name] = sub.reset_index(drop=True)
    return subsets


def load_tensor(paths, size: int) -> torch.Tensor:
    """PNG files -> (N, 1, size, size) float32 in [0, 1]."""
    return torch.from_numpy(read_pngs(list(paths), size))
