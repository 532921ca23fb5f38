"""RSNA Screening Mammography (Kaggle 2022) adapter, on a tiny copy of the competition layout:
train.csv (its 14 columns), train_images/<patient_id>/<image_id>.dcm, test.csv + test_images/.

The DICOMs carry RSNA's traps: JPEG 2000 (1.2.840.10008.1.2.4.90) and JPEG Lossless
(1.2.840.10008.1.2.4.70) pixel data, 12 bits stored, MONOCHROME1, several WindowCenter/Width
values, VOILUTFunction SIGMOID. pydicom has no JPEG Lossless encoder (nor do the pylibjpeg
plugins), so `encode_jpeg_lossless` below writes the codestream (ITU T.81 process 14, SV1); the
pylibjpeg-libjpeg decoder reading it back bit-exactly is checked first.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1

from mammosynth.datasets import rsna
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError
from mammosynth.imaging import preprocess_array, read_image
from mammosynth.imaging.pipeline import preprocess_table

from conftest import breast_image, write_mg_dicom

HEADER = ("site_id,patient_id,image_id,laterality,view,age,cancer,biopsy,invasive,BIRADS,"
          "implant,density,machine_id,difficult_negative_case")
TEST_HEADER = "site_id,patient_id,image_id,laterality,view,age,implant,machine_id,prediction_id"
BIRADS = {"scheme": "birads"}
BINARY = {"scheme": "binary"}


# --- writers -----------------------------------------------------------------------------------

def encode_jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """A JPEG Lossless, Non-Hierarchical, First-Order Prediction codestream (ITU T.81 Annex H,
    process 14, selection value 1: predict from the left; first column from above) of a 2-D
    unsigned image. One Huffman table gives every difference category 0..16 a 5-bit code.
    Vectorised, so a 3328 x 2560 image (bench/preprocess.py) takes seconds, not minutes."""
    x = pixels.astype(np.int64)
    rows, cols = x.shape
    pred = np.empty_like(x)
    pred[:, 1:] = x[:, :-1]
    pred[1:, 0] = x[:-1, 0]
    pred[0, 0] = 1 << (precision - 1)
    diff = (x - pred) % 65536  # modulo 2**16 (H.1.2.1)
    diff = np.where(diff >= 32768, diff - 65536, diff).ravel()
    size = np.zeros(diff.shape, np.int64)  # SSSS: bit length of |diff|
    nonzero = diff != 0
    size[nonzero] = np.floor(np.log2(np.abs(diff[nonzero]))).astype(np.int64) + 1
    extra = np.where(diff < 0, diff - 1, diff) & ((1 << size) - 1)
    extra = np.where(size == 16, 0, extra)  # category 16 (32768) has no extra bits
    nbits = 5 + np.where(size == 16, 0, size)
    words = (size << (nbits - 5)) | extra  # the code of category s is s in 5 bits
    chunks, step = [], 1 << 20
    for start in range(0, len(words), step):
        w, n = words[start:start + step], nbits[start:start + step]
        owner = np.repeat(np.arange(len(w)), n)
        pos = np.arange(owner.size) - np.repeat(np.cumsum(n) - n, n)
        chunks.append(((w[owner] >> (n[owner] - 1 - pos)) & 1).astype(np.uint8))
    bits = np.concatenate(chunks)
    bits = np.concatenate([bits, np.ones(-len(bits) % 8, np.uint8)])  # pad with 1-bits
    data = np.packbits(bits)
    data = np.insert(data, np.flatnonzero(data == 0xFF) + 1, 0).tobytes()  # byte stuffing

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + body

    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)  # 17 codes of length 5
    sof3 = (bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big")
            + bytes([1, 1, 0x11, 0]))
    dht = bytes([0x00]) + counts + bytes(range(17))
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # one component, table 0, predictor 1, Se, Ah/Al
    return (b"\xff\xd8" + segment(0xC3, sof3) + segment(0xC4, dht) + segment(0xDA, sos) + data
            + b"\xff\xd9")


def rsna_dicom(path: Path, pixels: np.ndarray, syntax: str, *, bits: int = 12,
               photometric: str = "MONOCHROME2", **tags) -> Path:
    """An RSNA-like DICOM: `bits` stored of 16, pixel data in `syntax` (uncompressed, JPEG 2000
    lossless or JPEG Lossless SV1), extra DICOM attributes from `tags`."""
    path = write_mg_dicom(path, pixels, photometric=photometric, **tags)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = bits, bits - 1
    if syntax == JPEG2000Lossless:
        ds.compress(JPEG2000Lossless)
    elif syntax == JPEGLosslessSV1:
        ds.PixelData = encapsulate([encode_jpeg_lossless(ds.pixel_array, bits)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    else:
        assert syntax == ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def stored_breast(height: int = 64, width: int = 64, side: str = "R", bits: int = 12,
                  monochrome1: bool = False) -> np.ndarray:
    """Breast-like stored values filling `bits` (MONOCHROME1: dense tissue is low)."""
    top = 2 ** bits - 1
    image = np.round(breast_image(height, width, side) * (top - 100)).astype(np.uint16)
    return (top - image).astype(np.uint16) if monochrome1 else image


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.min()) / (x.max() - x.min())


def window_linear(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR), normalised to [0, 1]."""
    lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


