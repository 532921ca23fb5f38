"""VinDr-Mammo (PhysioNet): breast-level_annotations.csv + images/<study_id>/<image_id>.dicom.

Point `dataset.root` at the PhysioNet folder
`vindr-mammo-a-large-scale-benchmark-dataset-for-computer-aided-detection-and-diagnosis-in-full-
field-digital-mammography-1.0.0/` (or the folder holding it: the table is searched for anywhere
under the root, as some copies nest it one level down). Expected there:

    breast-level_annotations.csv   study_id, series_id, image_id, laterality, view_position,
                                   height, width, breast_birads, breast_density, split
    finding_annotations.csv        (boxes; not used)
    metadata.csv                   (DICOM tags; not used)
    images/<study_id>/<image_id>.dicom

- The extension is `.dicom`, not `.dcm` (`.dcm` is accepted too, for re-exported copies); the
  images are found anywhere under the root and linked by file stem = image_id.
- BI-RADS is written "BI-RADS 1".."BI-RADS 5" (labels.normalize_birads strips the prefix); the
  label is per breast, so `label_level` is "breast".
- There is no patient id: one study is one woman's screening exam, so the study_id is the
  patient unit for grouped splits.
- `split` (training/test, the official 80/20 split by study) becomes `official_subset`
  (see splits.official_test).
- A row without an image, an image without a row, a duplicated image_id in the table, two files
  for one image_id, an image filed under another study's folder: rejected with the reason.
- Pixels: imaging/decode.py applies the rescale, then the window (or VOI LUT), and inverts
  MONOCHROME1, as the official visualize.py does. It does not look at PresentationIntentType: a
  FOR PROCESSING image (which visualize.py skips) is not rejected, it is decoded like any other;
  PixelPaddingValue is not masked either.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mammosynth.datasets import read_metadata, unlisted
from mammosynth.errors import UserError
from mammosynth.imaging.decode import DICOM_SUFFIXES

TABLE = "breast-level_annotations.csv"
REQUIRED = ("study_id", "image_id", "laterality", "view_position", "breast_birads", "split")
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def find_table(root: Path) -> Path:
    """The one breast-level_annotations.csv under root (at any depth)."""
    found = sorted(root.rglob(TABLE))
    if not found:
        raise UserError(f"{root}: no {TABLE} found; point dataset.root at the VinDr-Mammo "
                        "folder as downloaded from PhysioNet (vindr-mammo-...-1.0.0)")
    if len(found) > 1:
        raise UserError(f"{root}: {len(found)} copies of {TABLE} ("
                        + ", ".join(p.relative_to(root).as_posix() for p in found)
                        + "); point dataset.root at one VinDr-Mammo folder")
    return found[0]


def read_table(path: Path) -> pd.DataFrame:
    return read_metadata(path, REQUIRED, "the VinDr-Mammo breast-level table",
                         "is it the comma-separated file as shipped?")


def read(root: Path, dataset: dict) -> list[dict]:
    table_path = find_table(root)
    table = read_table(table_path)
    meta_name = table_path.relative_to(root).as_posix()
    studies = set(table["study_id"])

    files: dict[str, list[Path]] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in DICOM_SUFFIXES
                       and p.is_file()):
        files.setdefault(path.stem, []).append(path)

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    linked: set[Path] = set()
    seen: set[str] = set()
    rows: list[dict] = []
    for rec in table.to_dict("records"):
        line, image_id, study = rec["_line"], rec["image_id"], rec["study_id"]
        row = {"image_id": image_id, "patient_id": study,
               "laterality": rec["laterality"].upper(), "view": rec["view_position"].upper(),
               "birads": rec["breast_birads"], "label_level": "breast",
               "official_subset": rec["split"].lower(), "source": f"{meta_name}:{line}"}
        candidates = files.get(image_id, [])
        where = f"{meta_name} line {line}"
        if not SAFE_ID.match(image_id):
            row["image_id"] = f"row{line}"
            row["reason"] = (f"{where}: image_id {image_id!r} is empty or not a plain name "
                             "(letters, digits, . _ -)")
        elif image_id in seen:
            row["image_id"] = f"{image_id}-row{line}"
            row["reason"] = f"{where}: duplicate image_id {image_id}"
        elif not study:
            row["reason"] = f"{where}: no study_id, so no patient for image {image_id}"
        elif not candidates:
            row["reason"] = (f"no image {study}/{image_id}.dicom under the data set root "
                             f"(listed in {where})")
        elif len(candidates) > 1:
            row["reason"] = (f"{len(candidates)} files for image_id {image_id}: "
                             + ", ".join(rel(p) for p in candidates))
            linked.update(candidates)
        else:
            path = candidates[0]
            linked.add(path)
            row["source"] = rel(path)
            folder = path.parent.name
            if folder != study and folder in studies:
                row["reason"] = (f"image is in the folder of study {folder}, but {where} "
                                 f"gives study {study}")
        seen.add(image_id)
        rows.append(row)

    rows += unlisted(files, linked, studies, rel, f"no row in {meta_name} for this image")
    return rows
