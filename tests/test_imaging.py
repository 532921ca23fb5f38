"""Decoding (pydicom test files and DICOMs written here), breast crop / flip, 16-bit PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000, JPEG2000Lossless, RLELossless

from mammosynth.errors import ImageError
from mammosynth.imaging import preprocess_array, read_image, read_png, write_png
from mammosynth.imaging.decode import j2k_header, load_image, reduce_levels, reduced_j2k

from conftest import breast_image, breast_pixels, write_mg_dicom


def ramp(height: int = 64, width: int = 64, top: int = 4000) -> np.ndarray:
    return np.linspace(0, top, height * width).reshape(height, width).round().astype(np.uint16)


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.min()) / (x.max() - x.min())


def resave(src: str | Path, dst: Path, **changes) -> Path:
    ds = pydicom.dcmread(src)
    for key, value in changes.items():
        setattr(ds, key, value)
    ds.save_as(dst, enforce_file_format=True)
    return dst


# --- decoding: what comes out ------------------------------------------------------------------

def test_plain_mg_dicom_is_min_max_scaled(tmp_path):
    pixels = breast_pixels(80, 64, maximum=2970)  # INbreast: 16 bits allocated, ~3000 reached
    path = write_mg_dicom(tmp_path / "a.dcm", pixels)
    image = read_image(path)
    assert image.dtype == np.float32 and image.shape == (80, 64)
    assert image.min() == 0.0 and image.max() == pytest.approx(1.0)
    np.testing.assert_allclose(image, unit(pixels), atol=1e-6)


def monochrome1_files() -> list[str]:
    out = []
    for f in get_testdata_files():
        if not os.path.isfile(f):
            continue
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:
            continue
        if (ds.get("PhotometricInterpretation") == "MONOCHROME1"
                and ds.get("SamplesPerPixel", 1) == 1 and ds.get("Modality") in ("CR", "DX", "MG")):
            out.append(f)
    return sorted(out)


@pytest.mark.filterwarnings("ignore:Expected explicit VR")
def test_monochrome1_is_inverted(tmp_path):
    files = monochrome1_files()
    assert files, "pydicom ships MONOCHROME1 CR test files (dicomdirtests/77654033/CR*)"
    for f in files:
        ds = pydicom.dcmread(f)
        image = read_image(f)
        assert image.dtype == np.float32
        assert image.min() == 0.0 and image.max() == pytest.approx(1.0)
        corr = np.corrcoef(image.ravel(), ds.pixel_array.ravel().astype(np.float64))[0, 1]
        assert corr < -0.95, f"{f}: MONOCHROME1 not inverted (corr {corr:.3f})"
        # the same pixels declared MONOCHROME2 read as the exact complement
        as_m2 = read_image(resave(f, tmp_path / f"{Path(f).name}_m2.dcm",
                                  PhotometricInterpretation="MONOCHROME2"))
        np.testing.assert_allclose(image, 1.0 - as_m2, atol=1e-6)


def test_monochrome1_written_here_is_inverted(tmp_path):
    pixels = breast_pixels(64, 64)
    m1 = read_image(write_mg_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    m2 = read_image(write_mg_dicom(tmp_path / "m2.dcm", pixels))
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    # MONOCHROME1 stores dense tissue dark: the breast must come out bright after inversion
    inside = breast_image(64, 64) > 0.5
    assert m2[inside].mean() > m2[~inside].mean()
    assert m1[inside].mean() < m1[~inside].mean()


@pytest.mark.parametrize("compressed", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
def test_pydicom_compressed_matches_uncompressed(tmp_path, compressed):
    # MR is not a mammogram modality, so relabel both copies MG before reading
    plain = read_image(resave(get_testdata_file("MR_small.dcm"), tmp_path / "plain.dcm",
                              Modality="MG"))
    packed_src = get_testdata_file(compressed)
    assert pydicom.dcmread(packed_src).file_meta.TransferSyntaxUID.is_compressed
    packed = read_image(resave(packed_src, tmp_path / "packed.dcm", Modality="MG"))
    np.testing.assert_allclose(packed, plain, atol=1e-6)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_mg_matches_uncompressed(tmp_path, syntax):
    pixels = breast_pixels(96, 80)
    plain_path = write_mg_dicom(tmp_path / "plain.dcm", pixels)
    ds = pydicom.dcmread(plain_path)
    ds.compress(syntax)
    ds.save_as(tmp_path / "packed.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "packed.dcm").file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_image(tmp_path / "packed.dcm"), read_image(plain_path))


def test_dicom_without_suffix_is_read_as_dicom(tmp_path):
    # DICOMDIR-style names have no suffix (pydicom's own CR files are named '6154')
    path = write_mg_dicom(tmp_path / "6154", breast_pixels())
    np.testing.assert_allclose(read_image(path), unit(breast_pixels()), atol=1e-6)


def test_dicom_named_by_its_uid_is_read_as_dicom(tmp_path):
    # PACS exports often name files by SOP Instance UID: 'Path.suffix' is then '.604688119'.
    # BUG (see report): read_image picks the decoder by suffix only, so this valid DICOM goes to
    # Pillow and is rejected as "not a readable image".
    path = write_mg_dicom(tmp_path / "1.2.840.113619.2.55.3.604688119", breast_pixels())
    np.testing.assert_allclose(read_image(path), unit(breast_pixels()), atol=1e-6)


def test_jpeg2000_lossy_pydicom_file_decodes(tmp_path):
    # NM JPEG 2000 (lossy) from pydicom's test data, relabelled MG
    path = resave(get_testdata_file("JPEG2000.dcm"), tmp_path / "j2k.dcm", Modality="MG")
    image = read_image(path)
    assert image.shape == (1024, 256) and image.min() == 0.0 and image.max() == pytest.approx(1.0)


def window_linear(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR), normalised to [0, 1]."""
    lo, hi = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def test_voi_window_is_applied(tmp_path):
    pixels = ramp(top=4000)
    path = write_mg_dicom(tmp_path / "w.dcm", pixels, WindowCenter=2000, WindowWidth=1000)
    image = read_image(path)
    expected = window_linear(pixels.astype(np.float64), 2000, 1000)
    np.testing.assert_allclose(image, expected, atol=1e-5)
    # above the window saturates, below is black: min-max scaling alone would give neither
    assert (image[pixels > 2600] == 1.0).all() and (image[pixels < 1400] == 0.0).all()
    assert not np.allclose(image, unit(pixels), atol=0.05)


