"""Data set adapters: the format registry, the tables' columns, and the helpers adapters share.

Each adapter (one module per format, named in `FORMATS`) reads a data set as downloaded and
returns one dict per input (a metadata row, an image file, or both linked) with keys of
`INGEST_COLUMNS` (plus `OPTIONAL_COLUMNS`); the ingest stage (`mammosynth.datasets.ingest`) labels
them into the ingest table, whose `status` is `ok` or `rejected` and `reason` says why in words.
The preprocessing step adds `image_path` and rejects images it cannot decode: that is the manifest.

The `source` column names each input's file without the user's folder names: relative to the data
set's root (format combined: `<format><index>/` + the path relative to that source's root).
`source_roots(dataset)` maps those prefixes to folders; `source_file` finds a `source`'s file
through that mapping.
The config has been checked before any of this runs (mammosynth.config): dataset.format is one of
`FORMATS`, dataset.root (or each source's root) is a folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from typing import TYPE_CHECKING

from mammosynth.errors import UserError

if TYPE_CHECKING:  # the Snakefile imports source_roots at every parse: pandas only when reading
    import pandas as pd

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


def adapter(fmt: str):
    """The adapter module of a dataset.format (a checked config names one of FORMATS)."""
    import importlib

    return importlib.import_module(f"mammosynth.datasets.{FORMATS[fmt]}")


# --- where each input's file is: the `source` column ---------------------------------------------

def source_prefix(index: int, source: dict) -> str:
    """The name of dataset.sources[index] of a combined data set: `<format><index>` (kau_bcmd0).
    Its rows' `source` starts with it and a `/`; their image ids with it and a `-`."""
    return f"{source['format']}{index}"


def source_roots(dataset: dict) -> dict[str, str]:
    """The folders the `source` column is relative to, for the config's `dataset` section:
    {"": dataset.root} for a single data set; for format combined {source_prefix: that source's
    root} (e.g. {"kau_bcmd0": "data/KAU-BCMD", "cbis_ddsm1": "data/CBIS-DDSM"}). Roots are kept
    as the config writes them (relative to the working directory, like dataset.root)."""
    if dataset["format"] == "combined":
        return {source_prefix(i, s): str(s["root"]) for i, s in enumerate(dataset["sources"])}
    return {"": str(dataset["root"])}


def source_file(source: str, roots: dict[str, str]) -> Path:
    """The file a `source` names: an absolute source as it is (a csv table may list absolute
    paths), a relative one under roots[""], or, without that key (format combined), under the
    root of its first path part (`kau_bcmd0/Birad1/x.jpg` -> roots["kau_bcmd0"] / Birad1/x.jpg)."""
    if Path(source).is_absolute():
        return Path(source)
    if "" in roots:
        return Path(roots[""]) / source
    prefix, _, rest = source.partition("/")
    if prefix not in roots:
        raise UserError(f"source {source!r} names no data set of dataset.sources "
                        f"({', '.join(roots)}): results/data/ingest.csv is from another config; "
                        "delete it and run again")
    return Path(roots[prefix]) / rest


# --- helpers of the adapters ---------------------------------------------------------------------

def unlisted(files: dict, linked: set, folders, rel, reason: str, prefix: str = "") -> list[dict]:
    """A rejected row for each image file no metadata row links (files: {key: [paths]}): its
    folder is its patient when `folders` knows it (the data sets that file images by patient or
    study folder)."""
    return [{"image_id": f"unlisted-{prefix}{path.stem}",
             "patient_id": path.parent.name if path.parent.name in folders else "",
             "label_level": "breast", "source": rel(path), "reason": reason}
            for paths in files.values() for path in paths if path not in linked]


def pseudonym(value: str, prefix: str) -> str:
    """A stable pseudonymous id for a value that may identify a person (MRN, file name)."""
    return prefix + hashlib.sha256(str(value).encode()).hexdigest()[:16]


def read_metadata(path: Path, required: tuple[str, ...], what: str, hint: str,
                  read=None) -> pd.DataFrame:
    """A metadata table as stripped strings (empty cells ''), with `_line` (its line in the
    file); a one-line UserError naming the file when it cannot be read or lacks a required
    column. what: e.g. "the RSNA train.csv table"; hint: what to do about it; read: path ->
    DataFrame of strings (default: comma-separated UTF-8)."""
    import pandas as pd

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
