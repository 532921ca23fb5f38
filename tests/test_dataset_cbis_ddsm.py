"""CBIS-DDSM adapter against small fixtures in the two layouts as downloaded: the TCIA/NBIA DICOM
tree (case CSVs + metadata.csv + CBIS-DDSM/<folder>/<study>/<series>/1-1.dcm) and the Kaggle JPEG
copy (csv/ with the case CSVs and dicom_info.csv, jpeg/<SeriesInstanceUID>/1-N.jpg)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammosynth.datasets import cbis_ddsm
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError
from mammosynth.imaging.pipeline import preprocess_table

from conftest import breast_image, breast_pixels, write_mg_dicom

BINARY = {"scheme": "binary"}
BIRADS = {"scheme": "birads"}
SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")

# Headers exactly as shipped: the density column is spelled differently in the two kinds.
MASS_HEADER = ("patient_id,breast_density,left or right breast,image view,abnormality id,"
               "abnormality type,mass shape,mass margins,assessment,pathology,subtlety,"
               "image file path,cropped image file path,ROI mask file path")
CALC_HEADER = ("patient_id,breast density,left or right breast,image view,abnormality id,"
               "abnormality type,calc type,calc distribution,assessment,pathology,subtlety,"
               "image file path,cropped image file path,ROI mask file path")
METADATA_HEADER = ("Series UID,Collection,3rd Party Analysis,Data Description URI,Subject ID,"
                   "Study UID,Study Description,Study Date,Series Description,Manufacturer,"
                   "Modality,SOP Class Name,SOP Class UID,Number of Images,File Size,"
                   "File Location,Download Timestamp")
INFO_HEADER = ("file_path,image_path,AccessionNumber,BitsAllocated,BitsStored,BodyPartExamined,"
               "Columns,ContentDate,ContentTime,ConversionType,HighBit,InstanceNumber,"
               "LargestImagePixelValue,Laterality,Modality,PatientBirthDate,PatientID,"
               "PatientName,PatientOrientation,PatientSex,PhotometricInterpretation,"
               "PixelRepresentation,ReferringPhysicianName,Rows,SOPClassUID,SOPInstanceUID,"
               "SamplesPerPixel,SeriesDescription,SeriesInstanceUID,SeriesNumber,"
               "SmallestImagePixelValue,SpecificCharacterSet,StudyDate,StudyID,"
               "StudyInstanceUID,StudyTime")
UID_PREFIX = "1.3.6.1.4.1.9590.100.1.2."
_uids = iter(range(1, 10**6))


def uid() -> str:
    """A fresh CBIS-like UID; the last 5 digits are unique (some start with 0, like '07312')."""
    n = next(_uids)
    return f"{UID_PREFIX}{3000000000 + n * 7}{n * 913 % 100000:05d}"


@dataclass
class Mammo:
    """One full mammogram of the fixture and its abnormality rows."""
    kind: str          # Mass / Calc
    subset: str        # Training / Test
    patient: str       # P_00001
    side: str          # LEFT / RIGHT
    view: str          # CC / MLO
    assessments: tuple  # one per abnormality row
    on_disk: bool = True
    in_csv: bool = True

    def __post_init__(self):
        self.study, self.series = uid(), uid()

    @property
    def folder(self) -> str:
        return f"{self.kind}-{self.subset}_{self.patient}_{self.side}_{self.view}"

    @property
    def csv_path(self) -> str:
        return f"{self.folder}/{self.study}/{self.series}/000000.dcm"

    @property
    def csv_name(self) -> str:
        return (f"{self.kind.lower()}_case_description_"
                f"{'train' if self.subset == 'Training' else 'test'}_set.csv")


def images() -> list[Mammo]:
    """The fixture: 9 referenced mammograms (8 distinct), 1 missing, 1 unreferenced."""
    return [
        Mammo("Mass", "Training", "P_00001", "LEFT", "CC", (4, 3)),      # 2 rows, disagree
        Mammo("Mass", "Training", "P_00001", "LEFT", "MLO", (4,)),
        Mammo("Mass", "Training", "P_00004", "RIGHT", "MLO", (3, 0, 2)),  # 0 outranks 3
        Mammo("Mass", "Test", "P_00016", "LEFT", "CC", (5,)),
        Mammo("Calc", "Training", "P_00005", "RIGHT", "CC", (2, 2, 2)),   # 3 rows, agree
        Mammo("Calc", "Training", "P_00001", "LEFT", "CC", (2,)),         # = Mass P_00001 L CC
        Mammo("Calc", "Test", "P_00038", "LEFT", "MLO", (1,)),
        Mammo("Calc", "Test", "P_00040", "RIGHT", "CC", (0,)),
        Mammo("Calc", "Test", "P_00099", "RIGHT", "CC", (4,), on_disk=False),
        Mammo("Mass", "Training", "P_00777", "LEFT", "CC", (3,), in_csv=False),
    ]


def csv_line(img: Mammo, abn: int, assessment: int) -> str:
    """A record as TCIA writes it: a quoted path cell ending in an embedded newline."""
    crop = f"{img.folder}_{abn}/{uid()}/{uid()}"
    if img.kind == "Mass":
        return (f"{img.patient},3,{img.side},{img.view},{abn},mass,OVAL,CIRCUMSCRIBED,"
                f"{assessment},BENIGN,4,{img.csv_path},{crop}/000000.dcm,\"{crop}/000001.dcm\n\"")
    return (f"{img.patient},2,{img.side},{img.view},{abn},calcification,AMORPHOUS,CLUSTERED,"
            f"{assessment},MALIGNANT,3,{img.csv_path},\"{crop}/000001.dcm\n\",{crop}/000000.dcm")


def write_case_csvs(folder: Path, imgs: list[Mammo]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, header in (("mass", MASS_HEADER), ("calc", CALC_HEADER)):
        for subset in ("train", "test"):
            name = f"{kind}_case_description_{subset}_set.csv"
            lines = [header] + [csv_line(img, abn, a) for img in imgs
                                if img.in_csv and img.csv_name == name
                                for abn, a in enumerate(img.assessments, start=1)]
            (folder / name).write_text("\n".join(lines) + "\n", encoding="ascii")


def nbia_dirs(img: Mammo, no_na: bool = False) -> tuple[str, str]:
    study = f"07-20-2016-DDSM-{'' if no_na else 'NA-'}{img.study[-5:]}"
    return study, f"1.000000-full mammogram images-{img.series[-5:]}"


def build_tcia(root: Path, imgs: list[Mammo], *, metadata: bool = True, no_na: bool = False,
               pixels: bool = False) -> dict[str, str]:
    """The NBIA download; returns {folder: DICOM path relative to root}."""
    write_case_csvs(root, imgs)
    meta = [METADATA_HEADER]
    where = {}
    for img in imgs:
        study, series = nbia_dirs(img, no_na)
        if img.on_disk:
            rel = f"CBIS-DDSM/{img.folder}/{study}/{series}/1-1.dcm"
            if pixels:
                side = "L" if img.side == "LEFT" else "R"
                write_mg_dicom(root / rel, breast_pixels(48, 40, side, 3000))
            else:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(b"DICM")
            where[img.folder] = rel
            # the crop and the ROI mask of each abnormality: not inputs
            for abn in range(1, len(img.assessments) + 1):
                crop_series = f"CBIS-DDSM/{img.folder}_{abn}/{study}/1.000000-ROI mask images-12345"
                for name in ("1-1.dcm", "1-2.dcm"):
                    (root / crop_series).mkdir(parents=True, exist_ok=True)
                    (root / crop_series / name).write_bytes(b"")
        location = ".\\" + "\\".join(["CBIS-DDSM", img.folder, study, series])
        meta.append(f"{img.series},CBIS-DDSM,NO,https://doi.org/10.7937/K9/TCIA.2016.7O02S9CY,"
                    f"{img.folder},{img.study},DDSM,07-20-2016,full mammogram images,,MG,"
                    f"Digital Mammography X-Ray Image Storage - For Presentation,"
                    f"1.2.840.10008.5.1.4.1.1.1.2,1,\"9,97 MB\",{location},"
                    "2024-01-05T10:00:00.000")
    if metadata:
        (root / "metadata.csv").write_text("\n".join(meta) + "\n", encoding="ascii")
    return where


def build_kaggle(root: Path, imgs: list[Mammo]) -> dict[str, str]:
    """The Kaggle copy; returns {folder: JPEG path relative to root}."""
    write_case_csvs(root / "csv", imgs)
    info = [INFO_HEADER]
    where = {}
    for img in imgs:
        rows = [(img.folder, "full mammogram images", img.series, "1-1.jpg")]
        rows += [(f"{img.folder}_{abn}", desc, uid(), name)
                 for abn in range(1, len(img.assessments) + 1)
                 for desc, name in (("cropped images", "1-1.jpg"), ("ROI mask images", "1-2.jpg"))]
        for pid, desc, series, name in rows if img.on_disk else []:
            jpeg = f"jpeg/{series}/{name}"
            full = desc.startswith("full")
            if img.on_disk:
                side = "L" if img.side == "LEFT" else "R"
                (root / jpeg).parent.mkdir(parents=True, exist_ok=True)
                pixels = breast_image(48, 40, side) if full else np.full((20, 20), 0.5)
                Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(root / jpeg)
                if full:
                    where[img.folder] = jpeg
            info.append(f"CBIS-DDSM/dicom/{series}/{name[:-4]}.dcm,CBIS-DDSM/{jpeg},,16,16,"
                        f"BREAST,40,,,WSD,15,1,65535,{img.side[0]},MG,,{pid},{pid},,,"
                        f"MONOCHROME2,0,,48,1.2.840.10008.5.1.4.1.1.7,{uid()},1,{desc},"
                        f"{series},1,0,ISO_IR 100,,DDSM,{img.study},")
    (root / "csv" / "dicom_info.csv").write_text("\n".join(info) + "\n", encoding="ascii")
    (root / "csv" / "meta.csv").write_text("SeriesInstanceUID,SeriesDescription\n",
                                           encoding="ascii")
    return where


def read(root: Path):
    rows = cbis_ddsm.read(root, {"format": "cbis_ddsm", "root": str(root)})
    return {r["image_id"]: r for r in rows}, rows


def ok_and_rejected(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    return [r for r in rows if not r.get("reason")], [r for r in rows if r.get("reason")]


EXPECTED_BIRADS = {"P_00001_L_CC": "4", "P_00001_L_MLO": "4", "P_00004_R_MLO": "0",
                   "P_00016_L_CC": "5", "P_00005_R_CC": "2", "P_00038_L_MLO": "1",
                   "P_00040_R_CC": "0"}


def check_fixture_result(rows: list[dict], where: dict[str, str]) -> None:
    """What the fixture gives in either layout."""
    ok, rejected = ok_and_rejected(rows)
    assert len(rows) == 10 and len(ok) == 7 and len(rejected) == 3
    by_id = {r["image_id"]: r for r in rows}
    assert {r["image_id"] for r in ok} == set(EXPECTED_BIRADS)
    for image_id, birads in EXPECTED_BIRADS.items():
        assert by_id[image_id]["birads"] == birads, image_id
    assert all(SAFE.match(r["image_id"]) for r in rows)
    row = by_id["P_00016_L_CC"]
    assert (row["patient_id"], row["laterality"], row["view"]) == ("P_00016", "L", "CC")
    assert row["source"] == where["Mass-Test_P_00016_LEFT_CC"]
    assert {r["label_level"] for r in rows} == {"image"}
    subsets = {r["image_id"]: r["official_subset"] for r in ok}
    assert subsets == {"P_00001_L_CC": "training", "P_00001_L_MLO": "training",
                       "P_00004_R_MLO": "training", "P_00016_L_CC": "test",
                       "P_00005_R_CC": "training", "P_00038_L_MLO": "test",
                       "P_00040_R_CC": "test"}
    # the mammogram listed in both the mass and the calc CSVs: one input, one rejected copy
    assert by_id["P_00001_L_CC"]["source"] == where["Mass-Training_P_00001_LEFT_CC"]
    copy = by_id["P_00001_L_CC-copy1"]
    assert copy["source"] == where["Calc-Training_P_00001_LEFT_CC"]
    assert "same mammogram" in copy["reason"] and where["Mass-Training_P_00001_LEFT_CC"] in copy[
        "reason"]
    # a row whose image is missing, an image no row refers to
    missing = by_id["P_00099_R_CC"]
    assert missing["source"].endswith("calc_case_description_test_set.csv:" + str(missing_line()))
    unlisted = by_id["unlisted-Mass-Training_P_00777_LEFT_CC"]
    assert unlisted["source"] == where["Mass-Training_P_00777_LEFT_CC"]
    assert unlisted["reason"].startswith("no row in the case CSVs")
    assert (unlisted["patient_id"], unlisted["laterality"], unlisted["view"]) == (
        "P_00777", "L", "CC")
    # no crop or ROI mask became an input
    assert not any("_1/" in r["source"] or "_2/" in r["source"] for r in rows)
    assert all("\n" not in r.get("reason", "") for r in rows)


def missing_line() -> int:
    # calc test CSV: header, P_00038 (lines 2-3), P_00040 (4-5), P_00099 starts on line 6
    return 6


# --- TCIA layout --------------------------------------------------------------------------------

def test_tcia_layout_with_metadata(tmp_path):
    imgs = images()
    where = build_tcia(tmp_path, imgs)
    # the CSV paths do not exist on disk
    assert not any((tmp_path / img.csv_path).exists() for img in imgs)
    assert not any((tmp_path / "CBIS-DDSM" / img.csv_path).exists() for img in imgs)
    _, rows = read(tmp_path)
    check_fixture_result(rows, where)
    by_id = {r["image_id"]: r for r in rows}
    reason = by_id["P_00099_R_CC"]["reason"]
    assert "no DICOM CBIS-DDSM/Calc-Test_P_00099_RIGHT_CC/" in reason
    assert "1-1.dcm" in reason and "metadata.csv" in reason


def test_path_remap_uses_metadata_csv(tmp_path):
    """Folders whose names do not end in the UIDs' digits are found through metadata.csv."""
    imgs = [Mammo("Mass", "Training", "P_00001", "LEFT", "CC", (4,))]
    img = imgs[0]
    write_case_csvs(tmp_path, imgs)
    series_dir = tmp_path / "CBIS-DDSM" / img.folder / "renamed-study" / "renamed-series"
    write_mg_dicom(series_dir / "1-1.dcm", breast_pixels(32, 32, "L"))
    location = ".\\CBIS-DDSM\\" + img.folder + "\\renamed-study\\renamed-series"
    (tmp_path / "metadata.csv").write_text(
        METADATA_HEADER + "\n" + f"{img.series},CBIS-DDSM,NO,,{img.folder},{img.study},DDSM,,"
        f"full mammogram images,,MG,,,1,\"1 MB\",{location},\n", encoding="ascii")
    by_id, rows = read(tmp_path)
    assert len(rows) == 1 and not by_id["P_00001_L_CC"].get("reason")
    assert by_id["P_00001_L_CC"]["source"] == (
        f"CBIS-DDSM/{img.folder}/renamed-study/renamed-series/1-1.dcm")
    # without metadata.csv the same tree cannot be matched: rejected, saying what was looked for
    (tmp_path / "metadata.csv").unlink()
    by_id, rows = read(tmp_path)
    assert len(rows) == 1
    reason = by_id["P_00001_L_CC"]["reason"]
    assert f"*-{img.study[-5:]}/*-{img.series[-5:]}/1-1.dcm" in reason
    assert "renamed-series/1-1.dcm has other UIDs" in reason