# --- the fixture: one tiny copy of the competition folder -------------------------------------

# image_id -> (train.csv line fields after site_id/patient_id/image_id, pixel data, DICOM tags)
# Values in RSNA's own spelling: age '61.0', BIRADS '' when missing, density '' or A-D, 'False'.
OK_ROWS = {
    "1967300488": ("1", "10038", "L", "CC", "51.0", "0", "1", "B", dict(
        syntax=JPEG2000Lossless, side="L")),
    "2142944869": ("1", "10038", "L", "MLO", "51.0", "0", "1", "B", dict(
        syntax=JPEG2000Lossless, side="L", photometric="MONOCHROME1",
        WindowCenter=[2000, 1000], WindowWidth=[3000, 500])),
    "102733848": ("1", "10042", "R", "CC", "71.0", "0", "2", "C", dict(
        syntax=JPEGLosslessSV1, side="R", WindowCenter=2000, WindowWidth=1500,
        VOILUTFunction="SIGMOID")),
    "202939811": ("1", "10042", "R", "MLO", "71.0", "0", "0", "C", dict(
        syntax=JPEG2000Lossless, side="R", size=(128, 128))),
}
EMPTY_BIRADS = {  # rows from site 2, which gives no BI-RADS; one is a cancer
    "462822612": ("2", "10006", "L", "CC", "61.0", "0", "", "", dict(syntax=JPEG2000Lossless,
                                                                      side="L")),
    "220375232": ("2", "10011", "R", "CC", "55.0", "1", "", "", dict(syntax=JPEGLosslessSV1,
                                                                      side="R")),
}
NO_FILE = {"1358111906": ("1", "10049", "R", "CC", "66.0", "0", "1", "A", None)}
UNLISTED = "10049/2181954939.dcm"  # a DICOM in train_images without a train.csv row
TEST_IMAGE = ("10008", "736471439")


def train_line(image_id: str, fields: tuple) -> str:
    site, patient, lat, view, age, cancer, birads, density, _ = fields
    return (f"{site},{patient},{image_id},{lat},{view},{age},{cancer},{cancer},{cancer},{birads},"
            f"0,{density},{'49' if site == '1' else '29'},False")


def build_tree(root: Path, rows: dict | None = None, test: bool = True) -> Path:
    rows = rows if rows is not None else {**OK_ROWS, **EMPTY_BIRADS, **NO_FILE}
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.csv").write_text(
        "\n".join([HEADER] + [train_line(i, f) for i, f in rows.items()]) + "\n")
    for image_id, fields in rows.items():
        spec = dict(fields[-1]) if fields[-1] else None
        if spec is None:
            continue
        syntax, side = spec.pop("syntax"), spec.pop("side")
        photometric = spec.get("photometric", "MONOCHROME2")
        pixels = stored_breast(*spec.pop("size", (64, 64)), side=side,
                               monochrome1=photometric == "MONOCHROME1")
        rsna_dicom(root / "train_images" / fields[1] / f"{image_id}.dcm", pixels, syntax, **spec)
    if "1358111906" in rows:
        rsna_dicom(root / "train_images" / UNLISTED, stored_breast(), JPEG2000Lossless)
    if test:
        patient, image_id = TEST_IMAGE
        (root / "test.csv").write_text(
            f"{TEST_HEADER}\n2,{patient},{image_id},L,MLO,81.0,0,21,{patient}_L\n")
        rsna_dicom(root / "test_images" / patient / f"{image_id}.dcm",
                   stored_breast(side="L"), JPEG2000Lossless)
    (root / "sample_submission.csv").write_text("prediction_id,cancer\n10008_L,0\n")
    return root


