"""Shared test helpers, plain functions and constants (`from conftest import write_mg_dicom`):

- running the workflow: REPO, SNAKEMAKE, SCHEMA, CONFIGS, PRESETS; load_config (a YAML config
  of tests/configs/, e.g. tiny.yaml, with overrides deep-merged over it: deep_merge),
  load_preset, write_config; snakemake / snakemake_command / snakemake_env; job_counts (of a
  dry run's output). Results paths come from mammosynth.layout, never by hand;
- data: writers for small real DICOMs and breast-like images, the real INbreast metadata file
  (fixture).

Test modules import from here, never from each other.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import mammosynth  # noqa: F401  installs the torchvision import fix before a test imports timm

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
PRESETS = REPO / "config/presets"
CONFIGS = Path(__file__).resolve().parent / "configs"  # the tests' own configs, YAML

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


# -- running the workflow -------------------------------------------------------------------------

def deep_merge(base: dict, override: dict) -> dict:
    """A new dict: `base` with `override` laid over it. A mapping over a mapping merges key by
    key, at every depth; anything else (a list, a value, None) replaces the key."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@functools.cache
def _read_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def load_config(name: str = "tiny", /, **sections) -> dict:
    """tests/configs/<name>.yaml with `sections` deep-merged over it (a fresh copy each call):
    `load_config("tiny", classifier={"epochs": 40})` changes one key of the section,
    `splits={"ids": [0, 1]}` one key of splits, `scenarios=[0]` or `classifier=None` the whole
    key."""
    return deep_merge(_read_yaml(CONFIGS / f"{name}.yaml"), sections)


def load_preset(name: str) -> dict:
    """config/presets/<name>.yaml, as users get it (a fresh copy)."""
    return copy.deepcopy(_read_yaml(PRESETS / f"{name}.yaml"))


def write_config(workdir: Path, config: dict) -> Path:
    """<workdir>/config.yaml holding `config` (snakemake's --configfile by default); its path."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake_env(**extra: str) -> dict:
    """The environment of a snakemake run: this one, offline (HF_HUB_OFFLINE=1), plus `extra`."""
    return dict(os.environ, HF_HUB_OFFLINE="1", **extra)


def snakemake_command(workdir: Path, *args: str, configfiles=None,
                      cores: int | None = 2) -> list[str]:
    """`snakemake` of this repository's Snakefile in `workdir`, then `args`. configfiles: the
    --configfile list (default <workdir>/config.yaml; empty: none, the Snakefile's own
    config/config.yaml applies); cores None: no --cores (a profile sets them)."""
    if configfiles is None:
        configfiles = [Path(workdir) / "config.yaml"]
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile")]
    if configfiles:  # a list: the next option ends it
        cmd += ["--configfile", *map(str, configfiles)]
    cmd += ["--directory", str(workdir)]
    if cores is not None:
        cmd += ["--cores", str(cores)]
    return cmd + list(args)


def snakemake(workdir: Path, *args: str, configfiles=None, cores: int | None = 2,
              timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run snakemake_command(...) to the end (output captured, text); `env` defaults to
    snakemake_env()."""
    return subprocess.run(snakemake_command(workdir, *args, configfiles=configfiles, cores=cores),
                          capture_output=True, text=True, timeout=timeout,
                          env=snakemake_env() if env is None else env)


def job_counts(output: str) -> dict[str, int]:
    """The job-stats table of a (dry) run's output: jobs per rule, plus "total"."""
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.M)}


# -- trainers' resume state ----------------------------------------------------------------------

def mammosynth_warnings(caplog) -> list[str]:
    """The warnings mammosynth's loggers recorded (pytest's caplog)."""
    import logging

    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("mammosynth")]


def assert_set_aside_as_unreadable(caplog, resume: Path, damaged: bytes) -> None:
    """A damaged resume state was moved to <name>.unreadable with one warning line, and
    training started afresh (runtime.TrainerState)."""
    warnings = mammosynth_warnings(caplog)
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert warnings[0].startswith(f"{resume} cannot be read, truncated or corrupted (")
    assert warnings[0].endswith("training starts afresh (the old state is moved to "
                                f"{resume.name}.unreadable)")
    assert resume.with_name(f"{resume.name}.unreadable").read_bytes() == damaged
    assert not resume.exists() and not resume.with_name(f"{resume.name}.stale").exists()
