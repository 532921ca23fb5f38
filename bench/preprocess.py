"""Preprocessing speed at INbreast resolution: mammosynth's path vs a naive pydicom + PIL resize.

Writes a few 3328x4084 16-bit MONOCHROME2 DICOMs (a breast-like phantom), then times, in the same
run and on one core: (a) mammosynth.imaging (decode, mask, crop, flip, anti-aliased resize to 256)
and (b) the naive way: pydicom pixel_array -> PIL float image -> full-resolution LANCZOS resize to
256x256, no crop. Prints JSON.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from mammosynth.datasets.phantom import write_phantom
from mammosynth.imaging import preprocess_array, read_image

N, SIZE = 8, 256


def naive(path: Path) -> np.ndarray:
    pixels = pydicom.dcmread(path).pixel_array.astype(np.float32)
    return np.asarray(Image.fromarray(pixels).resize((SIZE, SIZE),
                                                               Image.Resampling.LANCZOS))


def ours(path: Path) -> np.ndarray:
    return preprocess_array(read_image(path), None, SIZE)[0]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        table = write_phantom(Path(tmp) / "inbreast", patients=2, height=4084, width=3328)
        paths = [Path(tmp) / "inbreast" / p for p in table["path"]][:N]
        result = {"images": len(paths), "shape": [4084, 3328], "bits": 16, "size": SIZE}
        for name, fn in (("mammosynth", ours), ("naive_pydicom_pil", naive)):
            fn(paths[0])  # warm-up
            start = time.perf_counter()
            for path in paths:
                fn(path)
            seconds = time.perf_counter() - start
            result[f"{name}_images_per_s"] = round(len(paths) / seconds, 2)
        result["speedup"] = round(result["mammosynth_images_per_s"]
                                  / result["naive_pydicom_pil_images_per_s"], 2)
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
