"""MIAS / mini-MIAS adapter against a small fixture in the download's layout (Info.txt with its
trailing-space header, several rows per image, rows without coordinates; tiny PGMs)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mammosynth.datasets import mias
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError
from mammosynth.imaging.pipeline import preprocess_table

from conftest import breast_image

BINARY = {"scheme": "binary"}
BIRADS = {"scheme": "birads"}
SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")

# The first lines of the real Info.txt (header with a trailing space; NORM rows end in a space),
# plus mdb059 (severity, no coordinates) and a malignant image with a benign second finding.
INFO = """REFNUM BG CLASS SEVERITY X Y RADIUS 
mdb001 G CIRC B 535 425 197
mdb002 G CIRC B 522 280 69
mdb003 D NORM 
mdb004 D NORM 
mdb005 F CIRC B 477 133 30
mdb005 F CIRC B 500 168 26
mdb006 F NORM 
mdb059 F CIRC B
mdb060 G NORM 
mdb209 G CALC M 647 503 87
mdb209 G CALC B 601 470 12
mdb210 G NORM 
"""  # noqa: W291
EXPECTED = {  # refnum: (label, laterality, patient)
    "mdb001": ("abnormal", "R", "mias001"), "mdb002": ("abnormal", "L", "mias001"),
    "mdb003": ("normal", "R", "mias002"), "mdb004": ("normal", "L", "mias002"),
    "mdb005": ("abnormal", "R", "mias003"), "mdb006": ("normal", "L", "mias003"),
    "mdb059": ("abnormal", "R", "mias030"), "mdb060": ("normal", "L", "mias030"),
    "mdb209": ("abnormal", "R", "mias105"), "mdb210": ("normal", "L", "mias105"),
}


def pgm(path: Path, side: str, size: int = 64) -> Path:
    """A small 8-bit PGM (Pillow mode 'L'), the breast's chest wall on `side`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.round(breast_image(size, size, side) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def build(root: Path, info: str = INFO, images: str = "all-mias") -> Path:
    """MIAS-data/Info.txt + MIAS-data/all-mias/mdbNNN.pgm (+ the README, which is not read)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Info.txt").write_text(info, newline="")
    for refnum, (_, side, _) in EXPECTED.items():
        pgm(root / images / f"{refnum}.pgm", side)
    (root / images / "README").write_text("INFORMATION:\nThis file lists the films ...\n")
    return root


def run(root: Path, labels: dict = BINARY):
    return ingest({"format": "mias", "root": str(root), "on_bad_image": "reject"}, labels)


def by_id(table) -> dict[str, dict]:
    return {r["image_id"]: r for r in table.to_dict("records")}


def test_info_header_has_a_trailing_space():
    assert INFO.splitlines()[0] == "REFNUM BG CLASS SEVERITY X Y RADIUS "


def test_one_input_per_image_with_the_worst_finding(tmp_path):
    root = build(tmp_path / "MIAS-data")
    table = run(root)
    assert len(table) == len(EXPECTED) and set(table["status"]) == {"ok"}
    rows = by_id(table)
    for refnum, (label, side, patient) in EXPECTED.items():
        row = rows[refnum]
        assert (row["label"], row["laterality"], row["patient_id"]) == (label, side, patient)
        assert row["source"] == f"all-mias/{refnum}.pgm"
        assert row["label_level"] == "image"
    assert "birads" not in table.columns or set(table["birads"]) == {""}  # MIAS has no BI-RADS
    assert set(table.columns) >= {"image_id", "patient_id", "laterality", "label", "status"}


def test_even_is_left_odd_is_right_and_pairs_share_a_patient(tmp_path):
    table = run(build(tmp_path / "MIAS-data"))
    for row in table.itertuples():
        n = int(row.image_id[3:])
        assert row.laterality == ("L" if n % 2 == 0 else "R")
        assert row.patient_id == f"mias{(n + 1) // 2:03d}"
    pairs = table.groupby("patient_id")["laterality"].apply(lambda s: "".join(sorted(s)))
    assert len(pairs) == 5 and set(pairs) == {"LR"}


def test_parsed_with_split_not_a_space_separator(tmp_path):
    """Tabs, runs of spaces, CRLF and trailing spaces all parse; no 'Unnamed: 7' field."""
    info = INFO.replace("mdb001 G CIRC B", "mdb001\tG  CIRC   B").replace("\n", " \r\n")
    root = build(tmp_path / "MIAS-data", info)
    listed, junk = mias.parse_info(root / "Info.txt", "Info.txt")
    assert junk == []
    assert sorted(listed) == sorted(EXPECTED)
    assert [f for _, f in listed["mdb005"]] == [["mdb005", "F", "CIRC", "B", "477", "133", "30"],
                                                ["mdb005", "F", "CIRC", "B", "500", "168", "26"]]
    assert listed["mdb059"] == [(9, ["mdb059", "F", "CIRC", "B"])]
    assert listed["mdb003"] == [(4, ["mdb003", "D", "NORM"])]
    assert set(run(root)["status"]) == {"ok"}


def test_rows_without_images_and_images_without_rows(tmp_path):
    root = build(tmp_path / "MIAS-data", INFO + "mdb211 G CALC M 680 327 15\n")
    pgm(root / "all-mias/mdb212.pgm", "L")  # no row
    pgm(root / "all-mias/scan 7.pgm", "R")  # not mdbNNN
    table = run(root)
    assert len(table) == len(EXPECTED) + 3
    assert (table["status"] == "ok").sum() == len(EXPECTED)
    rows = by_id(table)
    assert rows["mdb211"]["source"] == "Info.txt:14"
    assert rows["mdb211"]["reason"] == ("no image mdb211.pgm under the data set root "
                                        "(Info.txt line 14)")
    assert rows["mdb212"]["reason"] == "no row for mdb212 in Info.txt"
    assert rows["mdb212"]["source"] == "all-mias/mdb212.pgm"
    other = rows["unlisted1-scan-7"]
    assert other["source"] == "all-mias/scan 7.pgm" and other["status"] == "rejected"
    assert "not mdbNNN" in other["reason"]
    assert table["image_id"].is_unique and all(SAFE.match(i) for i in table["image_id"])


def test_copies_of_an_image_keep_the_pgm(tmp_path):
    root = build(tmp_path / "MIAS-data")
    # a notebook's JPG conversion beside the PGM, and a sorted copy elsewhere
    Image.open(root / "all-mias/mdb001.pgm").save(root / "all-mias/mdb001.jpg")
    (root / "train_data/normal").mkdir(parents=True)
    Image.open(root / "all-mias/mdb003.pgm").save(root / "train_data/normal/mdb003.png")
    table = run(root)
    assert len(table) == len(EXPECTED) + 2 and (table["status"] == "ok").sum() == len(EXPECTED)
    rows = by_id(table)
    assert rows["mdb001"]["source"] == "all-mias/mdb001.pgm"
    assert rows["mdb001-copy2"]["reason"] == "another copy of mdb001 (kept all-mias/mdb001.pgm)"
    assert rows["mdb003-copy2"]["source"] == "train_data/normal/mdb003.png"
    assert table["image_id"].is_unique


def test_bad_rows_are_rejected_with_the_line(tmp_path):
    info = (INFO.replace("mdb006 F NORM ", "mdb006 F NORM B")
            .replace("mdb060 G NORM ", "mdb060 G XYZ")
            .replace("mdb210 G NORM ", "mdb210 G CIRC Q 1 2 3")
            + "Total: 322 images\n")
    table = run(build(tmp_path / "MIAS-data", info))
    rows = by_id(table)
    assert rows["mdb006"]["reason"] == ("Info.txt line 8: CLASS NORM with SEVERITY B "
                                        "contradicts itself")
    assert rows["mdb060"]["reason"].startswith("Info.txt line 10: CLASS 'XYZ' is not one of")
    assert rows["mdb210"]["reason"] == "Info.txt line 13: SEVERITY 'Q' is not B or M"
    junk = rows["info-line14"]
    assert junk["source"] == "Info.txt:14" and "is not a MIAS row" in junk["reason"]
    assert (table["status"] == "ok").sum() == len(EXPECTED) - 3
    assert len(table) == len(EXPECTED) + 1


def test_birads_scheme_rejects_every_image_with_a_reason(tmp_path):
    """MIAS has no BI-RADS: under labels.scheme birads the labels normal/abnormal are not the
    config's labels, so finalize rejects each image saying so."""
    table = run(build(tmp_path / "MIAS-data"), BIRADS)
    assert len(table) == len(EXPECTED) and set(table["status"]) == {"rejected"}
    for reason in table["reason"]:
        assert re.fullmatch(r"label '(normal|abnormal)' is not one of the config's labels "
                            r"\(birads0, birads1, birads2, birads3, birads4, birads5\)", reason)


