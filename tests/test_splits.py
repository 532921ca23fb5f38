"""Patient-grouped, label-stratified splits and the leak check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammosynth.errors import UserError
from mammosynth.splits import SUBSETS, check_split, make_split, paper_split

FRACTIONS = {"test_fraction": 0.2, "val_fraction": 0.1}


def synthetic_manifest(patients: int = 60, seed: int = 0, rejected: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        pid = f"pat{p:03d}"
        for k in range(int(rng.integers(1, 5))):
            rows.append({"image_id": f"img{p:03d}_{k}", "patient_id": pid,
                         "label": "normal" if rng.random() < 0.2 else "abnormal",
                         "status": "ok", "reason": ""})
    for r in range(rejected):
        # rejected rows may share a patient with ok rows and have no label
        rows.append({"image_id": f"bad{r}", "patient_id": f"pat{r:03d}", "label": "",
                     "status": "rejected", "reason": "file is empty (0 bytes)"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def manifest():
    m = synthetic_manifest()
    ok = m[m["status"] == "ok"]
    assert set(ok["label"]) == {"normal", "abnormal"}
    assert 0.1 < (ok["label"] == "normal").mean() < 0.3
    return m


@pytest.fixture(scope="module")
def splits(manifest):
    return {s: make_split(manifest, s, seed=0, **FRACTIONS) for s in range(4)}


def test_split_partitions_the_ok_images(manifest, splits):
    ok_ids = set(manifest.loc[manifest["status"] == "ok", "image_id"])
    for s, split in splits.items():
        assert list(split.columns) == ["image_id", "subset"]
        assert split["image_id"].is_unique
        assert set(split["image_id"]) == ok_ids, s
        assert not split["image_id"].str.startswith("bad").any()
        assert set(split["subset"]) == set(SUBSETS)


def test_no_patient_in_two_subsets(manifest, splits):
    for s, split in splits.items():
        merged = split.merge(manifest[["image_id", "patient_id"]], on="image_id")
        assert (merged.groupby("patient_id")["subset"].nunique() == 1).all(), s


def test_every_label_in_every_subset(manifest, splits):
    for s, split in splits.items():
        merged = split.merge(manifest[["image_id", "label"]], on="image_id")
        for subset in SUBSETS:
            assert set(merged.loc[merged["subset"] == subset, "label"]) == {"normal", "abnormal"}


def test_fractions_roughly_respected(splits):
    for s, split in splits.items():
        share = split["subset"].value_counts(normalize=True)
        assert 0.1 <= share["test"] <= 0.3, (s, share.to_dict())
        assert 0.03 <= share["val"] <= 0.2, (s, share.to_dict())
        assert share["train"] >= 0.55, (s, share.to_dict())


def test_split_is_deterministic(manifest, splits):
    again = make_split(manifest, 2, seed=0, **FRACTIONS)
    pd.testing.assert_frame_equal(again, splits[2])
    # the manifest's row order of rejected rows does not matter; a copy gives the same split
    pd.testing.assert_frame_equal(make_split(manifest.copy(), 2, seed=0, **FRACTIONS), splits[2])


def test_different_split_ids_give_different_test_sets(splits):
    tests = [frozenset(sp.loc[sp["subset"] == "test", "image_id"]) for sp in splits.values()]
    assert len(set(tests)) == len(tests)
    # and the seed shifts them too
    assert splits[0]["subset"].tolist() != splits[1]["subset"].tolist()


def test_seed_changes_the_split(manifest, splits):
    other = make_split(manifest, 0, seed=1, **FRACTIONS)
    assert set(other.loc[other["subset"] == "test", "image_id"]) != set(
        splits[0].loc[splits[0]["subset"] == "test", "image_id"])


def test_check_split_accepts_a_made_split(manifest, splits):
    for split in splits.values():
        check_split(split, manifest)  # no error


def test_check_split_finds_a_planted_leak(manifest, splits):
    split = splits[0].copy()
    merged = split.merge(manifest[["image_id", "patient_id"]], on="image_id")
    test_rows = merged[merged["subset"] == "test"]
    sizes = test_rows.groupby("patient_id").size()
    patient = sizes[sizes >= 2].index[0]
    moved = test_rows.loc[test_rows["patient_id"] == patient, "image_id"].iloc[0]
    split.loc[split["image_id"] == moved, "subset"] = "train"
    with pytest.raises(UserError, match="leak") as err:
        check_split(split, manifest)
    assert patient in str(err.value)


def test_check_split_finds_a_missing_label(manifest, splits):
    split = splits[0].copy()
    merged = split.merge(manifest[["image_id", "label"]], on="image_id")
    # move every normal image out of val (to drop it entirely would also do)
    normal_val = merged.loc[(merged["subset"] == "val") & (merged["label"] == "normal"), "image_id"]
    split = split[~split["image_id"].isin(normal_val)]
    with pytest.raises(UserError, match="val subset has no image labelled normal"):
        check_split(split, manifest)


def test_group_by_other_column(manifest):
    m = manifest.assign(site=manifest["patient_id"].str[-1])  # 10 "sites"
    split = make_split(m, 0, group_by="site", seed=0, test_fraction=0.2, val_fraction=0.2)
    merged = split.merge(m[["image_id", "site"]], on="image_id")
    assert (merged.groupby("site")["subset"].nunique() == 1).all()


def test_unknown_group_column_is_a_user_error(manifest):
    with pytest.raises(UserError, match="group_by"):
        make_split(manifest, 0, group_by="hospital", **FRACTIONS)


def test_too_few_patients_is_a_user_error():
    small = synthetic_manifest(patients=3, rejected=0)
    with pytest.raises(UserError, match="3 patient_id groups cannot be split"):
        make_split(small, 0, **FRACTIONS)


def test_too_few_patients_for_val_is_a_user_error():
    # enough patients for 5 test folds, not for the 8 val folds carved from the other 4/5
    m = synthetic_manifest(patients=8, rejected=0)
    with pytest.raises(UserError, match="groups cannot be split into folds of 0.125"):
        make_split(m, 0, **FRACTIONS)


def test_images_of_selects_one_subset_and_label():
    from mammosynth.splits import images_of

    manifest = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "label": ["n", "x", "n", "n"],
                             "image_path": ["pa", "pb", "pc", "pd"]})
    split = pd.DataFrame({"image_id": ["d", "a", "b", "c"],
                          "subset": ["train", "train", "train", "test"]})
    assert images_of(manifest, split, "train", "n") == ["pd", "pa"]
    assert images_of(manifest, split, "train") == ["pd", "pa", "pb"]
    assert images_of(manifest, split, "test", "x") == []


# --- splits.official_test: the data set's own test set (VinDr-Mammo's split column) -----------

def official_manifest(patients: int = 60, seed: int = 0) -> pd.DataFrame:
    """synthetic_manifest plus official_subset by patient: every 5th patient in 'test'; the
    rejected rows keep their patient's subset."""
    m = synthetic_manifest(patients, seed)
    number = m["patient_id"].str[3:].astype(int)
    return m.assign(official_subset=["test" if n % 5 == 0 else "training" for n in number])


