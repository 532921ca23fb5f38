"""Several data sets pooled into one: `dataset.sources`, each `{format, root, table?, birads?}`.

    dataset:
      format: combined
      # dataset.root is not used: each source has its own root
      sources:
        - {format: kau_bcmd, root: data/KAU-BCMD, birads: [1, 3, 4, 5]}
        - {format: cbis_ddsm, root: data/CBIS-DDSM, birads: [0, 2]}

- Each source is read by its own adapter (any format but phantom and combined), with its own
  root (relative to the working directory, like dataset.root) and, for csv, its table.
- Ids never collide: `image_id` gets the prefix `<format><index>-` (`kau_bcmd0-`), `patient_id`
  the prefix of the first source with the same format and root, so that a data set listed twice
  (say with different BI-RADS filters) keeps each patient one patient for the splits.
- `source` becomes an absolute path (the source's root joined with the adapter's relative path),
  so the preprocessing step's `root / source` finds the file whatever dataset.root is.
- The optional manifest column `dataset` names each row's source format.
- `birads`: keep only these BI-RADS categories of this source; any other row is rejected ("BI-RADS
  X not kept for this source (dataset.sources[i].birads)"), and so is a row with no BI-RADS at all
  (a folder-format label, CMMD), since the filter cannot be checked.
- One image listed by two sources (overlapping filters on one data set) is used once; the later
  row is rejected.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from mammosynth.errors import UserError
from mammosynth.labels import BIRADS, normalize_birads

REFUSED = ("combined", "phantom")


def _keep(i: int, source: dict) -> set[str] | None:
    if source.get("birads") is None:
        return None
    values = source["birads"]
    if not isinstance(values, (list, tuple)) or not values:
        raise UserError(f"config dataset.sources[{i}].birads: {values!r} is not a list of BI-RADS "
                        "categories (e.g. [1, 3, 4, 5]); leave it out to keep every category")
    keep = set()
    for value in values:
        b = normalize_birads(value)
        if b is None:
            raise UserError(f"config dataset.sources[{i}].birads: {value!r} is not a BI-RADS "
                            f"category (one of {', '.join(BIRADS)})")
        keep.add(b)
    return keep


def _adapter(i: int, source: dict):
    from mammosynth.datasets import FORMATS

    fmt = source.get("format")
    if fmt in REFUSED:
        raise UserError(f"config dataset.sources[{i}].format: {fmt} cannot be a source of a "
                        "combined data set; list the data sets themselves (for the phantom: "
                        "format inbreast, root resources/phantom, after generating it)")
    if fmt not in FORMATS:
        raise UserError(f"config dataset.sources[{i}].format: {fmt!r} is not one of "
                        f"{', '.join(sorted(set(FORMATS) - set(REFUSED)))}")
    return importlib.import_module(f"mammosynth.datasets.{FORMATS[fmt]}")


def read(root: Path, dataset: dict) -> list[dict]:
    sources = dataset.get("sources")
    if not sources or not isinstance(sources, list):
        raise UserError("config dataset.sources: format combined needs a list of sources, each "
                        "{format, root} and optionally table and birads; see README, Data sets")
    rows: list[dict] = []
    patient_tags: dict[tuple[str, Path], str] = {}
    used: dict[str, int] = {}  # absolute image path -> the source that has it
    for i, source in enumerate(sources):
        if not isinstance(source, dict):
            raise UserError(f"config dataset.sources[{i}]: {source!r} is not a mapping "
                            "{format, root, ...}")
        adapter = _adapter(i, source)
        keep = _keep(i, source)
        if not source.get("root"):
            raise UserError(f"config dataset.sources[{i}].root: required (the {source['format']} "
                            "data set as downloaded)")
        src_root = Path(source["root"])
        if not src_root.is_dir():
            raise UserError(f"config dataset.sources[{i}].root: {src_root} is not a folder; point "
                            f"it at the {source['format']} data set as downloaded")
        src_root = src_root.resolve()
        fmt = source["format"]
        tag = f"{fmt}{i}-"
        patient_tag = patient_tags.setdefault((fmt, src_root), tag)
        sub = {**source, "root": str(src_root),
               "on_bad_image": dataset.get("on_bad_image", "reject")}
        got = adapter.read(src_root, sub)
        if not got:
            raise UserError(f"config dataset.sources[{i}].root: no inputs found under {src_root} "
                            f"(format {fmt}); point it at the data set as downloaded")
        for row in got:
            row = dict(row)
            reasons = [row["reason"]] if row.get("reason") else []
            row["image_id"] = tag + str(row.get("image_id") or "")
            if row.get("patient_id"):
                row["patient_id"] = patient_tag + str(row["patient_id"])
            source_path = str(row.get("source") or "")
            row["source"] = (src_root / source_path).as_posix() if source_path else ""
            row["dataset"] = fmt
            if keep is not None:
                raw = row.get("birads") or ""
                b = normalize_birads(raw) if raw else None
                if not raw:
                    reasons.append(f"no BI-RADS value, and dataset.sources[{i}].birads keeps "
                                   f"only BI-RADS {', '.join(sorted(keep))}")
                elif b is not None and b not in keep:
                    reasons.append(f"BI-RADS {b} not kept for this source "
                                   f"(dataset.sources[{i}].birads)")
                # an unknown value: finalize says "unknown BI-RADS value"
            if not reasons and row["source"]:
                if row["source"] in used:
                    reasons.append("the same image is listed by "
                                   f"dataset.sources[{used[row['source']]}]; it is used once")
                else:
                    used[row["source"]] = i
            row["reason"] = "; ".join(reasons)
            rows.append(row)
    return rows
