"""KAU-BCMD adapter against small fixtures in the layouts of the Kaggle copies (tiny JPGs)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammosynth.datasets import kau_bcmd
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError
from mammosynth.imaging.pipeline import preprocess_table

from conftest import breast_image

BINARY = {"scheme": "binary"}
BIRADS = {"scheme": "birads"}
SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def jpg(path: Path, side: str = "R", height: int = 64, width: int = 48) -> Path:
    """A small breast-like grayscale JPG (portrait, chest wall on `side`), as in the release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.round(breast_image(height, width, side) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path, quality=95)
    return path


def run(root: Path, labels: dict = BINARY):
    return ingest({"format": "kau_bcmd", "root": str(root), "on_bad_image": "reject"}, labels)


def by_source(table) -> dict[str, dict]:
    return {r["source"]: r for r in table.to_dict("records")}


# The loader layout: BIRAD1/b1, Birad3/b3, Birad4/b4, Birad5/Birad5 (mixed capitalisation).
LOADER = {
    "BIRAD1/b1/2018_BC005421_CC_R.jpg": ("1", "BC005421", "CC", "R"),
    "BIRAD1/b1/2018_BC005421_MLO_R.jpg": ("1", "BC005421", "MLO", "R"),
    "BIRAD1/b1/2018_BC005421_CC_L.jpg": ("1", "BC005421", "CC", "L"),
    "BIRAD1/b1/2018_BC005421_MLO_L.jpg": ("1", "BC005421", "MLO", "L"),
    "Birad3/b3/2019_BC010002_CC_L.jpg": ("3", "BC010002", "CC", "L"),
    "Birad4/b4/2017_BC020003_MLO_R.jpg": ("4", "BC020003", "MLO", "R"),
    "Birad5/Birad5/2020_BC030004_CC_L.jpg": ("5", "BC030004", "CC", "L"),
}


def build_loader(root: Path) -> None:
    for rel, (_, _, _, side) in LOADER.items():
        jpg(root / rel, side)


def test_loader_layout(tmp_path):
    root = tmp_path / "kau"
    build_loader(root)
    table = run(root)
    assert len(table) == len(LOADER) and set(table["status"]) == {"ok"}
    rows = by_source(table)
    for rel, (birads, patient, view, side) in LOADER.items():
        row = rows[rel]
        assert (row["birads"], row["patient_id"], row["view"], row["laterality"]) == \
            (birads, patient, view, side)
        assert row["image_id"] == Path(rel).stem
        assert row["label"] == ("normal" if birads == "1" else "abnormal")
        assert row["label_level"] == "patient"
    assert "2" not in set(table["birads"])  # there is no BI-RADS 2 folder in KAU-BCMD


def test_archive_layout_with_case_folders(tmp_path):
    root = tmp_path / "download"
    files = {f"archive/Birad{b}/case{b}0/2018_BC00{b}000_{v}_{s}.jpg": b
             for b in "1345" for v in ("CC", "MLO") for s in "LR"}
    for rel in files:
        jpg(root / rel, rel[-5])
    table = run(root)
    assert len(table) == 16 and set(table["status"]) == {"ok"}
    rows = by_source(table)
    for rel, b in files.items():
        assert rows[rel]["birads"] == b and rows[rel]["patient_id"] == f"BC00{b}000"
    assert sorted(table["patient_id"].unique()) == ["BC001000", "BC003000", "BC004000",
                                                    "BC005000"]


def test_class_folders_are_matched_case_insensitively(tmp_path):
    root = tmp_path / "kau"
    for i, folder in enumerate(("birad1", "BIRAD3", "BiRaD4/B4", "BI-RADS 5")):
        jpg(root / folder / f"2018_BC{i:06d}_CC_R.jpg")
    table = run(root)
    assert (table["status"] == "ok").all()
    assert dict(zip(table["source"].str.split("/").str[0], table["birads"])) == \
        {"birad1": "1", "BIRAD3": "3", "BiRaD4": "4", "BI-RADS 5": "5"}