def test_metadata_csv_in_a_manifest_subfolder(tmp_path):
    """NBIA writes metadata.csv beside CBIS-DDSM/ in its manifest folder; File Location is
    relative to it."""
    imgs = [Mammo("Calc", "Test", "P_00038", "LEFT", "MLO", (1,))]
    write_case_csvs(tmp_path, imgs)
    manifest = tmp_path / "manifest-1600000000000"
    where = build_tcia(manifest, imgs)
    for name in cbis_ddsm.CASE_CSVS:  # keep the case CSVs at the root only
        (manifest / name).unlink()
    by_id, rows = read(tmp_path)
    assert len(rows) == 1 and not rows[0].get("reason")
    assert rows[0]["source"] == "manifest-1600000000000/" + where[imgs[0].folder]


def test_suffix_fallback_without_metadata_and_without_na(tmp_path):
    imgs = images()
    where = build_tcia(tmp_path, imgs, metadata=False, no_na=True)
    assert "-DDSM-NA-" not in " ".join(where.values())
    _, rows = read(tmp_path)
    check_fixture_result(rows, where)
    reason = {r["image_id"]: r for r in rows}["P_00099_R_CC"]["reason"]
    assert "no DICOM" in reason and "metadata.csv" not in reason


def test_several_abnormalities_make_one_image(tmp_path):
    imgs = images()
    build_tcia(tmp_path, imgs)
    by_id, rows = read(tmp_path)
    # P_00005 RIGHT CC has 3 abnormality rows, P_00004 RIGHT MLO 3, P_00001 LEFT CC 2 + 1 calc
    n_rows = sum(len(i.assessments) for i in imgs if i.in_csv)
    in_csvs = sum(len(cbis_ddsm.read_case_csv(tmp_path / n)) for n in cbis_ddsm.CASE_CSVS)
    assert n_rows == in_csvs == 14
    assert [r["image_id"] for r in rows].count("P_00005_R_CC") == 1
    assert by_id["P_00005_R_CC"]["birads"] == "2"
    assert sum(r["image_id"].startswith("P_00004_R_MLO") for r in rows) == 1


