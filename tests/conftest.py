"""Shared test helpers: the real INbreast metadata file (fixture), and writers for small real
DICOMs / breast-like images (plain functions: `from conftest import write_mg_dicom`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mammosynth  # noqa: F401  installs the torchvision import fix before a test imports timm

# The repository is <x>/main and the shared folder <x>/shared (CI clones shared/ beside the repo).
INBREAST_CSV = Path(__file__).resolve().parents[2] / "shared/fixtures/inbreast/INbreast.csv"

# Digital Mammography X-Ray Image Storage - For Presentation
MG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and under `pytest -n 2` (two workers, two cores)
    more torch threads than cores make every test crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def inbreast_csv() -> Path:
    if not INBREAST_CSV.is_file():
        pytest.skip(f"INbreast metadata fixture not found at {INBREAST_CSV}")
    return INBREAST_CSV


def breast_image(height: int = 256, width: int = 256, side: str = "R",
                 background: float = 0.0) -> np.ndarray:
    """A float image in [0, 1]: a bright half-ellipse whose flat side touches the `side` edge.

    The background is 0 by default, as read_image delivers it (min-max scaled: the dark
    background is the minimum).
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cx = width - 1 if side == "R" else 0
    a, b = 0.7 * width, 0.4 * height
    r = ((x - cx) / a) ** 2 + ((y - height / 2) / b) ** 2
    # denser (brighter) towards the chest wall, like a real breast
    return np.where(r <= 1.0, 0.55 + 0.4 * (1.0 - np.sqrt(np.clip(r, 0, 1))), background)


def write_mg_dicom(path: Path, pixels: np.ndarray | None, *, modality: str = "MG",
                   photometric: str = "MONOCHROME2", patient_name: str = "ANON^PATIENT",
                   birth_date: str = "", **tags) -> Path:
    """Write a real DICOM file (explicit VR little endian, with preamble) holding `pixels`.

    `pixels` is a 2-D uint16 array (or None for a DICOM without pixel data); extra keyword
    arguments become DICOM attributes (WindowCenter=..., RescaleSlope=..., ...).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MG_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MG_SOP_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = "PID-" + Path(path).stem
    if birth_date:
        ds.PatientBirthDate = birth_date
    if pixels is not None:
        ds.set_pixel_data(np.ascontiguousarray(pixels, dtype=np.uint16), photometric, 16)
    else:
        ds.Rows, ds.Columns = 64, 64
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for key, value in tags.items():
        setattr(ds, key, value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def breast_pixels(height: int = 64, width: int = 64, side: str = "R",
                  maximum: int = 3000) -> np.ndarray:
    """breast_image as 16-bit stored values reaching `maximum` (INbreast-like: ~3000 of 65535)."""
    return np.round(breast_image(height, width, side) * maximum).astype(np.uint16)