def test_voi_window_in_rescaled_units(tmp_path):
    pixels = ramp(top=3000)
    # rescaled = 2 * stored - 1000, range -1000..5000; window 1500 +- 500 in rescaled units
    path = write_mg_dicom(tmp_path / "r.dcm", pixels, RescaleSlope=2, RescaleIntercept=-1000,
                          RescaleType="US", WindowCenter=1500, WindowWidth=1000)
    image = read_image(path)
    expected = window_linear(2.0 * pixels - 1000.0, 1500, 1000)
    np.testing.assert_allclose(image, expected, atol=1e-5)
    # applied to the stored values instead, the window would cover stored 1000..2000
    assert not np.allclose(image, window_linear(pixels.astype(np.float64), 1500, 1000),
                           atol=0.05)


def test_rescale_alone_does_not_change_the_normalised_image(tmp_path):
    pixels = breast_pixels(64, 64)
    a = read_image(write_mg_dicom(tmp_path / "a.dcm", pixels))
    b = read_image(write_mg_dicom(tmp_path / "b.dcm", pixels, RescaleSlope=2,
                                  RescaleIntercept=-100))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_first_of_several_windows_is_used(tmp_path):
    pixels = ramp(top=4000)
    path = write_mg_dicom(tmp_path / "w2.dcm", pixels, WindowCenter=[1000, 3000],
                          WindowWidth=[800, 400])
    np.testing.assert_allclose(read_image(path),
                               window_linear(pixels.astype(np.float64), 1000, 800), atol=1e-5)