def test_spaces_in_stems_are_removed(tmp_path):
    root = tmp_path / "kau"
    jpg(root / "Birad3/b3/2018_BC000777 _CC_R.jpg")
    jpg(root / "Birad3/b3/2018 _BC000777_MLO_R .jpg")
    table = run(root)
    assert (table["status"] == "ok").all()
    assert sorted(table["image_id"]) == ["2018_BC000777_CC_R", "2018_BC000777_MLO_R"]
    assert set(table["patient_id"]) == {"BC000777"}
    assert all(SAFE.match(i) for i in table["image_id"])
    assert sorted(table["source"]) == ["Birad3/b3/2018 _BC000777_MLO_R .jpg",
                                       "Birad3/b3/2018_BC000777 _CC_R.jpg"]


def test_stem_in_two_birads_folders_keeps_the_higher(tmp_path):
    root = tmp_path / "kau"
    build_loader(root)
    jpg(root / "Birad4/b4/2018_BC040404_CC_L.jpg", "L")
    jpg(root / "Birad5/Birad5/2018_BC040404_CC_L.jpg", "L")
    jpg(root / "BIRAD1/b1/2018_BC040405 _MLO_R.jpg")  # the same stem once spaces are removed
    jpg(root / "Birad3/b3/2018_BC040405_MLO_R.jpg")
    table = run(root)
    assert len(table) == len(LOADER) + 4
    assert (table["status"] == "ok").sum() == len(LOADER) + 2
    rows = by_source(table)
    kept = rows["Birad5/Birad5/2018_BC040404_CC_L.jpg"]
    assert (kept["status"], kept["birads"], kept["image_id"]) == ("ok", "5", "2018_BC040404_CC_L")
    lost = rows["Birad4/b4/2018_BC040404_CC_L.jpg"]
    assert lost["status"] == "rejected"
    assert lost["reason"] == (
        "2018_BC040404_CC_L is in two BI-RADS folders, Birad4/b4 (BI-RADS 4, this copy) and "
        "Birad5/Birad5 (BI-RADS 5); the higher category counts, so "
        "Birad5/Birad5/2018_BC040404_CC_L.jpg is kept")
    assert lost["birads"] == "4" and lost["image_id"] == "2018_BC040404_CC_L-birads4"
    assert rows["Birad3/b3/2018_BC040405_MLO_R.jpg"]["status"] == "ok"
    low = rows["BIRAD1/b1/2018_BC040405 _MLO_R.jpg"]
    assert low["status"] == "rejected" and "BI-RADS 3" in low["reason"]
    assert table["image_id"].is_unique


def test_same_stem_twice_in_one_category(tmp_path):
    root = tmp_path / "kau"
    jpg(root / "Birad4/caseA/2018_BC000123_CC_R.jpg")
    jpg(root / "Birad4/caseB/2018_BC000123_CC_R.jpg")
    table = run(root)
    rows = by_source(table)
    assert rows["Birad4/caseA/2018_BC000123_CC_R.jpg"]["status"] == "ok"
    copy = rows["Birad4/caseB/2018_BC000123_CC_R.jpg"]
    assert copy["status"] == "rejected"
    assert copy["reason"] == ("another copy of 2018_BC000123_CC_R "
                              "(kept Birad4/caseA/2018_BC000123_CC_R.jpg)")
    assert table["image_id"].is_unique


def test_ultrasound_masks_reports_and_wide_images_are_rejected(tmp_path):
    root = tmp_path / "kau"
    build_loader(root)
    bad = {
        "Birad4/b4/US/2018_BC020003_1.jpg": "ultrasound",
        "Birad4/b4/2018_BC020003_US_R.jpg": "ultrasound",
        "Birad5/Birad5/Ultrasound images/img 3.jpg": "ultrasound",
        "Birad5/Birad5/2020_BC030004_CC_L_mask.png": "mask",
        "Birad5/Birad5/Masks/2020_BC030004_CC_L.png": "mask",
        "Birad3/b3/report_BC010002.jpg": "report",
        "Birad3/b3/2019_BC010002_MLO_L.jpg": r"width/height 1\.50 > 1\.30",  # 96 x 64
    }
    for rel in bad:
        jpg(root / rel, height=64, width=96 if "MLO_L" in rel else 48)
    # not images: not inputs, ignored
    (root / "Birad5/Birad5/report.pdf").write_bytes(b"%PDF-1.4\n")
    (root / "Birad4/b4/notes.txt").write_text("BI-RADS 4\n")
    (root / "Birad4/b4/report.docx").write_bytes(b"PK\x03\x04")
    table = run(root)
    assert len(table) == len(LOADER) + len(bad)
    assert (table["status"] == "ok").sum() == len(LOADER)
    rows = by_source(table)
    for rel, pattern in bad.items():
        assert rows[rel]["status"] == "rejected", rel
        assert re.search(pattern, rows[rel]["reason"]), rows[rel]["reason"]
        assert "\n" not in rows[rel]["reason"]
    assert not any(s.endswith((".pdf", ".txt", ".docx")) for s in table["source"])
    assert table["image_id"].is_unique and all(SAFE.match(i) for i in table["image_id"])