def run(root: Path, labels: dict = BIRADS):
    return ingest({"format": "rsna", "root": str(root), "on_bad_image": "reject"}, labels)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("rsna") / "rsna-breast-cancer-detection")


def by_id(table):
    return {r["image_id"]: r for r in table.to_dict("records")}


# --- the JPEG Lossless writer itself -----------------------------------------------------------

@pytest.mark.parametrize("bits", [12, 16])
def test_jpeg_lossless_writer_round_trips(tmp_path, bits):
    rng = np.random.default_rng(bits)
    pixels = rng.integers(0, 2 ** bits, (37, 29)).astype(np.uint16)  # every category occurs
    path = rsna_dicom(tmp_path / "ll.dcm", pixels, JPEGLosslessSV1, bits=bits)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    np.testing.assert_array_equal(ds.pixel_array, pixels)


# --- ingest: counts, links, reasons ------------------------------------------------------------

def test_counts_and_links(tree):
    table = run(tree)
    assert Counter(table["status"]) == {"ok": 4, "rejected": 5}
    rows = by_id(table)
    for image_id, fields in OK_ROWS.items():
        row = rows[image_id]
        assert row["status"] == "ok", row["reason"]
        assert row["source"] == f"train_images/{fields[1]}/{image_id}.dcm"
        assert (row["patient_id"], row["laterality"], row["view"]) == fields[1:4]
        assert row["birads"] == fields[6] and row["label"] == f"birads{fields[6]}"
        assert row["label_level"] == "breast"
    assert set(table["label_level"]) == {"breast"}
    assert "official_subset" not in table.columns


def test_binary_scheme_rejects_birads_0(tree):
    table = run(tree, BINARY)
    assert Counter(table["status"]) == {"ok": 3, "rejected": 6}
    rows = by_id(table)
    assert rows["202939811"]["reason"] == ("BI-RADS 0 is not mapped to a label (config "
                                           "labels.scheme / labels.map)")
    assert rows["1967300488"]["label"] == "normal" and rows["102733848"]["label"] == "abnormal"


def test_empty_birads_is_rejected_naming_cancer(tree):
    rows = by_id(run(tree))
    for image_id, cancer in (("462822612", "0"), ("220375232", "1")):
        row = rows[image_id]
        assert row["status"] == "rejected" and row["birads"] == "" and row["label"] == ""
        assert row["source"].startswith("train_images/")  # the image is there: linked anyway
        line = 2 + list({**OK_ROWS, **EMPTY_BIRADS, **NO_FILE}).index(image_id)
        assert row["reason"] == (f"train.csv line {line}: BIRADS is empty (cancer={cancer}); "
                                 "RSNA gives no BI-RADS for this image, so it has no label")


def test_birads_resaved_as_float(tmp_path):
    # a train.csv re-saved by pandas writes the BIRADS column (it has NaN) as 1.0, 2.0, ...
    root = build_tree(tmp_path / "rsna", rows=dict(OK_ROWS), test=False)
    text = (root / "train.csv").read_text()
    (root / "train.csv").write_text(text.replace(",0,0,0,2,0,", ",0,0,0,2.0,0,"))
    row = by_id(run(root))["102733848"]
    assert (row["status"], row["birads"], row["label"]) == ("ok", "2", "birads2")


def test_row_without_dicom_and_dicom_without_row(tree):
    rows = by_id(run(tree))
    missing = rows["1358111906"]
    assert missing["status"] == "rejected" and missing["source"] == "train.csv:8"
    assert missing["reason"] == ("no DICOM train_images/10049/1358111906.dcm under the data set "
                                 "root (listed in train.csv line 8)")
    unlisted = rows["unlisted-2181954939"]
    assert unlisted["source"] == f"train_images/{UNLISTED}" and unlisted["patient_id"] == "10049"
    assert unlisted["reason"] == "no row in train.csv for this DICOM"


def test_test_images_are_rejected_not_dropped(tree):
    rows = by_id(run(tree))
    test = rows["test-736471439"]
    assert test["status"] == "rejected" and test["patient_id"] == "10008"
    assert test["source"] == "test_images/10008/736471439.dcm"
    assert test["reason"] == ("test.csv line 2: competition test image; test.csv has no BIRADS "
                              "or cancer value, so it cannot be labelled")


