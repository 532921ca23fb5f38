"""CBIS-DDSM (TCIA) as downloaded: the four case CSVs + the full mammograms, one input per image.

Point `dataset.root` at the folder holding the case CSVs and the images (they are searched for at
any depth). Two layouts are read; which one is decided by `dicom_info.csv`: when a file of that
name is anywhere under the root it is the Kaggle JPEG copy, otherwise the TCIA DICOM download.

TCIA (NBIA Data Retriever) layout:

    mass_case_description_train_set.csv   calc_case_description_train_set.csv
    mass_case_description_test_set.csv    calc_case_description_test_set.csv
    metadata.csv                          (NBIA's download table; optional, see below)
    CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/07-20-2016-DDSM-NA-74994/
              1.000000-full mammogram images-24515/1-1.dcm

Kaggle copy (awsaf49/cbis-ddsm-breast-cancer-image-dataset):

    csv/{mass,calc}_case_description_{train,test}_set.csv, csv/dicom_info.csv, csv/meta.csv
    jpeg/<SeriesInstanceUID>/1-N.jpg

Traps handled:
- The `image file path` cells (`Mass-Training_P_00001_LEFT_CC/<StudyUID>/<SeriesUID>/000000.dcm`)
  do not exist on disk. TCIA: the series is looked up in every NBIA `metadata.csv` under the root
  (`Series UID`, `Study UID`, `File Location` = `.\\CBIS-DDSM\\<folder>\\<study>\\<series>`,
  backslashes, relative to that metadata.csv) and the DICOM in that folder is taken (1-1.dcm);
  without metadata.csv (or when it lacks the series) the DICOM under
  `<folder>/*-<last 5 digits of the Study UID>/*-<last 5 digits of the Series UID>/` is taken,
  which also covers older retrievers that leave out `NA-` in the study folder. Kaggle: the image
  is the `dicom_info.csv` row whose PatientID is the path's first component and whose
  SeriesDescription is `full mammogram images` (several: the one with the CSV's Series UID); its
  `image_path` (`CBIS-DDSM/jpeg/<uid>/1-1.jpg`) is found by its last two components. A row whose
  image cannot be found is rejected, saying what was looked for.
- The density column is `breast_density` (mass) and `breast density` (calc): header names are
  compared with `_` read as a space (density is not used further). Quoted path cells can end in an
  embedded newline: every cell is stripped; `source` gives the line a record starts on.
- One input per mammogram (patient, breast, view), not per abnormality: all rows of an image
  are one input, and so is an image listed in both the mass and the calc CSVs (two folders,
  `Mass-..._P_00001_LEFT_CC` and `Calc-..._P_00001_LEFT_CC`, holding the same film): the first
  file found is the input, the other copy is rejected as the same mammogram. `image_id` is
  `P_00001_L_CC`; `patient_id` the `patient_id` column; `label_level` "image".
- BI-RADS is the `assessment` (0-5) of the abnormality rows; when the rows of one image disagree,
  the image takes the most worrisome one in the ACR BI-RADS order 1 < 2 < 3 < 0 < 4 < 5 (the
  highest, except that 0, "needs additional imaging", outranks 1-3), as an overall breast
  assessment does; the number of such images is logged. A row with another value rejects its
  image (its finding cannot be ranked).
- `official_subset` is "training" or "test" from the folder name (Mass-Training / Calc-Test);
  "test" when any row of the image is in an official test set. The CSV's laterality, view,
  patient, abnormality type and train/test file must agree with the path's folder name, or the
  image is rejected naming the line.
- Cropped-image and ROI-mask files (folders `..._CC_1`, series `cropped images` / `ROI mask
  images`) are not inputs (their count is logged). A full mammogram on disk that no CSV row
  references is rejected ("no row in the case CSVs"); so is a DICOM outside the CBIS-DDSM folder
  layout, and a JPEG that dicom_info.csv does not list.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mammosynth.datasets import pseudonym
from mammosynth.errors import UserError
from mammosynth.labels import normalize_birads

log = logging.getLogger(__name__)

CASE_CSV = re.compile(r"^(?P<kind>mass|calc)_case_description_(?P<subset>train|test)_set\.csv$",
                      re.IGNORECASE)
CASE_CSVS = [f"{kind}_case_description_{subset}_set.csv"
             for kind in ("mass", "calc") for subset in ("train", "test")]
# The TCIA subject folder: the full mammogram's, or (with _<abnormality id>) a crop's / mask's.
FOLDER = re.compile(r"^(?P<kind>Mass|Calc)-(?P<subset>Training|Test)_(?P<patient>P_\d+)_"
                    r"(?P<side>LEFT|RIGHT)_(?P<view>CC|MLO)(?P<abn>_\d+)?$", re.IGNORECASE)
IMAGE_PATH = re.compile(r"^(?P<folder>[^/]+)/(?P<study>[0-9.]+)/(?P<series>[0-9.]+)/[^/]+$")
FOLDER_FORM = "<Mass|Calc>-<Training|Test>_P_NNNNN_<LEFT|RIGHT>_<CC|MLO>"
REQUIRED = ("patient id", "left or right breast", "image view", "assessment", "image file path")
# ACR BI-RADS overall assessment, in increasing order of concern.
HIERARCHY = ("1", "2", "3", "0", "4", "5")
SIDES = {"LEFT": "L", "RIGHT": "R"}
JPEG_SUFFIXES = {".jpg", ".jpeg"}


def column_key(name: str) -> str:
    """'breast_density' and 'breast density' -> 'breast density' (also 'patient_id')."""
    return " ".join(str(name).replace("_", " ").split()).lower()


def read_csv_records(path: Path, what: str) -> tuple[list[str], list[dict]]:
    """A comma-separated file -> (normalised column names, records of stripped cells with
    `_line`, the line the record starts on, and `_fields`, its number of fields)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise UserError(f"{path}: the file is empty; restore the {what} as downloaded")
            columns = [column_key(c) for c in header]
            twice = sorted({c for c in columns if columns.count(c) > 1})
            if twice:
                raise UserError(f"{path}: column(s) {', '.join(twice)} appear more than once "
                                f"in the header; restore the {what} as downloaded")
            records, start = [], reader.line_num + 1
            for cells in reader:
                if any(c.strip() for c in cells):
                    rec = {c: "" for c in columns}
                    rec.update(zip(columns, (c.strip() for c in cells)))
                    rec["_line"], rec["_fields"] = start, len(cells)
                    records.append(rec)
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); restore the "
                        f"{what} as downloaded") from None
    except csv.Error as e:
        raise UserError(f"{path}: cannot read it as a comma-separated {what} ({e}); restore "
                        "the file as downloaded") from None
    return columns, records


