"""protocol paper (the papers' own leaky procedure) beside protocol rigorous: the splits, the
pooled composition, composition.csv, and the leakage counts the report computes from files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mammosynth.classify.data import (COMPOSITION_COLUMNS, compose, read_composition,
                                      write_composition)
from mammosynth.errors import UserError
from mammosynth.report.leakage import (LEAK_COUNTS, LEAKAGE_COLUMNS, leakage_table,
                                       model_leakage)
from mammosynth.splits import make_split, paper_split, random_subsets

LABELS = ["normal", "abnormal"]


def manifest(n=40, images_per_patient=2):
    rows = [{"image_id": f"img{i:03d}", "patient_id": f"p{i // images_per_patient:03d}",
             "label": LABELS[(i // images_per_patient) % 2], "status": "ok", "reason": "",
             "image_path": f"png/img{i:03d}.png"} for i in range(n)]
    rows.append({"image_id": "bad", "patient_id": "p999", "label": "", "status": "rejected",
                 "reason": "empty file", "image_path": ""})
    return pd.DataFrame(rows)


def synthetic(count=20):
    return {label: [f"synth/{label}_{i:05d}.png" for i in range(count)] for label in LABELS}


REPOOL = dict(test_fraction=0.2, val_fraction=0.0, seed=7)


def test_random_subsets_have_exact_fractions_and_follow_the_seed():
    a = random_subsets(101, test_fraction=0.2, val_fraction=0.1, seed=3)
    assert (a == "test").sum() == 20 and (a == "val").sum() == 10 and (a == "train").sum() == 71
    assert (a == random_subsets(101, test_fraction=0.2, val_fraction=0.1, seed=3)).all()
    assert (a != random_subsets(101, test_fraction=0.2, val_fraction=0.1, seed=4)).any()
    assert not (random_subsets(10, test_fraction=0.2, val_fraction=0, seed=0) == "val").any()


def test_paper_split_is_image_level_and_random():
    m = manifest()
    split = paper_split(m, 0, test_fraction=0.2, val_fraction=0.0, seed=7)
    assert len(split) == 40 and "bad" not in set(split["image_id"])
    assert (split["subset"] == "test").sum() == 8 and not (split["subset"] == "val").any()
    # image level: with seed 7 at least one patient's two images straddle train and test
    merged = split.merge(m, on="image_id")
    assert (merged.groupby("patient_id")["subset"].nunique() > 1).any()
    # protocol rigorous never does
    rigorous = make_split(m, 0, test_fraction=0.2, val_fraction=0.1, seed=7)
    merged = rigorous.merge(m, on="image_id")
    assert (merged.groupby("patient_id")["subset"].nunique() == 1).all()


def test_paper_split_all_is_every_image_in_train():
    split = paper_split(manifest(), "all", test_fraction=0.2, val_fraction=0.0)
    assert len(split) == 40 and set(split["subset"]) == {"train"}


def test_rigorous_split_without_val_fraction_has_no_val_subset():
    split = make_split(manifest(), 1, test_fraction=0.25, val_fraction=0.0, seed=0)
    assert set(split["subset"]) == {"train", "test"}


def test_paper_compose_with_no_synthetic_reproduces_the_split_file():
    m = manifest()
    split = paper_split(m, 2, test_fraction=0.2, val_fraction=0.0, seed=5)
    subsets = compose(m, split, {}, 0, LABELS, repool=dict(REPOOL, seed=5 + 2))
    for name in ("train", "test"):
        assert list(subsets[name]["image_id"]) == \
            list(split.loc[split["subset"] == name, "image_id"])


def test_paper_compose_pools_synthetic_images_into_test():
    m = manifest()
    split = paper_split(m, 0, test_fraction=0.2, val_fraction=0.0, seed=7)
    subsets = compose(m, split, synthetic(), 40, LABELS, repool=REPOOL)
    test, train = subsets["test"], subsets["train"]
    assert len(test) == 16 and len(train) == 64  # 80:20 of the pool of 40 real + 40 synthetic
    assert test["synthetic"].any() and train["synthetic"].any()
    assert test["synthetic"].sum() + train["synthetic"].sum() == 40
    # the real test set is drawn over the pool, so it depends on the scenario
    real_test = set(test.loc[~test["synthetic"], "image_id"])
    assert real_test != set(split.loc[split["subset"] == "test", "image_id"])


def test_rigorous_compose_keeps_synthetic_out_of_val_and_test():
    m = manifest()
    split = make_split(m, 0, test_fraction=0.2, val_fraction=0.1, seed=0)
    subsets = compose(m, split, synthetic(), 40, LABELS)
    assert subsets["train"]["synthetic"].sum() == 40
    assert not subsets["val"]["synthetic"].any() and not subsets["test"]["synthetic"].any()


def test_paper_split_and_compose_refuse_a_test_subset_without_every_label():
    m = manifest(n=8, images_per_patient=1)
    with pytest.raises(UserError, match="test subset has no image labelled"):
        paper_split(m, 0, test_fraction=0.1, val_fraction=0.0)  # 1 test image, 2 labels
    split = m.loc[m["status"] == "ok", ["image_id"]].assign(subset="train")
    with pytest.raises(UserError, match="test subset has no image labelled"):
        compose(m, split, {}, 0, LABELS, repool=dict(test_fraction=0.1, val_fraction=0.0, seed=0))


def test_composition_csv_reads_back_as_written(tmp_path):
    m = manifest()
    split = make_split(m, 0, test_fraction=0.2, val_fraction=0.1, seed=0)
    subsets = compose(m, split, synthetic(), 8, LABELS)
    write_composition(subsets, tmp_path / "composition.csv")
    table = pd.read_csv(tmp_path / "composition.csv")
    assert list(table.columns) == COMPOSITION_COLUMNS and len(table) == 48
    back = read_composition(tmp_path / "composition.csv")
    for name, sub in subsets.items():
        pd.testing.assert_frame_equal(back[name][sub.columns], sub, check_dtype=False)
        assert back[name]["synthetic"].dtype == bool


# --------------------------------------------------------------------------- leakage


def _composition(m, split, n, repool=None):
    subsets = compose(m, split, synthetic(), n, LABELS, repool=repool)
    return pd.concat([s.assign(subset=k) for k, s in subsets.items()], ignore_index=True)


def test_rigorous_models_have_no_leakage():
    m = manifest()
    split = make_split(m, 0, test_fraction=0.2, val_fraction=0.1, seed=0)
    counts = model_leakage(_composition(m, split, 8), m, split)
    assert counts == {"test_images": 8, "test_synthetic": 0, "test_patients_seen": 0,
                      "test_images_seen_by_ddpm": 0}


def test_paper_models_leak_and_are_counted():
    m = manifest()
    split = paper_split(m, 0, test_fraction=0.2, val_fraction=0.0, seed=7)
    everything = paper_split(m, "all", test_fraction=0.2, val_fraction=0.0)
    comp = _composition(m, split, 40, repool=REPOOL)
    counts = model_leakage(comp, m, everything)
    test = comp[comp["subset"] == "test"]
    assert counts["test_images"] == 16
    assert counts["test_synthetic"] == int(test["synthetic"].sum()) > 0
    real_test = test[~test["synthetic"]]
    # every real test image was in the DDPMs' training set ("all")
    assert counts["test_images_seen_by_ddpm"] == len(real_test)
    # by hand: test patients with another image in train
    train_patients = set(comp[(comp["subset"] == "train") & ~comp["synthetic"]]
                         .merge(m, on="image_id")["patient_id"])
    expected = len(set(real_test.merge(m, on="image_id")["patient_id"]) & train_patients)
    assert counts["test_patients_seen"] == expected > 0


def _write_model(tmp_path, m, split, n, name="model"):
    folder = tmp_path / name
    folder.mkdir()
    subsets = compose(m, split, synthetic(), n, LABELS)
    write_composition(subsets, folder / "composition.csv")
    split.to_csv(tmp_path / "split0.csv", index=False)
    return {"arch": "a", "arm": "synth", "n": n, "split": 0, "ddpm_split": 0,
            "composition": str(folder / "composition.csv")}


def test_leakage_table_passes_a_rigorous_model(tmp_path):
    m = manifest()
    split = make_split(m, 0, test_fraction=0.2, val_fraction=0.1, seed=0)
    model = _write_model(tmp_path, m, split, 8)
    table = leakage_table([model], m, {"0": str(tmp_path / "split0.csv")}, "rigorous")
    assert list(table.columns) == LEAKAGE_COLUMNS
    assert table.iloc[0][LEAK_COUNTS].tolist() == [0, 0, 0]


def test_leakage_table_fails_on_a_planted_shared_patient(tmp_path):
    m = manifest()
    split = make_split(m, 0, test_fraction=0.2, val_fraction=0.1, seed=0)
    model = _write_model(tmp_path, m, split, 0)
    comp = pd.read_csv(model["composition"])
    # plant: a test image's patient gets a training image
    test_id = comp.loc[comp["subset"] == "test", "image_id"].iloc[0]
    patient = m.loc[m["image_id"] == test_id, "patient_id"].iloc[0]
    train_id = comp.loc[comp["subset"] == "train", "image_id"].iloc[0]
    m.loc[m["image_id"] == train_id, "patient_id"] = patient
    with pytest.raises(UserError, match=r"composition\.csv: leakage .*test_patients_seen 1"):
        leakage_table([model], m, {}, "rigorous")
    # the same files under protocol paper: reported, not refused
    table = leakage_table([model], m, {}, "paper")
    assert table.loc[0, "test_patients_seen"] == 1


def test_leakage_table_fails_on_a_synthetic_test_image(tmp_path):
    m = manifest()
    split = make_split(m, 0, test_fraction=0.2, val_fraction=0.1, seed=0)
    model = _write_model(tmp_path, m, split, 8)
    comp = pd.read_csv(model["composition"])
    comp.loc[np.flatnonzero(comp["synthetic"])[0], "subset"] = "test"
    comp.to_csv(model["composition"], index=False)
    with pytest.raises(UserError, match="test_synthetic 1"):
        leakage_table([model], m, {"0": str(tmp_path / "split0.csv")}, "rigorous")


def test_leakage_table_fails_when_the_ddpm_saw_a_test_image(tmp_path):
    m = manifest()
    split = make_split(m, 0, test_fraction=0.2, val_fraction=0.1, seed=0)
    model = _write_model(tmp_path, m, split, 8)
    ddpm = split.copy()
    ddpm.loc[ddpm["subset"] == "test", "subset"] = "train"  # the DDPM trained on everything
    ddpm.to_csv(tmp_path / "split0.csv", index=False)
    with pytest.raises(UserError, match="test_images_seen_by_ddpm 8"):
        leakage_table([model], m, {"0": str(tmp_path / "split0.csv")}, "rigorous")
