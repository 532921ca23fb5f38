"""INbreast ("INbreast Release 1.0") as downloaded: INbreast.csv or INbreast.xls + AllDICOMs/.

- INbreast.csv: ASCII, CRLF, semicolon-separated; `Patient ID` is the literal `removed`, so the
  patient is the 16-hex case hash in the DICOM file name; Bi-Rads has 4a/4b/4c; one ACR cell is
  a run of spaces; one view is `FB`.
- INbreast.xls: 17 columns, two total rows at the bottom, File Name read as a float.
- DICOMs: `<File Name>_<case hash>_MG_<L|R>_<CC|ML>_ANON.dcm`, found anywhere under the root
  (some copies rename AllDICOMs). The view is `ML` in file names and `MLO` in the metadata.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mammosynth.datasets import read_metadata
from mammosynth.errors import UserError

NAME = re.compile(r"^(?P<file>\d+)_(?P<case>[0-9a-fA-F]+)_MG_(?P<lat>[LR])_(?P<view>[A-Z]+)_ANON$")
REQUIRED = ("Laterality", "View", "File Name", "Bi-Rads")
VIEWS = {"ML": "MLO"}


def read_index(root: Path) -> tuple[pd.DataFrame, Path]:
    """INbreast.csv (preferred) or INbreast.xls under root, as strings, stripped, totals dropped."""
    for pattern in ("INbreast.csv", "INbreast.xls"):
        found = sorted(root.rglob(pattern))
        if found:
            path = found[0]
            break
    else:
        raise UserError(f"{root}: no INbreast.csv or INbreast.xls found; point dataset.root at the "
                        "'INbreast Release 1.0' folder")
    if path.suffix == ".csv":
        def read(p):
            return pd.read_csv(p, sep=";", dtype=str, keep_default_na=False, encoding="latin-1")
    else:
        def read(p):
            return pd.read_excel(p, dtype=str).fillna("")
    table = read_metadata(path, REQUIRED, "the INbreast metadata table",
                          "is it semicolon-separated as shipped?", read)
    # File Name: '22678622' in the csv, '22678622.0' in the xls; the xls totals rows have none.
    table["File Name"] = table["File Name"].str.replace(r"\.0+$", "", regex=True)
    if path.suffix == ".xls":
        table = table[table["File Name"].str.fullmatch(r"\d+")]
    return table, path


def read(root: Path, dataset: dict) -> list[dict]:
    table, meta_path = read_index(root)
    meta_name = meta_path.relative_to(root).as_posix()
    files: dict[str, list[Path]] = {}
    rows: list[dict] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() == ".dcm"):
        match = NAME.match(path.stem)
        key = match["file"] if match else path.stem.split("_")[0]
        files.setdefault(key, []).append(path)

    linked: set[Path] = set()
    seen_names: set[str] = set()
    for rec in table.to_dict("records"):
        name = rec["File Name"]
        row = {"image_id": name, "laterality": rec["Laterality"].upper(),
               "view": VIEWS.get(rec["View"].upper(), rec["View"].upper()),
               "birads": rec["Bi-Rads"], "source": f"{meta_name}:{rec['_line']}"}
        candidates = files.get(name, [])
        if not re.fullmatch(r"\d+", name):
            row["image_id"] = f"row{rec['_line']}"
            row["reason"] = f"{meta_name} line {rec['_line']}: File Name {name!r} is not a number"
        elif name in seen_names:
            row["image_id"] = f"{name}-row{rec['_line']}"
            row["reason"] = f"{meta_name} line {rec['_line']}: duplicate File Name {name}"
        elif not candidates:
            row["reason"] = f"no DICOM named {name}_*.dcm under the data set root"
        elif len(candidates) > 1:
            row["reason"] = (f"{len(candidates)} DICOMs named {name}_*.dcm: "
                             + ", ".join(p.relative_to(root).as_posix() for p in candidates))
            linked.update(candidates)
        else:
            path = candidates[0]
            linked.add(path)
            row["source"] = path.relative_to(root).as_posix()
            match = NAME.match(path.stem)
            if match is None:
                row["reason"] = ("file name does not follow "
                                 "<File Name>_<case hash>_MG_<L|R>_<view>_ANON.dcm, so it has no "
                                 "patient id")
            else:
                row["patient_id"] = match["case"].lower()
                if row["laterality"] not in ("L", "R"):
                    row["laterality"] = match["lat"]
        seen_names.add(name)
        rows.append(row)

    for paths in files.values():
        for path in paths:
            if path not in linked:
                match = NAME.match(path.stem)
                rows.append({"image_id": f"unlisted-{match['file'] if match else path.stem}",
                             "patient_id": match["case"].lower() if match else "",
                             "laterality": match["lat"] if match else "",
                             "view": VIEWS.get(match["view"], match["view"]) if match else "",
                             "source": path.relative_to(root).as_posix(),
                             "reason": f"no row in {meta_name} for this DICOM"})
    return rows