def test_official_test_set_is_every_splits_test_set():
    m = official_manifest()
    ok = m[m["status"] == "ok"]
    official = set(ok.loc[ok["official_subset"] == "test", "image_id"])
    splits = {s: make_split(m, s, seed=0, official_test=True, **FRACTIONS) for s in range(4)}
    vals = set()
    for s, split in splits.items():
        assert set(split["image_id"]) == set(ok["image_id"]), s
        assert set(split.loc[split["subset"] == "test", "image_id"]) == official, s
        assert set(split["subset"]) == set(SUBSETS)
        merged = split.merge(m[["image_id", "patient_id", "label"]], on="image_id")
        # patients never straddle, every label everywhere
        assert (merged.groupby("patient_id")["subset"].nunique() == 1).all(), s
        for subset in SUBSETS:
            assert set(merged.loc[merged["subset"] == subset, "label"]) == {"normal", "abnormal"}
        check_split(split, m)
        # val is still a ~val_fraction share of all ok images
        assert 0.03 <= (split["subset"] == "val").mean() <= 0.2, s
        vals.add(frozenset(split.loc[split["subset"] == "val", "image_id"]))
    assert len(vals) == len(splits)  # split ids differ in train/val only


def test_official_test_ignores_test_fraction():
    m = official_manifest()
    a = make_split(m, 0, seed=0, official_test=True, test_fraction=0.2, val_fraction=0.1)
    b = make_split(m, 0, seed=0, official_test=True, test_fraction=0.4, val_fraction=0.1)
    assert set(a.loc[a["subset"] == "test", "image_id"]) == set(
        b.loc[b["subset"] == "test", "image_id"])


