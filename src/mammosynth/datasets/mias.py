"""MIAS / mini-MIAS as downloaded: `Info.txt` + `mdbNNN.pgm` images.

Point `dataset.root` at the folder holding `Info.txt` and the images (e.g. `MIAS-data/` with
`Info.txt` and `all-mias/mdb001.pgm ...`, or `all-mias/` itself); both are found anywhere under
the root (`Info.txt` case-insensitively; the shallowest one is read).

- `Info.txt` is space-separated with the header `REFNUM BG CLASS SEVERITY X Y RADIUS ` (trailing
  space: pandas `sep=' '` invents an `Unnamed: 7` column), so each line is split on whitespace.
  NORM rows have 3 fields, some rows have a severity but no coordinates (`mdb059 F CIRC B`:
  widely distributed calcifications), an image with several findings has several rows
  (`mdb005` twice). One input per image; coordinates are not used.
- There is no BI-RADS in MIAS: the adapter sets `label` itself, `normal` when every row of the
  image is NORM and `abnormal` when a row has a finding (CLASS other than NORM, severity B or M;
  the worst finding counts, M > B > NORM). These are the binary scheme's label names, so
  `labels.scheme: binary` (or a `labels.map` with labels normal and abnormal) is needed; under
  `labels.scheme: birads` every image is rejected with the reason "label 'normal' is not one of
  the config's labels (birads0, ...)". `label_level` is `image`.
- Images come in pairs, one woman's two breasts: even number = left breast, odd = right
  (README note 1: mdb001 right and mdb002 left of one patient). patient_id is `mias` + the pair
  index (N + 1) // 2, so a woman's two images stay in one split.
- A row with no image, an image with no row, a name that is not `mdbNNN`, a line that is not a
  MIAS row, and further copies of an image (e.g. JPG conversions next to the PGMs; the PGM is
  kept) are rejected with a reason. Other files (README, Licence.txt) are ignored.
"""

from __future__ import annotations

import re
from pathlib import Path

from mammosynth.errors import UserError
from mammosynth.imaging.decode import INPUT_SUFFIXES

REFNUM = re.compile(r"^mdb(\d{3,})$", re.IGNORECASE)
CLASSES = {"CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM"}
SEVERITIES = {"B", "M"}


def find_info(root: Path) -> Path:
    found = sorted((p for p in root.rglob("*") if p.name.lower() == "info.txt" and p.is_file()),
                   key=lambda p: (len(p.relative_to(root).parts), p.as_posix()))
    if not found:
        raise UserError(f"{root}: no Info.txt found; point dataset.root at the MIAS folder "
                        "holding Info.txt and the mdbNNN.pgm images")
    return found[0]


def parse_info(path: Path, name: str) -> tuple[dict[str, list[tuple[int, list[str]]]],
                                                list[tuple[int, str]]]:
    """Info.txt -> ({refnum: [(line, fields), ...]}, [(line, text) of lines that are no row])."""
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror}); restore Info.txt as "
                        "downloaded") from e
    images: dict[str, list[tuple[int, list[str]]]] = {}
    junk: list[tuple[int, str]] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].upper() == "REFNUM":
            continue
        match = REFNUM.match(fields[0])
        if match is None:
            junk.append((line, raw.strip()))
        else:
            images.setdefault(f"mdb{match[1]}", []).append((line, fields))
    if not images:
        raise UserError(f"{name}: no MIAS rows (REFNUM BG CLASS SEVERITY X Y RADIUS, e.g. "
                        "'mdb001 G CIRC B 535 425 197'); restore Info.txt as downloaded")
    return images, junk


def judge(rows: list[tuple[int, list[str]]], name: str) -> tuple[str, str]:
    """(label, reason) for one image's rows: the worst finding counts (M > B > NORM), so the
    image is normal only when every row is NORM."""
    abnormal = False
    for line, fields in rows:
        where = f"{name} line {line}"
        if len(fields) < 3:
            return "", f"{where}: {' '.join(fields)!r} has no CLASS field"
        cls = fields[2].upper()
        severity = fields[3].upper() if len(fields) > 3 else ""
        if cls not in CLASSES:
            return "", (f"{where}: CLASS {fields[2]!r} is not one of "
                        f"{', '.join(sorted(CLASSES))}")
        if severity and severity not in SEVERITIES:
            return "", f"{where}: SEVERITY {fields[3]!r} is not B or M"
        if cls == "NORM" and severity:
            return "", f"{where}: CLASS NORM with SEVERITY {severity} contradicts itself"
        abnormal = abnormal or cls != "NORM"  # a finding, benign or malignant
    return ("abnormal" if abnormal else "normal"), ""


def number(refnum: str) -> int:
    return int(refnum[3:])


def read(root: Path, dataset: dict) -> list[dict]:
    info = find_info(root)
    name = info.relative_to(root).as_posix()
    listed, junk = parse_info(info, name)

    files: dict[str, list[Path]] = {}
    others: list[Path] = []
    for path in sorted(p for p in root.rglob("*")
                       if p.suffix.lower() in INPUT_SUFFIXES and p.is_file()):
        match = REFNUM.match(path.stem.strip())
        if match:
            files.setdefault(f"mdb{match[1]}", []).append(path)
        else:
            others.append(path)

    rows: list[dict] = []
    for refnum in sorted(set(listed) | set(files), key=number):
        n = number(refnum)
        base = {"image_id": refnum, "patient_id": f"mias{(n + 1) // 2:03d}",
                "laterality": "L" if n % 2 == 0 else "R", "label_level": "image"}
        copies = sorted(files.get(refnum, []),
                        key=lambda p: (p.suffix.lower() != ".pgm",
                                       len(p.relative_to(root).parts), p.as_posix()))
        if refnum in listed:
            label, reason = judge(listed[refnum], name)
            row = {**base, "label": label, "reason": reason}
            if copies:
                row["source"] = copies[0].relative_to(root).as_posix()
            else:
                line = listed[refnum][0][0]
                row["source"] = f"{name}:{line}"
                row["reason"] = "; ".join(filter(None, [
                    f"no image {refnum}.pgm under the data set root ({name} line {line})",
                    reason]))
        elif copies:
            row = {**base, "source": copies[0].relative_to(root).as_posix(),
                   "reason": f"no row for {refnum} in {name}"}
        rows.append(row)
        for k, extra in enumerate(copies[1:], start=2):
            rel = extra.relative_to(root).as_posix()
            rows.append({**base, "image_id": f"{refnum}-copy{k}", "source": rel,
                         "reason": f"another copy of {refnum} (kept {row['source']})"})

    for k, path in enumerate(others, start=1):
        rel = path.relative_to(root).as_posix()
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-.") or "image"
        rows.append({"image_id": f"unlisted{k}-{stem}", "source": rel, "label_level": "image",
                     "reason": f"file name is not mdbNNN (e.g. mdb001.pgm), so no row in {name} "
                               "describes it"})
    for line, text in junk:
        rows.append({"image_id": f"info-line{line}", "source": f"{name}:{line}",
                     "label_level": "image",
                     "reason": f"{name} line {line}: {text[:60]!r} is not a MIAS row "
                               "(REFNUM BG CLASS SEVERITY X Y RADIUS)"})
    return rows