def test_sigmoid_window(tmp_path):
    pixels = ramp(top=4000)
    path = write_mg_dicom(tmp_path / "s.dcm", pixels, WindowCenter=2000, WindowWidth=800,
                          VOILUTFunction="SIGMOID")
    image = read_image(path)
    sigmoid = 1.0 / (1.0 + np.exp(-4.0 * (pixels.astype(np.float64) - 2000) / 800))
    np.testing.assert_allclose(image, unit(sigmoid), atol=1e-5)


def test_voi_lut_sequence_is_applied_and_preferred_to_window(tmp_path):
    pixels = ramp(top=4095)
    lut = np.round(np.sqrt(np.arange(4096) / 4095.0) * 65535).astype(np.uint16)
    item = Dataset()
    item.add_new(0x00283002, "US", [4096, 0, 16])  # LUTDescriptor: entries, first value, bits
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    path = write_mg_dicom(tmp_path / "lut.dcm", pixels, VOILUTSequence=[item],
                          WindowCenter=500, WindowWidth=100)
    np.testing.assert_allclose(read_image(path), unit(lut[pixels]), atol=1e-5)


def test_png_and_other_formats(tmp_path):
    gray16 = (breast_image(50, 40) * 65535).round().astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    np.testing.assert_allclose(read_image(tmp_path / "g16.png"), unit(gray16), atol=1e-6)
    gray8 = (breast_image(50, 40) * 255).round().astype(np.uint8)
    Image.fromarray(gray8).save(tmp_path / "g8.tif")
    np.testing.assert_allclose(read_image(tmp_path / "g8.tif"), unit(gray8), atol=1e-6)
    # RGB is converted to one grey plane
    Image.fromarray(np.stack([gray8] * 3, axis=-1)).save(tmp_path / "rgb.png")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.png"), unit(gray8), atol=1e-6)


# --- decoding: what is refused -----------------------------------------------------------------

def reject(path, *fragments):
    with pytest.raises(ImageError) as err:
        read_image(path)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_rejects_empty_file(tmp_path):
    (tmp_path / "e.dcm").write_bytes(b"")
    reject(tmp_path / "e.dcm", "empty")


def test_rejects_text_named_dcm(tmp_path):
    (tmp_path / "t.dcm").write_text("patient,birads\nfoo,1\n" * 20)
    reject(tmp_path / "t.dcm", "not a readable DICOM")


def test_rejects_dicom_without_pixel_data(tmp_path):
    reject(write_mg_dicom(tmp_path / "n.dcm", None), "no pixel data")


def test_rejects_truncated_dicom(tmp_path):
    data = write_mg_dicom(tmp_path / "ok.dcm", breast_pixels(64, 64)).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    reject(tmp_path / "cut.dcm", "pixel data")


@pytest.mark.parametrize("modality", ["CT", "MR", "US"])
def test_rejects_other_modalities(tmp_path, modality):
    reject(write_mg_dicom(tmp_path / "x.dcm", breast_pixels(), modality=modality),
           f"Modality is {modality}", "mammogram")


def test_rejects_pydicom_ct_file():
    reject(get_testdata_file("CT_small.dcm"), "Modality is CT")


@pytest.mark.parametrize("modality", ["DX", "CR", "OT"])
def test_accepts_mammogram_modalities(tmp_path, modality):
    image = read_image(write_mg_dicom(tmp_path / "x.dcm", breast_pixels(), modality=modality))
    assert image.max() == pytest.approx(1.0) and image.min() == 0.0


def test_rejects_rgb_dicom():
    msg = reject(get_testdata_file("SC_rgb_rle.dcm"), "samples per pixel")
    assert "RGB" in msg and "MONOCHROME" in msg


def test_rejects_multiframe(tmp_path):
    frames = np.stack([breast_pixels(), breast_pixels()])
    reject(write_mg_dicom(tmp_path / "mf.dcm", frames), "2 frames")


def test_rejects_blank_image(tmp_path):
    reject(write_mg_dicom(tmp_path / "c.dcm", np.full((64, 64), 812, np.uint16)), "blank")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "black.png")
    reject(tmp_path / "black.png", "blank")