def test_disagreeing_assessments_take_the_most_worrisome(tmp_path, caplog):
    imgs = images()
    build_tcia(tmp_path, imgs)
    with caplog.at_level(logging.INFO, logger="mammosynth.datasets.cbis_ddsm"):
        by_id, _ = read(tmp_path)
    assert by_id["P_00001_L_CC"]["birads"] == "4"   # 4, 3 (mass) and 2 (calc): 4
    assert by_id["P_00004_R_MLO"]["birads"] == "0"  # 3, 0, 2: 0 (recall) outranks 3
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "2 image(s) have abnormality rows with different assessments" in message
    assert "P_00001_L_CC (2, 3, 4 -> 4)" in message and "P_00004_R_MLO (2, 3, 0 -> 0)" in message


def test_missing_file_is_rejected_with_reason(tmp_path):
    imgs = images()
    where = build_tcia(tmp_path, imgs)
    (tmp_path / where["Mass-Test_P_00016_LEFT_CC"]).unlink()
    by_id, rows = read(tmp_path)
    row = by_id["P_00016_L_CC"]
    assert row["reason"] and row["source"] == "mass_case_description_test_set.csv:2"
    assert "Mass-Test_P_00016_LEFT_CC" in row["reason"]
    assert len(rows) == 10


def test_unreferenced_image_is_rejected(tmp_path):
    imgs = images()
    build_tcia(tmp_path, imgs)
    by_id, _ = read(tmp_path)
    assert by_id["unlisted-Mass-Training_P_00777_LEFT_CC"]["reason"] == (
        "no row in the case CSVs for this full mammogram (Mass-Training_P_00777_LEFT_CC)")


