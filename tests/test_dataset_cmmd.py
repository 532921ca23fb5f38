"""CMMD adapter against a small tree in the NBIA layout: 8-bit FOR PRESENTATION DICOMs whose only
record of the side is ImageLaterality, and the clinical file as xlsx (a real workbook, written
with openpyxl) or as a CSV converted from it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mammosynth.datasets import INGEST_COLUMNS, cmmd
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError
from mammosynth.imaging.pipeline import preprocess_table

from conftest import breast_image

BINARY = {"scheme": "binary"}
HEADER = ["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"]
MG_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography - For Presentation
NOT_ASSUMED = "breast not in the clinical file (usually normal; not assumed)"


# --- writers: the data set's own layout ----------------------------------------------------------

def write_dicom(path: Path, patient: str, side: str | None, view: str | None = "CC", *,
                view_code: str | None = None, sop: str | None = None, **tags) -> Path:
    """A CMMD-like DICOM: 8-bit MONOCHROME2, window 128/256, FOR PRESENTATION; the side only in
    ImageLaterality (None: no such tag), the view in ViewPosition and/or ViewCodeSequence."""
    pixels = np.round(breast_image(48, 40, side or "R") * 255).astype(np.uint8)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MG_PRESENTATION
    ds.file_meta.MediaStorageSOPInstanceUID = sop or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MG_PRESENTATION
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID = patient
    ds.PatientName = patient
    ds.StudyDate = "20100718"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    ds.ImagerPixelSpacing = [0.0941, 0.0941]
    ds.set_pixel_data(pixels, "MONOCHROME2", 8, generate_instance_uid=False)
    ds.WindowCenter, ds.WindowWidth = 128, 256
    if side is not None:
        ds.ImageLaterality = side
    if view is not None:
        ds.ViewPosition = view
    if view_code is not None:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = view_code, "SCT"
        ds.ViewCodeSequence = Sequence([item])
    for key, value in tags.items():
        setattr(ds, key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def series(root: Path, patient: str, n: int = 0) -> Path:
    """CMMD/<ID1>/07-18-2010-NA-NA-<5 digits>/1.000000-NA-<5 digits>/ (NBIA's folder names)."""
    return (root / "CMMD" / patient / f"07-18-2010-NA-NA-{12345 + n:05d}"
            / f"1.000000-NA-{67890 + n:05d}")


def write_xlsx(path: Path, rows: list[list], sheet: str = "Sheet1",
               before: dict[str, list[list]] | None = None) -> Path:
    """A workbook with `rows` on sheet `sheet` (an empty row: []; an empty cell: ""), after the
    sheets of `before` {name: rows}. Numbers are stored as numbers, empty cells not at all."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, values in {**(before or {}), sheet: rows}.items():
        ws = book.create_sheet(name)
        for r, row in enumerate(values, start=1):
            for c, value in enumerate(row, start=1):
                if value not in ("", None):
                    ws.cell(row=r, column=c, value=value)
    book.save(path)
    return path


def write_csv(path: Path, rows: list[list], sep: str = ",") -> Path:
    path.write_text("\n".join(sep.join(str(v) for v in row) for row in [HEADER, *rows]) + "\n")
    return path


# D1-0001: only the right breast diagnosed (the left one: not in the clinical file);
# D1-0002: both breasts; D2-0001: left only, two images; D2-0002: a row without images.
CLINICAL = [
    ["D1-0001", "R", 44, 2, "calcification", "Benign", ""],
    ["D1-0002", "L", 40, 2, "mass", "Malignant", ""],
    ["D1-0002", "R", 40, 2, "both", "Benign", ""],
    ["D2-0001", "L", 62, 2, "mass", "Malignant", "Luminal A"],
    ["D2-0002", "R", 55, 2, "calcification", "Malignant", "HER2-enriched"],
]


def build(root: Path, clinical: list[list] = CLINICAL, table: str = "xlsx") -> Path:
    """The NBIA download folder: CMMD/<ID1>/... plus the clinical file beside CMMD/."""
    root.mkdir(parents=True, exist_ok=True)
    # 1-1 .. 1-4 name no side: here 1-1 / 1-2 are the left breast for D1-0001, the right for D1-0002
    d = series(root, "D1-0001")
    write_dicom(d / "1-1.dcm", "D1-0001", "L", "CC")
    write_dicom(d / "1-2.dcm", "D1-0001", "L", "MLO")
    write_dicom(d / "1-3.dcm", "D1-0001", "R", "CC")
    write_dicom(d / "1-4.dcm", "D1-0001", "R", "MLO")
    d = series(root, "D1-0002", 1)
    write_dicom(d / "1-1.dcm", "D1-0002", "R", "CC")
    write_dicom(d / "1-2.dcm", "D1-0002", "R", "MLO")
    write_dicom(d / "1-3.dcm", "D1-0002", "L", "CC")
    write_dicom(d / "1-4.dcm", "D1-0002", "L", "MLO")
    d = series(root, "D2-0001", 2)
    write_dicom(d / "1-1.dcm", "D2-0001", "L", "CC")
    write_dicom(d / "1-2.dcm", "D2-0001", "L", "MLO")
    (root / "metadata.csv").write_text("Series UID,Subject ID,File Location\n1.2,D1-0001,.\\CMMD\n")
    if table == "xlsx":
        write_xlsx(root / "CMMD_clinicaldata_revision.xlsx", [HEADER, *clinical])
    elif table:
        write_csv(root / table, clinical)
    return root


def by_source(rows: list[dict]) -> dict[str, dict]:
    return {r["source"]: r for r in rows}


@pytest.fixture
def tree(tmp_path) -> Path:
    return build(tmp_path / "manifest-1616439774456")


# --- the layout ----------------------------------------------------------------------------------

def test_read_counts_and_links(tree):
    rows = cmmd.read(tree, {"format": "cmmd"})
    assert len(rows) == 11  # 10 DICOMs + the clinical row without images
    assert all(set(r) <= set(INGEST_COLUMNS) | {"label_level"} for r in rows)
    ok = [r for r in rows if not r.get("reason")]
    assert len(ok) == 8 and {r["label"] for r in ok} == {"abnormal"}
    assert {r["label_level"] for r in ok} == {"breast"}
    assert not any(r.get("birads") for r in rows)  # CMMD has no BI-RADS
    src = by_source(rows)
    first = "CMMD/D1-0001/07-18-2010-NA-NA-12345/1.000000-NA-67890/"
    assert src[first + "1-3.dcm"] == {
        "image_id": "D1-0001_1-3", "patient_id": "D1-0001", "laterality": "R", "view": "CC",
        "source": first + "1-3.dcm", "label_level": "breast", "label": "abnormal"}
    assert src[first + "1-4.dcm"]["view"] == "MLO"
    # the side comes from ImageLaterality, not from the file name
    second = "CMMD/D1-0002/07-18-2010-NA-NA-12346/1.000000-NA-67891/"
    assert [src[second + f"1-{k}.dcm"]["laterality"] for k in (1, 2, 3, 4)] == ["R", "R", "L", "L"]
    rejected = {r["source"]: r["reason"] for r in rows if r.get("reason")}
    assert rejected == {
        first + "1-1.dcm": f"{NOT_ASSUMED}: CMMD_clinicaldata_revision.xlsx lists D1-0001 but "
                           "not side L",
        first + "1-2.dcm": f"{NOT_ASSUMED}: CMMD_clinicaldata_revision.xlsx lists D1-0001 but "
                           "not side L",
        "CMMD_clinicaldata_revision.xlsx:6": "no DICOM of breast R of D2-0002 under the root "
                                             "(looked for DICOMs in a folder D2-0002 with "
                                             "ImageLaterality R)"}
    assert len({r["image_id"] for r in rows}) == len(rows)


def test_ingest_binary_and_birads(tree):
    table = ingest({"format": "cmmd", "root": str(tree)}, BINARY)
    assert dict(Counter(table["status"])) == {"ok": 8, "rejected": 3}
    assert set(table.loc[table["status"] == "ok", "label"]) == {"abnormal"}
    assert "label_level" in table.columns and "dataset" not in table.columns
    assert not table["reason"].str.contains("\n").any()
    # the birads scheme has no label 'abnormal': every row is rejected, saying why
    table = ingest({"format": "cmmd", "root": str(tree)}, {"scheme": "birads"})
    assert set(table["status"]) == {"rejected"}
    ok_before = table["source"].str.endswith(("1-3.dcm", "1-4.dcm")) & table["source"].str.contains(
        "D1-0001")
    assert table.loc[ok_before, "reason"].str.startswith(
        "label 'abnormal' is not one of the config's labels (birads0, ").all()


def test_ingest_then_preprocess(tree, tmp_path):
    table = ingest({"format": "cmmd", "root": str(tree)}, BINARY)
    manifest = preprocess_table(table, {"": tree}, tmp_path / "images", size=32)
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) == 8
    for path in ok["image_path"]:
        assert Path(path).is_file()
    # 8-bit pixels through the 128/256 window; right breasts flipped by ImageLaterality
    assert set(ok["laterality_from"]) == {"metadata"}
    assert (ok["flipped"] == (ok["laterality"] == "R")).all()
    assert (ok["chest_wall_seen"] == ok["laterality"]).all()  # the fixture draws it there
    assert set(ok["label_level"]) == {"breast"}


# --- the traps -----------------------------------------------------------------------------------

def test_no_image_laterality_is_rejected(tree):
    """CMMD keeps the side only in ImageLaterality: without it the image cannot be labelled."""
    path = series(tree, "D2-0001", 2) / "1-3.dcm"
    write_dicom(path, "D2-0001", None, "CC")
    odd = write_dicom(series(tree, "D2-0001", 2) / "1-4.dcm", "D2-0001", "B", "CC")
    src = by_source(cmmd.read(tree, {}))
    rel = path.relative_to(tree).as_posix()
    assert src[rel]["reason"].startswith("DICOM has no ImageLaterality (CMMD gives the side only "
                                         "there)")
    assert src[odd.relative_to(tree).as_posix()]["reason"] == ("DICOM ImageLaterality 'B' is not "
                                                               "L or R")


def test_series_laterality_tag_is_a_fallback(tree):
    path = write_dicom(series(tree, "D2-0001", 2) / "1-3.dcm", "D2-0001", None, "CC",
                       Laterality="L")
    row = by_source(cmmd.read(tree, {}))[path.relative_to(tree).as_posix()]
    assert row["laterality"] == "L" and row["label"] == "abnormal" and not row.get("reason")


def test_view_from_view_code_sequence(tree):
    d = series(tree, "D2-0001", 2)
    write_dicom(d / "1-1.dcm", "D2-0001", "L", None, view_code="399162004")
    write_dicom(d / "1-2.dcm", "D2-0001", "L", None, view_code="399368009")
    write_dicom(d / "1-3.dcm", "D2-0001", "L", None)
    src = by_source(cmmd.read(tree, {}))
    rel = d.relative_to(tree).as_posix()
    assert [src[f"{rel}/1-{k}.dcm"]["view"] for k in (1, 2, 3)] == ["CC", "MLO", ""]
    assert not src[f"{rel}/1-3.dcm"].get("reason")  # an unknown view is no reason to reject


def test_patient_absent_from_clinical_file(tree):
    path = write_dicom(series(tree, "D1-0099") / "1-1.dcm", "D1-0099", "L")
    row = by_source(cmmd.read(tree, {}))[path.relative_to(tree).as_posix()]
    assert row["reason"] == "patient D1-0099 is not in CMMD_clinicaldata_revision.xlsx"
    assert row["patient_id"] == "D1-0099"


def test_id_folders_found_anywhere(tmp_path):
    """Root above the NBIA folder, or a copy without the date/series folders: same result."""
    deep = build(tmp_path / "downloads" / "TCIA" / "manifest-1616439774456")
    rows = cmmd.read(tmp_path / "downloads", {})
    assert Counter(bool(r.get("reason")) for r in rows) == {False: 8, True: 3}
    flat = tmp_path / "flat"
    flat.mkdir()
    write_xlsx(flat / "CMMD_clinicaldata_revision.xlsx", [HEADER, CLINICAL[0]])
    write_dicom(flat / "D1-0001" / "1-3.dcm", "D1-0001", "R")
    [row] = cmmd.read(flat, {})
    assert row["label"] == "abnormal" and row["patient_id"] == "D1-0001"
    assert deep.is_dir()


def test_uid_layout_uses_patient_id_tag(tmp_path):
    """A copy laid out by StudyInstanceUID (no ID folder): the PatientID tag names the patient."""
    root = tmp_path / "cmmd"
    root.mkdir()
    write_csv(root / "CMMD_clinicaldata_revision.csv", CLINICAL)
    study = root / "CMMD" / "1.3.6.1.4.1.9590.100.1.2.123"
    write_dicom(study / "1-1.dcm", "D1-0002", "L", "CC")
    write_dicom(study / "1-2.dcm", "ANON123", "L", "CC")
    src = by_source(cmmd.read(root, {}))
    good = src["CMMD/1.3.6.1.4.1.9590.100.1.2.123/1-1.dcm"]
    assert good["patient_id"] == "D1-0002" and good["label"] == "abnormal"
    bad = src["CMMD/1.3.6.1.4.1.9590.100.1.2.123/1-2.dcm"]
    assert bad["reason"] == ("no CMMD patient id: the DICOM is in no ID folder (like D1-0001) and "
                             "its PatientID is 'ANON123'")
    assert bad["image_id"] != good["image_id"]


def test_folder_and_patient_id_disagree(tree):
    path = write_dicom(series(tree, "D1-0001") / "1-5.dcm", "D1-0002", "R")
    row = by_source(cmmd.read(tree, {}))[path.relative_to(tree).as_posix()]
    assert row["reason"] == ("DICOM PatientID D1-0002 differs from its folder D1-0001; is the "
                             "file misfiled?")


def test_same_image_twice(tree):
    """A DICOM downloaded twice (same SOPInstanceUID, second study folder) is used once."""
    sop = generate_uid()
    a = write_dicom(series(tree, "D2-0001", 2) / "1-3.dcm", "D2-0001", "L", sop=sop)
    b = write_dicom(series(tree, "D2-0001", 7) / "1-3.dcm", "D2-0001", "L", sop=sop)
    rows = cmmd.read(tree, {})
    src = by_source(rows)
    rel_a, rel_b = (p.relative_to(tree).as_posix() for p in (a, b))
    assert not src[rel_a].get("reason")
    assert src[rel_b]["reason"] == f"the same image (SOPInstanceUID) as {rel_a}"
    assert src[rel_a]["image_id"] != src[rel_b]["image_id"]  # same stem, distinct ids
    assert len({r["image_id"] for r in rows}) == len(rows)


def test_unreadable_dicom_is_rejected(tree):
    path = series(tree, "D2-0001", 2) / "1-3.dcm"
    path.write_text("not a DICOM")
    row = by_source(cmmd.read(tree, {}))[path.relative_to(tree).as_posix()]
    assert row["reason"].startswith("not a readable DICOM file (")
    assert "\n" not in row["reason"]


def test_clinical_row_problems(tmp_path):
    clinical = CLINICAL + [
        ["D1-0001", "R", 44, 2, "calcification", "Benign", ""],   # repeats line 2
        ["D2-0001", "L", 62, 2, "mass", "Benign", ""],            # contradicts line 5
        ["D1-0002", "X", 40, 2, "mass", "Benign", ""],
        ["d1 0003", "L", 40, 2, "mass", "Benign", ""],
        ["", "", "", "", "", "", ""],                             # an empty row: not an input
    ]
    root = build(tmp_path / "m", clinical)
    d = series(root, "D2-0002", 3)
    write_dicom(d / "1-1.dcm", "D2-0002", "R")
    rows = cmmd.read(root, {})
    src = by_source(rows)
    x = "CMMD_clinicaldata_revision.xlsx"
    assert src[f"{x}:7"]["reason"] == (f"{x} line 7 repeats breast R of D1-0001 (line 2); its "
                                       "images are counted once")
    assert src[f"{x}:8"]["reason"].startswith(f"{x} line 8 repeats breast L of D2-0001")
    assert src[f"{x}:9"]["reason"] == f"{x} line 9: LeftRight 'X' is not L or R"
    assert src[f"{x}:10"]["reason"] == (f"{x} line 10: ID1 'd1 0003' is not a CMMD patient id "
                                        "(like D1-0001)")
    conflict = src[series(root, "D2-0001", 2).relative_to(root).as_posix() + "/1-1.dcm"]
    assert conflict["reason"] == (f"{x} lines 5, 8 give breast L of D2-0001 different "
                                  "classifications (Benign, Malignant)")
    # the repeated, agreeing row does not stop the images of D1-0001 R
    d1 = series(root, "D1-0001").relative_to(root).as_posix()
    assert src[d1 + "/1-3.dcm"]["label"] == "abnormal" and not src[d1 + "/1-3.dcm"].get("reason")
    # D2-0002 R now has an image: its row is linked, not rejected
    assert f"{x}:6" not in src
    assert not src[d.relative_to(root).as_posix() + "/1-1.dcm"].get("reason")
    # rejected: D1-0001 L x2, the conflicting breast x2, the 4 bad rows
    assert Counter(bool(r.get("reason")) for r in rows) == {False: 7, True: 2 + 2 + 4}


def test_unknown_classification(tmp_path):
    clinical = [["D1-0001", "R", 44, 2, "calcification", "Unknown", ""],
                ["D1-0002", "R", 40, 2, "mass", "benign", ""],         # lower case is fine
                ["D1-0002", "L", 40, 2, "mass", "", ""]]
    root = build(tmp_path / "m", clinical)
    src = by_source(cmmd.read(root, {}))
    d1 = series(root, "D1-0001").relative_to(root).as_posix()
    d2 = series(root, "D1-0002", 1).relative_to(root).as_posix()
    assert src[d1 + "/1-3.dcm"]["reason"] == ("CMMD_clinicaldata_revision.xlsx line 2: "
                                              "classification 'Unknown' of breast R of D1-0001 is "
                                              "neither Benign nor Malignant")
    assert src[d2 + "/1-1.dcm"]["label"] == "abnormal"
    assert "classification '' " in src[d2 + "/1-3.dcm"]["reason"]


# --- the clinical file: xlsx, converted CSVs, dataset.table --------------------------------------

def test_xlsx_reader(tmp_path):
    path = write_xlsx(tmp_path / "c.xlsx", [HEADER, CLINICAL[0], [], CLINICAL[3]])
    table = cmmd.read_clinical(path)
    assert table.to_dict("records") == [
        {"ID1": "D1-0001", "LeftRight": "R", "classification": "Benign", "_line": 2},
        {"ID1": "D2-0001", "LeftRight": "L", "classification": "Malignant", "_line": 4}]
    # cells as text: numbers as the CSV export writes them, an empty cell ''
    assert cmmd.read_xlsx(path)["Sheet1"][1] == (2, ["D1-0001", "R", "44", "2", "calcification",
                                                     "Benign", ""])


def test_xlsx_cell_types(tmp_path):
    """A float with no fraction reads as a whole number, a boolean as TRUE/FALSE."""
    path = write_xlsx(tmp_path / "c.xlsx", [HEADER, ["D1-0001", "R", 44.0, 2.5, True, "Benign"]])
    assert cmmd.read_xlsx(path)["Sheet1"][1] == (2, ["D1-0001", "R", "44", "2.5", "TRUE",
                                                     "Benign", ""])


def test_xlsx_table_on_a_later_sheet_and_further_down(tmp_path):
    """The first sheet with an ID1 column is the table; Excel row numbers survive blank rows."""
    path = write_xlsx(tmp_path / "c.xlsx", [[], ["", ""], HEADER, *CLINICAL],
                      before={"notes": [["not the table"]]})
    table = cmmd.read_clinical(path)
    assert list(table["ID1"]) == [r[0] for r in CLINICAL]
    assert list(table["_line"]) == [4, 5, 6, 7, 8]


@pytest.mark.parametrize("name, sep", [("CMMD_clinicaldata_revision.csv", ","),
                                       ("CMMD_clinicaldata_revision_CSV.csv", ";"),
                                       ("label.csv", "\t")])
def test_converted_csv(tmp_path, name, sep):
    root = build(tmp_path / "m", table="")
    write_csv(root / name, CLINICAL, sep)
    rows = cmmd.read(root, {})
    assert Counter(bool(r.get("reason")) for r in rows) == {False: 8, True: 3}
    assert f"{name}:6" in by_source(rows)


def test_pandas_csv_with_index_column(tmp_path):
    root = build(tmp_path / "m", table="")
    pd.DataFrame(CLINICAL, columns=HEADER).to_csv(root / "label.csv")  # ',ID1,LeftRight,...'
    rows = cmmd.read(root, {})
    assert Counter(bool(r.get("reason")) for r in rows) == {False: 8, True: 3}


def test_broken_xlsx_falls_back_to_csv(tmp_path, caplog):
    root = build(tmp_path / "m", table="CMMD_clinicaldata_revision.csv")
    (root / "CMMD_clinicaldata_revision.xlsx").write_bytes(b"<html>login page</html>")
    rows = cmmd.read(root, {})
    assert "CMMD_clinicaldata_revision.csv:6" in by_source(rows)
    assert "CMMD_clinicaldata_revision.xlsx" in caplog.text


def test_broken_xlsx_alone_is_a_user_error(tmp_path):
    root = build(tmp_path / "m", table="")
    (root / "CMMD_clinicaldata_revision.xlsx").write_bytes(b"<html>login page</html>")
    with pytest.raises(UserError, match=r"CMMD_clinicaldata_revision\.xlsx: cannot read it as the "
                                        r"CMMD clinical table \(File is not a zip file\); .*save "
                                        r"it as CSV") as e:
        cmmd.read(root, {})
    assert "\n" not in str(e.value)


def test_no_clinical_file(tmp_path):
    root = build(tmp_path / "m", table="")
    with pytest.raises(UserError, match="no CMMD_clinicaldata_revision.xlsx .* point "
                                        "dataset.root at the folder holding both"):
        ingest({"format": "cmmd", "root": str(root)}, BINARY)
    # root pointed at CMMD/ while the clinical file lies beside it
    build(tmp_path / "n")
    with pytest.raises(UserError, match="no CMMD_clinicaldata_revision.xlsx"):
        cmmd.read(tmp_path / "n" / "CMMD", {})


def test_missing_columns(tmp_path):
    root = build(tmp_path / "m", table="")
    write_xlsx(root / "CMMD_clinicaldata_revision.xlsx", [["ID1", "Side", "classification"],
                                                          ["D1-0001", "R", "Benign"]])
    with pytest.raises(UserError, match=r"missing column\(s\) LeftRight \(found: ID1, Side, "
                                        r"classification\)"):
        cmmd.read(root, {})


def test_dataset_table(tmp_path):
    root = build(tmp_path / "m", table="")
    elsewhere = write_csv(tmp_path / "my clinical.csv", CLINICAL)
    rows = cmmd.read(root, {"table": str(elsewhere)})
    assert f"{elsewhere.as_posix()}:6" in by_source(rows)
    # relative to the root; an xlsx too
    write_xlsx(root / "mine.xlsx", [HEADER, *CLINICAL])
    assert "mine.xlsx:6" in by_source(cmmd.read(root, {"table": "mine.xlsx"}))
