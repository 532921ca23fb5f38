"""A folder per label: `<root>/<label>/**/<image>` (DICOM, PNG, JPEG, TIFF or PGM).

Folder names must be the config's label names. There is no patient information, so each image is
its own patient; use the `csv` format when patient ids are known.
"""

from __future__ import annotations

from pathlib import Path

from mammosynth.datasets import pseudonym

IMAGE_SUFFIXES = {".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm"}


def read(root: Path, dataset: dict) -> list[dict]:
    rows = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.is_dir():
            continue
        rel = path.relative_to(root).as_posix()
        rows.append({"image_id": pseudonym(rel, "img"), "patient_id": pseudonym(rel, "pat"),
                     "label": rel.split("/")[0] if "/" in rel else "", "source": rel})
    return rows