def test_rejects_broken_symlink(tmp_path):
    (tmp_path / "link.dcm").symlink_to(tmp_path / "gone.dcm")
    reject(tmp_path / "link.dcm", "does not exist", "symlink")
    reject(tmp_path / "never.dcm", "does not exist")


def test_rejects_unreadable_png(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    reject(tmp_path / "x.png", "not a readable image")


# --- breast mask, crop, chest wall left -------------------------------------------------------

def edge_means(out: np.ndarray) -> tuple[float, float]:
    band = out.shape[1] // 10
    return float(out[:, :band].mean()), float(out[:, -band:].mean())


def test_right_breast_is_flipped_to_the_left():
    img = breast_image(256, 256, side="R")
    out, info = preprocess_array(img, "R", 64)
    assert out.shape == (64, 64) and out.dtype == np.uint16
    left, right = edge_means(out)
    assert left > 10 * max(right, 1.0) and left > 0.5 * 65535
    assert info["flipped"] is True and info["laterality_from"] == "metadata"
    assert info["chest_wall_seen"] == "R"
    assert (info["orig_height"], info["orig_width"]) == (256, 256)


def test_chest_wall_side_from_content_when_laterality_unknown():
    img = breast_image(256, 256, side="R")
    by_metadata, _ = preprocess_array(img, "R", 64)
    for lat in (None, "", "U"):
        out, info = preprocess_array(img, lat, 64)
        assert info["laterality_from"] == "image" and info["flipped"] is True
        left, right = edge_means(out)
        assert left > 10 * max(right, 1.0)
        np.testing.assert_array_equal(out, by_metadata)


def test_left_breast_is_not_flipped_and_mirrors_the_right_one():
    # 512x384 -> block factor 2, even sizes so the mirror image has the mirrored small mask
    right = breast_image(512, 384, side="R")
    left = np.ascontiguousarray(right[:, ::-1])
    out_l, info_l = preprocess_array(left, "L", 64)
    out_r, info_r = preprocess_array(right, "R", 64)
    assert info_l["flipped"] is False and info_r["flipped"] is True
    assert info_l["chest_wall_seen"] == "L"
    a, b = edge_means(out_l)
    assert a > 10 * max(b, 1.0)
    np.testing.assert_array_equal(out_l, out_r)
    out_none, info_none = preprocess_array(left, None, 64)
    assert info_none["flipped"] is False
    np.testing.assert_array_equal(out_none, out_l)


def test_orientation_metadata_keeps_a_wrong_laterality_and_image_overrides_it():
    """The breast meets the right edge but the metadata says L (a left breast, chest wall left)."""
    img = breast_image(256, 256, side="R")
    kept, info = preprocess_array(img, "L", 64)  # orientation "metadata", the default
    assert info["flipped"] is False and info["laterality_from"] == "metadata"
    assert info["chest_wall_seen"] == "R"  # the side in the image as given
    # not flipped: the crop is placed at the left as always, so the chest wall (the breast's
    # brightest column) faces right, in the middle of the frame, with black padding beyond it
    width = int(np.nonzero(kept.any(axis=0))[0][-1]) + 1
    assert 32 < width < 64 and not kept[:, width:].any()
    profile = kept[:, :width].mean(axis=0)
    assert profile[-3:].mean() > 4 * profile[:3].mean()

    out, info = preprocess_array(img, "L", 64, orientation="image")
    assert info["flipped"] is True and info["laterality_from"] == "image"
    assert info["chest_wall_seen"] == "R"
    left, right = edge_means(out)
    assert left > 10 * max(right, 1.0)
    np.testing.assert_array_equal(out, preprocess_array(img, "R", 64)[0])
    np.testing.assert_array_equal(kept[:, :width], out[:, :width][:, ::-1])  # mirror images
    # where metadata and image agree, "image" changes nothing but the record of the source
    same, info = preprocess_array(img, "R", 64, orientation="image")
    assert info["laterality_from"] == "image"
    np.testing.assert_array_equal(same, out)


@pytest.mark.parametrize("orientation", ["metadata", "image"])
def test_preprocess_table_counts_laterality_disagreements(tmp_path, caplog, orientation):
    import logging

    import pandas as pd

    from mammosynth.datasets import INGEST_COLUMNS
    from mammosynth.imaging.pipeline import laterality_disagreements, preprocess_table

    data = tmp_path / "data"
    data.mkdir()
    # (image_id, side the breast meets, metadata laterality)
    cases = [("agree_r", "R", "R"), ("agree_l", "L", "L"), ("wrong", "R", "L"),
             ("unknown", "R", "")]
    rows = []
    for image_id, side, lat in cases:
        write_png(data / f"{image_id}.png", breast_image(96, 80, side=side))
        rows.append(dict.fromkeys(INGEST_COLUMNS, "") | {
            "image_id": image_id, "patient_id": "p", "status": "ok",
            "source": f"{image_id}.png", "laterality": lat})
    with caplog.at_level(logging.INFO, logger="mammosynth.imaging.pipeline"):
        manifest = preprocess_table(pd.DataFrame(rows), {"": data}, tmp_path / "out", size=32,
                                    orientation=orientation)
    assert (manifest["status"] == "ok").all()
    by_id = manifest.set_index("image_id")
    assert by_id.loc["wrong", "chest_wall_seen"] == "R"
    assert bool(by_id.loc["wrong", "flipped"]) is (orientation == "image")
    assert by_id.loc["unknown", "laterality_from"] == "image"
    counts = laterality_disagreements(manifest)
    assert counts == {"checked": 3, "disagree": 1, "examples": ["wrong"]}
    # the same from the manifest as written and read back (strings)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    again = pd.read_csv(tmp_path / "manifest.csv", dtype=str, keep_default_na=False)
    assert laterality_disagreements(again) == counts
    assert (f"laterality: 1 of 3 images with a metadata side disagree with the image "
            f"(orientation: {orientation})") in caplog.text


def test_laterality_disagreements_counts_only_ok_images_with_both_sides():
    import pandas as pd

    from mammosynth.errors import UserError
    from mammosynth.imaging.pipeline import laterality_disagreements

    rows = [("a", "ok", "L", "L"), ("b", "ok", "R", "R"),  # agree
            ("c", "ok", "L", "R"), ("d", "ok", "R", "L"),  # disagree, either way round
            ("e", "ok", "", "R"), ("f", "ok", "U", "L"),  # no metadata side
            ("g", "rejected", "L", ""), ("h", "rejected", "R", "L")]  # not ok
    rows += [(f"x{k:02d}", "ok", "L", "R") for k in range(12)]  # more than 10 disagreements
    frame = pd.DataFrame(rows, columns=["image_id", "status", "laterality", "chest_wall_seen"])
    counts = laterality_disagreements(frame)
    assert counts["checked"] == 4 + 12 and counts["disagree"] == 2 + 12
    assert counts["examples"] == ["c", "d"] + [f"x{k:02d}" for k in range(8)]
    assert laterality_disagreements(frame.iloc[:8]) == {"checked": 4, "disagree": 2,
                                                        "examples": ["c", "d"]}
    assert laterality_disagreements(frame.iloc[4:8])["checked"] == 0
    with pytest.raises(UserError, match="chest_wall_seen"):
        laterality_disagreements(frame.drop(columns="chest_wall_seen"))


def test_output_is_the_breast_cropped_and_scaled():
    img = breast_image(256, 256, side="L")
    out, _ = preprocess_array(img, "L", 64)
    # the breast fills the height (it is taller than wide) and is scaled to [0, 65535] as given
    rows = np.nonzero(out.any(axis=1))[0]
    assert rows[0] <= 1 and rows[-1] >= 62
    assert out.max() >= int(0.9 * 65535) and out.max() <= int(0.95 * 65535) + 1
    # background outside the breast is exactly 0
    assert out[0, -1] == 0 and out[-1, -1] == 0


def test_marker_far_from_breast_is_removed():
    img = breast_image(256, 256, side="R")
    marked = img.copy()
    marked[2:22, 4:30] = 0.97  # a burned-in label in the corner, outside the breast's box
    clean_out, _ = preprocess_array(img, "R", 64)
    out, _ = preprocess_array(marked, "R", 64)
    # kept, the marker would enlarge the crop box and change the whole output
    np.testing.assert_array_equal(out, clean_out)


def test_marker_inside_the_crop_box_is_zeroed():
    img = breast_image(256, 256, side="R")
    marked = img.copy()
    # top-left corner of the breast's bounding box, but outside the ellipse
    marked[30:42, 80:92] = 0.97
    y, x = np.mgrid[30:42, 80:92]
    assert (((x - 255) / (0.7 * 256)) ** 2 + ((y - 128) / (0.4 * 256)) ** 2 > 1.2).all()
    clean_out, _ = preprocess_array(img, "R", 64)
    out, _ = preprocess_array(marked, "R", 64)
    np.testing.assert_array_equal(out, clean_out)


def test_mask_excludes_a_grey_background():
    # A scanned-film-like frame, already as read_image delivers it (min 0, max 1): a black
    # scanner border (0), a grey film background (0.05 with slight noise) and the breast (>= 0.55)
    # touching the right edge. The mask must be the breast, so the background is zeroed in the
    # output. BUG (see report): otsu() returns the first bin of the flat stretch of between-class
    # variance (the top of the background mode); half of that lies inside the background mode,
    # so the mask becomes the whole frame and nothing is cropped or masked.
    from mammosynth.imaging.breast import breast_mask

    rng = np.random.default_rng(0)
    img = breast_image(256, 256, side="R", background=0.05)
    img = np.clip(img + rng.normal(0.0, 0.005, img.shape), 0.0, 1.0)
    img[:, :3] = 0.0  # scanner border
    img = (img - img.min()) / (img.max() - img.min())  # what read_image would do (no-op here)
    truth = breast_image(256, 256, side="R") > 0
    mask = breast_mask(img)
    assert (mask != truth).mean() < 0.02, f"mask covers {mask.mean():.0%} of the frame"
    out, info = preprocess_array(img, None, 64)
    assert info["chest_wall_seen"] == "R"
    assert out[0, -1] == 0 and out[-1, -1] == 0


def test_blank_array_has_no_breast():
    with pytest.raises(ImageError, match="no breast"):
        preprocess_array(np.zeros((64, 64), np.float32), None, 32)


def test_large_image_block_averaged_mask():
    img = breast_image(1024, 832, side="R")  # INbreast-like aspect, factor 4
    out, info = preprocess_array(img, None, 128)
    assert out.shape == (128, 128) and info["flipped"] is True
    left, right = edge_means(out)
    assert left > 10 * max(right, 1.0)


# --- PNG ---------------------------------------------------------------------------------------

def test_png_roundtrip_is_exact_16_bit(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, size=(37, 53), dtype=np.uint16)
    arr[0, 0], arr[0, 1] = 0, 65535
    path = tmp_path / "x.png"
    write_png(path, arr)
    with Image.open(path) as im:
        assert im.mode == "I;16" and im.size == (53, 37)
        np.testing.assert_array_equal(np.asarray(im), arr)
    back = read_png(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(np.round(back.astype(np.float64) * 65535).astype(np.uint16),
                                  arr)
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed away


def test_png_float_input_and_8_bit_read(tmp_path):
    write_png(tmp_path / "f.png", np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32))
    with Image.open(tmp_path / "f.png") as im:
        assert im.mode == "I;16"
        assert np.asarray(im).tolist() == [[0, 32768, 65535, 65535]]
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "g8.png")
    np.testing.assert_allclose(read_png(tmp_path / "g8.png"), [[0.0, 1.0]])


