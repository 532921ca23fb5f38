"""INbreast adapter against the real INbreast.csv and a fake AllDICOMs tree (empty .dcm files)."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from mammosynth.datasets import INGEST_COLUMNS, inbreast
from mammosynth.datasets.ingest import ingest
from mammosynth.errors import UserError

BIRADS_COUNTS = {"1": 67, "2": 220, "3": 23, "4a": 13, "4b": 8, "4c": 22, "5": 49, "6": 8}
# Patients: a few 16-hex case hashes; one written in upper case to check it is lower-cased.
HASHES = ["6c613a14b80a8591", "0a1b2c3d4e5f6789", "ffffeeee00001111", "ABCDEF0123456789",
          "1234567890abcdef"]
BINARY = {"scheme": "binary"}


def csv_rows(path: Path) -> list[dict]:
    """The metadata rows parsed independently of the package (csv module, ';', CRLF)."""
    with open(path, newline="", encoding="ascii") as f:
        return list(csv.DictReader(f, delimiter=";"))


def dicom_name(row: dict, i: int) -> str:
    view = {"MLO": "ML"}.get(row["View"], row["View"])
    return f"{row['File Name']}_{HASHES[i % len(HASHES)]}_MG_{row['Laterality']}_{view}_ANON.dcm"


def build_tree(root: Path, meta: Path, folder: str = "AllDICOMs") -> dict[str, dict]:
    """Copy the metadata and create one (empty) DICOM per row; return {File Name: expectations}."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(meta, root / "INbreast.csv")
    (root / folder).mkdir(parents=True, exist_ok=True)
    expected = {}
    for i, row in enumerate(csv_rows(meta)):
        name = dicom_name(row, i)
        (root / folder / name).write_bytes(b"")
        expected[row["File Name"]] = {"name": name, "source": f"{folder}/{name}",
                                      "patient_id": HASHES[i % len(HASHES)].lower(),
                                      "row": row}
    return expected


def run(root: Path, labels: dict = BINARY):
    return ingest({"format": "inbreast", "root": str(root), "on_bad_image": "reject"}, labels)


@pytest.fixture
def tree(tmp_path, inbreast_csv):
    root = tmp_path / "INbreast Release 1.0"
    return root, build_tree(root, inbreast_csv)


# --- the metadata table itself -----------------------------------------------------------------

def test_fixture_is_the_real_file(inbreast_csv):
    raw = inbreast_csv.read_bytes()
    assert raw.count(b"\r\n") == 411 and b"\n" not in raw.replace(b"\r\n", b"")
    rows = csv_rows(inbreast_csv)
    assert len(rows) == 410
    assert {r["Patient ID"] for r in rows} == {"removed"}


def test_read_metadata_counts(tmp_path, inbreast_csv):
    shutil.copyfile(inbreast_csv, tmp_path / "INbreast.csv")
    table, path = inbreast.read_index(tmp_path)
    assert path == tmp_path / "INbreast.csv"
    assert len(table) == 410
    assert dict(Counter(table["Bi-Rads"])) == BIRADS_COUNTS
    assert dict(Counter(table["View"])) == {"CC": 203, "MLO": 206, "FB": 1}
    assert dict(Counter(table["Laterality"])) == {"L": 209, "R": 201}
    assert set(table["Patient ID"]) == {"removed"}
    # File Name stays a string of digits (not an int, not '22678622.0')
    assert all(isinstance(v, str) and v.isdigit() and len(v) == 8 for v in table["File Name"])
    assert table["File Name"].is_unique
    assert all(isinstance(v, str) for v in table["Bi-Rads"])
    # the ACR cell of 193 spaces is stripped to '' (and only that one)
    acr = Counter(table["ACR"])
    assert acr == {"1": 136, "2": 146, "3": 99, "4": 28, "": 1}
    assert table.loc[table["ACR"] == "", "File Name"].tolist() == ["53582540"]
    assert table.loc[table["View"] == "FB", "File Name"].tolist() == ["50994300"]
    # no column name keeps CR or spaces
    assert "Bi-Rads" in table.columns and all(c == c.strip() for c in table.columns)


# --- ingest -------------------------------------------------------------------------------------

def test_ingest_binary(tree):
    root, expected = tree
    df = run(root)
    assert list(df.columns) == INGEST_COLUMNS
    assert len(df) == 410
    assert (df["status"] == "ok").all(), df.loc[df["status"] != "ok", "reason"].tolist()
    assert (df["reason"] == "").all()
    assert dict(Counter(df["label"])) == {"normal": 67, "abnormal": 343}
    assert dict(Counter(df["birads"])) == BIRADS_COUNTS
    assert set(df["view"]) == {"CC", "MLO", "FB"}
    assert dict(Counter(df["view"])) == {"CC": 203, "MLO": 206, "FB": 1}
    assert set(df["laterality"]) == {"L", "R"}
    assert df["image_id"].is_unique
    for rec in df.to_dict("records"):
        exp = expected[rec["image_id"]]
        assert rec["patient_id"] == exp["patient_id"]
        assert rec["source"] == exp["source"]
        assert rec["laterality"] == exp["row"]["Laterality"]
        assert rec["birads"] == exp["row"]["Bi-Rads"]
        assert rec["label"] == ("normal" if exp["row"]["Bi-Rads"] == "1" else "abnormal")
    assert set(df["patient_id"]) == {h.lower() for h in HASHES}