def test_official_test_off_draws_its_own_test_set():
    m = official_manifest()
    split = make_split(m, 0, seed=0, **FRACTIONS)  # the default: the column is not used
    official = set(m.loc[(m["status"] == "ok") & (m["official_subset"] == "test"), "image_id"])
    assert set(split.loc[split["subset"] == "test", "image_id"]) != official


def test_official_test_without_the_column_is_a_user_error(manifest):
    with pytest.raises(UserError, match="splits.official_test") as err:
        make_split(manifest, 0, official_test=True, **FRACTIONS)
    assert "official_subset" in str(err.value) and "\n" not in str(err.value)


def test_official_test_with_no_test_image_is_a_user_error():
    m = official_manifest().assign(official_subset="training")
    with pytest.raises(UserError, match="splits.official_test: no usable image"):
        make_split(m, 0, official_test=True, **FRACTIONS)


def test_official_test_straddling_patient_is_a_user_error():
    m = official_manifest()
    ok = m[m["status"] == "ok"]
    sizes = ok[ok["official_subset"] == "test"].groupby("patient_id").size()
    patient = sizes[sizes >= 2].index[0]
    row = ok.index[ok["patient_id"] == patient][0]
    m.loc[row, "official_subset"] = "training"
    with pytest.raises(UserError, match="both in the official test set and outside it") as err:
        make_split(m, 0, official_test=True, **FRACTIONS)
    assert patient in str(err.value)


def test_official_test_missing_a_label_is_a_user_error():
    m = official_manifest()
    in_test = (m["official_subset"] == "test") & (m["status"] == "ok")
    m.loc[in_test, "label"] = "abnormal"
    with pytest.raises(UserError, match="official test set has no image labelled normal"):
        make_split(m, 0, official_test=True, **FRACTIONS)


# --- splits.scheme kfold: one partition, split id i tests on fold i ----------------------------

K = 5  # round(1 / FRACTIONS["test_fraction"])


def held_out(split: pd.DataFrame) -> set:
    return set(split.loc[split["subset"] == "test", "image_id"])


@pytest.fixture(scope="module")
def kfold(manifest):
    return {s: make_split(manifest, s, seed=0, scheme="kfold", **FRACTIONS) for s in range(K)}


def test_kfold_test_sets_are_disjoint_and_cover_every_ok_image(manifest, kfold):
    ok_ids = set(manifest.loc[manifest["status"] == "ok", "image_id"])
    tests = [held_out(split) for split in kfold.values()]
    assert sum(len(t) for t in tests) == len(ok_ids)  # disjoint ...
    assert set().union(*tests) == ok_ids  # ... and covering
    for s, split in kfold.items():
        assert set(split["image_id"]) == ok_ids and split["image_id"].is_unique, s
        assert set(split["subset"]) == set(SUBSETS), s
        assert 0.1 <= (split["subset"] == "test").mean() <= 0.3, s


def test_kfold_is_grouped_and_stratified(manifest, kfold):
    for s, split in kfold.items():
        merged = split.merge(manifest[["image_id", "patient_id", "label"]], on="image_id")
        assert (merged.groupby("patient_id")["subset"].nunique() == 1).all(), s
        for subset in SUBSETS:  # every fold (= a test set) has every label, and so do the rest
            assert set(merged.loc[merged["subset"] == subset, "label"]) == {"normal", "abnormal"}
        check_split(split, manifest)


def test_kfold_val_is_carved_from_the_training_folds(manifest, kfold):
    vals = set()
    for s, split in kfold.items():
        others = set().union(*(held_out(kfold[o]) for o in kfold if o != s))
        val = set(split.loc[split["subset"] == "val", "image_id"])
        train = set(split.loc[split["subset"] == "train", "image_id"])
        assert val and val | train == others and not val & train, s
        assert 0.06 <= (split["subset"] == "val").mean() <= 0.14, s  # a share of all ok images
        vals.add(frozenset(val))
    assert len(vals) == K  # drawn with seed + split id + 10000
    # without val, the folds are the same
    no_val = make_split(manifest, 3, seed=0, scheme="kfold", test_fraction=0.2, val_fraction=0)
    assert set(no_val["subset"]) == {"train", "test"} and held_out(no_val) == held_out(kfold[3])


