"""Patient-grouped, label-stratified splits and the leak check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammosynth.errors import UserError
from mammosynth.splits import SUBSETS, check_split, make_split

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
