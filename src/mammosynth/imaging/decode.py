"""Read a mammogram file into a float32 array in [0, 1], brighter = denser, whatever its format.

DICOM: pydicom with the pylibjpeg plugins (JPEG, JPEG-LS, JPEG 2000, RLE), modality LUT (rescale),
VOI LUT or window (LINEAR, LINEAR_EXACT, SIGMOID; the first of several), MONOCHROME1 inverted,
then scaled by the values actually present (INbreast stores 16 bits but reaches ~3000, and has no
window). Other formats (PNG, JPEG, TIFF, PGM) through Pillow. Anything that is not a usable
grayscale mammogram raises ImageError with the reason in words (one line), including sizes no
mammogram has: more than MAX_PIXELS (refused from the header, before decoding) or under MIN_SIDE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from mammosynth.errors import ImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp"}
# Modalities that can hold a mammogram (MG; older exports DX/CR; secondary captures OT).
MODALITIES = {"MG", "DX", "CR", "OT", ""}
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Refused from the header, before decoding: a corrupt header must not make us allocate gigabytes
# (the largest mammograms, e.g. 5928 x 4728, have ~30 million pixels).
MAX_PIXELS = 100_000_000
MIN_SIDE = 16  # no mammogram is smaller: a tiny input is an icon, a thumbnail or a mistake


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
    except InvalidDicomError as e:
        raise ImageError("not a readable DICOM file (no DICOM header: the 'DICM' marker at byte "
                         "128 is missing)") from e
    except Exception as e:
        raise ImageError(f"not a readable DICOM file ({_said(e)})") from e
    if not any(keyword in ds for keyword in PIXEL_KEYWORDS):
        raise ImageError("DICOM has no pixel data")
    modality = str(ds.get("Modality", "")).upper()
    if modality not in MODALITIES:
        raise ImageError(f"DICOM Modality is {modality}, not a mammogram (MG)")
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    samples = _number(ds, "SamplesPerPixel", 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ImageError(f"DICOM is {photometric or 'untyped (no PhotometricInterpretation)'} with "
                         f"{samples} samples per pixel; a mammogram is grayscale (MONOCHROME1/2)")
    frames = _number(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise ImageError(f"DICOM has {frames} frames; expected one image")
    _refuse_huge(_number(ds, "Rows", 0), _number(ds, "Columns", 0))
    try:
        pixels = ds.pixel_array
    except Exception as e:
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(syntax, "name", str(syntax))
        raise ImageError(f"cannot decode pixel data ({name}): {_said(e, with_type=False)}") from e
    rescaled = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    try:
        image = apply_modality_lut(pixels, ds) if rescaled else pixels
    except Exception as e:
        raise ImageError("cannot apply the DICOM rescale (RescaleSlope, RescaleIntercept, "
                         f"ModalityLUTSequence): {_said(e)}") from e
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        try:
            image = apply_voi_lut(image, ds, index=0)
        except Exception as e:
            raise ImageError("cannot apply the DICOM window (WindowCenter, WindowWidth, "
                             f"VOILUTFunction, VOILUTSequence): {_said(e)}") from e
    return _unit_range(image, invert=photometric == "MONOCHROME1")


def read_other(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            _refuse_huge(im.height, im.width)
            im.load()
            if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
                im = im.convert("L")
            image = np.asarray(im, dtype=np.float32)
    except ImageError:
        raise
    except Exception as e:
        raise ImageError(f"not a readable image ({_said(e)})") from e
    if image.ndim != 2:
        raise ImageError(f"image has shape {image.shape}; expected one grayscale plane")
    return _unit_range(image)


def _said(e: Exception, with_type: bool = True) -> str:
    """An exception in one line (some decoders' messages span several)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if with_type else text


def _number(ds, keyword: str, default: int) -> int:
    value = ds.get(keyword, default)
    try:
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError):
        raise ImageError(f"DICOM {keyword} is {value!r}, not a whole number") from None


def _refuse_huge(height: int, width: int) -> None:
    if height * width > MAX_PIXELS:
        raise ImageError(f"image declares {height} x {width} pixels, more than "
                         f"{MAX_PIXELS:,} (no mammogram is that large); refused without decoding")


def _unit_range(image: np.ndarray, invert: bool = False) -> np.ndarray:
    """Scale by the values present to float32 [0, 1] (inverted for MONOCHROME1), in two passes."""
    if image.ndim != 2:
        raise ImageError(f"pixel array has shape {image.shape}; expected a 2-D image")
    if min(image.shape) < MIN_SIDE:
        raise ImageError(f"image is {image.shape[0]} x {image.shape[1]} pixels, too small for a "
                         f"mammogram (at least {MIN_SIDE} a side)")
    lo, hi = float(image.min()), float(image.max())  # on the stored dtype: cheap for integers
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise ImageError("pixel values are not finite")
    if hi <= lo:
        raise ImageError(f"image is blank (every pixel is {lo:g})")
    scale = np.float32(1.0 / (hi - lo))
    out = np.subtract(hi if invert else image, image if invert else lo, dtype=np.float32)
    out *= scale
    return out