# --- reduced-resolution JPEG 2000 decoding -----------------------------------------------------

def j2k_mammogram(path: Path, height: int = 256, width: int = 192, bits: int = 12,
                  syntax=JPEG2000Lossless, **tags) -> Path:
    """A noisy breast phantom, `bits` stored, compressed as `syntax` (JPEG 2000 by default)."""
    rng = np.random.default_rng(height + width)
    top = 2 ** bits - 1
    pixels = breast_image(height, width, "R") * (top - 200) + rng.normal(0, 20, (height, width))
    plain = write_mg_dicom(path, np.clip(pixels + 100, 0, top).round().astype(np.uint16), **tags)
    ds = pydicom.dcmread(plain)
    ds.BitsStored, ds.HighBit = bits, bits - 1
    if syntax is not None:
        ds.compress(syntax, **({"j2k_cr": [20]} if syntax == JPEG2000 else {}))
    ds.save_as(path, enforce_file_format=True)
    return path


def block_mean(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    f = image.shape[0] // shape[0]
    return image[:shape[0] * f, :shape[1] * f].reshape(shape[0], f, shape[1], f).mean(axis=(1, 3))


def test_reduce_levels_keeps_twice_the_target_on_the_short_side():
    assert reduce_levels(3328, 2560, 256) == 2  # 832 x 640: 640 >= 512, 320 would not be
    assert reduce_levels(4096, 3328, 256) == 2  # 1024 x 832
    assert reduce_levels(5355, 4915, 256) == 3  # 670 x 615
    assert reduce_levels(3328, 2560, 64) == 4  # 208 x 160
    assert reduce_levels(3328, 2560, 64, levels=3) == 3  # no more than the codestream holds
    assert reduce_levels(3328, 2560, 2000) == 0 and reduce_levels(3328, 2560, None) == 0
    assert reduce_levels(2049, 2049, 512) == 1  # sides round up: 1025 >= 1024


def test_j2k_header_of_a_pydicom_codestream(tmp_path):
    from pydicom.encaps import get_frame

    ds = pydicom.dcmread(j2k_mammogram(tmp_path / "j.dcm"))
    assert j2k_header(get_frame(ds.PixelData, 0, number_of_frames=1)) == (12, False, 5)
    assert j2k_header(b"\x00" * 64) is None


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEG2000])
@pytest.mark.parametrize("target,shape", [(32, (128, 96)), (16, (64, 48))])
def test_reduced_j2k_decode_is_the_full_decode_downsampled(tmp_path, syntax, target, shape):
    path = j2k_mammogram(tmp_path / "j.dcm", syntax=syntax)
    full, (small, stored) = read_image(path), load_image(path, target)
    assert full.shape == stored == (256, 192) and small.shape == shape
    assert min(shape) >= 2 * target
    assert small.dtype == np.float32 and small.min() == 0.0 and small.max() == pytest.approx(1.0)
    shrunk = block_mean(full, shape)
    assert np.corrcoef(shrunk.ravel(), small.ravel())[0, 1] > 0.99
    assert np.abs(shrunk - small).mean() < 0.02
    # preprocessed, the two are the same picture
    a, b = (preprocess_array(x, "R", target)[0].astype(np.float64) for x in (full, small))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_reduced_decode_applies_rescale_window_and_monochrome1(tmp_path):
    tags = dict(RescaleSlope=2, RescaleIntercept=-1000, RescaleType="US",
                WindowCenter=[3000, 100], WindowWidth=[6000, 50], VOILUTFunction="SIGMOID",
                photometric="MONOCHROME1")
    path = j2k_mammogram(tmp_path / "w.dcm", **tags)
    full, small = read_image(path), read_image(path, target=16)
    assert small.shape == (64, 48)
    assert np.corrcoef(block_mean(full, (64, 48)).ravel(), small.ravel())[0, 1] > 0.99
    # the stored breast is bright; MONOCHROME1 makes it dark
    inside = breast_image(64, 48, "R") > 0.5
    assert small[inside].mean() < small[~inside].mean()