def test_bad_names_and_images_outside_class_folders(tmp_path):
    root = tmp_path / "kau"
    build_loader(root)
    jpg(root / "Birad4/b4/IMG_0001.jpg")
    jpg(root / "Birad4/b4/2018_BC020003_LAT_R.jpg")
    jpg(root / "Birad4/b4/2018_BC020003_CC_X.jpg")
    jpg(root / "extra/2018_BC999999_CC_R.jpg")
    jpg(root / "Birad4/b5/2018_BC999998_CC_R.jpg")  # folders disagree
    table = run(root)
    rows = by_source(table)
    assert (table["status"] == "ok").sum() == len(LOADER)
    assert "{year}_{patientID}_{view}_{side}" in rows["Birad4/b4/IMG_0001.jpg"]["reason"]
    assert "view 'LAT'" in rows["Birad4/b4/2018_BC020003_LAT_R.jpg"]["reason"]
    assert "side 'X'" in rows["Birad4/b4/2018_BC020003_CC_X.jpg"]["reason"]
    outside = rows["extra/2018_BC999999_CC_R.jpg"]
    assert "not inside a BI-RADS class folder" in outside["reason"]
    assert outside["patient_id"] == "BC999999" and outside["status"] == "rejected"
    disagree = rows["Birad4/b5/2018_BC999998_CC_R.jpg"]["reason"]
    assert disagree == "folders Birad4/b5 name different BI-RADS categories (4, 5)"
    assert table["image_id"].is_unique and all(SAFE.match(i) for i in table["image_id"])


def test_density_sheet_is_optional(tmp_path):
    root = tmp_path / "kau"
    build_loader(root)
    without = run(root)
    (root / "correctSheetlast.xlsx").write_bytes(b"PK\x03\x04 not read")
    with_sheet = run(root)
    assert without.equals(with_sheet)
    assert len(with_sheet) == len(LOADER)


def test_no_class_folder_is_a_user_error(tmp_path):
    root = tmp_path / "kau"
    jpg(root / "images/2018_BC005421_CC_R.jpg")
    with pytest.raises(UserError, match=r"no BI-RADS class folder .*point dataset.root"):
        run(root)


def test_ingest_and_preprocess(tmp_path):
    root = tmp_path / "kau"
    build_loader(root)
    jpg(root / "Birad5/Birad5/US_1.jpg", width=96)
    for labels, names in ((BINARY, {"normal", "abnormal"}),
                          (BIRADS, {"birads1", "birads3", "birads4", "birads5"})):
        table = run(root, labels)
        assert (table["status"] == "ok").sum() == len(LOADER)
        assert set(table.loc[table["status"] == "ok", "label"]) == names
        out = tmp_path / f"images-{labels['scheme']}"
        manifest = preprocess_table(table, {"": root}, out, size=32)
        ok = manifest[manifest["status"] == "ok"]
        assert len(ok) == len(LOADER) and len(manifest) == len(LOADER) + 1
        for row in ok.itertuples():
            png = Image.open(row.image_path)
            assert png.size == (32, 32) and png.mode.startswith("I")
            assert row.laterality_from == "metadata"
            assert row.chest_wall_seen == row.laterality  # the fixture's breasts face that way
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}.png" for i in ok["image_id"])


def test_ultrasound_marker_is_a_whole_token():
    from pathlib import PurePosixPath as P

    assert kau_bcmd.not_a_mammogram(P("Birad4/US 2/img.jpg")) == "'US 2' marks an ultrasound image"
    assert kau_bcmd.not_a_mammogram(P("Birad4/b4/2018_BC0US001_CC_R.jpg")) == ""
    assert kau_bcmd.not_a_mammogram(P("Birad4/Bush case/2018_BC000001_CC_R.jpg")) == ""
    assert kau_bcmd.not_a_mammogram(P("Birad4/b4/2018_BC000001_CC_R_Mask.jpg")) != ""
