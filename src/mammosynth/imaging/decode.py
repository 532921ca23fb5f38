"""Read a mammogram file into a float32 array in [0, 1], brighter = denser, whatever its format.

DICOM: pydicom with the pylibjpeg plugins (JPEG, JPEG-LS, JPEG 2000, RLE), modality LUT (rescale),
VOI LUT or window (LINEAR, LINEAR_EXACT, SIGMOID; the first of several), MONOCHROME1 inverted,
PixelPaddingValue pixels set to background, FOR PROCESSING images refused,
then scaled by the values actually present (INbreast stores 16 bits but reaches ~3000, and has no
window). Other formats (PNG, JPEG, TIFF, PGM) through Pillow. Anything that is not a usable
grayscale mammogram raises ImageError with the reason in words (one line), including sizes no
mammogram has: more than MAX_PIXELS (refused from the header, before decoding) or under MIN_SIDE.

Reduced-resolution decoding: given a `target` (the preprocessed size), a JPEG 2000 DICOM (RSNA's
1.2.840.10008.1.2.4.90, or .91) is decoded with resolution levels discarded, which skips most of
the work (a 3328 x 2560 12-bit lossless image at 256 px: decoded at 832 x 640, ~15x faster to
decode and preprocess; bench/preprocess.py). The wavelet's low-pass band is the image at 1/2**r
of its size, so the result is close to a full decode downsampled.
reduce_levels picks r so that the short side keeps at least REDUCE_MARGIN x target pixels (the
breast crop is only part of the image, and the final anti-aliased resize must still have pixels
to average). pylibjpeg-openjpeg (pydicom's decoder) has no option for it, so this goes through
Pillow's OpenJPEG decoder (its `reduce`); the modality LUT, window/VOI LUT and MONOCHROME1 steps
are then the same as for a full decode. Any other transfer syntax, a signed/unsigned mismatch
between the DICOM and the codestream, or any failure of the reduced path: a full decode, as
without a target.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from mammosynth.errors import ImageError

# The file suffixes (lower case) that are inputs, defined here once for every adapter that looks
# for images: plain images go through Pillow, DICOMs through pydicom (so does a plain-image name
# holding a DICOM, or a file with any other suffix: see load_image).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".pgm", ".bmp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
INPUT_SUFFIXES = IMAGE_SUFFIXES | DICOM_SUFFIXES
# Modalities that can hold a mammogram (MG; older exports DX/CR; secondary captures OT).
MODALITIES = {"MG", "DX", "CR", "OT", ""}
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Refused from the header, before decoding: a corrupt header must not make us allocate gigabytes
# (the largest mammograms, e.g. 5928 x 4728, have ~30 million pixels).
MAX_PIXELS = 100_000_000
MIN_SIDE = 16  # no mammogram is smaller: a tiny input is an icon, a thumbnail or a mistake
# JPEG 2000 Image Compression (Lossless Only) and JPEG 2000 Image Compression: reduced decoding
J2K_SYNTAXES = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
REDUCE_MARGIN = 2  # a reduced decode keeps the short side >= REDUCE_MARGIN x target

log = logging.getLogger(__name__)


def read_image(path: str | Path, target: int | None = None) -> np.ndarray:
    """The image as float32 [0, 1]. With `target` (the size it will be shrunk to), a JPEG 2000
    DICOM may come out smaller than stored (see the module docstring); None: full size."""
    return load_image(path, target)[0]


def load_image(path: str | Path, target: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """read_image, and the image's stored size (rows, columns), which a reduced decode hides."""
    path = Path(path)
    if not path.exists():
        raise ImageError("file does not exist" + (" (broken symlink)" if path.is_symlink() else ""))
    if path.stat().st_size == 0:
        raise ImageError("file is empty (0 bytes)")
    if path.suffix.lower() in IMAGE_SUFFIXES and not _has_dicom_preamble(path):
        image = read_other(path)
        return image, image.shape
    # .dcm, .dicom, none, or a UID such as 1.2.840.113619.2.55.3.6046
    return read_dicom(path, target)