def test_kfold_is_deterministic_whatever_id_comes_first(manifest, kfold):
    backwards = {s: make_split(manifest.copy(), s, seed=0, scheme="kfold", **FRACTIONS)
                 for s in reversed(range(K))}
    for s in range(K):
        pd.testing.assert_frame_equal(backwards[s], kfold[s])
    # the seed (not the split id) chooses the partition
    other = make_split(manifest, 0, seed=1, scheme="kfold", **FRACTIONS)
    assert held_out(other) != held_out(kfold[0])


def test_holdout_is_the_default_and_unchanged(manifest, splits, kfold):
    for s in (0, 3):
        pd.testing.assert_frame_equal(
            make_split(manifest, s, seed=0, scheme="holdout", **FRACTIONS), splits[s])
    holdout_tests = [held_out(split) for split in splits.values()]
    assert sum(len(t) for t in holdout_tests) > len(set().union(*holdout_tests))  # they overlap


def test_kfold_split_ids_cover_the_folds(manifest):
    # ids beyond the folds, and kfold with official_test, are config.check's
    # (tests/test_config_check.py)
    make_split(manifest, 3, seed=0, scheme="kfold", test_fraction=0.25, val_fraction=0.1)


def test_kfold_fold_missing_a_label_is_a_user_error(manifest):
    m = manifest.copy()
    ok = m["status"] == "ok"
    m.loc[ok, "label"] = "abnormal"
    m.loc[ok & m["patient_id"].isin(["pat001", "pat002", "pat003"]), "label"] = "normal"
    fold_errors = []
    for s in range(K):  # 3 normal patients, 5 folds: at least 2 folds have no normal image
        try:
            make_split(m, s, seed=0, scheme="kfold", **FRACTIONS)
        except UserError as err:
            if f"kfold fold {s} of 5 has no image labelled normal" in str(err):
                fold_errors.append(str(err))
    assert len(fold_errors) >= 2
    assert "fewer folds" in fold_errors[0] and "\n" not in fold_errors[0]


# --- configured labels: each needs a usable image (labels.scheme birads on INbreast) -----------

def test_absent_label_stops_the_rigorous_split(manifest, splits):
    n_ok = int((manifest["status"] == "ok").sum())
    message = (rf"split: no usable image is labelled birads0 \(0 of {n_ok} ok images\); "
               r"remove it from labels.map \(or use another labels.scheme\)")
    labels = ["normal", "abnormal", "birads0"]
    for kwargs in ({}, {"scheme": "kfold"}):
        with pytest.raises(UserError, match=message):
            make_split(manifest, 0, seed=0, labels=labels, **kwargs, **FRACTIONS)
    with pytest.raises(UserError, match=message):
        check_split(splits[0], manifest, labels=labels)
    with pytest.raises(UserError, match="labelled birads0 or birads5 .*remove them from"):
        make_split(manifest, 0, labels=["birads0", "normal", "birads5", "abnormal"], **FRACTIONS)


def test_absent_label_stops_the_paper_split(manifest):
    n_ok = int((manifest["status"] == "ok").sum())
    for split_id in (0, "all"):
        with pytest.raises(UserError, match=rf"no usable image is labelled birads0 \(0 of "
                                            rf"{n_ok} ok images\); remove it from labels.map"):
            paper_split(manifest, split_id, test_fraction=0.2, val_fraction=0.0,
                        labels=["normal", "abnormal", "birads0"])


def test_configured_labels_present_change_nothing(manifest, splits, kfold):
    # labels=None (direct callers) keeps today's behaviour; present labels, in any order, agree
    for labels in (None, ["normal", "abnormal"], ["abnormal", "normal"]):
        pd.testing.assert_frame_equal(
            make_split(manifest, 1, seed=0, labels=labels, **FRACTIONS), splits[1])
        pd.testing.assert_frame_equal(
            make_split(manifest, 2, seed=0, scheme="kfold", labels=labels, **FRACTIONS),
            kfold[2])
        check_split(splits[1], manifest, labels=labels)
        pd.testing.assert_frame_equal(
            paper_split(manifest, 0, test_fraction=0.2, val_fraction=0.1, seed=3, labels=labels),
            paper_split(manifest, 0, test_fraction=0.2, val_fraction=0.1, seed=3))
