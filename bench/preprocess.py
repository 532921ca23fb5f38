"""Preprocessing speed: mammosynth's path vs a naive pydicom + PIL resize, and per file format.

1. INbreast resolution: writes a few 3328x4084 16-bit MONOCHROME2 DICOMs (a breast-like
   phantom), then times, in the same run and in one process: (a) mammosynth.imaging (decode,
   mask, crop, flip, anti-aliased resize to 256) and (b) the naive way: pydicom pixel_array ->
   PIL float image -> full-resolution LANCZOS resize to 256x256, no crop.
2. Per format, at RSNA resolution: two 3328x2560 phantom images stored 12-bit (as most RSNA
   images) and written as uncompressed DICOM, JPEG 2000 lossless (RSNA's 1.2.840.10008.1.2.4.90;
   timed with a full decode and with the reduced-resolution decode that preprocessing uses at
   256), RLE Lossless, JPEG Lossless (RSNA's 1.2.840.10008.1.2.4.70; written by the test suite's
   encoder, tests/test_dataset_rsna.py), 16-bit PNG and 8-bit JPEG; each timed as read_image +
   preprocess_array to 256. Prints JSON (images/s = 1 / median seconds per image; file size in
   MB).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, RLELossless

from mammosynth.datasets.phantom import write_phantom
from mammosynth.imaging import preprocess_array, read_image
from mammosynth.imaging.decode import reduce_levels

N, SIZE = 8, 256
RSNA_SHAPE, REPEATS = (3328, 2560), 3  # per format: 2 images x 3 reads


def naive(path: Path) -> np.ndarray:
    pixels = pydicom.dcmread(path).pixel_array.astype(np.float32)
    return np.asarray(Image.fromarray(pixels).resize((SIZE, SIZE),
                                                               Image.Resampling.LANCZOS))


def ours(path: Path) -> np.ndarray:
    return preprocess_array(read_image(path, target=SIZE), None, SIZE)[0]


def ours_full_decode(path: Path) -> np.ndarray:
    return preprocess_array(read_image(path), None, SIZE)[0]


def images_per_s(fn, paths: list[Path], repeats: int = 1) -> float:
    """1 / the median seconds per image (robust to a busy neighbour on a shared machine)."""
    fn(paths[0])  # warm-up
    seconds = []
    for _ in range(repeats):
        for path in paths:
            start = time.perf_counter()
            fn(path)
            seconds.append(time.perf_counter() - start)
    return round(1.0 / float(np.median(seconds)), 2)


def write_formats(src: list[Path], out: Path) -> dict[str, list[Path]]:
    """The phantom DICOMs (values < 4096) rewritten as 12-bit RSNA-like files in each format."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_dataset_rsna import rsna_dicom  # JPEG Lossless: pydicom has no encoder

    files: dict[str, list[Path]] = {}
    for i, path in enumerate(src):
        pixels = pydicom.dcmread(path).pixel_array
        assert pixels.max() < 4096
        for name, syntax in (("dicom_uncompressed", ExplicitVRLittleEndian),
                             ("jpeg2000_lossless", JPEG2000Lossless),
                             ("rle_lossless", RLELossless), ("jpeg_lossless", JPEGLosslessSV1)):
            dst = out / f"{name}{i}.dcm"
            if syntax == RLELossless:
                ds = pydicom.dcmread(rsna_dicom(dst, pixels, ExplicitVRLittleEndian))
                ds.compress(RLELossless)
                ds.save_as(dst, enforce_file_format=True)
            else:
                rsna_dicom(dst, pixels, syntax)
            files.setdefault(name, []).append(dst)
        png, jpeg = out / f"png16_{i}.png", out / f"jpeg8_{i}.jpg"
        Image.fromarray((pixels.astype(np.uint32) * 16).astype(np.uint16)).save(png)
        Image.fromarray((pixels >> 4).astype(np.uint8)).save(jpeg, quality=95)
        files.setdefault("png_16bit", []).append(png)
        files.setdefault("jpeg_8bit", []).append(jpeg)
    return files


def per_format(tmp: Path) -> dict:
    table = write_phantom(tmp / "rsna", patients=1, height=RSNA_SHAPE[0], width=RSNA_SHAPE[1])
    src = [tmp / "rsna" / p for p in table["path"]][:2]
    files = write_formats(src, tmp)
    r = reduce_levels(*RSNA_SHAPE, SIZE)
    result = {"shape": list(RSNA_SHAPE), "bits": 12, "size": SIZE,
              "reads": REPEATS * len(src),
              "jpeg2000_reduced_shape": [-(-n // 2 ** r) for n in RSNA_SHAPE], "formats": {}}
    runs = [("dicom_uncompressed", ours, "dicom_uncompressed"),
            ("jpeg2000_full", ours_full_decode, "jpeg2000_lossless"),
            ("jpeg2000_reduced", ours, "jpeg2000_lossless"),
            ("rle_lossless", ours, "rle_lossless"), ("jpeg_lossless", ours, "jpeg_lossless"),
            ("png_16bit", ours, "png_16bit"), ("jpeg_8bit", ours, "jpeg_8bit")]
    for name, fn, kind in runs:
        result["formats"][name] = {
            "images_per_s": images_per_s(fn, files[kind], REPEATS),
            "file_mb": round(np.mean([p.stat().st_size for p in files[kind]]) / 1e6, 2)}
    formats = result["formats"]
    result["jpeg2000_reduced_speedup"] = round(formats["jpeg2000_reduced"]["images_per_s"]
                                               / formats["jpeg2000_full"]["images_per_s"], 2)
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table = write_phantom(Path(tmp) / "inbreast", patients=2, height=4084, width=3328)
        paths = [Path(tmp) / "inbreast" / p for p in table["path"]][:N]
        result = {"images": len(paths), "shape": [4084, 3328], "bits": 16, "size": SIZE}
        for name, fn in (("mammosynth", ours), ("naive_pydicom_pil", naive)):
            result[f"{name}_images_per_s"] = images_per_s(fn, paths)
        result["speedup"] = round(result["mammosynth_images_per_s"]
                                  / result["naive_pydicom_pil_images_per_s"], 2)
        result["per_format"] = per_format(Path(tmp))
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