def test_test_images_without_test_csv(tmp_path):
    root = build_tree(tmp_path / "rsna", rows=dict(OK_ROWS))
    (root / "test.csv").unlink()
    rows = by_id(run(root))
    assert len(rows) == len(OK_ROWS) + 1
    assert rows["unlisted-test-736471439"]["reason"] == (
        "competition test image (test_images/): it has no BIRADS or cancer value, so it cannot "
        "be labelled")


def test_nested_one_folder_down(tmp_path):
    folder = build_tree(tmp_path / "download" / "rsna-breast-cancer-detection",
                        rows=dict(OK_ROWS), test=False)
    assert rsna.find_folder(tmp_path / "download") == folder
    table = run(tmp_path / "download")
    assert Counter(table["status"]) == {"ok": 4}
    assert set(table["source"].str.split("/").str[0]) == {"rsna-breast-cancer-detection"}


def test_duplicates_wrong_folder_and_stray_dicoms(tmp_path):
    root = build_tree(tmp_path / "rsna", rows=dict(OK_ROWS), test=False)
    lines = (root / "train.csv").read_text().splitlines()
    lines.append(lines[1])  # image 1967300488 listed twice
    lines.append("1,10050,,L,CC,50.0,0,0,0,1,0,A,49,False")  # no image_id
    lines.append("1,10051,../../etc,L,CC,50.0,0,0,0,1,0,A,49,False")  # not a plain name
    lines.append("1,,3000000001,L,CC,50.0,0,0,0,1,0,A,49,False")  # no patient_id
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    # 102733848 (patient 10042) moved to patient 10038's folder
    src = root / "train_images/10042/102733848.dcm"
    src.rename(root / "train_images/10038/102733848.dcm")
    # a second copy of 202939811 under another folder
    copy = root / "train_images/99999/202939811.dcm"
    copy.parent.mkdir()
    copy.write_bytes((root / "train_images/10042/202939811.dcm").read_bytes())
    # a DICOM outside train_images/ and test_images/
    stray = root / "extra/123.dcm"
    stray.parent.mkdir()
    stray.write_bytes(copy.read_bytes())
    table = run(root)
    rows = by_id(table)
    assert rows["1967300488"]["status"] == "ok"
    assert rows["1967300488-row6"]["reason"] == "train.csv line 6: duplicate image_id 1967300488"
    assert rows["row7"]["reason"] == ("train.csv line 7: image_id '' is empty or not a plain "
                                      "name (letters, digits, . _ -)")
    assert rows["row8"]["reason"].startswith("train.csv line 8: image_id '../../etc'")
    assert rows["3000000001"]["reason"] == "train.csv line 9: no patient_id for image 3000000001"
    assert rows["102733848"]["reason"] == ("DICOM is in folder 10038, but train.csv line 4 gives "
                                           "patient_id 10042")
    assert rows["202939811"]["reason"] == (
        "2 DICOMs for image_id 202939811: train_images/10042/202939811.dcm, "
        "train_images/99999/202939811.dcm")
    assert rows["unlisted-123"]["source"] == "extra/123.dcm"
    assert "outside train_images/ and test_images/" in rows["unlisted-123"]["reason"]
    assert Counter(table["status"]) == {"ok": 2, "rejected": 7}  # 2142944869 untouched


def test_missing_train_csv_or_columns(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no train\.csv here or one folder down; point "
                                        r"dataset\.root at the folder holding train\.csv"):
        run(tmp_path / "empty")
    root = tmp_path / "cols"
    root.mkdir()
    (root / "train.csv").write_text("patient_id;image_id;laterality;view;BIRADS\n1;2;L;CC;1\n")
    with pytest.raises(UserError, match=r"train\.csv: missing column\(s\) patient_id, image_id, "
                                        r"laterality, view, BIRADS \(found: patient_id;image_id"):
        run(root)
    for name in ("a", "b"):
        (tmp_path / "two" / name).mkdir(parents=True)
        (tmp_path / "two" / name / "train.csv").write_text(HEADER + "\n")
    with pytest.raises(UserError, match=r"2 folders hold a train\.csv \(a, b\)"):
        run(tmp_path / "two")


# --- the DICOM traps, through read_image and preprocessing ------------------------------------

