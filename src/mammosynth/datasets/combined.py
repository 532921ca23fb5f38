"""Several data sets pooled into one: `dataset.sources`, each `{format, root, table?, birads?}`.

    dataset:
      format: combined
      # dataset.root is not used: each source has its own root
      sources:
        - {format: kau_bcmd, root: data/KAU-BCMD, birads: [1, 3, 4, 5]}
        - {format: cbis_ddsm, root: data/CBIS-DDSM, birads: [0, 2]}

- Each source is read by its own adapter (any format but phantom and combined), with its own
  root (relative to the working directory, like dataset.root) and, for csv, its table. The config
  check (mammosynth.config) has made sure there are sources, each with a known format and a root
  that is a folder.
- Each source has a name, `<format><index>` (`kau_bcmd0`; `source_prefix`). Ids never collide:
  `image_id` gets the prefix `<name>-` (`kau_bcmd0-`), `patient_id` the prefix of the first source
  with the same format and root, so that a data set listed twice (say with different BI-RADS
  filters) keeps each patient one patient for the splits.
- `source` becomes `<name>/<path relative to the source's root>` (`kau_bcmd0/Birad1/x.jpg`): no
  folder of the user's in the manifest. `source_roots(dataset)` maps each name to its root, and
  the preprocessing step finds the file through it (`source_file`). An absolute path an adapter
  gives (a csv table may list some) is kept as it is.
- The optional manifest column `dataset` names each row's source format.
- `birads`: keep only these BI-RADS categories of this source; any other row is rejected ("BI-RADS
  X not kept for this source (dataset.sources[i].birads)"), and so is a row with no BI-RADS at all
  (a folder-format label, CMMD), since the filter cannot be checked.
- One image listed by two sources (overlapping filters on one data set) is used once; the later
  row is rejected.
"""

from __future__ import annotations

from pathlib import Path

from mammosynth.datasets import adapter, source_prefix
from mammosynth.errors import UserError
from mammosynth.labels import BIRADS, normalize_birads


def _keep(i: int, source: dict) -> set[str] | None:
    """The BI-RADS categories dataset.sources[i].birads keeps (None: no filter)."""
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


def read(root: Path, dataset: dict) -> list[dict]:
    rows: list[dict] = []
    patient_tags: dict[tuple[str, Path], str] = {}
    used: dict[Path, int] = {}  # image file (absolute) -> the source that has it
    for i, source in enumerate(dataset["sources"]):
        keep = _keep(i, source)
        fmt, name = source["format"], source_prefix(i, source)
        src_root = Path(source["root"])
        absolute = src_root.resolve()  # one data set spelt two ways is still one
        tag = f"{name}-"
        patient_tag = patient_tags.setdefault((fmt, absolute), tag)
        sub = {**source, "on_bad_image": dataset.get("on_bad_image", "reject")}
        got = adapter(fmt).read(src_root, sub)
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
            if source_path and not Path(source_path).is_absolute():
                row["source"] = f"{name}/{source_path}"
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
            if not reasons and source_path:
                image = absolute / source_path
                if image in used:
                    reasons.append("the same image is listed by "
                                   f"dataset.sources[{used[image]}]; it is used once")
                else:
                    used[image] = i
            row["reason"] = "; ".join(reasons)
            rows.append(row)
    return rows
