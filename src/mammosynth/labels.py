"""BI-RADS values as data sets write them, and the config's BI-RADS -> label maps."""

from __future__ import annotations

import re

from mammosynth.errors import UserError

BIRADS = ("0", "1", "2", "3", "4", "4a", "4b", "4c", "5", "6")

SCHEMES = {
    # normal = BI-RADS 1; everything else abnormal. With INbreast this reproduces Sutjiadi et al.
    # 2025, Table 4 (67 normal / 343 abnormal images).
    "binary": {"normal": ["1"], "abnormal": ["2", "3", "4", "4a", "4b", "4c", "5", "6"]},
    # Six BI-RADS classes 0..5 as in the best-weights paper; 4a/4b/4c count as 4, 6 is not a class.
    "birads": {"birads0": ["0"], "birads1": ["1"], "birads2": ["2"], "birads3": ["3"],
               "birads4": ["4", "4a", "4b", "4c"], "birads5": ["5"]},
}

_PREFIX = re.compile(r"^(bi-?rads|birads)\s*", re.IGNORECASE)


def normalize_birads(value) -> str | None:
    """'4A', 'BI-RADS 4a', 4, 4.0 -> '4'/'4a'; None for a value that is no BI-RADS category."""
    if value is None:
        return None
    text = str(value).strip()
    text = _PREFIX.sub("", text).strip().lower()
    if re.fullmatch(r"\d+\.0+", text):
        text = text.split(".")[0]
    return text if text in BIRADS else None


def label_map(labels_config: dict) -> dict[str, str]:
    """The config's `labels` section -> {birads: label}, labels in class-index order."""
    mapping = labels_config.get("map") or SCHEMES[labels_config.get("scheme", "binary")]
    out: dict[str, str] = {}
    for label, values in mapping.items():
        for value in values:
            b = normalize_birads(value)
            if b is None:
                raise UserError(f"config labels.map.{label}: {value!r} is not a BI-RADS category "
                                f"(one of {', '.join(BIRADS)})")
            if b in out:
                raise UserError(f"config labels.map: BI-RADS {b} is mapped to both "
                                f"{out[b]!r} and {label!r}")
            out[b] = label
    return out


def label_names(labels_config: dict) -> list[str]:
    """Labels in class-index order (the order of the map)."""
    mapping = labels_config.get("map") or SCHEMES[labels_config.get("scheme", "binary")]
    return list(mapping)