def test_jpeg2000_and_jpeg_lossless_decode_like_uncompressed(tmp_path):
    pixels = stored_breast(64, 48)
    plain = read_image(rsna_dicom(tmp_path / "plain.dcm", pixels, ExplicitVRLittleEndian))
    for syntax in (JPEG2000Lossless, JPEGLosslessSV1):
        path = rsna_dicom(tmp_path / f"{syntax}.dcm", pixels, syntax)
        assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
        np.testing.assert_array_equal(read_image(path), plain)
    np.testing.assert_allclose(plain, unit(pixels), atol=1e-6)


def test_monochrome1_breast_comes_out_bright(tree, tmp_path):
    path = tree / "train_images/10038/2142944869.dcm"
    assert pydicom.dcmread(path).PhotometricInterpretation == "MONOCHROME1"
    image = read_image(path)
    inside = breast_image(64, 64, "L") > 0.5
    assert image[inside].mean() > 0.5 > image[~inside].mean()
    # the same stored values declared MONOCHROME2 read as the complement
    stored = stored_breast(side="L", monochrome1=True)
    m2 = read_image(rsna_dicom(tmp_path / "m2.dcm", stored, JPEG2000Lossless,
                               WindowCenter=[2000, 1000], WindowWidth=[3000, 500]))
    np.testing.assert_allclose(image, 1.0 - m2, atol=1e-6)


def test_first_of_several_windows_is_used(tree):
    path = tree / "train_images/10038/2142944869.dcm"
    ds = pydicom.dcmread(path)
    assert list(ds.WindowCenter) == [2000, 1000] and list(ds.WindowWidth) == [3000, 500]
    stored = ds.pixel_array.astype(np.float64)
    np.testing.assert_allclose(read_image(path), 1.0 - unit(window_linear(stored, 2000, 3000)),
                               atol=1e-5)


def test_sigmoid_window_on_jpeg_lossless(tree):
    path = tree / "train_images/10042/102733848.dcm"
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == JPEGLosslessSV1 and ds.VOILUTFunction == "SIGMOID"
    stored = ds.pixel_array.astype(np.float64)
    sigmoid = 1.0 / (1.0 + np.exp(-4.0 * (stored - 2000) / 1500))
    np.testing.assert_allclose(read_image(path), unit(sigmoid), atol=1e-5)


def test_reduced_jpeg2000_decode_keeps_the_traps(tmp_path):
    # MONOCHROME1, two windows: decoded at 1/4 size for a 16-px target, same look as in full
    stored = stored_breast(256, 192, side="L", monochrome1=True)
    path = rsna_dicom(tmp_path / "m1.dcm", stored, JPEG2000Lossless, photometric="MONOCHROME1",
                      WindowCenter=[2000, 1000], WindowWidth=[3000, 500])
    full, small = read_image(path), read_image(path, target=16)
    assert full.shape == (256, 192) and small.shape == (64, 48)
    shrunk = full.reshape(64, 4, 48, 4).mean(axis=(1, 3))
    assert np.corrcoef(shrunk.ravel(), small.ravel())[0, 1] > 0.99
    assert np.abs(shrunk - small).mean() < 0.02
    inside = breast_image(64, 48, "L") > 0.5
    assert small[inside].mean() > 0.5 > small[~inside].mean()
    a, b = (preprocess_array(x, "L", 16)[0].astype(np.float64) for x in (full, small))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


# --- end to end: ingest, then preprocess ------------------------------------------------------

@pytest.mark.parametrize("labels", [BIRADS, BINARY])
def test_ingest_then_preprocess(tree, tmp_path, labels):
    table = run(tree, labels)
    manifest = preprocess_table(table, {"": tree}, tmp_path / "images", size=32)
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) == (4 if labels is BIRADS else 3)
    assert Counter(manifest["status"])["rejected"] == len(table) - len(ok)
    for rec in ok.to_dict("records"):
        with Image.open(rec["image_path"]) as im:
            assert im.size == (32, 32) and im.mode == "I;16"
            pixels = np.asarray(im)
        assert pixels[:, :3].mean() > 10 * max(pixels[:, -3:].mean(), 1.0), rec["image_id"]
        assert bool(rec["flipped"]) == (rec["laterality"] == "R")
    if labels is BIRADS:
        # 128 x 128 JPEG 2000: decoded at 64 x 64 for a 32-px output; the manifest keeps 128
        big = ok.set_index("image_id").loc["202939811"]
        assert read_image(tree / big["source"], target=32).shape == (64, 64)
        assert (big["orig_height"], big["orig_width"]) == (128, 128)