def read_case_csv(path: Path) -> list[dict]:
    """One case description CSV: records keyed by normalised column name, cells stripped."""
    columns, records = read_csv_records(path, "CBIS-DDSM case description CSV")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (found: "
                        f"{', '.join(columns)}); restore the CBIS-DDSM case description CSV as "
                        "downloaded from TCIA (comma-separated)")
    for rec in records:
        rec["_columns"] = len(columns)
    return records


def find_case_csvs(root: Path, files: list[Path]) -> list[tuple[Path, str, str]]:
    """The case CSVs under root -> [(path, 'Mass'|'Calc', 'Training'|'Test')]."""
    found: dict[str, list[Path]] = {}
    for path in files:
        if CASE_CSV.match(path.name):
            found.setdefault(path.name.lower(), []).append(path)
    if not found:
        raise UserError(f"{root}: none of the CBIS-DDSM case CSVs ({', '.join(CASE_CSVS)}) was "
                        "found; download them from the CBIS-DDSM page on TCIA (they are separate "
                        "from the images) and put them in the data set root")
    twice = {name: paths for name, paths in found.items() if len(paths) > 1}
    if twice:
        name, paths = next(iter(twice.items()))
        raise UserError(f"{root}: {len(paths)} copies of {name} ("
                        + ", ".join(p.relative_to(root).as_posix() for p in paths)
                        + "); point dataset.root at one copy of CBIS-DDSM")
    absent = [name for name in CASE_CSVS if name not in found]
    if absent:
        log.warning("%s: no %s; images of that part of CBIS-DDSM are rejected as having no row "
                    "in the case CSVs", root, ", ".join(absent))
    out = []
    for name in CASE_CSVS:
        if name in found:
            m = CASE_CSV.match(name)
            out.append((found[name][0], m["kind"].capitalize(),
                        "Training" if m["subset"].lower() == "train" else "Test"))
    return out


@dataclass
class Ref:
    """One abnormality row of a case CSV, pointing at its full mammogram."""
    csv: str
    line: int
    folder: str
    study: str
    series: str
    subset: str
    patient: str
    side: str
    view: str
    assessment: str
    problems: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.patient, self.side, self.view

    @property
    def entry(self) -> tuple[str, str, str]:
        return self.folder, self.study, self.series


