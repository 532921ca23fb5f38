"""Read a mammogram file into a float32 array in [0, 1], brighter = denser, whatever its format.

DICOM: pydicom with the pylibjpeg plugins (JPEG, JPEG-LS, JPEG 2000, RLE), modality LUT (rescale),
VOI LUT or window (LINEAR, LINEAR_EXACT, SIGMOID; the first of several), MONOCHROME1 inverted,
then scaled by the values actually present (INbreast stores 16 bits but reaches ~3000, and has no
window). Other formats (PNG, JPEG, TIFF, PGM) through Pillow. Anything that is not a usable
grayscale mammogram raises ImageError with the reason in words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from mammosynth.errors import ImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp"}
# Modalities that can hold a mammogram (MG; older exports DX/CR; secondary captures OT).
MODALITIES = {"MG", "DX", "CR", "OT", ""}


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise ImageError("file does not exist" + (" (broken symlink)" if path.is_symlink() else ""))
    if path.stat().st_size == 0:
        raise ImageError("file is empty (0 bytes)")
    if path.suffix.lower() in IMAGE_SUFFIXES and not _has_dicom_preamble(path):
        return read_other(path)
    return read_dicom(path)  # .dcm, .dicom, none, or a UID such as 1.2.840.113619.2.55.3.6046


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def read_dicom(path: Path) -> np.ndarray:
    try:
        ds = pydicom.dcmread(path)
    except Exception as e:
        raise ImageError(f"not a readable DICOM file ({type(e).__name__}: {e})") from e
    if "PixelData" not in ds:
        raise ImageError("DICOM has no pixel data")
    modality = str(ds.get("Modality", "")).upper()
    if modality not in MODALITIES:
        raise ImageError(f"DICOM Modality is {modality}, not a mammogram (MG)")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if int(ds.get("SamplesPerPixel", 1)) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(f"DICOM is {photometric or 'not'} grayscale with "
                         f"{ds.get('SamplesPerPixel', 1)} samples per pixel; a mammogram is "
                         "MONOCHROME1/2")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise ImageError(f"DICOM has {ds.NumberOfFrames} frames; expected one image")
    try:
        pixels = ds.pixel_array
    except Exception as e:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        raise ImageError(f"cannot decode pixel data ({name}): {e}") from e
    rescaled = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    image = apply_modality_lut(pixels, ds) if rescaled else pixels
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        image = apply_voi_lut(image, ds, index=0)
    return _unit_range(image, invert=photometric == "MONOCHROME1")


def read_other(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                im = im.convert("L")
            image = np.asarray(im, dtype=np.float32)
    except Exception as e:
        raise ImageError(f"not a readable image ({type(e).__name__}: {e})") from e
    if image.ndim != 2:
        raise ImageError(f"image has shape {image.shape}; expected one grayscale plane")
    return _unit_range(image)


def _unit_range(image: np.ndarray, invert: bool = False) -> np.ndarray:
    """Scale by the values present to float32 [0, 1] (inverted for MONOCHROME1), in two passes."""
    if image.ndim != 2:
        raise ImageError(f"pixel array has shape {image.shape}; expected a 2-D image")
    lo, hi = float(image.min()), float(image.max())  # on the stored dtype: cheap for integers
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ImageError("pixel values are not finite")
    if hi <= lo:
        raise ImageError(f"image is blank (every pixel is {lo:g})")
    scale = np.float32(1.0 / (hi - lo))
    out = np.subtract(hi if invert else image, image if invert else lo, dtype=np.float32)
    out *= scale
    return out