def test_ingest_birads_scheme(tree):
    root, _ = tree
    df = run(root, {"scheme": "birads"})
    assert len(df) == 410
    rejected = df[df["status"] == "rejected"]
    assert len(rejected) == 8
    assert set(rejected["birads"]) == {"6"}
    assert all("not mapped" in r for r in rejected["reason"])
    ok = df[df["status"] == "ok"]
    assert dict(Counter(ok["label"])) == {"birads1": 67, "birads2": 220, "birads3": 23,
                                          "birads4": 43, "birads5": 49}
    assert set(ok.loc[ok["birads"].isin(["4a", "4b", "4c"]), "label"]) == {"birads4"}
    # rejected rows stay in the table with their label empty
    assert (rejected["label"] == "").all()


def test_accounting_missing_extra_and_duplicate(tree):
    root, expected = tree
    names = sorted(expected)
    gone = names[:2]
    for name in gone:
        (root / expected[name]["source"]).unlink()
    extra = "AllDICOMs/99999999_" + HASHES[1] + "_MG_L_CC_ANON.dcm"
    (root / extra).write_bytes(b"")
    # duplicate one metadata row (appended at the end, CRLF like the rest)
    lines = (root / "INbreast.csv").read_bytes().split(b"\r\n")
    assert lines[-1] == b""
    dup_line = lines[5]
    dup_name = dup_line.split(b";")[5].decode()
    (root / "INbreast.csv").write_bytes(b"\r\n".join(lines[:-1] + [dup_line, b""]))

    df = run(root)
    n_csv_rows, n_unlisted = 411, 1
    assert len(df) == n_csv_rows + n_unlisted
    ok, rejected = df[df["status"] == "ok"], df[df["status"] == "rejected"]
    assert len(ok) + len(rejected) == len(df)
    assert (rejected["reason"] != "").all() and (ok["reason"] == "").all()
    assert len(rejected) == 4
    assert df["image_id"].is_unique

    missing = rejected[rejected["reason"].str.contains("no DICOM named")]
    assert sorted(missing["image_id"]) == gone
    for name, reason in zip(missing["image_id"], missing["reason"]):
        assert f"{name}_*.dcm" in reason

    unlisted = rejected[rejected["reason"].str.contains("no row in")]
    assert len(unlisted) == 1
    rec = unlisted.iloc[0]
    assert "INbreast.csv" in rec["reason"]
    assert rec["source"] == extra
    assert rec["patient_id"] == HASHES[1]
    assert "99999999" in rec["image_id"]

    dup = rejected[rejected["reason"].str.contains("duplicate File Name")]
    assert len(dup) == 1 and dup_name in dup.iloc[0]["reason"]
    assert dup.iloc[0]["source"].startswith("INbreast.csv:")
    # the first occurrence of the duplicated File Name is still linked to its image
    first = df[df["image_id"] == dup_name]
    assert len(first) == 1 and first.iloc[0]["status"] == "ok"
    assert first.iloc[0]["source"] == expected[dup_name]["source"]
    # every other input is ok
    assert len(ok) == 410 - 2


def test_two_dicoms_for_one_row_are_rejected_not_guessed(tree):
    root, expected = tree
    name = sorted(expected)[10]
    clash = root / "AllDICOMs" / "copy" / f"{name}_00000000deadbeef_MG_R_CC_ANON.dcm"
    clash.parent.mkdir()
    clash.write_bytes(b"")
    df = run(root)
    assert len(df) == 410  # neither file shows up again as an unlisted input
    row = df[df["image_id"] == name].iloc[0]
    assert row["status"] == "rejected"
    assert "2 DICOMs" in row["reason"] and expected[name]["source"] in row["reason"]


def test_renamed_dicom_folder_is_searched_recursively(tmp_path, inbreast_csv):
    root = tmp_path / "download"
    expected = build_tree(root, inbreast_csv, folder="INbreast/ALL-IMGS")
    df = run(root)
    assert len(df) == 410 and (df["status"] == "ok").all()
    assert all(s.startswith("INbreast/ALL-IMGS/") for s in df["source"])
    assert set(df["source"]) == {e["source"] for e in expected.values()}


def test_metadata_in_a_subfolder_is_found(tmp_path, inbreast_csv):
    root = tmp_path / "root"
    expected = build_tree(root / "INbreast Release 1.0", inbreast_csv)
    df = run(root)
    assert (df["status"] == "ok").all() and len(df) == 410
    assert set(df["source"]) == {"INbreast Release 1.0/" + e["source"] for e in expected.values()}


# --- user errors --------------------------------------------------------------------------------

def test_missing_metadata_is_a_user_error(tmp_path):
    (tmp_path / "AllDICOMs").mkdir()
    (tmp_path / "AllDICOMs" / "22678622_6c613a14b80a8591_MG_R_CC_ANON.dcm").write_bytes(b"")
    with pytest.raises(UserError, match="INbreast.csv"):
        run(tmp_path)


def test_missing_birads_column_is_a_user_error(tmp_path, inbreast_csv):
    lines = inbreast_csv.read_bytes().split(b"\r\n")
    # drop the last field (Bi-Rads) of every line
    cut = [line.rsplit(b";", 1)[0] if line else line for line in lines]
    assert cut[0].endswith(b";ACR")
    (tmp_path / "INbreast.csv").write_bytes(b"\r\n".join(cut))
    with pytest.raises(UserError, match="Bi-Rads") as err:
        run(tmp_path)
    assert "missing column" in str(err.value)


def test_comma_separated_copy_is_a_user_error(tmp_path, inbreast_csv):
    # someone re-saved the table with commas: say so, don't produce 410 unlabelled rows
    text = inbreast_csv.read_text(encoding="ascii").replace(";", ",")
    (tmp_path / "INbreast.csv").write_text(text, encoding="ascii")
    with pytest.raises(UserError, match="semicolon"):
        run(tmp_path)


def test_root_that_is_not_a_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="dataset.root"):
        run(tmp_path / "nope")
