"""KAU-BCMD (King Abdulaziz University Breast Cancer Mammogram Dataset) as downloaded.

Point `dataset.root` at the folder holding the class folders (the Kaggle download, or its
`archive/` folder). Layout: one JPG folder per BI-RADS category, found anywhere under the root and
matched case-insensitively: `Birad1`, `BIRAD1/b1`, `Birad3/b3`, `Birad5/Birad5`,
`archive/Birad4/<case>/*.jpg` are all read. There is no BI-RADS 2 in this data set.

- File names are `{year}_{patientID}_{view}_{side}.jpg`, e.g. `2018_BC005421_CC_R.jpg`; some stems
  contain spaces (`2018_BC005421 _CC_R`), which are removed. The patient is the patientID part
  (upper-cased), the image id the cleaned stem; view CC/MLO (ML counts as MLO), side L/R.
- Labels are given per patient (applied to both breasts): `label_level` is `patient`.
- The same stem in two BI-RADS folders (4 stems in the release): the copy in the higher category
  is kept, the other is rejected with a reason naming both folders. The same stem twice in one
  category: the first copy (JPG preferred, then path order) is kept.
- The folders also hold ultrasound images, tumour masks and reports. An image is rejected, with a
  reason, when its path has a token `US`/`ultrasound`/`sono...` or contains `mask` or `report`,
  when its name is not `{year}_{patientID}_{view}_{side}`, or when it is much wider than tall
  (width/height > 1.30, as ultrasound screenshots are). Files that are not images (xlsx, pdf,
  docx, txt) are not inputs and are ignored.
- Images outside any BI-RADS folder are rejected (no category).
- `correctSheetlast.xlsx` (breast density) is optional and not read: density is not a label here.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path, PurePosixPath

from PIL import Image

from mammosynth.errors import UserError
from mammosynth.imaging.decode import INPUT_SUFFIXES

log = logging.getLogger(__name__)

# Class folders: Birad1, BIRAD1, BI-RADS 1, birads_4 ... and the inner b1/b3/b4 of some copies.
CLASS_FOLDER = re.compile(r"^(?:bi-?rads?[\s_-]*|b)([0-6])$", re.IGNORECASE)
STEM = re.compile(r"^(?P<year>\d{4})_(?P<patient>[A-Za-z0-9-]+)_(?P<view>[A-Za-z]+)_"
                  r"(?P<side>[A-Za-z]+)$")
VIEWS = {"CC": "CC", "MLO": "MLO", "ML": "MLO"}
SIDES = {"L": "L", "R": "R"}
MAX_ASPECT = 1.30  # width / height above this: an ultrasound screenshot or a report
TOKENS = re.compile(r"[\s_\-.()\[\],]+")
ULTRASOUND = re.compile(r"^(?:us|ultrasound|ultrasonic|sono\w*)\d*$", re.IGNORECASE)


def safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "image"


def unique_id(base: str, used: set[str]) -> str:
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}-{n}"
    used.add(candidate)
    return candidate


def category(rel: PurePosixPath) -> tuple[set[str], list[str]]:
    """The BI-RADS categories named by the folders above an image, and those folders."""
    folders = [part for part in rel.parts[:-1] if CLASS_FOLDER.match(part)]
    return {CLASS_FOLDER.match(part)[1] for part in folders}, folders


def not_a_mammogram(rel: PurePosixPath) -> str:
    """Why the path looks like an ultrasound image, a mask or a report ('' if it does not)."""
    for part in rel.parts[:-1] + (rel.stem,):
        tokens = [t for t in TOKENS.split(part) if t]
        if any(ULTRASOUND.match(t) for t in tokens):
            return f"'{part}' marks an ultrasound image"
        low = part.lower()
        if "mask" in low:
            return f"'{part}' marks a mask"
        if "report" in low:
            return f"'{part}' marks a report"
    return ""


def aspect_problem(path: Path) -> str:
    """A reason when the image is much wider than tall ('' otherwise, or when Pillow cannot read
    the header: the preprocessing step then rejects it with the decoder's reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                width, height = im.size
    except Exception:
        return ""
    if height and width / height > MAX_ASPECT:
        return (f"image is {width}x{height} (width/height {width / height:.2f} > "
                f"{MAX_ASPECT:.2f}): an ultrasound image or a report, not a mammogram")
    return ""


def read(root: Path, dataset: dict) -> list[dict]:
    paths = sorted(p for p in root.rglob("*")
                   if p.suffix.lower() in INPUT_SUFFIXES and p.is_file())
    if not any(CLASS_FOLDER.match(p.name) for p in root.rglob("*") if p.is_dir()):
        raise UserError(f"{root}: no BI-RADS class folder (Birad1, Birad3, Birad4, Birad5) found; "
                        "point dataset.root at the KAU-BCMD download that holds them")
    rows: list[dict] = []
    candidates: dict[str, list[dict]] = {}  # cleaned stem -> valid mammograms with that stem
    for path in paths:
        rel = PurePosixPath(path.relative_to(root).as_posix())
        cats, folders = category(rel)
        stem = re.sub(r"\s+", "", rel.stem)
        match = STEM.match(stem)
        row = {"source": rel.as_posix(), "label_level": "patient",
               "patient_id": match["patient"].upper() if match else "",
               "laterality": SIDES.get(match["side"].upper(), "") if match else "",
               "view": VIEWS.get(match["view"].upper(), match["view"].upper()) if match else "",
               "_base": safe_id(stem)}
        if len(cats) == 1:
            row["birads"] = next(iter(cats))
        if not cats:
            row["reason"] = ("not inside a BI-RADS class folder (Birad1, Birad3, Birad4, Birad5), "
                             "so it has no category")
        elif len(cats) > 1:
            row["reason"] = (f"folders {'/'.join(folders)} name different BI-RADS categories "
                             f"({', '.join(sorted(cats))})")
        elif why := not_a_mammogram(rel):
            row["reason"] = f"not a mammogram: {why}"
        elif match is None:
            row["reason"] = ("file name is not {year}_{patientID}_{view}_{side} "
                             "(e.g. 2018_BC005421_CC_R.jpg), so it has no patient id")
        elif match["view"].upper() not in VIEWS:
            row["reason"] = f"view {match['view']!r} in the file name is not CC or MLO"
        elif match["side"].upper() not in SIDES:
            row["reason"] = f"side {match['side']!r} in the file name is not L or R"
        elif why := aspect_problem(path):
            row["reason"] = why
        else:
            row["_key"] = (f"{match['year']}_{row['patient_id']}_{row['view']}_"
                           f"{row['laterality']}")
            candidates.setdefault(row["_key"], []).append(row)
        rows.append(row)

    used: set[str] = set()
    for key, copies in candidates.items():
        # the higher BI-RADS first; within a category a JPG, then path order
        copies.sort(key=lambda r: (-int(r["birads"]), not r["source"].lower().endswith(
            (".jpg", ".jpeg")), r["source"]))
        kept = copies[0]
        kept["image_id"] = unique_id(key, used)
        for other in copies[1:]:
            if other["birads"] != kept["birads"]:
                here = PurePosixPath(other["source"]).parent.as_posix()
                there = PurePosixPath(kept["source"]).parent.as_posix()
                other["reason"] = (f"{key} is in two BI-RADS folders, {here} (BI-RADS "
                                   f"{other['birads']}, this copy) and {there} (BI-RADS "
                                   f"{kept['birads']}); the higher category counts, so "
                                   f"{kept['source']} is kept")
                other["_base"] = f"{key}-birads{other['birads']}"
                log.info("%s is under BI-RADS %s and %s: kept as BI-RADS %s", key,
                         kept["birads"], other["birads"], kept["birads"])
            else:
                other["reason"] = f"another copy of {key} (kept {kept['source']})"
                other["_base"] = f"{key}-copy"
    for row in rows:
        if "image_id" not in row:
            row["image_id"] = unique_id(row["_base"] if row.get("_key") else
                                        f"rejected-{row['_base']}", used)
        row.pop("_base", None)
        row.pop("_key", None)
    return rows
