"""RSNA Screening Mammography Breast Cancer Detection (Kaggle 2022), as downloaded.

Point `dataset.root` at the folder holding train.csv (the unpacked
`rsna-breast-cancer-detection` download; a copy nested one folder down is found too):

    train.csv        site_id, patient_id, image_id, laterality, view, age, cancer, biopsy,
                     invasive, BIRADS, implant, density, machine_id, difficult_negative_case
    train_images/<patient_id>/<image_id>.dcm
    test.csv         site_id, patient_id, image_id, laterality, view, age, implant, machine_id,
                     prediction_id (no labels)
    test_images/<patient_id>/<image_id>.dcm
    sample_submission.csv (not used)

- BIRADS is 0, 1, 2 or empty (about half the rows; one site gives none). An empty BIRADS is
  rejected with the reason, naming the row's `cancer` value: the adapter does not know the label
  scheme, and `cancer` says nothing about BI-RADS 1 vs 2 (the binary scheme's normal/abnormal
  line), so it is not used as a label. BI-RADS 0 (recall) is a class of the birads scheme only;
  the binary scheme rejects it as unmapped (config labels.map can map it). Labels come from
  BIRADS alone: a BI-RADS 1 breast later found to have cancer (cancer=1) is labelled BI-RADS 1.
- The label is per breast (all images of a breast share the assessment): `label_level` breast.
- The competition's test images (test.csv, test_images/) carry no BIRADS and no cancer value:
  each is kept in the manifest as a rejected input saying so, never dropped silently.
- Every `.dcm` under the folder is an input: one linked to its train.csv row by file name
  (image_id) and folder (patient_id); one without a row, one in another patient's folder, two
  files for one image_id, a row without its file, a duplicated or malformed row: rejected with
  the reason. Files that are not DICOMs (.dcm) are not looked at.
- Pixels (imaging/decode.py): JPEG 2000 (1.2.840.10008.1.2.4.90) or JPEG Lossless (.4.70),
  decoded by the pylibjpeg plugins; MONOCHROME1 inverted; the first of several
  WindowCenter/WindowWidth values; VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID. The JPEG 2000
  images are decoded at reduced resolution when the preprocessing size allows it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mammosynth.datasets import read_metadata, unlisted
from mammosynth.errors import UserError

TRAIN, TEST = "train.csv", "test.csv"
TRAIN_IMAGES, TEST_IMAGES = "train_images", "test_images"
REQUIRED = ("patient_id", "image_id", "laterality", "view", "BIRADS")
REQUIRED_TEST = ("patient_id", "image_id")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
HINT = ("point dataset.root at the folder holding train.csv and train_images/ (the Kaggle "
        "rsna-breast-cancer-detection download, unpacked)")


def find_folder(root: Path) -> Path:
    """The folder holding train.csv: root itself, or one folder down."""
    if (root / TRAIN).is_file():
        return root
    found = sorted(p.parent for p in root.glob(f"*/{TRAIN}") if p.is_file())
    if not found:
        raise UserError(f"{root}: no {TRAIN} here or one folder down; {HINT}")
    if len(found) > 1:
        raise UserError(f"{root}: {len(found)} folders hold a {TRAIN} ("
                        + ", ".join(p.name for p in found) + "); point dataset.root at one")
    return found[0]


def read_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    return read_metadata(path, required, f"the RSNA {path.name} table",
                         "restore the comma-separated file as downloaded from Kaggle")


def read(root: Path, dataset: dict) -> list[dict]:
    folder = find_folder(root)

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    # every DICOM under the folder, by where it is: train_images/, test_images/, elsewhere
    files: dict[str, dict[str, list[Path]]] = {TRAIN_IMAGES: {}, TEST_IMAGES: {}, "": {}}
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".dcm"
                       and p.is_file()):
        top = path.relative_to(folder).parts[0]
        files[top if top in files else ""].setdefault(path.stem, []).append(path)

    train_path = folder / TRAIN
    rows = link(read_table(train_path, REQUIRED), rel(train_path), files[TRAIN_IMAGES],
                labelled=True, rel=rel)
    test_path = folder / TEST
    if test_path.is_file():
        rows += link(read_table(test_path, REQUIRED_TEST), rel(test_path), files[TEST_IMAGES],
                     labelled=False, rel=rel)
    elif files[TEST_IMAGES]:
        rows += link(pd.DataFrame(columns=[*REQUIRED_TEST, "_line"]), TEST, files[TEST_IMAGES],
                     labelled=False, rel=rel)
    for paths in files[""].values():
        for path in paths:
            rows.append({"image_id": f"unlisted-{path.stem}", "label_level": "breast",
                         "source": rel(path),
                         "reason": f"DICOM outside {TRAIN_IMAGES}/ and {TEST_IMAGES}/: not part "
                                   "of the RSNA layout (<split>_images/<patient_id>/"
                                   "<image_id>.dcm)"})
    return rows


def link(table: pd.DataFrame, meta_name: str, files: dict[str, list[Path]], labelled: bool,
         rel) -> list[dict]:
    """One row per table row (linked to its DICOM) and per DICOM without a row."""
    patients = set(table["patient_id"])
    prefix = "" if labelled else "test-"
    images = f"{TRAIN_IMAGES if labelled else TEST_IMAGES}/"
    linked: set[Path] = set()
    seen: set[str] = set()
    rows: list[dict] = []
    for rec in table.to_dict("records"):
        line, image_id, patient = rec["_line"], rec["image_id"], rec["patient_id"]
        where = f"{meta_name} line {line}"
        row = {"image_id": prefix + image_id, "patient_id": patient,
               "laterality": rec.get("laterality", "").upper(),
               "view": rec.get("view", "").upper(), "label_level": "breast",
               "source": f"{meta_name}:{line}"}
        if labelled:
            row["birads"] = rec["BIRADS"]
        candidates = files.get(image_id, [])
        reasons = []
        if not SAFE_ID.match(image_id):
            row["image_id"] = f"{prefix}row{line}"
            reasons.append(f"{where}: image_id {image_id!r} is empty or not a plain name "
                           "(letters, digits, . _ -)")
        elif image_id in seen:
            row["image_id"] = f"{prefix}{image_id}-row{line}"
            reasons.append(f"{where}: duplicate image_id {image_id}")
        elif not patient:
            reasons.append(f"{where}: no patient_id for image {image_id}")
        elif not candidates:
            reasons.append(f"no DICOM {images}{patient}/{image_id}.dcm under the data set root "
                           f"(listed in {where})")
        elif len(candidates) > 1:
            reasons.append(f"{len(candidates)} DICOMs for image_id {image_id}: "
                           + ", ".join(rel(p) for p in candidates))
            linked.update(candidates)
        else:
            path = candidates[0]
            linked.add(path)
            row["source"] = rel(path)
            if path.parent.name != patient:
                reasons.append(f"DICOM is in folder {path.parent.name}, but {where} gives "
                               f"patient_id {patient}")
        if labelled and not rec["BIRADS"] and not reasons:
            reasons.append(f"{where}: BIRADS is empty (cancer={rec.get('cancer') or '?'}); "
                           "RSNA gives no BI-RADS for this image, so it has no label")
        if not labelled:
            reasons.append(f"{where}: competition test image; {TEST} has no BIRADS or cancer "
                           "value, so it cannot be labelled")
        row["reason"] = "; ".join(reasons)
        seen.add(image_id)
        rows.append(row)

    rows += unlisted(files, linked, patients, rel,
                     f"no row in {meta_name} for this DICOM" if labelled else
                     f"competition test image ({TEST_IMAGES}/): it has no BIRADS or cancer "
                     "value, so it cannot be labelled", prefix)
    return rows