def test_reduced_decode_of_signed_j2k():
    # pydicom's MR_small_jp2klossless: signed 16-bit (PixelRepresentation 1), relabelled MG
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    ds.Modality = "MG"
    small = reduced_j2k(ds, 16)
    full = ds.pixel_array
    assert small.dtype == full.dtype == np.int16 and small.shape == (32, 32)
    assert abs(small.mean() - full.mean()) < 0.02 * (full.max() - full.min())
    assert np.corrcoef(block_mean(full, (32, 32)).ravel(), small.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("syntax", [None, RLELossless])
def test_reduced_decode_is_for_jpeg2000_only(tmp_path, syntax):
    path = j2k_mammogram(tmp_path / "p.dcm", syntax=syntax)
    np.testing.assert_array_equal(read_image(path, target=16), read_image(path))
    rle = resave(get_testdata_file("MR_small_RLE.dcm"), tmp_path / "rle.dcm", Modality="MG")
    np.testing.assert_array_equal(read_image(rle, target=8), read_image(rle))
    png = tmp_path / "g16.png"
    Image.fromarray((breast_image(256, 192) * 65535).round().astype(np.uint16)).save(png)
    np.testing.assert_array_equal(read_image(png, target=16), read_image(png))


def test_reduced_decode_falls_back_to_a_full_decode(tmp_path, monkeypatch):
    path = j2k_mammogram(tmp_path / "j.dcm")
    full = read_image(path)

    def broken(*args, **kwargs):
        raise OSError("decoder broke")

    monkeypatch.setattr("mammosynth.imaging.decode.Image.open", broken)
    np.testing.assert_array_equal(read_image(path, target=16), full)
    monkeypatch.undo()
    # a target too large to discard anything: a full decode
    np.testing.assert_array_equal(read_image(path, target=128), full)


def test_preprocess_table_decodes_j2k_reduced_and_records_the_stored_size(tmp_path):
    import pandas as pd

    from mammosynth.datasets import INGEST_COLUMNS
    from mammosynth.imaging.pipeline import preprocess_table

    j2k_mammogram(tmp_path / "data/j.dcm")
    row = dict.fromkeys(INGEST_COLUMNS, "") | {"image_id": "j", "status": "ok",
                                               "source": "j.dcm", "laterality": "R"}
    manifest = preprocess_table(pd.DataFrame([row]), {"": tmp_path / "data"}, tmp_path / "out",
                                size=32)
    rec = manifest.iloc[0]
    assert rec["status"] == "ok" and (rec["orig_height"], rec["orig_width"]) == (256, 192)
    reduced = preprocess_array(read_image(tmp_path / "data/j.dcm", target=32), "R", 32)[0]
    np.testing.assert_array_equal(read_png(rec["image_path"]),
                                  reduced.astype(np.float32) / np.float32(65535))


def test_for_processing_dicom_is_refused(tmp_path):
    from conftest import breast_pixels, write_mg_dicom

    path = write_mg_dicom(tmp_path / "raw.dcm", breast_pixels(),
                          PresentationIntentType="FOR PROCESSING")
    with pytest.raises(ImageError, match="FOR PROCESSING"):
        read_image(path)
    ok = write_mg_dicom(tmp_path / "shown.dcm", breast_pixels(),
                        PresentationIntentType="FOR PRESENTATION")
    assert read_image(ok).shape == (64, 64)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_pixel_padding_becomes_background(tmp_path, photometric):
    """Padding (here 65535, outside the detector) must not stretch the scale or show as tissue."""
    from conftest import write_mg_dicom

    pixels = np.full((64, 64), 1000, dtype=np.uint16)
    pixels[:, :32] = 3000  # tissue (MONOCHROME2: bright) vs background
    pixels[:8, :] = 65535  # padding
    if photometric == "MONOCHROME1":
        pixels[8:] = 4000 - pixels[8:]  # tissue 1000 (bright once inverted), background 3000
    path = write_mg_dicom(tmp_path / f"{photometric}.dcm", pixels, photometric=photometric,
                          PixelPaddingValue=65535)
    image = read_image(path)
    assert image[8:, :32].min() == pytest.approx(1.0)  # tissue spans the full range
    assert image[8:, 32:].max() == pytest.approx(0.0)  # background black
    assert image[:8].max() == pytest.approx(0.0)  # padding black too
