"""VinDr-Mammo adapter against a small tree in the PhysioNet layout (real DICOMs, .dicom)."""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import breast_pixels, write_mg_dicom

from mammosynth.datasets import INGEST_COLUMNS, vindr
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError
from mammosynth.labels import normalize_birads

FOLDER = ("vindr-mammo-a-large-scale-benchmark-dataset-for-computer-aided-detection-and-"
          "diagnosis-in-full-field-digital-mammography-1.0.0")
HEADER = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
          "breast_birads", "breast_density", "split"]
FINDING_HEADER = HEADER[:7] + ["breast_birads", "breast_density", "finding_categories",
                               "finding_birads", "xmin", "ymin", "xmax", "ymax", "split"]
# study -> (official split, BI-RADS of the left breast, of the right breast)
STUDIES = {"s1": ("training", "BI-RADS 1", "BI-RADS 2"),
           "s2": ("training", "BI-RADS 1", "BI-RADS 5"),
           "s3": ("test", "BI-RADS 4", "BI-RADS 1")}
VIEWS = [("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]
BINARY, SIX = {"scheme": "binary"}, {"scheme": "birads"}


def hexid(*parts: str) -> str:
    """A 32-hex id like VinDr's (md5-looking)."""
    return hashlib.md5("/".join(parts).encode()).hexdigest()


def image_rows(study: str, split: str, left: str, right: str) -> list[dict]:
    sid = hexid(study)
    return [{"study_id": sid, "series_id": hexid(study, lat, view, "series"),
             "image_id": hexid(study, lat, view), "laterality": lat, "view_position": view,
             "height": "64", "width": "48", "breast_birads": left if lat == "L" else right,
             "breast_density": "DENSITY C", "split": split} for lat, view in VIEWS]


def write_dicom(root: Path, row: dict, **tags) -> Path:
    path = root / "images" / row["study_id"] / f"{row['image_id']}.dicom"
    # VinDr-like tags: a window over the stored values, a rescale, MG, FOR PRESENTATION
    tags = {"WindowCenter": 1500, "WindowWidth": 3000, "RescaleSlope": 1,
            "RescaleIntercept": 0, "PresentationIntentType": "FOR PRESENTATION",
            "ImageLaterality": row["laterality"], "ViewPosition": row["view_position"], **tags}
    return write_mg_dicom(path, breast_pixels(64, 48, side=row["laterality"]), **tags)


def write_table(path: Path, rows: list[dict], header=HEADER) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def build(root: Path, studies=STUDIES) -> list[dict]:
    """The PhysioNet layout: three csv files + images/<study_id>/<image_id>.dicom."""
    rows = [r for study, spec in studies.items() for r in image_rows(study, *spec)]
    root.mkdir(parents=True)
    write_table(root / "breast-level_annotations.csv", rows)
    write_table(root / "finding_annotations.csv",
                [{**r, "finding_categories": "['No Finding']", "finding_birads": ""}
                 for r in rows], FINDING_HEADER)
    (root / "metadata.csv").write_text("SOP Instance UID,Manufacturer's Model Name\n"
                                       "1.2.3,Mammomat Inspiration\n")
    for row in rows:
        write_dicom(root, row)
    return rows


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("vindr") / FOLDER
    return root, build(root)


@pytest.fixture
def tree(tmp_path, template) -> tuple[Path, list[dict]]:
    root = tmp_path / FOLDER
    shutil.copytree(template[0], root)
    return root, [dict(r) for r in template[1]]


def run(root: Path, labels: dict = BINARY):
    return ingest({"format": "vindr", "root": str(root), "on_bad_image": "reject"}, labels)


def by_id(df):
    return {rec["image_id"]: rec for rec in df.to_dict("records")}


# --- a complete download ------------------------------------------------------------------------

def test_birads_spelling_is_understood():
    assert normalize_birads("BI-RADS 4") == "4"
    assert normalize_birads("BI-RADS 5") == "5"


def test_ingest_complete_tree(tree):
    root, rows = tree
    df = run(root)
    assert list(df.columns) == INGEST_COLUMNS + ["label_level", "official_subset"]
    assert len(df) == 12
    assert (df["status"] == "ok").all(), df.loc[df["status"] != "ok", "reason"].tolist()
    assert (df["reason"] == "").all() and df["image_id"].is_unique
    recs = by_id(df)
    for row in rows:
        rec = recs[row["image_id"]]
        assert rec["patient_id"] == row["study_id"]  # the study is the patient unit
        assert rec["source"] == f"images/{row['study_id']}/{row['image_id']}.dicom"
        assert rec["laterality"] == row["laterality"] and rec["view"] == row["view_position"]
        assert rec["birads"] == row["breast_birads"].split()[-1]
        assert rec["label_level"] == "breast"
        assert rec["official_subset"] == row["split"]
    assert dict(Counter(df["birads"])) == {"1": 6, "2": 2, "5": 2, "4": 2}
    assert dict(Counter(df["label"])) == {"normal": 6, "abnormal": 6}
    assert dict(Counter(df["official_subset"])) == {"training": 8, "test": 4}
    assert df["patient_id"].nunique() == 3


def test_birads_5_row_under_the_six_class_scheme(tree):
    root, rows = tree
    df = run(root, SIX)
    assert (df["status"] == "ok").all()
    five = df[df["birads"] == "5"]
    assert len(five) == 2 and set(five["label"]) == {"birads5"}
    assert set(five["laterality"]) == {"R"} and set(five["patient_id"]) == {hexid("s2")}
    assert dict(Counter(df["label"])) == {"birads1": 6, "birads2": 2, "birads4": 2,
                                          "birads5": 2}


# --- every input accounted for ------------------------------------------------------------------

def test_missing_image_and_extra_image(tree):
    root, rows = tree
    gone = rows[5]
    (root / "images" / gone["study_id"] / f"{gone['image_id']}.dicom").unlink()
    extra = write_dicom(root, {**rows[0], "image_id": hexid("not", "listed")})
    df = run(root)
    assert len(df) == 13
    rejected = df[df["status"] == "rejected"]
    assert len(rejected) == 2 and (df["status"] == "ok").sum() == 11
    missing = by_id(df)[gone["image_id"]]
    assert missing["status"] == "rejected"
    assert f"{gone['study_id']}/{gone['image_id']}.dicom" in missing["reason"]
    assert "breast-level_annotations.csv line 7" in missing["reason"]
    assert missing["source"] == "breast-level_annotations.csv:7"
    assert missing["official_subset"] == "training"  # the row keeps its metadata
    unlisted = by_id(df)[f"unlisted-{hexid('not', 'listed')}"]
    assert unlisted["status"] == "rejected"
    assert unlisted["reason"] == "no row in breast-level_annotations.csv for this image"
    assert unlisted["source"] == extra.relative_to(root).as_posix()
    assert unlisted["patient_id"] == rows[0]["study_id"]


def test_duplicate_image_id_row(tree):
    root, rows = tree
    write_table(root / "breast-level_annotations.csv", rows + [rows[2]])
    df = run(root)
    assert len(df) == 13 and (df["status"] == "ok").sum() == 12
    dup = df[df["status"] == "rejected"].iloc[0]
    assert dup["image_id"] == f"{rows[2]['image_id']}-row14"
    assert dup["reason"] == (f"breast-level_annotations.csv line 14: duplicate image_id "
                             f"{rows[2]['image_id']}")
    assert dup["source"] == "breast-level_annotations.csv:14"
    # the first occurrence is still linked to its image
    assert by_id(df)[rows[2]["image_id"]]["status"] == "ok"


def test_two_files_for_one_image_id_are_rejected_not_guessed(tree):
    root, rows = tree
    copy = root / "images" / "backup" / f"{rows[0]['image_id']}.dicom"
    copy.parent.mkdir()
    shutil.copyfile(root / by_id(run(root))[rows[0]["image_id"]]["source"], copy)
    df = run(root)
    assert len(df) == 12  # the copy does not show up again as an unlisted input
    rec = by_id(df)[rows[0]["image_id"]]
    assert rec["status"] == "rejected" and "2 files for image_id" in rec["reason"]
    assert "images/backup/" in rec["reason"]


def test_image_in_another_studys_folder(tree):
    root, rows = tree
    moved, other = rows[0], rows[4]["study_id"]
    src = root / "images" / moved["study_id"] / f"{moved['image_id']}.dicom"
    src.rename(root / "images" / other / src.name)
    rec = by_id(run(root))[moved["image_id"]]
    assert rec["status"] == "rejected"
    assert f"folder of study {other}" in rec["reason"]


def test_dcm_copies_and_a_nested_root(tmp_path, template):
    # a re-exported copy with .dcm files, one level down from dataset.root
    root = tmp_path / "download"
    shutil.copytree(template[0], root / FOLDER)
    for path in (root / FOLDER / "images").rglob("*.dicom"):
        path.rename(path.with_suffix(".dcm"))
    df = run(root)
    assert len(df) == 12 and (df["status"] == "ok").all()
    assert all(s.startswith(f"{FOLDER}/images/") and s.endswith(".dcm") for s in df["source"])


def test_unsafe_image_id_is_rejected(tree):
    root, rows = tree
    rows[1]["image_id"] = "../x"
    write_table(root / "breast-level_annotations.csv", rows)
    df = run(root)
    assert len(df) == 13  # the row, and its image now without a row
    bad = df[df["image_id"] == "row3"].iloc[0]
    assert bad["status"] == "rejected" and "'../x'" in bad["reason"]
    assert (df["status"] == "ok").sum() == 11


# --- user errors --------------------------------------------------------------------------------

def test_missing_table_is_a_user_error(tree):
    root, _ = tree
    (root / "breast-level_annotations.csv").unlink()
    with pytest.raises(UserError, match="no breast-level_annotations.csv found"):
        run(root)


def test_two_tables_is_a_user_error(tmp_path, template):
    for copy in ("a", "b"):
        shutil.copytree(template[0], tmp_path / copy / FOLDER)
    with pytest.raises(UserError, match="2 copies of breast-level_annotations.csv"):
        run(tmp_path)


def test_missing_column_is_a_user_error(tree):
    root, rows = tree
    write_table(root / "breast-level_annotations.csv", rows,
                [c for c in HEADER if c != "breast_birads"])
    with pytest.raises(UserError, match="missing column.*breast_birads"):
        run(root)


def test_semicolon_copy_is_a_user_error(tree):
    root, _ = tree
    path = root / "breast-level_annotations.csv"
    path.write_text(path.read_text().replace(",", ";"))
    with pytest.raises(UserError, match="missing column"):
        run(root)


# --- decode and preprocess ----------------------------------------------------------------------

@pytest.mark.parametrize("labels", [BINARY, SIX], ids=["binary", "birads"])
def test_ingest_then_preprocess(tree, tmp_path, labels):
    from mammosynth.imaging.pipeline import preprocess_table

    root, rows = tree
    # a MONOCHROME1 image (inverted on read), as some VinDr machines write
    write_dicom(root, rows[3], photometric="MONOCHROME1")
    table = run(root, labels)
    manifest = preprocess_table(table, {"": root}, tmp_path / "png", size=32)
    assert len(manifest) == 12
    assert (manifest["status"] == "ok").all(), manifest["reason"].tolist()
    for path in manifest["image_path"]:
        assert Path(path).is_file() and Path(path).suffix == ".png"
    assert set(manifest["laterality"]) == {"L", "R"}


def test_official_subset_reaches_the_manifest(tree, tmp_path):
    from mammosynth.imaging.pipeline import preprocess_table

    root, _ = tree
    manifest = preprocess_table(run(root), {"": root}, tmp_path / "png", size=32)
    assert dict(Counter(manifest["official_subset"])) == {"training": 8, "test": 4}


def test_for_processing_image_is_accounted_for(tree, tmp_path):
    """decode.py does not look at PresentationIntentType: a FOR PROCESSING image is decoded like
    any other. Whatever decode does with it, the image is in the manifest (ok with its PNG, or
    rejected with a reason), never dropped."""
    from mammosynth.imaging.pipeline import preprocess_table

    root, rows = tree
    write_dicom(root, rows[8], PresentationIntentType="FOR PROCESSING")
    manifest = preprocess_table(run(root), {"": root}, tmp_path / "png", size=32)
    assert len(manifest) == 12 and (manifest["status"] == "ok").sum() >= 11
    rec = by_id(manifest)[rows[8]["image_id"]]
    if rec["status"] == "ok":
        assert Path(rec["image_path"]).is_file()
    else:
        assert rec["reason"]


def test_official_split_as_every_splits_test_set(tree):
    from mammosynth.splits import make_split

    root, rows = tree
    table = run(root)
    test_ids = {r["image_id"] for r in rows if r["split"] == "test"}
    for split_id in (0, 1):
        split = make_split(table, split_id, test_fraction=0.2, val_fraction=0.0,
                           official_test=True)
        assert set(split.loc[split["subset"] == "test", "image_id"]) == test_ids
        assert set(split["subset"]) == {"train", "test"}


def test_adapter_read_returns_one_dict_per_input(tree):
    root, rows = tree
    out = vindr.read(root, {"format": "vindr", "root": str(root)})
    assert len(out) == len(rows)
    assert all(not r.get("reason") for r in out)
