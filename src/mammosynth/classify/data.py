"""Scenario and control-arm composition, and image loading for the classifiers.

An arm adds images to (or takes them from) a split's real training images; val and test stay the
split's real images under protocol rigorous. `n` images are split evenly over labels, always the
first ones of each label's sequence (so arm{100}'s images are inside arm{250}'s):
- synth{n}: n synthetic images added (today's scenarios; synth0 is the real images alone);
- dup{n}: n real training images added again (`control_draws`: per label, seeded, without
  replacement while the label has images left) - oversampling;
- aug{n}: the same draws as dup, as augmented copies (results/augmented/, mammosynth.augment);
- synthonly{n}: the n synthetic images alone (train on synthetic, test on real);
- real{p}: a nested, patient-grouped, label-stratified p percent of the real training images
  (`real_subset`), the real-data learning curve (100 percent is synth0).
protocol paper (`repool`, synth only): paper 000's procedure - pool the real and synthetic images,
then draw a random image-level split over the pool, so synthetic images land in val and test too.
The result is written next to the weights as composition.csv (`kind`: real, synthetic, duplicate,
augmented; `source_image`: the real image a duplicate or augmented copy was made from);
evaluation reads its test rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mammosynth.errors import UserError
from mammosynth.layout import ARMS
from mammosynth.imaging.png import read_pngs
from mammosynth.splits import SUBSETS, check_labels, random_subsets

COMPOSITION_COLUMNS = ["subset", "image_id", "label", "y", "synthetic", "kind", "source_image",
                       "path"]


def per_label(n: int, labels: list[str]) -> int:
    """Images per label of an arm's n added images (config.check makes n divisible)."""
    return int(n) // len(labels)


