"""A corpus of malformed inputs, each with its expected outcome.

Every case builds a small data set (csv, INbreast or folder format, usually beside a good image),
runs ingest + preprocess_table as the pipeline does, and checks one of three outcomes:

- "rejected": the input is one manifest row, status `rejected`, reason in words on one line;
- "error": a UserError on one line naming the file or config key and what to do (problems of the
  config itself, such as a dataset.root that is not a folder, are the config check's, tested
  with it);
- "ok": an odd but valid input (MONOCHROME1, big endian, compressed, 8-bit...) is decoded.

In every data set that runs, no input is dropped and every rejected row has a one-line reason.
"""

from __future__ import annotations

import re
import struct
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRBigEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from mammosynth.datasets import source_roots
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import ImageError, UserError
from mammosynth.imaging import read_image
from mammosynth.imaging.decode import MAX_PIXELS
from mammosynth.imaging.pipeline import fail_on_rejections, preprocess_table

from conftest import breast_pixels, write_mg_dicom

BINARY = {"scheme": "binary"}  # labels: normal, abnormal
SIZE = 32
HASH = "6c613a14b80a8591"  # an INbreast case hash
INBREAST_HEADER = "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"

pytestmark = [
    pytest.mark.filterwarnings("ignore:Invalid value for VR"),  # the corrupted DS / IS values
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.min()) / (x.max() - x.min())


# --- image writers: path -> a file there ---------------------------------------------------------

def dicom(path: Path, pixels=None, **tags) -> Path:
    return write_mg_dicom(path, breast_pixels() if pixels is None else pixels, **tags)


def dicom_pixels(path: Path, pixels: np.ndarray, photometric: str, bits: int) -> None:
    """An MG DICOM holding `pixels` as given (uint8, RGB...), which write_mg_dicom does not do."""
    ds = pydicom.dcmread(dicom(path))
    ds.set_pixel_data(pixels, photometric, bits)
    ds.save_as(path, enforce_file_format=True)


def compressed(syntax, **tags):
    def write(path: Path) -> None:
        ds = pydicom.dcmread(dicom(path))
        ds.compress(syntax)
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(path, enforce_file_format=True)
    return write


def big_endian(path: Path) -> None:
    ds = pydicom.dcmread(dicom(path))
    pixels = ds.pixel_array  # read as little endian, before the syntax changes
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.PixelData = pixels.astype(">u2").tobytes()
    dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)


def jpeg_ls(path: Path) -> None:
    # no JPEG-LS encoder here (pyjpegls is not installed): pydicom's JPEG-LS lossless MR, as MG
    ds = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    ds.Modality = "MG"
    ds.save_as(path, enforce_file_format=True)


def float_dicom(path: Path, bad: float | None = None) -> None:
    pixels = breast_pixels().astype(np.float32)
    if bad is not None:
        pixels[5, 5] = bad
    ds = pydicom.dcmread(write_mg_dicom(path, None))
    ds.Rows, ds.Columns = pixels.shape
    del ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    ds.FloatPixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def corrupt(group: int, element: int, value: bytes, **tags):
    """A DICOM whose (group, element) holds `value` (same length), which pydicom won't write."""
    def write(path: Path) -> None:
        data = bytearray(dicom(path, **tags).read_bytes())
        at = data.index(struct.pack("<HH", group, element)) + 6  # tag, VR; then the length
        assert struct.unpack("<H", data[at:at + 2])[0] == len(value)
        data[at + 2:at + 2 + len(value)] = value
        path.write_bytes(bytes(data))
    return write


def without(keyword: str):
    def write(path: Path) -> None:
        ds = pydicom.dcmread(dicom(path))
        delattr(ds, keyword)
        ds.save_as(path, enforce_file_format=True)
    return write


