"""Procedural, seeded mammography phantom written in the real INbreast layout.

``write_phantom(root, ...)`` produces a small synthetic data set that the
pipeline's INbreast adapter can read exactly like the real thing::

    root/
      INbreast.csv                       # ASCII, CRLF, ';'-separated
      AllDICOMs/<FileName>_<hash16>_MG_<L|R>_<CC|ML>_ANON.dcm

Like the real INbreast DICOMs the files are Secondary Capture objects with
16-bit MONOCHROME2 pixels and *no* Laterality / ImageLaterality /
ViewPosition / windowing / rescale / pixel-spacing tags, so laterality and
view must come from the file name or the CSV.  Fake identifying tags
(PatientName, PatientID, PatientBirthDate, InstitutionName, AccessionNumber,
ReferringPhysicianName; their marker strings in PHI_MARKERS) are included on
purpose so that the pipeline can test that PHI never leaks into its outputs.

Images are drawn with vectorised numpy: a half-ellipse breast against the
chest wall (left image edge for L, right edge for R), fibroglandular texture
from anisotropic 1/f^beta noise, a pectoral muscle triangle on MLO views and,
for every breast with BI-RADS other than 1, visible findings (round masses
and/or calcifications for BI-RADS 2-3, a spiculated mass plus a calcification
cluster for BI-RADS 4a-6).  Everything is derived from
``numpy.random.default_rng`` seeded from ``seed`` (and per-patient / per-image
indices), so output is bitwise deterministic for the same arguments.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from scipy.special import erfc

__all__ = ["write_phantom", "CSV_HEADER", "BIRADS_DISTRIBUTION", "MAX_PIXEL"]

CSV_HEADER = (
    "Patient ID",
    "Patient age",
    "Laterality",
    "View",
    "Acquisition date",
    "File Name",
    "ACR",
    "Bi-Rads",
)

#: Image-level BI-RADS distribution of INbreast (approximate).
BIRADS_DISTRIBUTION = {
    "1": 0.16,
    "2": 0.54,
    "3": 0.06,
    "4a": 0.03,
    "4b": 0.02,
    "4c": 0.05,
    "5": 0.12,
    "6": 0.02,
}
_ABNORMAL = [k for k in BIRADS_DISTRIBUTION if k != "1"]
_ABNORMAL_P = np.array([BIRADS_DISTRIBUTION[k] for k in _ABNORMAL])
_ABNORMAL_P = _ABNORMAL_P / _ABNORMAL_P.sum()
_BENIGN = {"2", "3"}

MAX_PIXEL = 3000
_NORMAL_PATIENT_FRACTION = 0.16
_MASTECTOMY_FRACTION = 0.20
_ACR_P = np.array([0.25, 0.38, 0.27, 0.10])  # ACR 1..4
_DATE_MONTHS = 25  # 200801 .. 201001 inclusive
_UID_TAG = "mammosynth-phantom-v1"

# Stream identifiers mixed into the seed sequences.
_S_META, _S_BREAST, _S_IMAGE = 0, 1, 2


@dataclass(frozen=True)
class _ImageSpec:
    index: int
    patient: int
    file_name: str
    patient_hash: str
    laterality: str  # "L" / "R"
    view: str  # "CC" / "MLO"
    birads: str
    acr: int
    date: str  # YYYYMM

    @property
    def dicom_name(self) -> str:
        v = "ML" if self.view == "MLO" else "CC"
        return f"{self.file_name}_{self.patient_hash}_MG_{self.laterality}_{v}_ANON.dcm"


# --------------------------------------------------------------------------
# metadata / labels
# --------------------------------------------------------------------------


# Strings of the fake identifying tags: none may appear in any output (tests/test_workflow.py).
# Each is 6+ characters, so that it cannot turn up by chance in binary files.
PHI_MARKERS = ("PHANTOM^JANE", "19600101", "PHIPID", "PHIACC", "Mercy Hospital of Nowhere",
               "PHYSICIAN^PHI")


def _plan(patients: int, seed: int) -> list[_ImageSpec]:
    rng = np.random.default_rng([seed, _S_META])

    n_normal = min(patients, max(2, int(round(_NORMAL_PATIENT_FRACTION * patients))))
    normal = np.zeros(patients, dtype=bool)
    normal[rng.choice(patients, size=n_normal, replace=False)] = True

    n_mast = int(round(_MASTECTOMY_FRACTION * patients))
    one_breast = np.zeros(patients, dtype=bool)
    if n_mast:
        one_breast[rng.choice(patients, size=n_mast, replace=False)] = True

    used_names: set[str] = set()
    used_hashes: set[str] = set()
    specs: list[_ImageSpec] = []
    for p in range(patients):
        while True:
            h = f"{int(rng.integers(0, 2**64, dtype=np.uint64)):016x}"
            if h not in used_hashes:
                used_hashes.add(h)
                break
        acr = int(rng.choice(4, p=_ACR_P)) + 1
        m = int(rng.integers(0, _DATE_MONTHS))
        date = f"{2008 + m // 12}{m % 12 + 1:02d}"
        sides = ["L", "R"]
        if one_breast[p]:
            sides = [sides[int(rng.integers(0, 2))]]
        for side in sides:
            if normal[p]:
                birads = "1"
            else:
                birads = _ABNORMAL[int(rng.choice(len(_ABNORMAL), p=_ABNORMAL_P))]
            for view in ("CC", "MLO"):
                while True:
                    name = str(int(rng.integers(10_000_000, 100_000_000)))
                    if name not in used_names:
                        used_names.add(name)
                        break
                specs.append(
                    _ImageSpec(
                        index=len(specs),
                        patient=p,
                        file_name=name,
                        patient_hash=h,
                        laterality=side,
                        view=view,
                        birads=birads,
                        acr=acr,
                        date=date,
                    )
                )
    return specs


# --------------------------------------------------------------------------
# image synthesis
# --------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@functools.lru_cache(maxsize=8)
def _texture_filters(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Spectral filters (coarse ~1/f^3, fine band-pass) for an ``h`` x ``w`` field.

    Frequencies are measured in cycles per image width so the look of the
    texture does not depend on the resolution.  Both filters are anisotropic
    (structures elongated along x, i.e. radiating from the chest wall towards
    the nipple).
    """
    ky = np.fft.fftfreq(h)[:, None] * w
    kx = np.fft.rfftfreq(w)[None, :] * w
    k = np.sqrt((kx * 2.2) ** 2 + ky**2)
    coarse = (k**2 + 2.0**2) ** -1.5
    fine = (k**2 + 12.0**2) ** -1.0 * np.exp(-((k / (0.35 * w)) ** 2))
    fine *= 1.0 - np.exp(-((k / 8.0) ** 2))
    out = []
    for f in (coarse, fine):
        f = f.astype(np.float32)
        f.flags.writeable = False
        out.append(f)
    return out[0], out[1]