def parse_row(rec: dict, csv_name: str, kind: str, subset: str) -> Ref | str:
    """A case CSV record -> Ref, or the reason (a string) when it names no usable image."""
    where = f"{csv_name} line {rec['_line']}"
    if rec["_fields"] != rec["_columns"]:
        return f"{where}: {rec['_fields']} fields, the header has {rec['_columns']}"
    path = rec["image file path"].replace("\\", "/").strip("/")
    m = IMAGE_PATH.match(path)
    if not m:
        return (f"{where}: image file path {path!r} is not "
                "<folder>/<StudyUID>/<SeriesUID>/<file>")
    f = FOLDER.match(m["folder"])
    if not f or f["abn"]:
        return f"{where}: image file path {path!r} does not start with a {FOLDER_FORM} folder"
    ref = Ref(csv=csv_name, line=rec["_line"], folder=m["folder"], study=m["study"],
              series=m["series"], subset=f["subset"].capitalize(), patient=f["patient"].upper(),
              side=SIDES[f["side"].upper()], view=f["view"].upper(),
              assessment=normalize_birads(rec["assessment"]) or "")
    checks = (("patient id", rec["patient id"].upper(), ref.patient),
              ("left or right breast", rec["left or right breast"].upper(), f["side"].upper()),
              ("image view", rec["image view"].upper(), ref.view))
    for column, value, expected in checks:
        if value != expected:
            ref.problems.append(f"{where}: {column} is {value!r} but the image path is "
                                f"{m['folder']}")
    if f["kind"].capitalize() != kind or ref.subset != subset:
        ref.problems.append(f"{where}: a {m['folder']} image in {csv_name}")
    if ref.assessment not in HIERARCHY:
        ref.problems.append(f"{where}: assessment {rec['assessment']!r} is not a BI-RADS "
                            "assessment 0-5")
    return ref


def _ends_with_uid(name: str, uid: str) -> bool:
    """NBIA folder names end in '-' + the last 5 characters of the UID ('...-07312')."""
    m = re.search(r"-([0-9.]+)$", name)
    if not m:
        return False
    got, tail = m[1], uid[-5:]
    return got == tail or (got.isdigit() and tail.isdigit() and int(got) == int(tail))


class TciaLayout:
    """CBIS-DDSM/<folder>/<study>/<series>/1-1.dcm, optionally with NBIA metadata.csv files."""

    def __init__(self, root: Path, files: list[Path]):
        self.root = root
        self.full: dict[str, list[Path]] = {}  # subject folder -> its DICOMs
        self.unknown: list[Path] = []
        crops = 0
        for path in files:
            if path.suffix.lower() != ".dcm":
                continue
            parts = path.relative_to(root).parts[:-1]
            folder = next((p for p in parts if FOLDER.match(p)), None)
            if folder is None:
                self.unknown.append(path)
            elif FOLDER.match(folder)["abn"]:
                crops += 1
            else:
                self.full.setdefault(folder, []).append(path)
        if crops:
            log.info("%d cropped-image / ROI-mask DICOMs are not inputs", crops)
        jpegs = [p for p in files if p.suffix.lower() in JPEG_SUFFIXES]
        if not self.full and not self.unknown and jpegs:
            raise UserError(f"{root}: JPEGs but no DICOMs and no dicom_info.csv; the Kaggle JPEG "
                            "copy of CBIS-DDSM needs its csv/dicom_info.csv: restore it, or point "
                            "dataset.root at the TCIA download")
        # Series UID -> (Study UID, series folder, where it is listed)
        self.series: dict[str, tuple[str, Path, str]] = {}
        self.metadata = [p for p in files if p.name == "metadata.csv"]
        for meta in self.metadata:
            self._read_metadata(meta)

    def _read_metadata(self, meta: Path) -> None:
        columns, records = read_csv_records(meta, "NBIA metadata.csv")
        missing = [c for c in ("series uid", "file location") if c not in columns]
        if missing:
            raise UserError(f"{meta}: missing column(s) {', '.join(missing)} (found: "
                            f"{', '.join(columns)}); it is not the metadata.csv of an NBIA "
                            "download: restore it, or remove it from the data set root")
        name = meta.relative_to(self.root).as_posix()
        for rec in records:
            location = rec["file location"].replace("\\", "/")
            parts = [p for p in location.split("/") if p not in ("", ".")]
            if rec["series uid"] and parts:
                self.series.setdefault(rec["series uid"], (
                    rec.get("study uid", ""), meta.parent.joinpath(*parts),
                    f"{name} line {rec['_line']}"))

    def locate(self, folder: str, study: str, series: str) -> tuple[Path | None, str, list[Path]]:
        """(the DICOM, "", []) or (None, why not, files named in the reason)."""
        listed = self.series.get(series)
        if listed and listed[0] in ("", study) and listed[1].is_dir():
            inside = sorted(p for p in listed[1].iterdir()
                            if p.suffix.lower() == ".dcm" and p.is_file())
            first = [p for p in inside if p.name == "1-1.dcm"]
            if first or len(inside) == 1:
                return (first or inside)[0], "", []
        candidates = self.full.get(folder, [])
        match = [p for p in candidates if _ends_with_uid(p.parent.name, series)
                 and _ends_with_uid(p.parent.parent.name, study)]
        if len(match) == 1:
            return match[0], "", []
        rel = [p.relative_to(self.root).as_posix() for p in (match or candidates)]
        if match:
            return None, f"{len(match)} DICOMs for {folder}: {', '.join(rel)}", match
        wanted = (f"no DICOM CBIS-DDSM/{folder}/*-{study[-5:]}/*-{series[-5:]}/1-1.dcm for "
                  f"series {series}")
        if listed:
            wanted += f" (its folder in {listed[2]} holds no single DICOM either)"
        elif self.metadata:
            wanted += " (and no metadata.csv lists that series)"
        if candidates:
            wanted += f"; {', '.join(rel)} has other UIDs"
        return None, wanted, candidates

    def full_images(self) -> list[tuple[Path, str]]:
        return [(p, folder) for folder, paths in self.full.items() for p in paths]


