"""CMMD (The Chinese Mammography Database, TCIA) as downloaded with the NBIA Data Retriever.

Point `dataset.root` at the folder holding both the `CMMD/` image folder and the clinical file
(the NBIA `manifest-<number>/` folder, after saving `CMMD_clinicaldata_revision.xlsx` into it)::

    manifest-1616439774456/
      CMMD_clinicaldata_revision.xlsx        # or a CSV converted from it (see below)
      metadata.csv                           # NBIA's; not used
      CMMD/D1-0001/07-18-2010-NA-NA-xxxxx/1.000000-NA-xxxxx/1-1.dcm ... 1-4.dcm

- Patient: the ID folder (`D1-0001`, `D2-0749`), found anywhere under the root; copies laid out
  by UID (no ID folder) use the DICOM PatientID when it is such an ID. A folder and a tag that
  disagree reject the image (it may be misfiled).
- Laterality is only in the DICOM headers: `ImageLaterality` (or `Laterality`), read without the
  pixels. File and folder names (1-1.dcm ... 1-4.dcm) say nothing about the side or the view.
  View: `ViewPosition`, else the ViewCodeSequence code (SNOMED / SRT: CC, MLO, ML, LM).
- Clinical file: one row per diagnosed breast, columns `ID1, LeftRight, Age, number,
  abnormality, classification, subtype`; `classification` is Benign or Malignant. CMMD has no
  BI-RADS: a listed breast is labelled `abnormal` (benign or malignant finding; label_level
  breast), which only the binary scheme (labels normal/abnormal) knows - under the birads scheme
  finalize rejects these rows ("label 'abnormal' is not one of the config's labels").
- A breast missing from the clinical file is usually normal, but that is not documented, so it is
  not assumed: its images are rejected ("breast not in the clinical file (usually normal; not
  assumed)"). A patient missing altogether, a clinical row without images, a repeated row, a
  classification that is neither Benign nor Malignant, and two rows of one breast that disagree
  are rejected with their reason too.
- The xlsx is read with openpyxl (the first sheet with an ID1 column; cached values, not
  formulas). A CSV converted from it is accepted as well: `CMMD_clinicaldata_revision*.csv` or
  `label.csv` under the root (comma, semicolon or tab separated, with the same columns), or any
  file named by `dataset.table` (relative to the root, or absolute; the config check makes sure
  it exists). The xlsx is used first.
- A DICOM stored twice (same SOPInstanceUID) is used once; the copy is rejected.
- Pixels: 8-bit MONOCHROME2, FOR PRESENTATION, WindowCenter 128 / WindowWidth 256 (decoded by
  imaging.decode like any DICOM).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
import warnings
from pathlib import Path

import openpyxl
import pandas as pd
import pydicom

from mammosynth.errors import UserError
from mammosynth.imaging.decode import DICOM_SUFFIXES

log = logging.getLogger(__name__)

ID = re.compile(r"^D\d+-\d+$")  # ID1: D1-0001 ... D2-0749
REQUIRED = ("ID1", "LeftRight", "classification")
CLASSES = {"benign": "Benign", "malignant": "Malignant"}
SIDES = {"L": "L", "R": "R", "LEFT": "L", "RIGHT": "R"}
# ViewCodeSequence CodeValue (SNOMED CT, and the older SRT codes) and CodeMeaning -> view
VIEW_CODES = {"399162004": "CC", "R-10242": "CC", "399368009": "MLO", "R-10226": "MLO",
              "399260004": "ML", "R-10224": "ML", "399352003": "LM", "R-10228": "LM",
              "cranio-caudal": "CC", "medio-lateral oblique": "MLO", "medio-lateral": "ML",
              "latero-medial": "LM"}
HEADER_TAGS = ["ImageLaterality", "Laterality", "ViewPosition", "ViewCodeSequence", "PatientID",
               "SOPInstanceUID"]
NOT_ASSUMED = "usually normal; not assumed"


# --- the clinical file ---------------------------------------------------------------------------

def _cell_text(value) -> str:
    """A cell as the CSV export of it would write it: 44 for 44.0, TRUE/FALSE, '' for empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_xlsx(path: Path) -> dict[str, list[tuple[int, list[str]]]]:
    """Every sheet of an .xlsx file, in workbook order: name -> (Excel row number, cell texts)."""
    with warnings.catch_warnings():  # "Workbook contains no default style" and the like
        warnings.simplefilter("ignore", UserWarning)
        book = openpyxl.load_workbook(path, data_only=True)
    try:
        return {sheet.title: [(n, [_cell_text(v) for v in values]) for n, values in
                              enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1)]
                for sheet in book.worksheets}
    finally:
        book.close()