def truncated(keep: int | None = None):
    def write(path: Path) -> None:
        data = dicom(path).read_bytes()
        path.write_bytes(data[:keep or len(data) // 2])
    return write


def png_header(width: int, height: int):
    """A PNG that declares width x height pixels and holds almost nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    def write(path: Path) -> None:
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                         + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return write


def pil(array: np.ndarray, format: str | None = None):
    return lambda path: Image.fromarray(array).save(path, format=format)


def speck() -> np.ndarray:
    pixels = np.zeros((64, 64), np.uint16)
    pixels[30, 30] = 3000  # one bright pixel: no region survives the mask's opening
    return pixels


def noisy_float(bad: float) -> np.ndarray:
    pixels = breast_pixels().astype(np.float32)
    pixels[5, 5] = bad
    return pixels


# name -> writer; the file is bad.dcm, or bad.png / bad.tif where the name ends so (image_name)
IMAGES: dict[str, Callable[[Path], object]] = {
    "truncated_dicom": truncated(),
    "dicom_cut_in_header": truncated(keep=300),
    "dicom_without_pixel_data": lambda p: write_mg_dicom(p, None),
    "rgb_dicom": lambda p: dicom_pixels(p, np.stack([breast_pixels(maximum=250).astype(np.uint8)]
                                                    * 3, axis=-1), "RGB", 8),
    "8bit_dicom": lambda p: dicom_pixels(p, breast_pixels(maximum=250).astype(np.uint8),
                                         "MONOCHROME2", 8),
    "monochrome1_dicom": lambda p: dicom(p, 3000 - breast_pixels(), photometric="MONOCHROME1"),
    "big_endian_dicom": big_endian,
    "jpeg2000_dicom": compressed(JPEG2000Lossless),
    "jpeg_ls_dicom": jpeg_ls,
    "rle_dicom": compressed(RLELossless),
    "float_pixel_data_dicom": float_dicom,
    "zero_size_file": lambda p: p.write_bytes(b""),
    "ct_dicom": lambda p: dicom(p, modality="CT"),
    "text_named_dcm": lambda p: p.write_text("path,birads\nimages/a.dcm,2\n" * 20),
    "png_named_dcm": pil(breast_pixels(), format="PNG"),
    "dicom_named_png": lambda p: dicom(p),
    "garbage_png": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10),
    "text_named_png": lambda p: p.write_text("not an image\n"),
    "huge_dicom": lambda p: dicom(p, Rows=60000, Columns=60000),
    "huge_rle_dicom": compressed(RLELossless, Rows=60000, Columns=60000),
    "huge_png": png_header(12000, 10000),  # over MAX_PIXELS, under Pillow's bomb limit
    "bomb_png": png_header(60000, 60000),  # over Pillow's decompression bomb limit
    "1x1_dicom": lambda p: dicom(p, np.array([[5]], np.uint16)),
    "8x8_png": pil(breast_pixels(8, 8).astype(np.uint8)),
    "blank_dicom": lambda p: dicom(p, np.full((64, 64), 812, np.uint16)),
    "blank_png": lambda p: Image.fromarray(np.zeros((40, 30), np.uint8)).convert("RGB").save(p),
    "speck_dicom": lambda p: dicom(p, speck()),
    "nan_float_tiff": pil(noisy_float(np.nan)),
    "inf_float_dicom": lambda p: float_dicom(p, bad=np.inf),
    "multiframe_dicom": lambda p: dicom(p, np.stack([breast_pixels(), breast_pixels()])),
    "window_width_zero_dicom": lambda p: dicom(p, WindowCenter=1500, WindowWidth=0),
    "unknown_voi_function_dicom": lambda p: dicom(p, WindowCenter=1500, WindowWidth=1000,
                                                  VOILUTFunction="FOO"),
    "rescale_slope_not_a_number": corrupt(0x0028, 0x1053, b"abcd", RescaleSlope="1.25",
                                          RescaleIntercept=0),
    "window_center_not_a_number": corrupt(0x0028, 0x1050, b"abcd", WindowCenter="1500",
                                          WindowWidth=1000),
    "frames_not_a_number": corrupt(0x0028, 0x0008, b"ab", NumberOfFrames=1),
    "no_photometric_dicom": without("PhotometricInterpretation"),
}


def image_name(name: str) -> str:
    suffix = ".png" if name.endswith("png") else ".tif" if name.endswith("tiff") else ".dcm"
    return "bad" + suffix


# --- data set builders: root -> the config's `dataset` section (root and on_bad_image added) ----

def csv_set(root: Path, table: str | bytes, images: dict[str, Callable] | None = None,
            good: str | None = "good.dcm,1") -> dict:
    """A csv data set: `images` {name: writer}, and good.dcm listed first as `good` (a row; the
    table must then be text)."""
    if good:
        dicom(root / "good.dcm", breast_pixels(side="L"))
        table = table.replace("\n", f"\n{good}\n", 1)
    for name, write in (images or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write(root / name)
    data = table.encode("utf-8") if isinstance(table, str) else table
    (root / "list.csv").write_bytes(data)
    return {"format": "csv", "table": "list.csv"}


def image_case(name: str) -> Callable[[Path], dict]:
    bad = image_name(name)
    return lambda root: csv_set(root, f"path,birads\n{bad},2\n", {bad: IMAGES[name]})


def dicom_name(file_name: str, lat: str = "R", view: str = "CC") -> str:
    return f"AllDICOMs/{file_name}_{HASH}_MG_{lat}_{view}_ANON.dcm"


def inbreast_set(root: Path, rows: list[str], dicoms: list[str], header: str = INBREAST_HEADER,
                 encoding: str = "ascii") -> dict:
    """INbreast as shipped: `rows` 'lat;view;file name;birads' -> INbreast.csv (CRLF)."""
    lines = [header] + ["removed;removed;{};{};201001;{};2;{}".format(*r.split(";", 3))
                        if r.count(";") == 3 else r for r in rows]
    (root / "INbreast.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    for rel in dicoms:
        dicom(root / rel, breast_pixels(side="R"))
    return {"format": "inbreast"}


def folder_set(root: Path, images: dict[str, Callable]) -> dict:
    dicom(root / "normal" / "good.dcm", breast_pixels(side="L"))
    for rel, write in images.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write(root / rel)
    return {"format": "folder"}


def broken_link(path: Path) -> None:
    path.symlink_to(path.parent / "gone.dcm")


def inbreast_empty_dicom(root: Path) -> dict:
    dataset = inbreast_set(root, ["R;CC;22678622;1"], [])
    (root / "AllDICOMs").mkdir()
    (root / dicom_name("22678622")).write_bytes(b"")
    return dataset


def inbreast_without_metadata(root: Path) -> dict:
    dicom(root / dicom_name("22678622"))
    return {"format": "inbreast"}


def folder_without_images(root: Path) -> dict:
    (root / "normal").mkdir()
    (root / "normal" / "notes.txt").write_text("no images here\n")
    return {"format": "folder"}


# --- checks of an ok input: (root, manifest row) -------------------------------------------------

def decodes_to(expected: Callable[[Path], np.ndarray]):
    def check(root: Path, row: pd.Series) -> None:
        np.testing.assert_allclose(read_image(root / row["source"]), expected(root), atol=1e-6)
    return check


def syntax_is(uid, expected: Callable[[Path], np.ndarray]):
    def check(root: Path, row: pd.Series) -> None:
        assert pydicom.dcmread(root / row["source"]).file_meta.TransferSyntaxUID == uid
        decodes_to(expected)(root, row)
    return check


def chest_wall_left(root: Path, row: pd.Series) -> None:
    with Image.open(row["image_path"]) as im:
        pixels = np.asarray(im).astype(np.float64)
    assert pixels[:, :3].mean() > 10 * max(pixels[:, -3:].mean(), 1.0)


def monochrome1(root: Path, row: pd.Series) -> None:
    # stored dark-is-dense, read bright-is-dense: the breast (not the background) is what is kept
    decodes_to(lambda _: unit(breast_pixels()))(root, row)
    chest_wall_left(root, row)


def mr_small(root: Path) -> np.ndarray:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.Modality = "MG"
    ds.save_as(root / "mr_small_plain.dcm", enforce_file_format=True)
    return read_image(root / "mr_small_plain.dcm")


def big_endian_check(root: Path, row: pd.Series) -> None:
    ds = pydicom.dcmread(root / row["source"])
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    assert ds.original_encoding == (False, False)  # (implicit VR, little endian)
    decodes_to(lambda _: unit(breast_pixels()))(root, row)


# --- the corpus ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    build: Callable[[Path], dict]
    expect: str  # "ok", "rejected" or "error"
    pattern: str = ""  # regex for the reason (rejected) or the UserError's message (error)
    source: str | None = None  # the manifest `source` of the input concerned (None: bad.<ext>)
    check: Callable[[Path, pd.Series], None] | None = None  # more checks of an ok input
    rows: int = 1  # manifest rows with that source


def rejected(pattern: str, **kw) -> tuple:
    return "rejected", pattern, kw


def ok(check=None, **kw) -> tuple:
    return "ok", "", {"check": check, **kw}


def error(pattern: str) -> tuple:
    return "error", pattern, {}


DECODE = "cannot decode pixel data"
WINDOW = (r"^cannot apply the DICOM window \(WindowCenter, WindowWidth, VOILUTFunction, "
          r"VOILUTSequence\): ")
NOT_DICOM = (r"^not a readable DICOM file \(no DICOM header: the 'DICM' marker at byte 128 is "
             r"missing\)$")
HUGE = r"^image declares {} x {} pixels, more than {:,} \(no mammogram is that large\); refused"

IMAGE_OUTCOMES = {
    "truncated_dicom": rejected(rf"^{DECODE} \(Explicit VR Little Endian\): The number of bytes of "
                                r"pixel data is less than expected \(\d+ vs 8192 bytes\)"),
    "dicom_cut_in_header": rejected(r"^DICOM has no pixel data$"),
    "dicom_without_pixel_data": rejected(r"^DICOM has no pixel data$"),
    "rgb_dicom": rejected(r"^DICOM is RGB with 3 samples per pixel; a mammogram is grayscale "
                          r"\(MONOCHROME1/2\)$"),
    "8bit_dicom": ok(decodes_to(lambda _: unit(breast_pixels(maximum=250)))),
    "monochrome1_dicom": ok(monochrome1),
    "big_endian_dicom": ok(big_endian_check),
    "jpeg2000_dicom": ok(syntax_is(JPEG2000Lossless, lambda _: unit(breast_pixels()))),
    "jpeg_ls_dicom": ok(syntax_is(JPEGLSLossless, mr_small)),
    "rle_dicom": ok(syntax_is(RLELossless, lambda _: unit(breast_pixels()))),
    "float_pixel_data_dicom": ok(decodes_to(lambda _: unit(breast_pixels()))),
    "zero_size_file": rejected(r"^file is empty \(0 bytes\)$"),
    "ct_dicom": rejected(r"^DICOM Modality is CT, not a mammogram \(MG\)$"),
    "text_named_dcm": rejected(NOT_DICOM),
    "png_named_dcm": rejected(NOT_DICOM),
    "dicom_named_png": ok(decodes_to(lambda _: unit(breast_pixels()))),
    "garbage_png": rejected(r"^not a readable image \(\w+: [^()]+\)$"),
    "text_named_png": rejected(r"^not a readable image \(UnidentifiedImageError: cannot identify "
                               r"image file '.*bad\.png'\)$"),
    "huge_dicom": rejected(HUGE.format(60000, 60000, MAX_PIXELS)),
    "huge_rle_dicom": rejected(HUGE.format(60000, 60000, MAX_PIXELS)),
    "huge_png": rejected(HUGE.format(10000, 12000, MAX_PIXELS)),
    "bomb_png": rejected(r"^not a readable image \(DecompressionBombError: Image size "
                         r"\(3600000000 pixels\) exceeds limit"),
    "1x1_dicom": rejected(r"^image is 1 x 1 pixels, too small for a mammogram \(at least 16 a "
                          r"side\)$"),
    "8x8_png": rejected(r"^image is 8 x 8 pixels, too small for a mammogram"),
    "blank_dicom": rejected(r"^image is blank \(every pixel is 812\)$"),
    "blank_png": rejected(r"^image is blank \(every pixel is 0\)$"),
    "speck_dicom": rejected(r"^no breast found: the image has no foreground above background$"),
    "nan_float_tiff": rejected(r"^pixel values are not finite$"),
    "inf_float_dicom": rejected(r"^pixel values are not finite$"),
    "multiframe_dicom": rejected(r"^DICOM has 2 frames; expected one image$"),
    "window_width_zero_dicom": rejected(WINDOW + r"ValueError: The \(0028,1051\) Window Width must "
                                        r"be greater than or equal to 1"),
    "unknown_voi_function_dicom": rejected(WINDOW + r"ValueError: Unsupported \(0028,1056\) VOI "
                                           r"LUT Function value 'FOO'$"),
    "rescale_slope_not_a_number": rejected(r"^cannot apply the DICOM rescale \(RescaleSlope, "
                                           r"RescaleIntercept, ModalityLUTSequence\): \w+"),
    "window_center_not_a_number": rejected(WINDOW + r"\w+Error: "),
    "frames_not_a_number": rejected(r"^DICOM NumberOfFrames is 'ab', not a whole number$"),
    "no_photometric_dicom": rejected(r"^DICOM is untyped \(no PhotometricInterpretation\) with 1 "
                                     r"samples per pixel; a mammogram is grayscale "
                                     r"\(MONOCHROME1/2\)$"),
}
assert set(IMAGE_OUTCOMES) == set(IMAGES)

LIST = "list.csv"  # the csv data sets' table
ROW_CASES = {  # name -> (builder, outcome)
    # --- csv format: the table ---
    "csv_row_without_image": (lambda r: csv_set(r, "path,birads\nmissing.dcm,2\n"),
                              rejected(r"^list\.csv line 3: no file missing\.dcm under the root$",
                                       source="missing.dcm")),
    "csv_broken_symlink": (lambda r: csv_set(r, "path,birads\nbad.dcm,2\n",
                                             {"bad.dcm": broken_link}),
                           rejected(r"^list\.csv line 3: no file bad\.dcm under the root "
                                    r"\(broken symlink\)$")),
    "csv_missing_required_column": (lambda r: csv_set(r, "file,birads\nbad.dcm,2\n", good=None),
                                    error(r"list\.csv: needs a 'path' column and a 'birads' or "
                                          r"'label' column \(found: file, birads\); the first line "
                                          r"names the columns")),
    "csv_pipe_separated": (lambda r: csv_set(r, "path|birads\nbad.dcm|2\n", good=None),
                           error(r"list\.csv: needs a 'path' column .* \(found: path\|birads\); "
                                 r"the first line names the columns, separated by commas, "
                                 r"semicolons or tabs$")),
    "csv_semicolon_separated": (lambda r: csv_set(r, "path;birads\nbad.dcm;2\n", {"bad.dcm": dicom},
                                                  good=None),
                                ok(decodes_to(lambda _: unit(breast_pixels())))),
    "csv_latin1": (lambda r: csv_set(r, "path,birads,patient_id\nbad.dcm,2,Müller\n"
                                     .encode("latin-1"), good=None),
                   error(r"list\.csv: not UTF-8 text \(invalid .+ at byte \d+\); save it as "
                         r"UTF-8$")),
    "csv_line_with_extra_field": (lambda r: csv_set(r, "path,birads\nbad.dcm,2,x\n"),
                                  error(r"list\.csv: cannot parse it as a comma-separated table "
                                        r"\(Error tokenizing data\. C error: Expected 2 fields in "
                                        r"line 3, saw 3\)$")),
    "csv_line_with_missing_field": (lambda r: csv_set(r, "path,birads\nbad.dcm\n",
                                                      {"bad.dcm": dicom}),
                                    rejected(r"^no BI-RADS value or label$")),
    "csv_empty_file": (lambda r: csv_set(r, b"", good=None),
                       error(r"list\.csv: the table is empty; it needs a header line")),
    "csv_header_only": (lambda r: csv_set(r, "path,birads\n", good=None),
                        error(r"list\.csv: the table has no inputs: a header line and no line "
                              r"per image$")),
    "csv_duplicate_column": (lambda r: csv_set(r, "path,Path,birads\nbad.dcm,x.dcm,2\n", good=None),
                             error(r"list\.csv: column\(s\) path appear more than once in the "
                                   r"header; keep one of each$")),
    "csv_duplicate_path": (lambda r: csv_set(r, "path,birads\nbad.dcm,2\nbad.dcm,3\n",
                                             {"bad.dcm": dicom}),
                           rejected(r"^list\.csv line 4: duplicate path bad\.dcm \(first on line "
                                    r"3\); list each image once$", rows=2)),
    "csv_empty_path": (lambda r: csv_set(r, "path,birads\n,2\n"),
                       rejected(r"^list\.csv line 3: empty path$", source="")),
    "csv_unknown_birads": (lambda r: csv_set(r, "path,birads\nbad.dcm,9\n", {"bad.dcm": dicom}),
                           rejected(r"^unknown BI-RADS value '9'$")),
    "csv_unknown_label": (lambda r: csv_set(r, "path,label\nbad.dcm,benign\n", {"bad.dcm": dicom},
                                            good="good.dcm,normal"),
                          rejected(r"^label 'benign' is not one of the config's labels \(abnormal, "
                                   r"normal\)$")),
    # --- INbreast format ---
    "inbreast_unknown_birads": (
        lambda r: inbreast_set(r, ["R;CC;22678622;7", "L;CC;22678646;2"],
                               [dicom_name("22678622"), dicom_name("22678646", "L")]),
        rejected(r"^unknown BI-RADS value '7'$", source=dicom_name("22678622"))),
    "inbreast_duplicate_file_name": (
        lambda r: inbreast_set(r, ["R;CC;22678622;1", "R;CC;22678622;2"], [dicom_name("22678622")]),
        rejected(r"^INbreast\.csv line 3: duplicate File Name 22678622$", source="INbreast.csv:3")),
    "inbreast_row_without_dicom": (
        lambda r: inbreast_set(r, ["R;CC;22678622;1", "L;CC;22678646;2"], [dicom_name("22678622")]),
        rejected(r"^no DICOM named 22678646_\*\.dcm under the data set root$",
                 source="INbreast.csv:3")),
    "inbreast_dicom_without_row": (
        lambda r: inbreast_set(r, ["R;CC;22678622;1"],
                               [dicom_name("22678622"), dicom_name("99999999", "L")]),
        rejected(r"^no row in INbreast\.csv for this DICOM$", source=dicom_name("99999999", "L"))),
    "inbreast_two_dicoms_for_a_row": (
        lambda r: inbreast_set(r, ["R;CC;22678622;1"],
                               [dicom_name("22678622"), "copy/" + dicom_name("22678622")]),
        rejected(r"^2 DICOMs named 22678622_\*\.dcm: ", source="INbreast.csv:2")),
    "inbreast_file_name_not_a_number": (
        lambda r: inbreast_set(r, ["R;CC;22678622;1", "R;CC;x123;2"], [dicom_name("22678622")]),
        rejected(r"^INbreast\.csv line 3: File Name 'x123' is not a number$",
                 source="INbreast.csv:3")),
    "inbreast_latin1_accents": (
        lambda r: inbreast_set(r, ["removed;âgé;R;CC;201001;22678622;2;1"],
                               [dicom_name("22678622")], encoding="latin-1"),
        ok(source=dicom_name("22678622"))),
    "inbreast_empty_dicom": (
        inbreast_empty_dicom,
        rejected(r"^file is empty \(0 bytes\)$", source=dicom_name("22678622"))),
    "inbreast_comma_separated": (
        lambda r: inbreast_set(r, ["removed,removed,R,CC,201001,22678622,2,1"],
                               [dicom_name("22678622")], header=INBREAST_HEADER.replace(";", ",")),
        error(r"INbreast\.csv: missing column\(s\) Laterality, View, File Name, Bi-Rads \(found: "
              r".*\); is it semicolon-separated as shipped\?$")),
    "inbreast_line_with_extra_field": (
        lambda r: inbreast_set(r, ["R;CC;22678622;1", "removed;removed;R;CC;201001;22678646;2;1;x"],
                               [dicom_name("22678622")]),
        error(r"INbreast\.csv: cannot read it as the INbreast metadata table \(Error tokenizing "
              r"data\. C error: Expected 8 fields in line 3, saw 9\); restore the file as "
              r"downloaded$")),
    "inbreast_no_metadata": (
        inbreast_without_metadata,
        error(r"no INbreast\.csv or INbreast\.xls found; point dataset\.root at the 'INbreast "
              r"Release 1\.0' folder$")),
    # --- folder format ---
    "folder_unknown_label_folder": (
        lambda r: folder_set(r, {"benign/bad.dcm": dicom}),
        rejected(r"^label 'benign' is not one of the config's labels \(abnormal, normal\)$",
                 source="benign/bad.dcm")),
    "folder_image_outside_label_folders": (
        lambda r: folder_set(r, {"bad.dcm": dicom}), rejected(r"^no BI-RADS value or label$")),
    "folder_broken_symlink": (
        lambda r: folder_set(r, {"normal/bad.dcm": broken_link}),
        rejected(r"^file does not exist \(broken symlink\)$", source="normal/bad.dcm")),
    "folder_empty": (
        folder_without_images,
        error(r"^config dataset\.root: the data set has no inputs: no metadata rows and no image "
              r"files were found under .* \(dataset\.format: folder\); point it at the data set")),
}


def make_case(build, outcome) -> Case:
    expect, pattern, kw = outcome
    return Case(build, expect, pattern, **kw)


CASES: dict[str, Case] = {
    **{name: make_case(image_case(name), outcome) for name, outcome in IMAGE_OUTCOMES.items()},
    **{name: make_case(build, outcome) for name, (build, outcome) in ROW_CASES.items()},
}


# --- running a case -------------------------------------------------------------------------------

def one_line(text: str) -> None:
    assert text.strip() and "\n" not in text and "\r" not in text, repr(text)
    assert "Traceback" not in text, text


def run(dataset: dict, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    table = ingest(dataset, BINARY)
    manifest = preprocess_table(table, source_roots(dataset), out, size=SIZE, workers=1,
                                on_bad_image=dataset["on_bad_image"])
    return table, manifest


def test_corpus_is_big_enough():
    assert len(CASES) >= 25
    assert {c.expect for c in CASES.values()} == {"ok", "rejected", "error"}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, tmp_path):
    case = CASES[name]
    root = tmp_path / "data"
    root.mkdir()
    dataset = {"root": str(root), "on_bad_image": "reject", **case.build(root)}
    out = tmp_path / "images"

    if case.expect == "error":
        with pytest.raises(UserError) as err:
            run(dataset, out)
        assert type(err.value) is UserError  # not an ImageError escaping the manifest
        message = str(err.value)
        one_line(message)
        assert re.search(case.pattern, message), message
        return

    table, manifest = run(dataset, out)
    # nothing dropped or added, every row ok or rejected with its reason on one line
    assert manifest["image_id"].tolist() == table["image_id"].tolist()
    assert manifest["image_id"].is_unique
    assert set(manifest["status"]) <= {"ok", "rejected"}
    bad = manifest[manifest["status"] == "rejected"]
    for reason in bad["reason"]:
        one_line(reason)
    assert (manifest.loc[manifest["status"] == "ok", "reason"] == "").all()
    # the good neighbour, where there is one, is not taken down with the bad input
    good = manifest[manifest["source"].isin(["good.dcm", "normal/good.dcm"])]
    assert (good["status"] == "ok").all()

    source = image_name(name) if case.source is None else case.source
    rows = manifest[manifest["source"] == source]
    assert len(rows) == case.rows, manifest[["source", "status", "reason"]]
    row = rows.iloc[-1]
    if case.expect == "rejected":
        assert row["status"] == "rejected", (row["status"], row["reason"])
        assert re.search(case.pattern, row["reason"]), row["reason"]
        assert row["image_path"] == ""
        # on_bad_image: fail stops the run instead, naming the first rejected input
        with pytest.raises(UserError) as err:
            fail_on_rejections(manifest, "fail")
        one_line(str(err.value))
        first = bad.iloc[0]
        assert str(err.value).startswith(f"{first['source']}: {first['reason']} (")
    else:
        assert row["status"] == "ok", row["reason"]
        with Image.open(row["image_path"]) as im:
            assert im.size == (SIZE, SIZE) and im.mode == "I;16"
        if case.check:
            case.check(root, row)


# --- huge images are refused from the header, without allocating them ---------------------------

@pytest.mark.parametrize("name", ["huge_dicom", "huge_rle_dicom", "huge_png", "bomb_png"])
def test_huge_image_is_refused_without_allocating_it(name, tmp_path):
    path = tmp_path / image_name(name)
    IMAGES[name](path)
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageError):
            read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20, f"{peak / 2**20:.0f} MiB allocated to refuse {name}"