@dataclass
class InfoRow:
    series: str
    key: str  # "<uid folder>/<file>"
    line: int


class KaggleLayout:
    """csv/dicom_info.csv + jpeg/<SeriesInstanceUID>/1-N.jpg."""

    def __init__(self, root: Path, files: list[Path], infos: list[Path]):
        self.root = root
        if len(infos) > 1:
            raise UserError(f"{root}: {len(infos)} copies of dicom_info.csv ("
                            + ", ".join(p.relative_to(root).as_posix() for p in infos)
                            + "); point dataset.root at one copy of CBIS-DDSM")
        dicoms = [p for p in files if p.suffix.lower() == ".dcm"]
        if dicoms:
            raise UserError(f"{root}: holds both the Kaggle JPEG copy of CBIS-DDSM "
                            f"({infos[0].relative_to(root).as_posix()}) and DICOMs (e.g. "
                            f"{dicoms[0].relative_to(root).as_posix()}); point dataset.root at "
                            "one of the two")
        self.info = infos[0].relative_to(root).as_posix()
        columns, records = read_csv_records(infos[0], "dicom_info.csv")
        missing = [c for c in ("image path", "patientid", "seriesdescription") if c not in columns]
        if missing:
            raise UserError(f"{infos[0]}: missing column(s) {', '.join(missing)} (found: "
                            f"{', '.join(columns)}); restore the Kaggle copy's csv/dicom_info.csv "
                            "as downloaded")
        self.jpegs: dict[str, list[Path]] = {}
        for path in files:
            if path.suffix.lower() in JPEG_SUFFIXES:
                self.jpegs.setdefault(f"{path.parent.name}/{path.name}", []).append(path)
        self.full: dict[str, list[InfoRow]] = {}  # PatientID -> its full mammograms
        listed: set[str] = set()
        crops = 0
        for rec in records:
            key = "/".join(rec["image path"].replace("\\", "/").split("/")[-2:])
            listed.add(key)
            description = rec["seriesdescription"].lower()
            pid = rec["patientid"]
            whole = FOLDER.match(pid) and not FOLDER.match(pid)["abn"]
            if "full mammogram" in description or (not description and whole):
                self.full.setdefault(pid, []).append(
                    InfoRow(rec.get("seriesinstanceuid", ""), key, rec["_line"]))
            else:
                crops += 1
        if crops:
            log.info("%d cropped-image / ROI-mask rows of %s are not inputs", crops, self.info)
        self.unknown = [p for key, paths in self.jpegs.items() if key not in listed
                        for p in paths]

    def locate(self, folder: str, study: str, series: str) -> tuple[Path | None, str, list[Path]]:
        rows = self.full.get(folder, [])
        if len(rows) > 1:
            rows = [r for r in rows if r.series == series] or rows
        if not rows:
            return None, f"{self.info} has no full mammogram image with PatientID {folder}", []
        if len(rows) > 1:
            lines = ", ".join(str(r.line) for r in rows)
            return None, (f"{self.info} has {len(rows)} full mammogram images for {folder} "
                          f"(lines {lines})"), []
        paths = self.jpegs.get(rows[0].key, [])
        if len(paths) == 1:
            return paths[0], "", []
        if not paths:
            return None, (f"no file jpeg/{rows[0].key} (the image of {folder} in {self.info} "
                          f"line {rows[0].line})"), []
        rel = [p.relative_to(self.root).as_posix() for p in paths]
        return None, f"{len(paths)} files for jpeg/{rows[0].key}: {', '.join(rel)}", paths

    def full_images(self) -> list[tuple[Path, str]]:
        return [(p, pid) for pid, rows in self.full.items() for r in rows
                for p in self.jpegs.get(r.key, [])]