def test_missing_or_empty_info_is_a_user_error(tmp_path):
    root = tmp_path / "MIAS-data"
    pgm(root / "all-mias/mdb001.pgm", "R")
    with pytest.raises(UserError, match=r"no Info.txt found; point dataset.root"):
        run(root)
    (root / "Info.txt").write_text("REFNUM BG CLASS SEVERITY X Y RADIUS \n")
    with pytest.raises(UserError, match=r"Info.txt: no MIAS rows"):
        run(root)


def test_root_at_the_image_folder_and_info_found_recursively(tmp_path):
    # Info.txt inside all-mias/ (the archive's own layout); root at all-mias itself
    root = tmp_path / "all-mias"
    root.mkdir()
    (root / "info.TXT").write_text(INFO)
    for refnum, (_, side, _) in EXPECTED.items():
        pgm(root / f"{refnum}.pgm", side)
    table = run(root)
    assert set(table["status"]) == {"ok"} and set(table["source"]) == {
        f"{r}.pgm" for r in EXPECTED}
    nested = run(tmp_path)
    assert set(nested["status"]) == {"ok"} and len(nested) == len(EXPECTED)


def test_ingest_and_preprocess(tmp_path):
    root = build(tmp_path / "MIAS-data")
    pgm(root / "all-mias/mdb212.pgm", "L")  # no row: rejected before preprocessing
    table = run(root)
    out = tmp_path / "images"
    manifest = preprocess_table(table, {"": root}, out, size=32)
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) == len(EXPECTED) and len(manifest) == len(EXPECTED) + 1
    assert dict(ok["label"].value_counts()) == {"abnormal": 5, "normal": 5}
    for row in ok.itertuples():
        png = Image.open(row.image_path)
        assert png.size == (32, 32) and png.mode.startswith("I")
        assert row.orig_height == row.orig_width == 64
        assert row.laterality_from == "metadata" and row.chest_wall_seen == row.laterality
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{i}.png" for i in EXPECTED)