def test_missing_case_csv_leaves_its_images_unreferenced(tmp_path, caplog):
    imgs = images()
    build_tcia(tmp_path, imgs)
    (tmp_path / "calc_case_description_test_set.csv").unlink()
    with caplog.at_level(logging.WARNING, logger="mammosynth.datasets.cbis_ddsm"):
        by_id, rows = read(tmp_path)
    assert "calc_case_description_test_set.csv" in caplog.text
    assert by_id["unlisted-Calc-Test_P_00038_LEFT_MLO"]["reason"].startswith("no row")
    assert "P_00099_R_CC" not in by_id  # no row, no file: nothing to account for
    assert len(rows) == 9


def test_density_spellings_and_embedded_newlines(tmp_path):
    imgs = images()
    build_tcia(tmp_path, imgs)
    mass = tmp_path / "mass_case_description_train_set.csv"
    calc = tmp_path / "calc_case_description_train_set.csv"
    assert mass.read_text().startswith("patient_id,breast_density,")
    assert calc.read_text().startswith("patient_id,breast density,")
    for path in (mass, calc):
        records = cbis_ddsm.read_case_csv(path)
        assert all("breast density" in r and r["breast density"].isdigit() for r in records)
        # every record spans two lines (a quoted cell ends in a newline): stripped, and the
        # record's first line is kept
        assert [r["_line"] for r in records] == list(range(2, 2 * len(records) + 1, 2))
        for r in records:
            assert all(v == v.strip() for v in r.values() if isinstance(v, str))
            assert r["cropped image file path"].endswith(".dcm")
            assert r["roi mask file path"].endswith(".dcm")


