"""Data set adapters. Each reads a data set as downloaded and returns one ingest table.

The ingest table has one row per input (a metadata row, an image file, or both linked), with the
columns of `INGEST_COLUMNS`; `status` is `ok` or `rejected` and `reason` says why in words.
The preprocessing step adds `image_path` and rejects images it cannot decode: that is the manifest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from mammosynth.errors import UserError
from mammosynth.labels import label_map, label_names, normalize_birads

INGEST_COLUMNS = ["image_id", "patient_id", "laterality", "view", "birads", "label",
                  "status", "reason", "source"]
MANIFEST_COLUMNS = INGEST_COLUMNS + ["image_path"]
# Kept when an adapter fills them: where the label was given (image, breast or patient: splits
# are by patient whatever the level), the data set's own subset (VinDr-Mammo: training/test), and
# the source data set (format combined).
OPTIONAL_COLUMNS = ["label_level", "official_subset", "dataset"]

# dataset.format -> module of this package with `read(root: Path, dataset: dict) -> list[dict]`
# (one dict per input, INGEST_COLUMNS keys; `source` relative to root, or absolute).
FORMATS = {"phantom": "inbreast", "inbreast": "inbreast", "csv": "csv", "folder": "folder",
           "cbis_ddsm": "cbis_ddsm", "vindr": "vindr", "kau_bcmd": "kau_bcmd", "rsna": "rsna",
           "cmmd": "cmmd", "mias": "mias", "combined": "combined"}


def pseudonym(value: str, prefix: str) -> str:
    """A stable pseudonymous id for a value that may identify a person (MRN, file name)."""
    return prefix + hashlib.sha256(str(value).encode()).hexdigest()[:16]


def read_metadata(path: Path, required: tuple[str, ...], what: str, hint: str,
                  read=None) -> pd.DataFrame:
    """A metadata table as stripped strings (empty cells ''), with `_line` (its line in the
    file); a one-line UserError naming the file when it cannot be read or lacks a required
    column. what: e.g. "the RSNA train.csv table"; hint: what to do about it; read: path ->
    DataFrame of strings (default: comma-separated UTF-8)."""
    read = read or (lambda p: pd.read_csv(p, dtype=str, keep_default_na=False,
                                          encoding="utf-8-sig"))
    try:
        table = read(path)
    except Exception as e:  # a broken or non-table file
        raise UserError(f"{path}: cannot read it as {what} ({' '.join(str(e).split())}); "
                        "restore the file as downloaded") from e
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (found: "
                        f"{', '.join(table.columns)}); {hint}")
    table = table.apply(lambda col: col.astype(str).str.strip())
    table["_line"] = range(2, len(table) + 2)
    return table


def ingest(dataset: dict, labels: dict) -> pd.DataFrame:
    """Read the data set named by the config's `dataset` section; label it with `labels`."""
    import importlib

    if dataset.get("format") not in FORMATS:
        raise UserError(f"config dataset.format: {dataset.get('format')!r} is not one of "
                        f"{', '.join(sorted(FORMATS))}")
    adapter = importlib.import_module(f"mammosynth.datasets.{FORMATS[dataset['format']]}")
    combined = dataset["format"] == "combined"  # each source has its own root
    if not dataset.get("root") and not combined:
        raise UserError("config dataset.root: required (the folder holding the data set)")
    root = Path(dataset.get("root") or ".")
    if not root.is_dir() and not combined:
        raise UserError(f"config dataset.root: {root} is not a folder; point it at the data set "
                        "as downloaded")
    rows = adapter.read(root, dataset)
    if not rows:
        raise UserError(f"config dataset.root: the data set has no inputs: no metadata rows and no "
                        f"image files were found under {root} (dataset.format: "
                        f"{dataset['format']}); point it at the data set as downloaded")
    return finalize(rows, labels)


def finalize(rows: list[dict], labels: dict) -> pd.DataFrame:
    """Normalise BI-RADS, map labels, reject what cannot be labelled; one row per input."""
    birads_to_label = label_map(labels)
    names = set(label_names(labels))
    seen: set[str] = set()
    out = []
    for row in rows:
        row = {col: row.get(col) or "" for col in INGEST_COLUMNS + OPTIONAL_COLUMNS}
        raw = row["birads"]
        reasons = [row["reason"]] if row["reason"] else []
        if raw:
            birads = normalize_birads(raw)
            if birads is None:
                reasons.append(f"unknown BI-RADS value {raw!r}")
            else:
                row["birads"] = birads
                if not row["label"]:
                    row["label"] = birads_to_label.get(birads, "")
                    if not row["label"]:
                        reasons.append(f"BI-RADS {birads} is not mapped to a label "
                                       "(config labels.scheme / labels.map)")
        if row["label"] and row["label"] not in names:
            reasons.append(f"label {row['label']!r} is not one of the config's labels "
                           f"({', '.join(sorted(names))})")
        if not row["label"] and not reasons:
            reasons.append("no BI-RADS value or label")
        if row["image_id"] in seen:
            reasons.append(f"duplicate image id {row['image_id']}")
        seen.add(row["image_id"])
        row["reason"] = "; ".join(reasons)
        row["status"] = "rejected" if reasons else "ok"
        out.append(row)
    if not out:
        raise UserError("the data set has no inputs: no metadata rows and no image files were found")
    table = pd.DataFrame(out, columns=INGEST_COLUMNS + OPTIONAL_COLUMNS)
    unused = [c for c in OPTIONAL_COLUMNS if (table[c] == "").all()]
    return table.drop(columns=unused)
