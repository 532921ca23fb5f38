"""The ingest stage: the config's data set, read by its adapter and labelled -> the ingest table.

One row per input, columns INGEST_COLUMNS (+ the OPTIONAL_COLUMNS an adapter fills): BI-RADS
normalised, labels mapped through the config's `labels`, and every input that cannot be labelled
kept as `rejected` with its reason. The config is checked before this runs (mammosynth.config:
dataset.format is known, dataset.root or each source's root is a folder).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mammosynth.datasets import INGEST_COLUMNS, OPTIONAL_COLUMNS, adapter
from mammosynth.errors import UserError
from mammosynth.labels import label_map, label_names, normalize_birads


def ingest(dataset: dict, labels: dict) -> pd.DataFrame:
    """Read the data set named by the config's `dataset` section; label it with `labels`."""
    fmt = dataset["format"]
    root = Path(dataset.get("root") or ".")  # format combined: unused, each source has its root
    rows = adapter(fmt).read(root, dataset)
    if not rows:
        raise UserError(f"config dataset.root: the data set has no inputs: no metadata rows and no "
                        f"image files were found under {root} (dataset.format: {fmt}); point it "
                        "at the data set as downloaded")
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
        raise UserError("the data set has no inputs: no metadata rows and no image files were "
                        "found")
    table = pd.DataFrame(out, columns=INGEST_COLUMNS + OPTIONAL_COLUMNS)
    unused = [c for c in OPTIONAL_COLUMNS if (table[c] == "").all()]
    return table.drop(columns=unused)
