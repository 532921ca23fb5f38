"""A folder per label: `<root>/<label>/**/<image>` (DICOM, PNG, JPEG, TIFF, PGM or BMP: the
suffixes of `imaging.decode.INPUT_SUFFIXES`, any case; other files are not inputs).

Folder names must be the config's label names. There is no patient information, so each image is
its own patient; use the `csv` format when patient ids are known.
"""

from __future__ import annotations

from pathlib import Path

from mammosynth.datasets import pseudonym
from mammosynth.imaging.decode import INPUT_SUFFIXES


def read(root: Path, dataset: dict) -> list[dict]:
    rows = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in INPUT_SUFFIXES or path.is_dir():
            continue
        rel = path.relative_to(root).as_posix()
        rows.append({"image_id": pseudonym(rel, "img"), "patient_id": pseudonym(rel, "pat"),
                     "label": rel.split("/")[0] if "/" in rel else "", "source": rel})
    return rows