def _read_csv(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    header = next((line for line in text.splitlines() if line.strip()), "")
    sep = max([",", ";", "\t"], key=header.count)
    return [(n, row) for n, row in enumerate(csv.reader(io.StringIO(text), delimiter=sep), start=1)]


def _has_id(rows: list[tuple[int, list[str]]]) -> bool:
    header = next((cells for _, cells in rows if any(c.strip() for c in cells)), [])
    return "id1" in {c.strip().lower() for c in header}


def read_clinical(path: Path) -> pd.DataFrame:
    """The clinical file as strings, stripped, with `_line` (Excel row / CSV line number)."""
    try:
        if path.suffix.lower() == ".xlsx":
            sheets = list(read_xlsx(path).values())
            # the first sheet that has an ID1 column (CMMD's file has one sheet)
            lines = next((rows for rows in sheets if _has_id(rows)), sheets[0] if sheets else [])
        else:
            lines = _read_csv(path)
    except Exception as e:  # not an xlsx (an HTML login page, a truncated download), unreadable
        said = " ".join(str(e).split()) or type(e).__name__
        raise UserError(f"{path}: cannot read it as the CMMD clinical table ({said}); restore "
                        "the file as downloaded from TCIA, or save it as CSV "
                        "(CMMD_clinicaldata_revision.csv, same columns) beside it") from e
    lines = [(n, [c.strip() for c in cells]) for n, cells in lines if any(c.strip() for c in cells)]
    if not lines:
        raise UserError(f"{path}: the clinical table is empty; restore the file as downloaded")
    header = lines[0][1]
    by_lower = {c.lower(): c for c in header if c}
    missing = [c for c in REQUIRED if c.lower() not in by_lower]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (found: "
                        f"{', '.join(c for c in header if c)}); the CMMD clinical table has "
                        "ID1, LeftRight, Age, number, abnormality, classification, subtype")
    records = []
    for n, cells in lines[1:]:
        cells = cells + [""] * (len(header) - len(cells))
        rec = {name: cells[i] for i, name in enumerate(header) if name}
        records.append({**{c: rec[by_lower[c.lower()]] for c in REQUIRED}, "_line": n})
    return pd.DataFrame(records, columns=[*REQUIRED, "_line"])


def find_clinical(root: Path, dataset: dict, files: list[Path]) -> tuple[pd.DataFrame, Path]:
    """dataset.table, else the xlsx, else a converted CSV under root: the first one readable."""
    if dataset.get("table"):  # the config check has made sure it exists
        path = Path(dataset["table"])
        path = path if path.is_absolute() else root / path
        return read_clinical(path), path
    lower = {p: p.name.lower() for p in files}
    candidates = sorted((p for p in files if lower[p].startswith("cmmd_clinicaldata")
                         and p.suffix.lower() == ".xlsx"), key=lambda p: (len(p.parts), p))
    candidates += sorted((p for p in files if p.suffix.lower() == ".csv" and (
        lower[p].startswith("cmmd_clinicaldata") or lower[p] == "label.csv")),
        key=lambda p: (len(p.parts), p))
    if not candidates:
        raise UserError(f"{root}: no CMMD_clinicaldata_revision.xlsx (or a CSV of it: "
                        "CMMD_clinicaldata_revision.csv, label.csv) found under it; download it "
                        "from the TCIA CMMD page, put it beside the CMMD/ folder and point "
                        "dataset.root at the folder holding both (or name it in dataset.table)")
    errors = []
    for path in candidates:
        try:
            table = read_clinical(path)
        except UserError as e:
            errors.append(str(e))
            continue
        if errors:
            log.warning("CMMD clinical table: using %s; skipped: %s", path, " | ".join(errors))
        elif len(candidates) > 1:
            log.warning("CMMD clinical table: using %s (also found: %s)", path,
                        ", ".join(str(p) for p in candidates if p != path))
        return table, path
    raise UserError(errors[0] + (f" (and {len(errors) - 1} other candidate(s) failed)"
                                 if len(errors) > 1 else ""))


# --- the DICOM headers ---------------------------------------------------------------------------

def _view(ds) -> str:
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    if view:
        return view
    for item in ds.get("ViewCodeSequence", None) or []:
        for key in ("CodeValue", "CodeMeaning"):
            value = str(item.get(key, "") or "").strip()
            found = VIEW_CODES.get(value) or VIEW_CODES.get(value.lower())
            if found:
                return found
    return ""


def read_header(path: Path) -> dict:
    """Side, view, PatientID and SOPInstanceUID of a DICOM, or {'error': ...}."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
    except Exception as e:  # not DICOM, truncated, ...
        return {"error": f"not a readable DICOM file ({' '.join(str(e).split())[:200]})"}
    side = ""
    for key in ("ImageLaterality", "Laterality"):
        side = str(ds.get(key, "") or "").strip().upper()
        if side:
            break
    return {"side": side, "view": _view(ds),
            "patient": str(ds.get("PatientID", "") or "").strip(),
            "sop": str(ds.get("SOPInstanceUID", "") or "").strip()}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


# --- the adapter ---------------------------------------------------------------------------------

def read(root: Path, dataset: dict) -> list[dict]:
    files = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
    table, meta_path = find_clinical(root, dataset, files)
    try:
        meta_name = meta_path.relative_to(root).as_posix()
    except ValueError:
        meta_name = meta_path.as_posix()
    rows: list[dict] = []

    # one entry per diagnosed breast; rows that cannot be used become rejected rows right away
    breasts: dict[tuple[str, str], list[dict]] = {}
    patients: set[str] = set()
    for rec in table.to_dict("records"):
        where = f"{meta_name} line {rec['_line']}"
        pid, side = rec["ID1"], SIDES.get(rec["LeftRight"].upper(), "")
        bad = ""
        if not ID.match(pid):
            bad = f"{where}: ID1 {pid!r} is not a CMMD patient id (like D1-0001)"
        elif not side:
            bad = f"{where}: LeftRight {rec['LeftRight']!r} is not L or R"
        if bad:
            rows.append({"image_id": f"clinical-line{rec['_line']}",
                         "patient_id": pid if ID.match(pid) else "",
                         "source": f"{meta_name}:{rec['_line']}", "reason": bad})
            continue
        patients.add(pid)
        breasts.setdefault((pid, side), []).append(rec)

    # the DICOMs, each linked to a breast through its patient and ImageLaterality
    images: dict[tuple[str, str], list[dict]] = {}
    ids: set[str] = set()
    sops: dict[str, str] = {}
    for path in files:
        if path.suffix.lower() not in DICOM_SUFFIXES:
            continue
        rel = path.relative_to(root).as_posix()
        folder = next((part for part in reversed(path.relative_to(root).parts[:-1])
                       if ID.match(part)), "")
        head = read_header(path)
        tag = head.get("patient", "")
        pid = folder or (tag if ID.match(tag) else "")
        side = SIDES.get(head.get("side", ""), "")
        image_id = _safe(f"{pid or 'unknown'}_{path.stem}")
        if image_id in ids:
            image_id = f"{image_id}_{hashlib.sha256(rel.encode()).hexdigest()[:8]}"
        ids.add(image_id)
        row = {"image_id": image_id, "patient_id": pid, "laterality": side,
               "view": head.get("view", ""), "source": rel, "label_level": "breast"}
        if "error" in head:
            row["reason"] = head["error"]
        elif not pid:
            row["reason"] = ("no CMMD patient id: the DICOM is in no ID folder (like D1-0001) "
                             f"and its PatientID is {tag!r}")
        elif folder and ID.match(tag) and tag != folder:
            row["reason"] = (f"DICOM PatientID {tag} differs from its folder {folder}; "
                             "is the file misfiled?")
        elif not head["side"]:
            row["reason"] = ("DICOM has no ImageLaterality (CMMD gives the side only there), so "
                             "it cannot be linked to a breast of the clinical file")
        elif not side:
            row["reason"] = f"DICOM ImageLaterality {head['side']!r} is not L or R"
        elif head["sop"] and head["sop"] in sops:
            row["reason"] = f"the same image (SOPInstanceUID) as {sops[head['sop']]}"
        elif pid not in patients:
            row["reason"] = f"patient {pid} is not in {meta_name}"
        elif (pid, side) not in breasts:
            row["reason"] = (f"breast not in the clinical file ({NOT_ASSUMED}): {meta_name} "
                             f"lists {pid} but not side {side}")
        else:
            recs = breasts[(pid, side)]
            lines = ", ".join(str(r["_line"]) for r in recs)
            classes = {CLASSES.get(r["classification"].lower(), r["classification"])
                       for r in recs}
            if len(classes) > 1:
                row["reason"] = (f"{meta_name} lines {lines} give breast {side} of {pid} "
                                 f"different classifications ({', '.join(sorted(classes))})")
            elif classes.pop() not in CLASSES.values():
                row["reason"] = (f"{meta_name} line {lines}: classification "
                                 f"{recs[0]['classification']!r} of breast {side} of {pid} is "
                                 "neither Benign nor Malignant")
            else:
                row["label"] = "abnormal"
            images.setdefault((pid, side), []).append(row)
        if head.get("sop") and not row.get("reason"):
            sops[head["sop"]] = rel
        rows.append(row)

    # clinical rows that no image used, and repeated rows (their images are counted once)
    for (pid, side), recs in breasts.items():
        first = recs[0]["_line"]
        for i, rec in enumerate(recs):
            reason = ""
            if (pid, side) not in images and i == 0:
                reason = (f"no DICOM of breast {side} of {pid} under the root (looked for "
                          f"DICOMs in a folder {pid} with ImageLaterality {side})")
            elif i > 0:
                reason = (f"{meta_name} line {rec['_line']} repeats breast {side} of {pid} "
                          f"(line {first}); its images are counted once")
            if reason:
                rows.append({"image_id": f"clinical-line{rec['_line']}", "patient_id": pid,
                             "laterality": side, "label_level": "breast",
                             "source": f"{meta_name}:{rec['_line']}", "reason": reason})
    return rows
