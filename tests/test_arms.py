"""The control arms' training sets (classify.data.compose with arm dup, aug, synthonly, real),
checked from what composition.csv records: counts per label, duplicates are training images of
the split, val and test untouched, real{p} nested and patient-grouped."""

from __future__ import annotations

import pandas as pd
import pytest

from mammosynth.classify.data import (compose, control_draws, read_composition, real_images,
                                      real_subset, write_composition)
from mammosynth.errors import UserError
from mammosynth.splits import make_split

LABELS = ["normal", "abnormal"]


@pytest.fixture(scope="module")
def data():
    """60 patients, 1-3 images each (both breasts / views), labels 1:2, a grouped split."""
    rows = []
    for p in range(60):
        label = LABELS[0] if p % 3 == 0 else LABELS[1]
        for v in range(1 + p % 3):
            rows.append({"image_id": f"p{p:02d}v{v}", "patient_id": f"p{p:02d}", "label": label,
                         "status": "ok", "reason": "", "image_path": f"png/p{p:02d}v{v}.png"})
    manifest = pd.DataFrame(rows)
    split = make_split(manifest, 0, test_fraction=0.2, val_fraction=0.15, seed=1)
    return manifest, split


def synthetic(count=40):
    return {label: [f"synth/{label}_{i:05d}.png" for i in range(count)] for label in LABELS}


def composed(data, arm, n, **kw):
    manifest, split = data
    return compose(manifest, split, synthetic(), n, LABELS, arm=arm, seed=5, **kw)


def check_untouched(data, subsets):
    """val and test are the split's own real images, in the split's order."""
    manifest, split = data
    real = real_images(manifest, split)
    for subset in ("val", "test"):
        assert list(subsets[subset]["image_id"]) == list(
            real.loc[real["subset"] == subset, "image_id"])
        assert set(subsets[subset]["kind"]) == {"real"}


def test_dup_repeats_training_images_of_the_split(data, tmp_path):
    manifest, split = data
    train_ids = set(split.loc[split["subset"] == "train", "image_id"])
    subsets = composed(data, "dup", 24)
    check_untouched(data, subsets)
    write_composition(subsets, tmp_path / "composition.csv")
    train = read_composition(tmp_path / "composition.csv")["train"]
    dups = train[train["kind"] == "duplicate"]
    assert dups.groupby("label").size().to_dict() == {"normal": 12, "abnormal": 12}
    assert set(dups["source_image"]) <= train_ids  # only this split's training images
    real = train[train["kind"] == "real"]
    assert set(real["image_id"]) == train_ids and not train["synthetic"].any()
    by_id = manifest.set_index("image_id")
    assert (dups["path"] == by_id.loc[dups["source_image"], "image_path"].values).all()
    assert (dups["label"] == by_id.loc[dups["source_image"], "label"].values).all()
    # without replacement while possible: 12 normal draws from the split's normal images
    normal = train_ids & set(manifest.loc[manifest["label"] == "normal", "image_id"])
    drawn = list(dups.loc[dups["label"] == "normal", "source_image"])
    assert len(set(drawn)) == min(12, len(normal))


def test_draws_are_nested_seeded_and_cycle_when_a_label_runs_out(data):
    manifest, split = data
    train = real_images(manifest, split)
    train = train[train["subset"] == "train"]
    normal = int((train["label"] == "normal").sum())
    many = control_draws(train, "normal", 2 * normal + 3, 5, LABELS)
    assert control_draws(train, "normal", 7, 5, LABELS) == many[:7]  # nested
    assert control_draws(train, "normal", 7, 6, LABELS) != many[:7]  # seeded
    assert sorted(many[:normal]) == sorted(set(many[:normal]))  # every image once, then again
    assert sorted(many[normal:2 * normal]) == sorted(many[:normal])


def test_aug_uses_the_dup_draws_and_refuses_others(data):
    manifest, split = data
    train = real_images(manifest, split)
    train = train[train["subset"] == "train"]
    augmented = {label: [(source, f"aug/{label}_{i:05d}.png") for i, source in
                         enumerate(control_draws(train, label, 20, 5, LABELS))]
                 for label in LABELS}
    subsets = composed(data, "aug", 24, augmented=augmented)
    check_untouched(data, subsets)
    copies = subsets["train"][subsets["train"]["kind"] == "augmented"]
    dups = composed(data, "dup", 24)["train"]
    dups = dups[dups["kind"] == "duplicate"]
    assert list(copies["source_image"]) == list(dups["source_image"])
    assert copies["path"].str.startswith("aug/").all()
    wrong = {label: pairs[::-1] for label, pairs in augmented.items()}
    with pytest.raises(UserError, match="not copies of this split's draws"):
        composed(data, "aug", 24, augmented=wrong)


def test_synthonly_trains_on_synthetic_images_alone(data):
    subsets = composed(data, "synthonly", 24)
    check_untouched(data, subsets)
    train = subsets["train"]
    assert train["synthetic"].all() and set(train["kind"]) == {"synthetic"}
    assert train.groupby("label").size().to_dict() == {"normal": 12, "abnormal": 12}
    synth = composed(data, "synth", 24)["train"]
    assert list(synth.loc[synth["synthetic"], "path"]) == list(train["path"])


def test_real_fraction_is_nested_grouped_and_stratified(data):
    manifest, split = data
    full = composed(data, "synth", 0)["train"]
    patients = manifest.set_index("image_id")["patient_id"]
    previous = set()
    for p in (25, 50, 75):
        subsets = composed(data, "real", p)
        check_untouched(data, subsets)
        train = subsets["train"]
        ids = set(train["image_id"])
        assert previous <= ids  # nested
        previous = ids
        # whole patients: every image of a chosen patient is in
        chosen = set(patients[list(ids)])
        assert ids == set(full.loc[patients[full["image_id"]].isin(chosen).values, "image_id"])
        for label in LABELS:  # stratified: each label near p % of its images
            share = (train["label"] == label).sum() / (full["label"] == label).sum()
            assert abs(share - p / 100) < 0.12, (p, label, share)
    assert len(previous) < len(full)


def test_real_subset_takes_at_least_one_patient_per_label(data):
    manifest, split = data
    train = real_images(manifest, split)
    train = train[train["subset"] == "train"]
    tiny = real_subset(train, 1, seed=0)
    assert set(tiny["label"]) == set(LABELS)


def test_unknown_arm_is_refused(data):
    with pytest.raises(UserError, match="arm 'more'"):
        composed(data, "more", 24)
