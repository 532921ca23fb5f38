"""BI-RADS normalisation, label maps, and the csv / folder data set adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from mammosynth.datasets import INGEST_COLUMNS, pseudonym
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError
from mammosynth.labels import BIRADS, label_map, label_names, normalize_birads

BINARY = {"scheme": "binary"}


# --- normalize_birads ---------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("4A", "4a"), ("4a", "4a"), ("BI-RADS 4", "4"), ("BI-RADS 4a", "4a"), ("birads5", "5"),
    ("BIRADS 4C", "4c"), ("Bi-Rads 0", "0"), (4, "4"), (4.0, "4"), ("4.0", "4"), ("4.00", "4"),
    (" 2 ", "2"), ("6", "6"), ("0", "0"),
    ("7", None), ("x", None), (None, None), ("", None), ("4.5", None), ("4d", None),
    ("nan", None), (float("nan"), None), ("-1", None), ("BI-RADS", None),
])
def test_normalize_birads(value, expected):
    assert normalize_birads(value) == expected


def test_normalize_birads_outputs_are_categories():
    for value in BIRADS:
        assert normalize_birads(value) == value
        assert normalize_birads(value.upper()) == value


# --- label_map ----------------------------------------------------------------------------------

def test_label_map_binary():
    m = label_map({"scheme": "binary"})
    assert m == {"1": "normal", "2": "abnormal", "3": "abnormal", "4": "abnormal",
                 "4a": "abnormal", "4b": "abnormal", "4c": "abnormal", "5": "abnormal",
                 "6": "abnormal"}
    assert label_names({"scheme": "binary"}) == ["normal", "abnormal"]
    # the default scheme is binary
    assert label_map({}) == m


def test_label_map_birads():
    m = label_map({"scheme": "birads"})
    assert m["0"] == "birads0" and m["5"] == "birads5"
    assert {m[b] for b in ("4", "4a", "4b", "4c")} == {"birads4"}
    assert "6" not in m
    assert label_names({"scheme": "birads"}) == [f"birads{i}" for i in range(6)]


def test_label_map_custom_normalises_values():
    cfg = {"map": {"low": ["1", "BI-RADS 2"], "high": ["4A", 5, "4.0"]}}
    assert label_map(cfg) == {"1": "low", "2": "low", "4a": "high", "5": "high", "4": "high"}
    assert label_names(cfg) == ["low", "high"]


def test_label_map_custom_wins_over_scheme():
    cfg = {"scheme": "birads", "map": {"benign": ["2"], "malignant": ["5", "6"]}}
    assert label_map(cfg) == {"2": "benign", "5": "malignant", "6": "malignant"}


def test_label_map_invalid_value():
    with pytest.raises(UserError, match="'7'") as err:
        label_map({"map": {"normal": ["1"], "odd": ["7"]}})
    assert "odd" in str(err.value)


def test_label_map_value_mapped_twice():
    # '1' and '1.0' are the same category
    with pytest.raises(UserError, match="mapped to both"):
        label_map({"map": {"a": ["1"], "b": ["2", "1.0"]}})
    with pytest.raises(UserError, match="4a"):
        label_map({"map": {"a": ["4a"], "b": ["4A"]}})


# --- csv adapter --------------------------------------------------------------------------------

def touch(root: Path, rel: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")


def csv_ingest(root: Path, table: str = "list.csv", labels: dict = BINARY):
    return ingest({"format": "csv", "root": str(root), "table": table, "on_bad_image": "reject"},
                  labels)


ROWS = [("images/a.dcm", "1", "MRN12345", "L", "CC"),
        ("images/b.dcm", "4A", "MRN12345", "Right", "mlo"),
        ("images/c.dcm", "BI-RADS 2", "MRN67890", "", "")]


def write_table(root: Path, sep: str, rows=ROWS, name: str = "list.csv",
                header=("path", "birads", "patient_id", "laterality", "view")) -> None:
    lines = [sep.join(header)] + [sep.join(r) for r in rows]
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_csv_table_separators(tmp_path, sep):
    for rel, *_ in ROWS:
        touch(tmp_path, rel)
    write_table(tmp_path, sep)
    df = csv_ingest(tmp_path)
    assert list(df.columns) == INGEST_COLUMNS
    assert len(df) == 3 and (df["status"] == "ok").all(), df["reason"].tolist()
    assert df["source"].tolist() == [r[0] for r in ROWS]
    assert df["birads"].tolist() == ["1", "4a", "2"]
    assert df["label"].tolist() == ["normal", "abnormal", "abnormal"]
    assert df["laterality"].tolist() == ["L", "R", ""]
    assert df["view"].tolist() == ["CC", "MLO", ""]


def test_csv_ids_are_pseudonyms(tmp_path):
    for rel, *_ in ROWS:
        touch(tmp_path, rel)
    write_table(tmp_path, ",")
    df = csv_ingest(tmp_path)
    for col in ("patient_id", "image_id"):
        for value in df[col]:
            assert "MRN" not in value and "12345" not in value and "67890" not in value
            assert "a.dcm" not in value and "images" not in value
    assert all(v.startswith("pat") for v in df["patient_id"])
    assert all(v.startswith("img") for v in df["image_id"])
    # pseudonyms keep the grouping: the same patient gets the same id, others a different one
    assert df["patient_id"][0] == df["patient_id"][1] != df["patient_id"][2]
    assert df["image_id"].is_unique
    # and they are stable (the same input gives the same id in another run)
    assert df["patient_id"][0] == pseudonym("MRN12345", "pat")
    assert csv_ingest(tmp_path)["patient_id"].tolist() == df["patient_id"].tolist()
    assert "MRN12345" not in df.to_csv(index=False)


def test_csv_without_patient_id_each_image_is_its_own_patient(tmp_path):
    for rel, *_ in ROWS:
        touch(tmp_path, rel)
    write_table(tmp_path, ",", rows=[r[:2] for r in ROWS], header=("path", "birads"))
    df = csv_ingest(tmp_path)
    assert (df["status"] == "ok").all()
    assert df["patient_id"].is_unique


def test_csv_missing_file_is_rejected(tmp_path):
    touch(tmp_path, "images/a.dcm")
    touch(tmp_path, "images/c.dcm")
    write_table(tmp_path, ",")
    df = csv_ingest(tmp_path)
    assert len(df) == 3
    bad = df[df["status"] == "rejected"]
    assert bad["source"].tolist() == ["images/b.dcm"]
    assert "images/b.dcm" in bad.iloc[0]["reason"] and "line 3" in bad.iloc[0]["reason"]
    assert (df.loc[df["status"] == "ok", "reason"] == "").all()


def test_csv_unknown_birads_is_rejected(tmp_path):
    rows = [("a.png", "1", "p1", "", ""), ("b.png", "9", "p2", "", ""),
            ("c.png", "", "p3", "", "")]
    for rel, *_ in rows:
        touch(tmp_path, rel)
    write_table(tmp_path, ",", rows=rows)
    df = csv_ingest(tmp_path)
    assert df["status"].tolist() == ["ok", "rejected", "rejected"]
    assert "unknown BI-RADS" in df["reason"][1] and "'9'" in df["reason"][1]
    assert "no BI-RADS value or label" in df["reason"][2]


def test_csv_label_column(tmp_path):
    for rel in ("a.png", "b.png", "c.png"):
        touch(tmp_path, rel)
    (tmp_path / "list.csv").write_text("path,label\na.png,normal\nb.png,abnormal\nc.png,benign\n")
    df = csv_ingest(tmp_path)
    assert df["status"].tolist() == ["ok", "ok", "rejected"]
    assert df["label"].tolist()[:2] == ["normal", "abnormal"]
    assert "'benign'" in df["reason"][2]


def test_csv_duplicate_path_is_rejected(tmp_path):
    touch(tmp_path, "a.png")
    (tmp_path / "list.csv").write_text("path,birads\na.png,1\na.png,2\n")
    df = csv_ingest(tmp_path)
    assert df["status"].tolist() == ["ok", "rejected"]
    assert "duplicate" in df["reason"][1]


def test_csv_utf8_bom_and_non_ascii_names(tmp_path):
    touch(tmp_path, "José/a.png")
    (tmp_path / "list.csv").write_bytes("\ufeffpath;birads\nJosé/a.png;2\n".encode("utf-8"))
    df = csv_ingest(tmp_path)
    assert df["status"].tolist() == ["ok"]
    assert df["source"][0] == "José/a.png"


def test_csv_latin1_table_is_a_user_error(tmp_path):
    touch(tmp_path, "a.png")
    (tmp_path / "list.csv").write_bytes("path,birads,patient_id\na.png,1,Müller\n"
                                        .encode("latin-1"))
    with pytest.raises(UserError, match="UTF-8"):
        csv_ingest(tmp_path)


def test_csv_without_path_column_is_a_user_error(tmp_path):
    touch(tmp_path, "a.png")
    (tmp_path / "list.csv").write_text("file,birads\na.png,1\n")
    with pytest.raises(UserError, match="'path'"):
        csv_ingest(tmp_path)


def test_csv_without_label_or_birads_column_is_a_user_error(tmp_path):
    touch(tmp_path, "a.png")
    (tmp_path / "list.csv").write_text("path,patient_id\na.png,p1\n")
    with pytest.raises(UserError, match="birads"):
        csv_ingest(tmp_path)


def test_csv_unreadable_table_is_a_user_error(tmp_path):
    """The config check makes sure dataset.table exists; one that cannot be read (a folder here,
    or a file gone since) still ends in one line naming it, not a traceback."""
    (tmp_path / "list.csv").mkdir()
    with pytest.raises(UserError, match=r"list\.csv: cannot read it \(Is a directory\); "
                                        "dataset.table must name a readable file"):
        csv_ingest(tmp_path)


def test_csv_table_absolute_path(tmp_path):
    root = tmp_path / "data"
    touch(root, "x/a.png")
    table = tmp_path / "elsewhere.csv"
    table.write_text("path,birads\nx/a.png,1\n")
    df = csv_ingest(root, table=str(table))
    assert df["status"].tolist() == ["ok"]


def test_csv_empty_table_is_a_user_error(tmp_path):
    (tmp_path / "list.csv").write_text("path,birads\n")
    with pytest.raises(UserError, match="no inputs"):
        csv_ingest(tmp_path)


# --- folder adapter -----------------------------------------------------------------------------

def folder_ingest(root: Path, labels: dict = BINARY):
    return ingest({"format": "folder", "root": str(root), "on_bad_image": "reject"}, labels)


def test_folder_adapter(tmp_path):
    for rel in ("normal/a.png", "abnormal/sub/b.png", "other/c.png", "normal/notes.txt",
                "abnormal/README"):
        touch(tmp_path, rel)
    df = folder_ingest(tmp_path)
    assert list(df.columns) == INGEST_COLUMNS
    assert sorted(df["source"]) == ["abnormal/sub/b.png", "normal/a.png", "other/c.png"]
    by_source = df.set_index("source")
    assert by_source.loc["normal/a.png", "status"] == "ok"
    assert by_source.loc["normal/a.png", "label"] == "normal"
    assert by_source.loc["abnormal/sub/b.png", "status"] == "ok"
    assert by_source.loc["abnormal/sub/b.png", "label"] == "abnormal"
    assert by_source.loc["other/c.png", "status"] == "rejected"
    assert "'other'" in by_source.loc["other/c.png", "reason"]
    assert df["image_id"].is_unique and df["patient_id"].is_unique
    assert all(v.startswith("img") for v in df["image_id"])


def test_folder_adapter_suffixes_and_top_level_files(tmp_path):
    for rel in ("normal/A.PNG", "normal/b.dcm", "abnormal/c.TIFF", "loose.png",
                "normal/d.jpg.txt", "abnormal/e.bmp", "normal/f.DICOM"):
        touch(tmp_path, rel)
    (tmp_path / "normal" / "dir.png").mkdir()  # a folder whose name looks like an image
    df = folder_ingest(tmp_path)
    # the suffixes every adapter uses (imaging.decode.INPUT_SUFFIXES), any case
    assert sorted(df["source"]) == ["abnormal/c.TIFF", "abnormal/e.bmp", "loose.png",
                                    "normal/A.PNG", "normal/b.dcm", "normal/f.DICOM"]
    loose = df[df["source"] == "loose.png"].iloc[0]
    assert loose["status"] == "rejected" and "no BI-RADS value or label" in loose["reason"]
    assert (df.loc[df["source"] != "loose.png", "status"] == "ok").all()


def test_folder_adapter_with_birads_labels(tmp_path):
    touch(tmp_path, "birads4/a.png")
    touch(tmp_path, "normal/b.png")
    df = folder_ingest(tmp_path, {"scheme": "birads"})
    by_source = df.set_index("source")
    assert by_source.loc["birads4/a.png", "status"] == "ok"
    assert by_source.loc["normal/b.png", "status"] == "rejected"


def test_folder_adapter_empty_is_a_user_error(tmp_path):
    touch(tmp_path, "normal/notes.txt")
    with pytest.raises(UserError, match="no inputs"):
        folder_ingest(tmp_path)