def test_newline_inside_the_image_path_cell(tmp_path):
    imgs = [Mammo("Calc", "Test", "P_00038", "LEFT", "MLO", (1,))]
    where = build_tcia(tmp_path, imgs)
    path = tmp_path / "calc_case_description_test_set.csv"
    text = path.read_text()
    path.write_text(text.replace(imgs[0].csv_path, f'"{imgs[0].csv_path}\n"'))
    by_id, rows = read(tmp_path)
    assert len(rows) == 1 and not rows[0].get("reason")
    assert rows[0]["source"] == where[imgs[0].folder]


def test_rows_that_disagree_with_their_path_or_cannot_be_read(tmp_path):
    imgs = images()
    build_tcia(tmp_path, imgs)
    path = tmp_path / "mass_case_description_test_set.csv"
    lines = path.read_text().split("\n")
    # line 2 (P_00016 LEFT CC) says RIGHT; then a row whose path is not a CBIS path
    lines[1] = lines[1].replace(",LEFT,CC,", ",RIGHT,CC,")
    lines.insert(-1, "P_00020,2,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,4,BENIGN,3,"
                     "some/1.2/3.4/image.dcm,,")
    lines.insert(-1, "P_00021,2,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,4,BENIGN,3,"
                     f"Mass-Test_P_00021_LEFT_CC/{uid()}/{uid()}/000000.dcm,,")
    path.write_text("\n".join(lines))
    by_id, rows = read(tmp_path)
    row = by_id["P_00016_L_CC"]
    assert "left or right breast is 'RIGHT' but the image path is Mass-Test_P_00016_LEFT_CC" in (
        row["reason"])
    assert row["source"].endswith("1-1.dcm")  # the image is accounted for, rejected
    bad = by_id["mass_case_description_test_set-line4"]
    assert "does not start with a <Mass|Calc>-<Training|Test>" in bad["reason"]
    assert bad["source"] == "mass_case_description_test_set.csv:4"
    assert "no DICOM CBIS-DDSM/Mass-Test_P_00021_LEFT_CC" in by_id["P_00021_L_CC"]["reason"]
    assert len(rows) == 12


