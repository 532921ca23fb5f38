"""Train / val / test splits, one per split id.

protocol rigorous (`make_split`): patient-grouped and label-stratified. How the test subset is
drawn is config splits.scheme:
- holdout (the default): each split id draws its own test set with seed
  `layout.split_seed(seed, s)` (StratifiedGroupKFold with 1/test_fraction folds; the first fold that has every label, and
  leaves every label outside it), so test sets of different ids overlap;
- kfold: one StratifiedGroupKFold partition of the ok images into k = round(1/test_fraction)
  folds with seed `seed` - the same partition for every split id - and split id i tests on
  fold i: test sets are disjoint and ids 0..k-1 cover every ok image once (config.check
  refuses ids >= k); a test fold without every label is a UserError.
Either way val is then drawn from the rest like the holdout test set (seed
`layout.val_seed(seed, s)`; val_fraction is a share of all ok images). Every group (patient) lands in exactly one subset;
`check_split` verifies it from the files rather than trusting the construction.
With `official_test` (config splits.official_test) the test subset is the data set's own test set
(manifest column `official_subset` == "test", e.g. VinDr-Mammo's split column) for every split
id (images with another or no official subset are "the rest"), test_fraction is unused, and val
is drawn from the rest as above: split ids then differ in train/val only (and not at all with
val_fraction 0). It contradicts scheme kfold (config.check refuses both).

protocol paper (`paper_split`, `random_subsets`): both papers' "random 80:20 split" - image
level, no grouping, no stratification, and no official test set or scheme (splits.official_test
and splits.scheme are ignored). Paper 000 draws it over the pool of real and synthetic images
(classify.data.compose); the split file holds the draw over the real images alone (scenario 0).
Split id "all" (paper 000's DDPMs, trained on every real image) puts every image in train.

Both protocols take the configured labels (class order): a label that no ok image has is a
UserError naming it (the classifier would train a class that never occurs).
"""

from __future__ import annotations

import pandas as pd
import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from mammosynth import layout
from mammosynth.config import kfolds
from mammosynth.errors import UserError

SUBSETS = ("train", "val", "test")


def _check_groups(frame: pd.DataFrame, n_folds: int, fraction: float, group_by: str) -> None:
    n_groups = frame[group_by].nunique()
    if n_groups < n_folds:
        raise UserError(f"config splits: {n_groups} {group_by} groups cannot be split into "
                        f"folds of {fraction:g}; use more data or larger fractions")


def _take_fold(frame: pd.DataFrame, fraction: float, group_by: str, seed: int) -> pd.Index:
    n_folds = max(2, round(1 / fraction))
    _check_groups(frame, n_folds, fraction, group_by)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    labels = set(frame["label"])
    candidates = list(folds.split(frame, frame["label"], frame[group_by]))
    # The first fold that leaves every label on both sides (small classes can miss a fold).
    for keep, held in candidates:
        if set(frame["label"].iloc[held]) == labels == set(frame["label"].iloc[keep]):
            return frame.index[held]
    return frame.index[candidates[0][1]]


def _kfold_test(frame: pd.DataFrame, split_id: int, test_fraction: float, group_by: str,
                seed: int) -> pd.Index:
    """Fold `split_id` of the one partition (seed `seed`, whatever the split id) into
    config.kfolds(test_fraction) patient-grouped, label-stratified folds."""
    n_folds = kfolds(test_fraction)
    _check_groups(frame, n_folds, test_fraction, group_by)
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    held = list(folds.split(frame, frame["label"], frame[group_by]))[split_id][1]
    missing = set(frame["label"]) - set(frame["label"].iloc[held])
    if missing:
        raise UserError(f"config splits.test_fraction: kfold fold {split_id} of {n_folds} has no "
                        f"image labelled {', '.join(sorted(missing))} (too few {group_by}s have "
                        "it); use fewer folds (a larger splits.test_fraction) or other labels "
                        "(labels.map)")
    return frame.index[held]


def check_present(frame: pd.DataFrame, labels: list[str] | None) -> None:
    """Raise UserError if a configured label has no image in `frame` (the ok images); None
    checks nothing. Images with a label outside `labels` are left alone."""
    if labels is None:
        return
    missing = [label for label in labels if label not in set(frame["label"])]
    if missing:
        them = "it" if len(missing) == 1 else "them"
        raise UserError(f"split: no usable image is labelled {' or '.join(missing)} "
                        f"(0 of {len(frame)} ok images); remove {them} from labels.map "
                        "(or use another labels.scheme)")