def _textures(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Two zero-mean, unit-variance band-limited noise fields (coarse, fine)."""
    # Uniform white noise: after band-limiting the fields are gaussian anyway
    # (central limit theorem), and uniform draws are ~3x faster than normals.
    spec = scipy.fft.rfft2(rng.random((h, w), dtype=np.float32))
    out = []
    for f in _texture_filters(h, w):
        t = scipy.fft.irfft2(spec * f, s=(h, w)).astype(np.float32, copy=False)
        t -= t.mean()
        t *= 1.0 / (float(t.std()) + 1e-12)
        out.append(t)
    return out[0], out[1]


def _inside_point(rng, a, b, cy, tilt, inside, avoid, rmin=0.22, rmax=0.68):
    """Random point well inside the breast and off the pectoral muscle.

    Works in the chest-wall-left frame; ``inside`` is the depth below the skin
    line (0 outside the breast), ``avoid`` the pectoral-muscle weight.
    """
    h, w = inside.shape
    for _ in range(50):
        r = rng.uniform(rmin, rmax)
        th = rng.uniform(-1.15, 1.15)
        x = a * r * np.cos(th)
        y = cy + tilt * x + b * r * np.sin(th)
        if not (0.06 * h < y < 0.94 * h and 0.06 * w < x < w - 1):
            continue
        xi, yi = int(x), int(y)
        if inside[yi, xi] > 0.25 and avoid[yi, xi] < 0.05:
            return float(x), float(y)
    return float(0.35 * a), float(np.clip(cy + tilt * 0.35 * a, 0.2 * h, 0.8 * h))


def _patch(cx, cy, half, h, w):
    """Slices of the image box around (cx, cy) and broadcastable local offsets."""
    x0, x1 = max(0, int(np.floor(cx - half))), min(w, int(np.ceil(cx + half)) + 1)
    y0, y1 = max(0, int(np.floor(cy - half))), min(h, int(np.ceil(cy + half)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    return (slice(y0, y1), slice(x0, x1)), dx, dy


def _add_round_mass(img, rng, cx, cy, w):
    """Well-circumscribed round/oval mass: a gaussian-edged (erfc) disk."""
    h = img.shape[0]
    r0 = rng.uniform(0.04, 0.08) * w
    amp = rng.uniform(500, 800)
    ecc = rng.uniform(0.8, 1.2)
    ang = rng.uniform(0, np.pi)
    sig = max(0.6, 0.08 * r0)
    p = _patch(cx, cy, r0 * 1.3 + 4 * sig, h, w)
    if p is None:
        return
    sl, dx, dy = p
    u = dx * np.float32(np.cos(ang)) + dy * np.float32(np.sin(ang))
    v = dy * np.float32(np.cos(ang)) - dx * np.float32(np.sin(ang))
    rho = np.sqrt((u * np.float32(ecc)) ** 2 + (v * np.float32(1.0 / ecc)) ** 2)
    disk = erfc((rho - np.float32(r0)) * np.float32(1.0 / (np.sqrt(2.0) * sig)))
    dome = 0.85 + 0.15 * np.sqrt(np.clip(1.0 - (rho * np.float32(1.0 / r0)) ** 2, 0.0, 1.0))
    img[sl] += np.float32(0.5 * amp) * disk * dome


def _add_spiculated_mass(img, rng, cx, cy, w):
    """Irregular mass with a lobulated, fuzzy border and radial spicules."""
    h = img.shape[0]
    r0 = rng.uniform(0.05, 0.10) * w
    amp = rng.uniform(600, 850)
    n_sp = int(rng.integers(5, 11))
    lengths = r0 * rng.uniform(1.5, 2.8, n_sp)
    sw = max(0.7, 0.05 * r0)
    half = float(lengths.max()) + 3 * sw + 2
    p = _patch(cx, cy, half, h, w)
    if p is None:
        return
    sl, dx, dy = p
    canvas = np.zeros((dy.shape[0], dx.shape[1]), dtype=np.float32)

    # Body: lobulated radius r(phi) = r0 (1 + sum_k c_k cos(k phi + p_k)).
    coeffs = [(k, rng.uniform(0.04, 0.14) / np.sqrt(k - 1), rng.uniform(0, 2 * np.pi)) for k in range(2, 7)]
    jb = _sub(dx, dy, -1.8 * r0, 1.8 * r0, -1.8 * r0, 1.8 * r0)
    if jb is not None:
        (ys, xs), bx, by = jb
        rho = np.sqrt(bx * bx + by * by)
        phi = np.arctan2(by, bx)
        rphi = np.ones_like(phi)
        for k, c, ph in coeffs:
            rphi += np.float32(c) * np.cos(k * phi + np.float32(ph))
        rphi *= np.float32(r0)
        body = _sigmoid((rphi - rho) * np.float32(1.0 / max(0.5, 0.09 * r0)))
        body *= 0.85 + 0.15 * np.clip(1.0 - rho * np.float32(1.0 / r0), 0.0, 1.0)
        canvas[ys, xs] = body

    # Spicules: thin tapering lines radiating from 0.5 r0 out to 1.5-2.8 r0.
    angles = rng.uniform(0, 2 * np.pi) + np.arange(n_sp) * 2 * np.pi / n_sp
    angles += rng.uniform(-0.35, 0.35, n_sp)
    start = 0.5 * r0
    pad = 3.5 * 1.4 * sw
    for th, ln in zip(angles, lengths):
        ct, st = np.cos(th), np.sin(th)
        xa, xb = sorted((start * ct, ln * ct))
        ya, yb = sorted((start * st, ln * st))
        sb = _sub(dx, dy, xa - pad, xb + pad, ya - pad, yb + pad)
        if sb is None:
            continue
        (ys, xs), bx, by = sb
        t = bx * np.float32(ct) + by * np.float32(st)
        perp = by * np.float32(ct) - bx * np.float32(st)
        along = np.clip(1.0 - (t - np.float32(start)) * np.float32(1.0 / (ln - start)), 0.0, 1.0)
        along *= t > start
        width = np.float32(sw) * (0.6 + 0.8 * along)  # thinner towards the tip
        line = np.float32(0.65) * along * np.exp(-0.5 * (perp / width) ** 2)
        np.maximum(canvas[ys, xs], line, out=canvas[ys, xs])
    img[sl] += np.float32(amp) * canvas


def _sub(dx, dy, xa, xb, ya, yb):
    """Sub-box of a patch (offset vectors dx, dy) covering [xa, xb] x [ya, yb]."""
    ox, oy = float(dx[0, 0]), float(dy[0, 0])
    j0, j1 = max(0, int(np.floor(xa - ox))), min(dx.shape[1], int(np.ceil(xb - ox)) + 1)
    i0, i1 = max(0, int(np.floor(ya - oy))), min(dy.shape[0], int(np.ceil(yb - oy)) + 1)
    if j0 >= j1 or i0 >= i1:
        return None
    return (slice(i0, i1), slice(j0, j1)), dx[:, j0:j1], dy[i0:i1, :]


def _add_calcifications(img, rng, cx, cy, w, n, spread, amp_lo=900, amp_hi=1200):
    h = img.shape[0]
    sig = max(0.5, 0.0018 * w)
    rad = rng.uniform(*spread) * w
    p = _patch(cx, cy, rad + 4 * sig + 1, h, w)
    if p is None:
        return
    sl, dx, dy = p
    rr = rad * np.sqrt(rng.uniform(0, 1, n))
    tt = rng.uniform(0, 2 * np.pi, n)
    px, py = rr * np.cos(tt), rr * np.sin(tt)
    amps = rng.uniform(amp_lo, amp_hi, n)
    sigs = sig * rng.uniform(0.8, 1.4, n)
    acc = np.zeros((dy.shape[0], dx.shape[1]), dtype=np.float32)
    for x, y, a, s in zip(px, py, amps, sigs):
        k = np.float32(-0.5 / (s * s))
        acc += np.float32(a) * (np.exp(k * (dx - np.float32(x)) ** 2) * np.exp(k * (dy - np.float32(y)) ** 2))
    img[sl] += acc


def _render(spec: _ImageSpec, seed: int, h: int, w: int) -> np.ndarray:
    # Breast-level parameters are shared by both views of a breast.
    side = 0 if spec.laterality == "L" else 1
    brng = np.random.default_rng([seed, _S_BREAST, spec.patient, side])
    depth = brng.uniform(0.50, 0.72)
    half_h = brng.uniform(0.38, 0.46)
    i_fat = brng.uniform(900, 1020)
    i_dense = brng.uniform(1450, 1700)
    thr = {1: 1.1, 2: 0.5, 3: -0.05, 4: -0.6}[spec.acr] + brng.uniform(-0.2, 0.2)

    rng = np.random.default_rng([seed, _S_IMAGE, spec.index])
    mlo = spec.view == "MLO"
    a = w * float(np.clip(depth + rng.uniform(-0.03, 0.03), 0.5, 0.75))
    if mlo:
        b = h * (half_h + rng.uniform(0.06, 0.10))
        cy = h * rng.uniform(0.52, 0.58)
        tilt = rng.uniform(0.05, 0.22)  # breast droops: centre line slopes down
    else:
        b = h * (half_h + rng.uniform(-0.02, 0.02))
        cy = h * rng.uniform(0.47, 0.53)
        tilt = rng.uniform(-0.05, 0.05)

    f32 = np.float32
    yy = np.arange(h, dtype=f32)[:, None]
    xx = np.arange(w, dtype=f32)[None, :]
    u = xx * f32(1.0 / a)
    v = (yy - f32(cy) - f32(tilt) * xx) * f32(1.0 / b)
    r = np.sqrt(u * u + v * v)
    # Shape wobble sum_k c_k sin(k*theta + p_k), with theta = atan2(v, u),
    # evaluated through cos/sin multiple-angle identities (cheaper than trig).
    c = u / np.maximum(r, f32(1e-6))
    sn = v / np.maximum(r, f32(1e-6))
    harmonics = ((sn, c), (2 * sn * c, c * c - sn * sn), (sn * (3 - 4 * sn * sn), c * (4 * c * c - 3)))
    wobble = np.ones((h, w), dtype=f32)
    for sin_k, cos_k in harmonics:
        amp, ph = rng.uniform(-0.035, 0.035), rng.uniform(0, 2 * np.pi)
        wobble += f32(amp * np.cos(ph)) * sin_k + f32(amp * np.sin(ph)) * cos_k
    depth_in = np.maximum(f32(1.0) - r / wobble, f32(0.0))  # 0 at the skin line
    skin = f32(1.0) - np.exp(depth_in * f32(-1.0 / rng.uniform(0.05, 0.09)))  # thin tissue near skin
    skin *= f32(0.9) + f32(0.1) * np.clip(f32(1.0) - u, f32(0.0), f32(1.0))  # thicker at chest wall

    coarse, fine = _textures(rng, h, w)
    gland = np.sqrt(np.minimum(depth_in * f32(2.5), f32(1.0)))  # subcutaneous fat layer
    density = _sigmoid((coarse + f32(0.6) * fine - f32(thr)) * f32(1.0 / 0.45))
    density *= gland
    tissue = f32(i_fat) + f32(i_dense - i_fat) * density + f32(45.0) * fine

    pect = np.zeros((h, w), dtype=f32)
    if mlo:
        pw = w * rng.uniform(0.22, 0.38)
        ph = h * rng.uniform(0.38, 0.62)
        i_pect = rng.uniform(1900, 2150)
        # Only the upper chest-wall corner can be non-zero: work on that box.
        bh, bw = min(h, int(ph * 1.12) + 2), min(w, int(pw * 1.25) + 2)
        by, bx = yy[:bh], xx[:, :bw]
        sp = f32(1.0) - (bx * f32(1.0 / pw) + by * f32(1.0 / ph))
        sp += f32(0.06) * np.sin(f32(np.pi) * np.minimum(by * f32(1.0 / ph), f32(1.0)))
        pb = _sigmoid(sp * f32(1.0 / 0.025))
        pect[:bh, :bw] = pb
        t = tissue[:bh, :bw]
        t += pb * (f32(i_pect) * (f32(1.0) + f32(0.02) * fine[:bh, :bw]) - t)
        np.maximum(skin[:bh, :bw], pb, out=skin[:bh, :bw])
    img = skin * tissue

    if spec.birads != "1":
        # Findings go on their own canvas, masked to the breast at the end so
        # that nothing (e.g. a spicule tip) pokes out beyond the skin line.
        fnd = np.zeros((h, w), dtype=f32)
        def spot(rmin=0.22, rmax=0.68):
            return _inside_point(rng, a, b, cy, tilt, depth_in, pect, rmin, rmax)

        if spec.birads in _BENIGN:
            n_mass = 1 if rng.random() < 0.7 else 2
            for _ in range(n_mass):
                _add_round_mass(fnd, rng, *spot(), w)
            if rng.random() < 0.35:
                n = int(rng.integers(3, 8))
                _add_calcifications(fnd, rng, *spot(), w, n, (0.04, 0.08), 800, 1100)
        else:
            mx, my = spot(0.25, 0.6)
            _add_spiculated_mass(fnd, rng, mx, my, w)
            ang = rng.uniform(0, 2 * np.pi)
            dist = rng.uniform(0.08, 0.14) * w
            qx, qy = mx + dist * np.cos(ang), my + dist * np.sin(ang)
            qi, qj = int(np.clip(qy, 0, h - 1)), int(np.clip(qx, 0, w - 1))
            near = rng.random() < 0.5 and 0 <= qx < w and 0 <= qy < h
            if not (near and depth_in[qi, qj] > 0.2 and pect[qi, qj] < 0.05):
                qx, qy = spot()  # cluster elsewhere in the breast
            n = int(rng.integers(8, 26))
            _add_calcifications(fnd, rng, qx, qy, w, n, (0.02, 0.045))
        img += fnd * np.minimum(depth_in * f32(20.0), f32(1.0))

    # Detector noise: background in [0, 30], signal-dependent noise in tissue.
    noise = (rng.random((h, w), dtype=f32) - f32(0.5)) * f32(2.0 * np.sqrt(3.0))  # unit variance
    img += np.clip(f32(12.0) + f32(6.0) * noise, f32(0.0), f32(30.0)) + f32(0.012) * img * noise
    img = np.clip(np.rint(img), 0, MAX_PIXEL).astype("<u2")
    if spec.laterality == "R":
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


# --------------------------------------------------------------------------
# DICOM / CSV writing
# --------------------------------------------------------------------------


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(entropy_srcs=[_UID_TAG, str(seed), *map(str, parts)])


def _write_dicom(path: Path, spec: _ImageSpec, img: np.ndarray, seed: int) -> None:
    sop_uid = _uid(seed, "sop", spec.file_name)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = f"{spec.date}01"
    ds.Modality = "MG"
    ds.ConversionType = "WSD"
    ds.Manufacturer = "mammosynth phantom"
    ds.PatientName = f"PHANTOM^JANE^{spec.file_name}"
    ds.PatientID = f"PHIPID{spec.file_name}"
    ds.PatientBirthDate = "19600101"
    ds.InstitutionName = "Phantom Mercy Hospital of Nowhere"
    ds.AccessionNumber = f"PHIACC{spec.file_name}"
    ds.ReferringPhysicianName = "PHYSICIAN^PHI^REFERRING"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "BREAST"
    ds.StudyInstanceUID = _uid(seed, "study", spec.patient_hash)
    ds.SeriesInstanceUID = _uid(seed, "series", spec.file_name)
    ds.StudyID = spec.patient_hash[:8]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = img.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.add_new(0x7FE00010, "OW", img.astype("<u2", copy=False).tobytes())
    ds.save_as(path, enforce_file_format=True)


def _write_csv(path: Path, specs: list[_ImageSpec]) -> None:
    lines = [";".join(CSV_HEADER)]
    for s in specs:
        lines.append(
            ";".join(
                ["removed", "removed", s.laterality, s.view, s.date, s.file_name, str(s.acr), s.birads]
            )
        )
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("ascii"))


def write_phantom(
    root, *, patients: int = 40, height: int = 512, width: int = 416, seed: int = 0
) -> pd.DataFrame:
    """Write a deterministic synthetic INbreast-layout data set into ``root``.

    ``root`` is built in a temporary directory beside it and moved into place
    at the end (an existing ``root`` is replaced), so a crash never leaves a
    half-written data set.  Returns one row per image with columns
    ``file_name, patient_hash, laterality, view, birads, path`` (``path`` is
    relative to ``root``).
    """
    patients, height, width, seed = int(patients), int(height), int(width), int(seed)
    if patients < 1:
        raise ValueError("patients must be >= 1")
    if height < 32 or width < 32:
        raise ValueError("height and width must be >= 32")
    if seed < 0:
        raise ValueError("seed must be >= 0")

    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    specs = _plan(patients, seed)

    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        (tmp / "AllDICOMs").mkdir()
        rows = []
        for spec in specs:
            img = _render(spec, seed, height, width)
            rel = f"AllDICOMs/{spec.dicom_name}"
            _write_dicom(tmp / rel, spec, img, seed)
            rows.append(
                {
                    "file_name": spec.file_name,
                    "patient_hash": spec.patient_hash,
                    "laterality": spec.laterality,
                    "view": spec.view,
                    "birads": spec.birads,
                    "path": rel,
                }
            )
        _write_csv(tmp / "INbreast.csv", specs)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700

        old = None
        if root.is_symlink() or root.is_file():
            root.unlink()
        elif root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, old / "d")
        os.replace(tmp, root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    return pd.DataFrame(rows, columns=["file_name", "patient_hash", "laterality", "view", "birads", "path"])