def test_unknown_assessment_rejects_the_image(tmp_path):
    imgs = images()
    build_tcia(tmp_path, imgs)
    path = tmp_path / "calc_case_description_train_set.csv"
    text = path.read_text().replace("AMORPHOUS,CLUSTERED,2,", "AMORPHOUS,CLUSTERED,7,", 1)
    path.write_text(text)
    by_id, _ = read(tmp_path)
    assert "assessment '7' is not a BI-RADS assessment 0-5" in by_id["P_00005_R_CC"]["reason"]


def test_dicom_outside_the_layout_is_rejected(tmp_path):
    imgs = images()
    build_tcia(tmp_path, imgs)
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "scan.dcm").write_bytes(b"")
    _, rows = read(tmp_path)
    extra = [r for r in rows if r["source"] == "extra/scan.dcm"]
    assert len(extra) == 1 and "not in a CBIS-DDSM/" in extra[0]["reason"]
    assert SAFE.match(extra[0]["image_id"])


# --- Kaggle JPEG layout -------------------------------------------------------------------------

def test_kaggle_layout(tmp_path):
    imgs = images()
    where = build_kaggle(tmp_path, imgs)
    assert (tmp_path / "csv" / "dicom_info.csv").is_file()
    _, rows = read(tmp_path)
    check_fixture_result(rows, where)
    by_id = {r["image_id"]: r for r in rows}
    assert all(r["source"].startswith("jpeg/") for r in rows if not r.get("reason"))
    assert "dicom_info.csv has no full mammogram image with PatientID " \
           "Calc-Test_P_00099_RIGHT_CC" in by_id["P_00099_R_CC"]["reason"]