def make_split(manifest: pd.DataFrame, split_id: int, *, test_fraction: float,
               val_fraction: float, group_by: str = "patient_id", seed: int = 0,
               official_test: bool = False, scheme: str = "holdout",
               labels: list[str] | None = None) -> pd.DataFrame:
    """The ok images of the manifest -> DataFrame(image_id, subset), grouped and stratified;
    test per `scheme` (holdout or kfold, see the module docstring), or with `official_test`
    the data set's own test set (official_subset == "test"). `labels`: the configured labels,
    each must have an ok image (None: not checked)."""
    frame = manifest[manifest["status"] == "ok"].reset_index(drop=True)
    check_present(frame, labels)
    if group_by not in frame.columns:
        raise UserError(f"config splits.group_by: {group_by!r} is not a manifest column")
    frame = frame.assign(subset="train")
    if official_test:
        test = _official_test(frame, group_by)
        test_share = len(test) / len(frame)
    elif scheme == "kfold":
        test = _kfold_test(frame, split_id, test_fraction, group_by, seed)
        test_share = len(test) / len(frame)
    else:
        test = _take_fold(frame, test_fraction, group_by, layout.split_seed(seed, split_id))
        test_share = test_fraction
    frame.loc[test, "subset"] = "test"
    if val_fraction:
        rest = frame[frame["subset"] == "train"]
        val = _take_fold(rest, val_fraction / (1 - test_share), group_by,
                         layout.val_seed(seed, split_id))
        frame.loc[val, "subset"] = "val"
    split = frame[["image_id", "subset"]]
    check_split(split, manifest, group_by, labels=labels)
    return split


def _official_test(frame: pd.DataFrame, group_by: str) -> pd.Index:
    """The ok images the data set itself puts in its test set; UserError if there are none, a
    group has images on both sides, or a label is missing from either side."""
    if "official_subset" not in frame.columns:
        raise UserError("config splits.official_test: the manifest has no official_subset "
                        "column (this data set has no official test set); set "
                        "splits.official_test: false")
    in_test = frame["official_subset"].astype(str).str.strip().str.lower() == "test"
    if not in_test.any() or in_test.all():
        side = "no" if not in_test.any() else "every"
        raise UserError(f"config splits.official_test: {side} usable image is in the data "
                        "set's official test set (official_subset 'test'); set "
                        "splits.official_test: false")
    sides = frame.assign(_test=in_test).groupby(group_by)["_test"].nunique()
    straddle = sides[sides > 1]
    if len(straddle):
        raise UserError(f"config splits.official_test: {len(straddle)} {group_by}(s) have images "
                        f"both in the official test set and outside it, e.g. "
                        f"{straddle.index[0]}; set splits.official_test: false")
    labels = set(frame["label"])
    for name, mask in (("test", in_test), ("training", ~in_test)):
        missing = labels - set(frame.loc[mask, "label"])
        if missing:
            raise UserError(f"config splits.official_test: the official {name} set has no "
                            f"image labelled {', '.join(sorted(missing))}; set "
                            "splits.official_test: false or use other labels")
    return frame.index[in_test]


def random_subsets(n: int, *, test_fraction: float, val_fraction: float,
                   seed: int) -> np.ndarray:
    """Image-level random subsets for n items: round(n * fraction) test, then val, rest train."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    subsets = np.full(n, "train", dtype=object)
    subsets[order[:n_test]] = "test"
    subsets[order[n_test:n_test + n_val]] = "val"
    return subsets


def paper_split(manifest: pd.DataFrame, split_id: int | str, *, test_fraction: float,
                val_fraction: float, seed: int = 0,
                labels: list[str] | None = None) -> pd.DataFrame:
    """protocol paper: the ok images -> DataFrame(image_id, subset), image-level and random;
    split id "all" -> every image in train. `labels`: the configured labels, each must have an
    ok image (None: not checked)."""
    frame = manifest.loc[manifest["status"] == "ok", ["image_id", "label"]]
    frame = frame.reset_index(drop=True)
    check_present(frame, labels)
    if split_id == "all":
        return frame[["image_id"]].assign(subset="train")
    frame["subset"] = random_subsets(len(frame), test_fraction=test_fraction,
                                     val_fraction=val_fraction,
                                     seed=layout.split_seed(seed, split_id))
    check_labels(frame, set(frame["label"]) | set(labels or ()))
    return frame[["image_id", "subset"]]


def check_labels(frame: pd.DataFrame, labels: set[str]) -> None:
    """Raise UserError if train, test or a non-empty val (columns subset, label) lacks a label."""
    for subset in SUBSETS:
        if subset == "val" and not (frame["subset"] == "val").any():
            continue  # val_fraction 0: no validation set
        missing = labels - set(frame.loc[frame["subset"] == subset, "label"])
        if missing:
            raise UserError(f"split: the {subset} subset has no image labelled "
                            f"{', '.join(sorted(missing))}; use more data or other fractions")


def check_split(split: pd.DataFrame, manifest: pd.DataFrame, group_by: str = "patient_id",
                labels: list[str] | None = None) -> None:
    """Raise UserError if a group is in two subsets or a subset lacks a label (one of the ok
    images' labels, and of `labels` - the configured ones - when given)."""
    frame = split.merge(manifest[["image_id", group_by, "label"]], on="image_id", how="left")
    shared = frame.groupby(group_by)["subset"].nunique()
    shared = shared[shared > 1]
    if len(shared):
        raise UserError(f"split leaks: {len(shared)} {group_by}(s) in more than one subset, "
                        f"e.g. {shared.index[0]}")
    ok = manifest[manifest["status"] == "ok"]
    check_present(ok, labels)
    check_labels(frame, set(ok["label"]) | set(labels or ()))


def images_of(manifest: pd.DataFrame, split: pd.DataFrame, subset: str,
              label: str | None = None) -> list[str]:
    """Preprocessed image paths of one subset of a split (optionally one label), in split order."""
    frame = split[split["subset"] == subset].merge(manifest, on="image_id")
    if label is not None:
        frame = frame[frame["label"] == label]
    return frame["image_path"].tolist()