def real_images(manifest: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """The split's real images: image_id, path, label, subset, patient_id, kind 'real'."""
    frame = split.merge(manifest[["image_id", "image_path", "label", "patient_id"]],
                        on="image_id")
    return frame.rename(columns={"image_path": "path"}).assign(
        synthetic=False, kind="real", source_image="")


def control_draws(train: pd.DataFrame, label: str, k: int, seed: int, labels: list[str]) -> list:
    """The image_ids of `label`'s real training images that dup{n} repeats and aug{n} augments:
    k draws, seeded by (seed, label index), without replacement until every image of the label
    was drawn once, then again (a fresh permutation each round). Nested: the first k' of k draws
    are the draws for k'."""
    ids = train.loc[train["label"] == label, "image_id"].tolist()
    if not ids:
        raise UserError(f"control arms: the training subset has no image labelled {label}")
    rng = np.random.default_rng([seed, labels.index(label)])
    out = []
    while len(out) < k:
        out += [ids[i] for i in rng.permutation(len(ids))]
    return out[:k]


def real_subset(train: pd.DataFrame, percent: int, seed: int) -> pd.DataFrame:
    """real{p}: about `percent` % of the real training images, whole patients, label-stratified
    and nested (p < q: real{p} inside real{q}). Each patient's stratum is the label of most of
    their training images; patients are taken in one seeded order per stratum until the
    stratum's images reach round(percent % of them) (at least one patient)."""
    images = train.groupby("patient_id")["label"].agg(lambda s: s.value_counts().index[0])
    sizes = train.groupby("patient_id").size()
    rng = np.random.default_rng([seed, 2000])
    keep = []
    for label in sorted(images.unique()):
        patients = sorted(images.index[images == label])
        order = [patients[i] for i in rng.permutation(len(patients))]
        total, target, taken = 0, round(percent / 100 * sizes[patients].sum()), []
        for patient in order:
            if taken and total >= target:
                break
            taken.append(patient)
            total += sizes[patient]
        keep += taken
    return train[train["patient_id"].isin(keep)]


def compose(manifest: pd.DataFrame, split: pd.DataFrame, synthetic: dict[str, list[str]],
            n: int, labels: list[str], *, arm: str = "synth", repool: dict | None = None,
            augmented: dict[str, list[tuple[str, str]]] | None = None,
            seed: int = 0) -> dict[str, pd.DataFrame]:
    """-> {'train', 'val', 'test'}: DataFrames (image_id, path, label, y, synthetic, kind,
    source_image) for arm{n} (module docstring); n is a percent for arm real.

    synthetic: {label: synthetic image paths in order} (synth, synthonly); augmented: {label:
    [(source image_id, path)] in draw order} (aug); seed: the split's classifier seed (the draws).
    repool: {test_fraction, val_fraction, seed} - protocol paper: re-split real + synthetic at
    random (with n = 0 this reproduces the split file, drawn the same way over the same order).
    """
    if arm not in ARMS:
        raise UserError(f"arm {arm!r}: not one of {', '.join(ARMS)}")
    frame = real_images(manifest, split)
    train = frame[frame["subset"] == "train"]
    extra = []
    if arm == "real":
        frame = pd.concat([real_subset(train, n, seed), frame[frame["subset"] != "train"]],
                          ignore_index=True)
    else:
        k = per_label(n, labels)
        for label in labels:
            if arm in ("synth", "synthonly"):
                paths = synthetic.get(label, [])
                if len(paths) < k:
                    raise UserError(f"{arm}{n} needs {k} synthetic {label} images, "
                                    f"{len(paths)} exist")
                extra += [{"image_id": f"synthetic-{label}-{i:05d}", "path": str(p),
                           "synthetic": True, "kind": "synthetic", "source_image": ""}
                          | {"label": label, "subset": "train"} for i, p in enumerate(paths[:k])]
            elif arm == "dup":
                paths = train.set_index("image_id")["path"]
                extra += [{"image_id": f"duplicate-{label}-{i:05d}", "path": paths[source],
                           "synthetic": False, "kind": "duplicate", "source_image": source}
                          | {"label": label, "subset": "train"}
                          for i, source in enumerate(control_draws(train, label, k, seed,
                                                                   labels))]
            elif arm == "aug":
                copies = (augmented or {}).get(label, [])
                draws = control_draws(train, label, k, seed, labels)
                if [c[0] for c in copies[:k]] != draws:
                    raise UserError(f"aug{n}: the augmented {label} images are not copies of "
                                    "this split's draws; delete results/augmented/ and re-run")
                extra += [{"image_id": f"augmented-{label}-{i:05d}", "path": str(path),
                           "synthetic": False, "kind": "augmented", "source_image": source}
                          | {"label": label, "subset": "train"}
                          for i, (source, path) in enumerate(copies[:k])]
        if arm == "synthonly":
            frame = frame[frame["subset"] != "train"]
    if extra:
        frame = pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)
    if repool is not None:
        frame["subset"] = random_subsets(len(frame), **repool)
        check_labels(frame, set(labels))
    frame["y"] = frame["label"].map({label: i for i, label in enumerate(labels)}).astype(int)
    frame = frame.drop(columns="patient_id")
    return {s: frame[frame["subset"] == s].drop(columns="subset").reset_index(drop=True)
            for s in SUBSETS}


def write_composition(subsets: dict[str, pd.DataFrame], path) -> None:
    """One CSV row per image a model was trained, validated or tested on."""
    table = pd.concat([sub.assign(subset=name) for name, sub in subsets.items()],
                      ignore_index=True)
    table[COMPOSITION_COLUMNS].to_csv(path, index=False)


def read_composition(path) -> dict[str, pd.DataFrame]:
    table = pd.read_csv(path, dtype={"image_id": str, "label": str, "path": str,
                                     "source_image": str}, keep_default_na=False)
    table["synthetic"] = table["synthetic"].astype(str).str.lower().isin(["true", "1"])
    return {s: table[table["subset"] == s].drop(columns="subset").reset_index(drop=True)
            for s in SUBSETS}


def load_tensor(paths, size: int) -> torch.Tensor:
    """PNG files -> (N, 1, size, size) float32 in [0, 1]."""
    return torch.from_numpy(read_pngs(list(paths), size))