def _has_dicom_preamble(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(132)[128:] == b"DICM"


def read_dicom(path: Path, target: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
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
    if str(ds.get("PresentationIntentType", "")).upper() == "FOR PROCESSING":
        raise ImageError("DICOM is FOR PROCESSING (raw detector data, not meant for reading); "
                         "use the FOR PRESENTATION image of this view")
    frames = _number(ds, "NumberOfFrames", 1)
    if frames > 1:
        raise ImageError(f"DICOM has {frames} frames; expected one image")
    stored = _number(ds, "Rows", 0), _number(ds, "Columns", 0)
    _refuse_huge(*stored)
    pixels = reduced_j2k(ds, target) if target else None
    if pixels is None:
        try:
            pixels = ds.pixel_array
            stored = pixels.shape[:2]
        except Exception as e:
            syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
            name = getattr(syntax, "name", str(syntax))
            raise ImageError(f"cannot decode pixel data ({name}): "
                             f"{_said(e, with_type=False)}") from e
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
    invert = photometric == "MONOCHROME1"
    pad = _padding(ds, pixels)
    if pad is not None:  # padding (outside the detector) becomes background, not a grey level
        image = np.array(image, dtype=np.float32)
        image[pad] = image[~pad].max() if invert else image[~pad].min()
    return _unit_range(image, invert=invert), stored


def _padding(ds, pixels: np.ndarray) -> np.ndarray | None:
    """Stored pixels equal to PixelPaddingValue (or in the range up to PixelPaddingRangeLimit),
    or None when there is no padding (or nothing but padding)."""
    if "PixelPaddingValue" not in ds:
        return None
    try:
        a = int(ds.PixelPaddingValue)
        b = int(ds.get("PixelPaddingRangeLimit", a))
    except (TypeError, ValueError):
        return None  # malformed tag: ignore it rather than reject the image
    pad = (pixels >= min(a, b)) & (pixels <= max(a, b))
    return pad if pad.any() and not pad.all() else None


def reduce_levels(rows: int, columns: int, target: int | None, levels: int = 32) -> int:
    """How many resolution levels a JPEG 2000 decode may discard for a `target`-pixel output:
    the most (up to `levels`, the codestream's wavelet decompositions) that keep the short side
    at least REDUCE_MARGIN x target. Each level halves both sides (rounding up)."""
    if not target:
        return 0
    short, r = min(rows, columns), 0
    while r < levels and -(-short // 2 ** (r + 1)) >= REDUCE_MARGIN * target:
        r += 1
    return r


def j2k_header(code: bytes) -> tuple[int, bool, int] | None:
    """(precision, signed, decomposition levels) from the main header of a one-component JPEG
    2000 codestream (ISO 15444-1 A.5.1 SIZ, A.6.1 COD, A.6.2 COC); None if it is not one."""
    if code[:4] != b"\xff\x4f\xff\x51":  # SOC, then SIZ
        return None
    precision = signed = levels = None
    pos = 2
    while pos + 4 <= len(code):
        marker, length = struct.unpack(">HH", code[pos:pos + 4])
        segment = code[pos + 4:pos + 2 + length]
        if marker == 0xFF51:  # SIZ: Rsiz, 8 sizes/offsets, Csiz, then Ssiz per component
            if length < 41 or struct.unpack(">H", segment[34:36])[0] != 1:
                return None
            precision, signed = (segment[36] & 0x7F) + 1, bool(segment[36] & 0x80)
        elif marker == 0xFF52 and len(segment) > 5:  # COD: Scod, SGcod (4), SPcod: levels first
            levels = segment[5] if levels is None else min(levels, segment[5])
        elif marker == 0xFF53 and len(segment) > 2:  # COC (one component): Ccoc, Scoc, levels
            levels = segment[2] if levels is None else min(levels, segment[2])
        elif marker == 0xFF90:  # SOT: the main header is over
            break
        pos += 2 + length
    if precision is None or levels is None:
        return None
    return precision, signed, levels


def reduced_j2k(ds, target: int) -> np.ndarray | None:
    """The stored values of a JPEG 2000 DICOM decoded at reduced resolution for `target`, or
    None where a full decode is needed (another syntax, nothing to discard, anything unusual)."""
    if str(ds.file_meta.get("TransferSyntaxUID", "")) not in J2K_SYNTAXES:
        return None
    rows, columns = _number(ds, "Rows", 0), _number(ds, "Columns", 0)
    if reduce_levels(rows, columns, target) == 0:
        return None
    try:
        frame = get_frame(ds.PixelData, 0, number_of_frames=1)
        header = j2k_header(frame)
        if header is None:
            return None
        precision, signed, levels = header
        r = reduce_levels(rows, columns, target, levels)
        if r == 0 or precision > 16 or signed != (_number(ds, "PixelRepresentation", 0) == 1):
            return None  # a sign mismatch pydicom corrects: leave it to the full decode
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS rules
            with Image.open(io.BytesIO(frame), formats=["JPEG2000"]) as im:
                im.reduce = r
                im.load()
                data = np.asarray(im)
    except Exception as e:  # the full decode will decode it or say why it cannot
        log.debug("%s: reduced JPEG 2000 decode failed (%s); decoding in full",
                  getattr(ds, "filename", "DICOM"), _said(e))
        return None
    shift = 8 * data.itemsize - precision
    if (data.shape != (-(-rows // 2 ** r), -(-columns // 2 ** r))
            or data.dtype not in (np.uint8, np.uint16) or shift < 0):
        return None
    # Pillow stores samples offset to unsigned and shifted up to fill its 8 or 16 bits
    values = (data >> shift).astype(np.int32)
    if signed:
        values -= 1 << (precision - 1)
    bits = _number(ds, "BitsAllocated", 16)
    return values.astype(f"{'i' if signed else 'u'}{max(1, min(bits, 32) // 8)}")


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