def _files(root: Path) -> list[Path]:
    out = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        out.extend(Path(folder, name) for name in sorted(names))
    return out


def read(root: Path, dataset: dict) -> list[dict]:
    files = _files(root)
    cases = find_case_csvs(root, files)
    infos = [p for p in files if p.name.lower() == "dicom_info.csv"]
    layout = KaggleLayout(root, files, infos) if infos else TciaLayout(root, files)

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    rows: list[dict] = []
    groups: dict[tuple[str, str, str], list[Ref]] = {}
    for path, kind, subset in cases:
        name = rel(path)
        for rec in read_case_csv(path):
            ref = parse_row(rec, name, kind, subset)
            if isinstance(ref, str):
                rows.append({"image_id": f"{path.stem}-line{rec['_line']}",
                             "patient_id": rec["patient id"], "label_level": "image",
                             "official_subset": subset.lower(), "reason": ref,
                             "source": f"{name}:{rec['_line']}"})
            else:
                groups.setdefault(ref.key, []).append(ref)

    linked: set[Path] = set()
    disagree: list[str] = []
    for (patient, side, view), refs in groups.items():
        image_id = f"{patient}_{side}_{view}"
        base = {"patient_id": patient, "laterality": side, "view": view, "label_level": "image",
                "official_subset": "test" if any(r.subset == "Test" for r in refs)
                else "training"}
        found: dict[Path, str] = {}  # file -> its folder, in CSV order
        missing: list[str] = []
        for entry in dict.fromkeys(r.entry for r in refs):
            path, reason, named = layout.locate(*entry)
            linked.update(named)
            if path is not None:
                found.setdefault(path, entry[0])
            elif reason not in missing:
                missing.append(reason)
        problems = [p for r in refs for p in r.problems]
        values = sorted({r.assessment for r in refs if r.assessment in HIERARCHY},
                        key=HIERARCHY.index)
        if len(values) > 1:
            disagree.append(f"{image_id} ({', '.join(values)} -> {values[-1]})")
        row = {**base, "image_id": image_id, "birads": values[-1] if values else "",
               "reason": "; ".join(problems)}
        if not found:
            first = refs[0]
            row["source"] = f"{first.csv}:{first.line}"
            row["reason"] = "; ".join(problems + missing)
            rows.append(row)
            continue
        kept, *copies = found
        linked.update(found)
        rows.append({**row, "source": rel(kept)})
        for n, copy in enumerate(copies, start=1):
            rows.append({**base, "image_id": f"{image_id}-copy{n}", "source": rel(copy),
                         "reason": f"the same mammogram ({patient} {side} {view}) as "
                                   f"{rel(kept)}: listed as both {found[kept]} and "
                                   f"{found[copy]}; its abnormality rows count there"})
    if disagree:
        log.info("%d image(s) have abnormality rows with different assessments; each takes the "
                 "most worrisome (ACR order 1 < 2 < 3 < 0 < 4 < 5), e.g. %s", len(disagree),
                 ", ".join(disagree[:5]))

    seen: dict[str, int] = {}
    for path, folder in layout.full_images():
        if path in linked:
            continue
        linked.add(path)
        f = FOLDER.match(folder)
        image_id = f"unlisted-{folder}"
        seen[image_id] = seen.get(image_id, 0) + 1
        if seen[image_id] > 1:
            image_id += f"-{seen[image_id]}"
        row = {"image_id": image_id, "label_level": "image", "source": rel(path),
               "reason": f"no row in the case CSVs for this full mammogram ({folder})"}
        if f:
            row.update(patient_id=f["patient"].upper(), laterality=SIDES[f["side"].upper()],
                       view=f["view"].upper(), official_subset=(
                           "training" if f["subset"].lower() == "training" else "test"))
        rows.append(row)
    for path in layout.unknown:
        if path in linked:
            continue
        why = ("not listed in " + layout.info if isinstance(layout, KaggleLayout) else
               f"not in a CBIS-DDSM/{FOLDER_FORM}/<study>/<series>/ folder")
        rows.append({"image_id": pseudonym(rel(path), "unlisted-"), "label_level": "image",
                     "source": rel(path),
                     "reason": f"{why}, so no row in the case CSVs refers to it"})
    return rows
