"""Scenario composition and image loading for the classifiers.

A scenario adds `n` synthetic images to a split's real images, `n / len(labels)` per label, always
the first ones of each label's sequence (so scenario 100's images are inside 250's).
protocol rigorous: synthetic images only ever join the training subset; val and test stay real.
protocol paper (`repool`): paper 000's procedure - pool the real and synthetic images, then draw a
random image-level split over the pool, so synthetic images land in val and test too.
The result is written next to the weights as composition.csv; evaluation reads its test rows.
"""

from __future__ import annotations

import pandas as pd
import torch

from mammosynth.errors import UserError
from mammosynth.imaging.png import read_pngs
from mammosynth.splits import SUBSETS, check_labels, random_subsets

COMPOSITION_COLUMNS = ["subset", "image_id", "label", "y", "synthetic", "path"]


def per_label(n: int, labels: list[str]) -> int:
    if n % len(labels):
        raise UserError(f"config scenarios: {n} synthetic images cannot be split evenly over "
                        f"{len(labels)} labels; use a multiple of {len(labels)}")
    return n // len(labels)


def compose(manifest: pd.DataFrame, split: pd.DataFrame, synthetic: dict[str, list[str]],
            n: int, labels: list[str], *, repool: dict | None = None) -> dict[str, pd.DataFrame]:
    """-> {'train', 'val', 'test'}: DataFrames (image_id, path, label, y, synthetic).

    repool: {test_fraction, val_fraction, seed} - protocol paper: re-split real + synthetic at
    random (with n = 0 this reproduces the split file, drawn the same way over the same order).
    """
    frame = split.merge(manifest[["image_id", "image_path", "label"]], on="image_id")
    frame = frame.rename(columns={"image_path": "path"})
    frame["synthetic"] = False
    k = per_label(n, labels)
    extra = []
    for label in labels:
        paths = synthetic.get(label, [])
        if len(paths) < k:
            raise UserError(f"scenario synth{n} needs {k} synthetic {label} images, "
                            f"{len(paths)} exist")
        extra += [{"image_id": f"synthetic-{label}-{i:05d}", "path": str(p), "label": label,
                   "subset": "train", "synthetic": True} for i, p in enumerate(paths[:k])]
    if extra:
        frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    if repool is not None:
        frame["subset"] = random_subsets(len(frame), **repool)
        check_labels(frame, set(labels))
    frame["y"] = frame["label"].map({label: i for i, label in enumerate(labels)}).astype(int)
    return {s: frame[frame["subset"] == s].drop(columns="subset").reset_index(drop=True)
            for s in SUBSETS}


def write_composition(subsets: dict[str, pd.DataFrame], path) -> None:
    """One CSV row per image a model was trained, validated or tested on."""
    table = pd.concat([sub.assign(subset=name) for name, sub in subsets.items()],
                      ignore_index=True)
    table[COMPOSITION_COLUMNS].to_csv(path, index=False)


def read_composition(path) -> dict[str, pd.DataFrame]:
    table = pd.read_csv(path, dtype={"image_id": str, "label": str, "path": str})
    return {s: table[table["subset"] == s].drop(columns="subset").reset_index(drop=True)
            for s in SUBSETS}


def load_tensor(paths, size: int) -> torch.Tensor:
    """PNG files -> (N, 1, size, size) float32 in [0, 1]."""
    return torch.from_numpy(read_pngs(list(paths), size))
