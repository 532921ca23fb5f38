"""Tests for the procedural INbreast-layout phantom (mammosynth.datasets.phantom)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from mammosynth.datasets.phantom import write_phantom

PATIENTS, H, W = 12, 128, 104
HEADER = "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads"
NAME_RE = re.compile(r"^(\d{8})_([0-9a-f]{16})_MG_([LR])_(CC|ML)_ANON\.dcm$")
BIRADS = {"1", "2", "3", "4a", "4b", "4c", "5", "6"}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "INbreast"
    df = write_phantom(root, patients=PATIENTS, height=H, width=W, seed=3)
    return root, df


def _csv_rows(root: Path) -> tuple[bytes, list[list[str]]]:
    raw = (root / "INbreast.csv").read_bytes()
    lines = raw.decode("ascii").split("\r\n")
    assert lines[-1] == ""  # file ends with CRLF
    return raw, [line.split(";") for line in lines[:-1]]


def _pixels(root: Path, rel: str) -> np.ndarray:
    return pydicom.dcmread(root / rel).pixel_array


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic(tmp_path):
    kw = dict(patients=6, height=96, width=80)
    write_phantom(tmp_path / "a", seed=7, **kw)
    write_phantom(tmp_path / "b", seed=7, **kw)
    write_phantom(tmp_path / "c", seed=8, **kw)
    a, b, c = (_tree(tmp_path / x) for x in "abc")
    assert a == b
    assert "INbreast.csv" in a and len(a) > 1
    assert a["INbreast.csv"] != c["INbreast.csv"]
    pa = np.stack([pydicom.dcmread(tmp_path / "a" / k).pixel_array for k in sorted(a) if k.endswith(".dcm")][:4])
    pc = np.stack([pydicom.dcmread(tmp_path / "c" / k).pixel_array for k in sorted(c) if k.endswith(".dcm")][:4])
    assert not np.array_equal(pa, pc)


def test_replaces_existing_root_atomically(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    (root / "stale.txt").write_text("old")
    df = write_phantom(root, patients=2, height=64, width=64, seed=0)
    assert not (root / "stale.txt").exists()
    assert len(list((root / "AllDICOMs").glob("*.dcm"))) == len(df)
    # nothing left beside root (no temp / trash directories)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_layout_and_csv(phantom):
    root, df = phantom
    files = sorted(p.name for p in (root / "AllDICOMs").iterdir())
    assert files and all(NAME_RE.match(f) for f in files)
    assert sorted(root.iterdir()) == [root / "AllDICOMs", root / "INbreast.csv"]

    raw, rows = _csv_rows(root)
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert ";".join(rows[0]) == HEADER
    body = rows[1:]
    assert len(body) == len(files) == len(df)
    assert all(len(r) == 8 for r in body)
    assert {r[0] for r in body} == {"removed"} and {r[1] for r in body} == {"removed"}
    assert {r[2] for r in body} <= {"L", "R"}
    assert {r[3] for r in body} == {"CC", "MLO"}
    assert all(re.fullmatch(r"20(0[89]|10)(0[1-9]|1[0-2])", r[4]) and "200801" <= r[4] <= "201001" for r in body)
    assert {r[6] for r in body} <= {"1", "2", "3", "4"}
    assert {r[7] for r in body} <= BIRADS

    by_name = {NAME_RE.match(f).group(1): NAME_RE.match(f) for f in files}
    assert len(by_name) == len(files)  # unique 8-digit File Names
    assert all(f[0] != "0" for f in by_name)
    for r in body:
        m = by_name[r[5]]
        assert m.group(3) == r[2]
        assert m.group(4) == {"CC": "CC", "MLO": "ML"}[r[3]]

    # returned frame agrees with the CSV and the files on disk
    assert list(df.columns) == ["file_name", "patient_hash", "laterality", "view", "birads", "path"]
    assert sorted(df.file_name) == sorted(r[5] for r in body)
    assert all((root / p).is_file() for p in df.path)
    assert all(Path(p).name.split("_")[1] == h for p, h in zip(df.path, df.patient_hash))
    csv_birads = {r[5]: r[7] for r in body}
    assert all(csv_birads[f] == b for f, b in zip(df.file_name, df.birads))


def test_dicom_header_and_pixels(phantom):
    root, df = phantom
    for rel, fname in zip(df.path[:6], df.file_name[:6]):
        ds = pydicom.dcmread(root / rel)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
        assert ds.Modality == "MG"
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 0)
        assert (ds.Rows, ds.Columns, ds.SamplesPerPixel) == (H, W, 1)
        for kw in ("Laterality", "ImageLaterality", "ViewPosition", "WindowCenter", "WindowWidth",
                   "RescaleSlope", "RescaleIntercept", "PixelSpacing"):
            assert kw not in ds, kw
        assert str(ds.PatientName) == f"PHANTOM^JANE^{fname}"
        assert ds.PatientID == f"PHIPID{fname}"
        assert ds.PatientBirthDate == "19600101"
        px = ds.pixel_array
        assert px.dtype == np.uint16 and px.shape == (H, W)
        assert 500 < px.max() <= 3000
        assert np.percentile(px, 1) <= 30  # background near 0
    uids = [pydicom.dcmread(root / p).SOPInstanceUID for p in df.path]
    assert len(set(uids)) == len(uids)


def test_chest_wall_side(phantom):
    root, df = phantom
    k = max(1, W // 10)
    for rel, lat in zip(df.path, df.laterality):
        px = _pixels(root, rel).astype(float)
        left, right = px[:, :k].mean(), px[:, -k:].mean()
        if lat == "L":
            assert left > 5 * right + 300, (rel, left, right)
        else:
            assert right > 5 * left + 300, (rel, left, right)


def test_labels(phantom):
    root, df = phantom
    assert set(df.birads) <= BIRADS
    per_patient = df.groupby("patient_hash")
    assert per_patient.ngroups == PATIENTS
    assert set(per_patient.size()) <= {2, 4}
    # views: every breast has exactly one CC and one MLO, both with the same BI-RADS
    for _, g in df.groupby(["patient_hash", "laterality"]):
        assert sorted(g.view) == ["CC", "MLO"]
        assert g.birads.nunique() == 1
    all_normal = per_patient.birads.agg(lambda s: set(s) == {"1"})
    assert all_normal.sum() >= 2
    abnormal = (df.birads != "1").mean()
    assert 0.70 <= abnormal <= 0.95


def test_label_balance_default_size(tmp_path):
    # label assignment does not depend on the image size: use tiny images
    df = write_phantom(tmp_path / "big", patients=40, height=32, width=32, seed=0)
    assert (df.groupby("patient_hash").birads.agg(lambda s: set(s) == {"1"})).sum() >= 6
    frac_normal = (df.birads == "1").mean()
    assert 0.08 <= frac_normal <= 0.25
    assert (df.birads == "2").mean() > 0.3
    sizes = df.groupby("patient_hash").size()
    assert 0.1 <= (sizes == 2).mean() <= 0.3


def test_findings_brighter(phantom):
    root, df = phantom

    def peak(rel):
        px = _pixels(root, rel).astype(float)
        return np.percentile(px[px > 300], 99.9)

    normal = [peak(p) for p, b in zip(df.path, df.birads) if b == "1"]
    abnormal = [peak(p) for p, b in zip(df.path, df.birads) if b != "1"]
    assert normal and abnormal
    assert np.mean(abnormal) > np.mean(normal) + 150