def test_kaggle_missing_jpeg_and_unlisted_jpeg(tmp_path):
    imgs = images()
    where = build_kaggle(tmp_path, imgs)
    (tmp_path / where["Mass-Test_P_00016_LEFT_CC"]).unlink()
    stray = tmp_path / "jpeg" / "1.2.3.4" / "1-1.jpg"
    stray.parent.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(stray)
    by_id, rows = read(tmp_path)
    assert f"no file {where['Mass-Test_P_00016_LEFT_CC']}" in by_id["P_00016_L_CC"]["reason"]
    unknown = [r for r in rows if r["source"] == "jpeg/1.2.3.4/1-1.jpg"]
    assert len(unknown) == 1 and "not listed in csv/dicom_info.csv" in unknown[0]["reason"]
    assert len(rows) == 11


def test_kaggle_copy_with_dicoms_beside_it_is_a_user_error(tmp_path):
    build_kaggle(tmp_path, images())
    dicom = tmp_path / "CBIS-DDSM" / "Mass-Test_P_00016_LEFT_CC" / "a" / "b" / "1-1.dcm"
    dicom.parent.mkdir(parents=True)
    dicom.write_bytes(b"")
    with pytest.raises(UserError, match="both the Kaggle JPEG copy .* and DICOMs"):
        read(tmp_path)


def test_two_copies_of_a_case_csv_is_a_user_error(tmp_path):
    build_kaggle(tmp_path / "kaggle", images())
    build_tcia(tmp_path / "tcia", images())
    with pytest.raises(UserError, match="2 copies of .*point dataset.root at one copy"):
        read(tmp_path)


# --- user errors --------------------------------------------------------------------------------

def test_no_case_csvs_is_a_user_error(tmp_path):
    build_tcia(tmp_path, images())
    for name in cbis_ddsm.CASE_CSVS:
        (tmp_path / name).unlink()
    with pytest.raises(UserError, match="mass_case_description_train_set.csv"):
        read(tmp_path)


def test_missing_column_is_a_user_error(tmp_path):
    build_tcia(tmp_path, images())
    path = tmp_path / "calc_case_description_test_set.csv"
    path.write_text(path.read_text().replace(",assessment,", ",assesment,", 1))
    with pytest.raises(UserError, match="missing column.*assessment") as err:
        read(tmp_path)
    assert "calc_case_description_test_set.csv" in str(err.value)


def test_foreign_metadata_csv_is_a_user_error(tmp_path):
    build_tcia(tmp_path, images())
    (tmp_path / "metadata.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="not the metadata.csv of an NBIA download"):
        read(tmp_path)


def test_jpegs_without_dicom_info_is_a_user_error(tmp_path):
    build_kaggle(tmp_path, images())
    (tmp_path / "csv" / "dicom_info.csv").unlink()
    with pytest.raises(UserError, match="dicom_info.csv"):
        read(tmp_path)


# --- end to end: ingest + preprocess ------------------------------------------------------------

@pytest.mark.parametrize("layout", ["tcia", "kaggle"])
def test_ingest_and_preprocess(tmp_path, layout):
    root = tmp_path / "CBIS"
    imgs = images()
    if layout == "tcia":
        build_tcia(root, imgs, pixels=True)
    else:
        build_kaggle(root, imgs)
    dataset = {"format": "cbis_ddsm", "root": str(root)}
    table = ingest(dataset, BIRADS)
    assert len(table) == 10 and (table["status"] == "ok").sum() == 7
    assert {"label_level", "official_subset"} <= set(table.columns)
    ok = table[table["status"] == "ok"]
    assert dict(zip(ok["image_id"], ok["label"])) == {
        k: f"birads{v}" for k, v in EXPECTED_BIRADS.items()}
    binary = ingest(dataset, BINARY)  # BI-RADS 0 is no class of the binary scheme
    assert dict(zip(binary.loc[binary["status"] == "ok", "image_id"],
                    binary.loc[binary["status"] == "ok", "label"])) == {
        k: "normal" if v == "1" else "abnormal" for k, v in EXPECTED_BIRADS.items() if v != "0"}
    assert binary.loc[binary["image_id"] == "P_00040_R_CC", "reason"].item() == (
        "BI-RADS 0 is not mapped to a label (config labels.scheme / labels.map)")
    manifest = preprocess_table(table, {"": root}, tmp_path / "png", size=32)
    done = manifest[manifest["status"] == "ok"]
    assert len(done) == 7 and len(manifest) == 10
    for row in done.itertuples():
        png = Image.open(row.image_path)
        assert png.size == (32, 32) and png.mode.startswith("I")
        assert row.laterality_from == "metadata"
