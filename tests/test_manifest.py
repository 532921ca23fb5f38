"""Manifest accounting: csv data set with good and bad inputs -> ingest -> preprocess_table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mammosynth.datasets import MANIFEST_COLUMNS
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError
from mammosynth.imaging.pipeline import EXTRA_COLUMNS, fail_on_rejections, preprocess_table

from conftest import breast_pixels, write_mg_dicom

BINARY = {"scheme": "binary"}
PHI = ("DOE^JANE", "19500101", "MRN12345", "MRN55555")

GOOD = {  # path -> (birads, patient_id, laterality, side the breast touches)
    "dicoms/good1.dcm": ("1", "MRN12345", "R", "R"),
    "dicoms/good2.dcm": ("2", "MRN12345", "L", "L"),
    "dicoms/good3.dcm": ("5", "MRN55555", "", "R"),
    "dicoms/good4.dcm": ("4a", "MRN55555", "", "L"),
}
BAD = {  # path -> (birads, patient_id, words the reason must contain)
    "dicoms/empty.dcm": ("2", "MRN66666", "empty"),
    "dicoms/truncated.dcm": ("2", "MRN66666", "pixel data"),
    "dicoms/nopixels.dcm": ("3", "MRN77777", "no pixel data"),
    "pngs/black.png": ("1", "MRN77777", "blank"),
    "dicoms/missing.dcm": ("2", "MRN88888", "no file dicoms/missing.dcm"),
    "dicoms/birads9.dcm": ("9", "MRN88888", "unknown BI-RADS"),
}


def build_dataset(root: Path, good=GOOD, bad=BAD) -> Path:
    for i, (rel, (_, _, _, side)) in enumerate(good.items()):
        write_mg_dicom(root / rel, breast_pixels(96, 80, side=side, maximum=2500 + 100 * i),
                       patient_name="DOE^JANE", birth_date="19500101")
    if "dicoms/empty.dcm" in bad:
        (root / "dicoms/empty.dcm").write_bytes(b"")
    if "dicoms/truncated.dcm" in bad:
        whole = write_mg_dicom(root / "dicoms/whole.dcm", breast_pixels(96, 80),
                               patient_name="DOE^JANE", birth_date="19500101").read_bytes()
        (root / "dicoms/whole.dcm").unlink()
        (root / "dicoms/truncated.dcm").write_bytes(whole[: len(whole) // 2])
    if "dicoms/nopixels.dcm" in bad:
        write_mg_dicom(root / "dicoms/nopixels.dcm", None, patient_name="DOE^JANE",
                       birth_date="19500101")
    if "pngs/black.png" in bad:
        (root / "pngs").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((40, 30), np.uint8)).convert("RGB").save(root / "pngs/black.png")
    if "dicoms/birads9.dcm" in bad:
        write_mg_dicom(root / "dicoms/birads9.dcm", breast_pixels(96, 80))
    lines = ["path,birads,patient_id,laterality"]
    lines += [f"{rel},{b},{pid},{lat}" for rel, (b, pid, lat, _) in good.items()]
    lines += [f"{rel},{b},{pid}," for rel, (b, pid, _) in bad.items()]
    (root / "list.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def run_ingest(root: Path) -> pd.DataFrame:
    return ingest({"format": "csv", "root": str(root), "table": "list.csv",
                   "on_bad_image": "reject"}, BINARY)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = build_dataset(tmp_path_factory.mktemp("data"))
    table = run_ingest(root)
    out = tmp_path_factory.mktemp("run1")
    manifest = preprocess_table(table, {"": root}, out / "images", size=32, workers=1)
    return root, table, manifest, out


def test_ingest_rejects_what_it_can_see(dataset):
    _, table, _, _ = dataset
    assert len(table) == len(GOOD) + len(BAD)
    by_source = table.set_index("source")
    assert by_source.loc["dicoms/missing.dcm", "status"] == "rejected"
    assert by_source.loc["dicoms/birads9.dcm", "status"] == "rejected"
    # decoding problems are not ingest's business: those rows are still ok here
    for rel in ("dicoms/empty.dcm", "dicoms/truncated.dcm", "dicoms/nopixels.dcm",
                "pngs/black.png", *GOOD):
        assert by_source.loc[rel, "status"] == "ok", rel


def test_every_input_appears_exactly_once(dataset):
    _, table, manifest, _ = dataset
    assert list(manifest.columns) == MANIFEST_COLUMNS + EXTRA_COLUMNS
    assert len(manifest) == len(GOOD) + len(BAD) == len(table)
    assert manifest["source"].is_unique and manifest["image_id"].is_unique
    assert sorted(manifest["source"]) == sorted([*GOOD, *BAD])
    assert manifest["image_id"].tolist() == table["image_id"].tolist()  # same order, no drops
    assert set(manifest["status"]) <= {"ok", "rejected"}
    counts = manifest["status"].value_counts()
    assert counts["ok"] == len(GOOD) and counts["rejected"] == len(BAD)


def test_good_images_are_ok_with_a_32px_png(dataset):
    _, _, manifest, out = dataset
    ok = manifest[manifest["status"] == "ok"]
    assert sorted(ok["source"]) == sorted(GOOD)
    assert (ok["reason"] == "").all()
    for rec in ok.to_dict("records"):
        path = Path(rec["image_path"])
        assert path.is_file() and path.parent == out / "images"
        with Image.open(path) as im:
            assert im.size == (32, 32) and im.mode == "I;16"
            pixels = np.asarray(im)
        # the chest wall ends up on the left whichever side the breast touched
        assert pixels[:, :3].mean() > 10 * max(pixels[:, -3:].mean(), 1.0), rec["source"]
        assert int(rec["orig_height"]) == 96 and int(rec["orig_width"]) == 80
        side = GOOD[rec["source"]][3]
        assert bool(rec["flipped"]) == (side == "R")
        lat = GOOD[rec["source"]][2]
        assert rec["laterality_from"] == ("metadata" if lat else "image")
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        f"{i}.png" for i in ok["image_id"])


@pytest.mark.parametrize("rel", list(BAD))
def test_each_bad_input_is_rejected_with_its_reason(dataset, rel):
    _, _, manifest, _ = dataset
    rec = manifest[manifest["source"] == rel]
    assert len(rec) == 1
    rec = rec.iloc[0]
    assert rec["status"] == "rejected"
    assert isinstance(rec["reason"], str) and rec["reason"].strip()
    assert BAD[rel][2] in rec["reason"], rec["reason"]
    assert not rec["image_path"] or pd.isna(rec["image_path"])


def test_workers_2_gives_the_same_manifest(dataset):
    root, table, manifest, _ = dataset
    out = root.parent / (root.name + "-w2")
    parallel = preprocess_table(table, {"": root}, out / "images", size=32, workers=2)
    norm = lambda m: m.drop(columns="image_path").astype(str).reset_index(drop=True)
    pd.testing.assert_frame_equal(norm(parallel), norm(manifest))
    for a, b in zip(manifest["image_path"], parallel["image_path"]):
        assert bool(a) == bool(b)
        if a:
            np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_manifest_roundtrips_through_csv(dataset, tmp_path):
    # the pipeline writes the manifest with to_csv and later steps read it back as strings
    _, _, manifest, _ = dataset
    manifest.to_csv(tmp_path / "m.csv", index=False)
    back = pd.read_csv(tmp_path / "m.csv", dtype=str, keep_default_na=False)
    assert len(back) == len(manifest)
    assert back["status"].tolist() == manifest["status"].tolist()
    assert (back.loc[back["status"] == "rejected", "reason"] != "").all()
    assert (back.loc[back["status"] == "ok", "image_path"] != "").all()


def test_no_phi_in_the_manifest(dataset):
    _, _, manifest, _ = dataset
    text = manifest.to_csv(index=False)
    for secret in PHI:
        assert secret not in text, secret
    # the patient grouping survives pseudonymisation
    pid = manifest.set_index("source")["patient_id"]
    assert pid["dicoms/good1.dcm"] == pid["dicoms/good2.dcm"] != pid["dicoms/good3.dcm"]


def test_no_phi_in_the_pngs(dataset):
    _, _, manifest, _ = dataset
    for path in manifest.loc[manifest["status"] == "ok", "image_path"]:
        data = Path(path).read_bytes()
        for secret in PHI:
            assert secret.encode() not in data


def test_fail_mode_names_a_file_rejected_at_ingest(dataset, tmp_path):
    root, table, _, _ = dataset
    with pytest.raises(UserError) as err:
        preprocess_table(table, {"": root}, tmp_path / "images", size=32, on_bad_image="fail")
    first_bad = table[table["status"] == "rejected"].iloc[0]["source"]
    assert first_bad in str(err.value) and "2 input(s) rejected" in str(err.value)
    with pytest.raises(UserError, match="dicoms/missing.dcm"):
        fail_on_rejections(table, "fail")
    fail_on_rejections(table, "reject")  # no error


def test_fail_mode_names_a_file_that_cannot_be_decoded(tmp_path):
    root = build_dataset(tmp_path / "data", bad={"dicoms/empty.dcm": BAD["dicoms/empty.dcm"]})
    table = run_ingest(root)
    assert (table["status"] == "ok").all()
    with pytest.raises(UserError) as err:
        preprocess_table(table, {"": root}, tmp_path / "images", size=32, on_bad_image="fail")
    assert "dicoms/empty.dcm" in str(err.value) and "empty" in str(err.value)


def test_all_good_manifest(tmp_path):
    root = build_dataset(tmp_path / "data", bad={})
    table = run_ingest(root)
    manifest = preprocess_table(table, {"": root}, tmp_path / "images", size=32, workers=1,
                                on_bad_image="fail")
    assert (manifest["status"] == "ok").all() and len(manifest) == len(GOOD)
    assert all(Path(p).is_file() for p in manifest["image_path"])


def test_ids_are_pseudonyms_and_source_is_the_given_path(tmp_path):
    # Many data sets keep one folder per patient, named by MRN. The ids become pseudonyms; the
    # `source` column (DESIGN.md's contract) keeps the path as the table gives it, as documented
    # in csv.py, so the user sees which file each row is.
    root = tmp_path / "data"
    write_mg_dicom(root / "MRN12345" / "left_cc.dcm", breast_pixels(side="L"))
    write_mg_dicom(root / "MRN12345" / "right_cc.dcm", breast_pixels(side="R"))
    (root / "list.csv").write_text("path,birads,patient_id\n"
                                   "MRN12345/left_cc.dcm,1,MRN12345\n"
                                   "MRN12345/right_cc.dcm,2,MRN12345\n")
    manifest = preprocess_table(run_ingest(root), {"": root}, tmp_path / "images", size=32)
    assert (manifest["status"] == "ok").all()
    ids = manifest[["image_id", "patient_id", "image_path"]].to_csv(index=False)
    assert "MRN12345" not in ids and "left_cc" not in ids
    assert manifest["patient_id"].nunique() == 1  # one patient, still grouped
    assert list(manifest["source"]) == ["MRN12345/left_cc.dcm", "MRN12345/right_cc.dcm"]
