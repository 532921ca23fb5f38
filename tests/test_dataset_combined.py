"""The combined format: several data sets pooled (an INbreast-layout phantom, a csv table and a
folder per label), with id prefixes, per-source BI-RADS filters, and sources named relative to
each source's root (no folder of the user's in the manifest), found again through source_roots."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mammosynth.config import validate
from mammosynth.datasets import combined, source_file, source_roots
from mammosynth.datasets.ingest import ingest
from mammosynth.datasets.phantom import write_phantom
from mammosynth.errors import UserError
from mammosynth.imaging.pipeline import preprocess_table
from mammosynth.labels import normalize_birads

from conftest import breast_image

REPO = Path(__file__).resolve().parents[1]
BIRADS = {"scheme": "birads"}
BINARY = {"scheme": "binary"}
# csv source: path -> BI-RADS as such tables write it
CSV_ROWS = {"a.png": "BI-RADS 0", "b.png": "2", "c.png": "BI-RADS 4", "d.png": "3",
            "missing.png": "2"}


def png(path: Path, side: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(breast_image(40, 32, side) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """Three small data sets in their own layouts; returns {name: (root, expectations)}."""
    base = tmp_path_factory.mktemp("sets")
    phantom = write_phantom(base / "INbreast Release 1.0", patients=5, height=96, width=80)
    csv_root = base / "csvset"
    for name in CSV_ROWS:
        if name != "missing.png":
            png(csv_root / "images" / name, "R")
    lines = ["path,birads,patient_id"] + [f"images/{name},{b},P{i // 2}"
                                          for i, (name, b) in enumerate(CSV_ROWS.items())]
    (csv_root / "table.csv").write_text("\n".join(lines) + "\n")
    folder_root = base / "folderset"
    png(folder_root / "normal" / "n1.png")
    png(folder_root / "abnormal" / "x1.png")
    return {"base": base, "inbreast": base / "INbreast Release 1.0", "phantom": phantom,
            "csv": csv_root, "folder": folder_root}


def sources(data, inbreast_birads=None, csv_birads=None, folder=True) -> list[dict]:
    out = [{"format": "inbreast", "root": str(data["inbreast"])},
           {"format": "csv", "root": str(data["csv"]), "table": "table.csv"}]
    if inbreast_birads is not None:
        out[0]["birads"] = inbreast_birads
    if csv_birads is not None:
        out[1]["birads"] = csv_birads
    if folder:
        out.append({"format": "folder", "root": str(data["folder"])})
    return out


def combined_set(data, **kw) -> dict:
    return {"format": "combined", "sources": sources(data, **kw)}


def read(data, **kw) -> list[dict]:
    return combined.read(data["base"], combined_set(data, **kw))


# --- ids, sources, the dataset column ------------------------------------------------------------

def test_prefixes_relative_sources_and_dataset_column(data):
    dataset = combined_set(data)
    rows = combined.read(data["base"], dataset)
    n_inbreast = len(data["phantom"])
    assert len(rows) == n_inbreast + len(CSV_ROWS) + 2
    by_set = Counter(r["dataset"] for r in rows)
    assert by_set == {"inbreast": n_inbreast, "csv": len(CSV_ROWS), "folder": 2}
    name = {"inbreast": "inbreast0", "csv": "csv1", "folder": "folder2"}
    roots = source_roots(dataset)
    assert roots == {"inbreast0": str(data["inbreast"]), "csv1": str(data["csv"]),
                     "folder2": str(data["folder"])}
    for r in rows:
        assert r["image_id"].startswith(name[r["dataset"]] + "-")
        assert r["patient_id"].startswith(name[r["dataset"]] + "-")
        # the source's name, then the path under its root: no folder of the user's
        assert r["source"].startswith(name[r["dataset"]] + "/")
        assert str(data["base"]) not in r["source"]
        if not r.get("reason"):
            assert source_file(r["source"], roots).is_file()
    ib = [r for r in rows if r["dataset"] == "inbreast"]
    assert sorted(r["image_id"] for r in ib) == sorted(
        f"inbreast0-{f}" for f in data["phantom"]["file_name"])
    assert sorted(r["source"] for r in ib) == sorted(
        f"inbreast0/{p}" for p in data["phantom"]["path"])
    first = ib[0]["source"]
    assert source_file(first, roots) == data["inbreast"] / first.removeprefix("inbreast0/")
    # the csv adapter's reason for the missing image is kept; its source is named the same way
    [missing] = [r for r in rows if r["source"].endswith("missing.png")]
    assert missing["source"] == "csv1/images/missing.png"
    assert missing["reason"] == "table.csv line 6: no file images/missing.png under the root"
    assert len({r["image_id"] for r in rows}) == len(rows)


def test_source_file():
    single = source_roots({"format": "folder", "root": "data/set"})
    assert single == {"": "data/set"}
    assert source_file("normal/a.png", single) == Path("data/set/normal/a.png")
    pooled = {"kau_bcmd0": "data/KAU-BCMD", "cbis_ddsm1": "/abs/CBIS-DDSM"}
    assert source_file("kau_bcmd0/Birad1/x.jpg", pooled) == Path("data/KAU-BCMD/Birad1/x.jpg")
    assert source_file("cbis_ddsm1/CBIS-DDSM/1.dcm", pooled) == Path(
        "/abs/CBIS-DDSM/CBIS-DDSM/1.dcm")
    # an absolute source (a csv table may list one) is the file itself, whatever the roots
    assert source_file("/data/x/1-1.dcm", pooled) == Path("/data/x/1-1.dcm")
    assert source_file("/data/x/1-1.dcm", single) == Path("/data/x/1-1.dcm")
    with pytest.raises(UserError, match=r"source 'mias2/mdb001\.pgm' names no data set of "
                                        r"dataset\.sources \(kau_bcmd0, cbis_ddsm1\)"):
        source_file("mias2/mdb001.pgm", pooled)


def test_absolute_source_of_a_csv_source_is_kept(data, tmp_path):
    image = png(tmp_path / "elsewhere" / "e.png", "R")
    table = tmp_path / "abs.csv"
    table.write_text(f"path,birads\n{image},2\n")
    dataset = {"format": "combined",
               "sources": [{"format": "csv", "root": str(data["csv"]), "table": str(table)}]}
    [row] = combined.read(data["base"], dataset)
    assert row["source"] == str(image) and not row.get("reason")
    assert source_file(row["source"], source_roots(dataset)) == image


def test_relative_source_roots_stay_relative(data, monkeypatch):
    """A source root relative to the working directory (like dataset.root) stays so."""
    monkeypatch.chdir(data["base"])
    dataset = {"format": "combined", "sources": [{"format": "folder", "root": "folderset"}]}
    rows = combined.read(Path("."), dataset)
    assert {r["source"] for r in rows} == {"folder0/abnormal/x1.png", "folder0/normal/n1.png"}
    roots = source_roots(dataset)
    assert roots == {"folder0": "folderset"}
    assert {source_file(r["source"], roots) for r in rows} == {
        Path("folderset/abnormal/x1.png"), Path("folderset/normal/n1.png")}


# --- the BI-RADS filter --------------------------------------------------------------------------

def test_birads_filter(data):
    keep = ["BI-RADS 1", 3, "4a", "4b", "4c", "5"]  # as a config may write them
    rows = read(data, inbreast_birads=keep, csv_birads=[0, "2"])
    ib = [r for r in rows if r["dataset"] == "inbreast"]
    expected = Counter(normalize_birads(b) for b in data["phantom"]["birads"])
    dropped = [r for r in ib if r.get("reason")]
    assert len(dropped) == expected["2"] + expected["6"] + expected["4"]
    for r in dropped:
        b = normalize_birads(r["birads"])
        assert r["reason"] == f"BI-RADS {b} not kept for this source (dataset.sources[0].birads)"
    csv_rows = {r["source"].rsplit("/", 1)[1]: r.get("reason", "") for r in rows
                if r["dataset"] == "csv"}
    assert csv_rows == {
        "a.png": "", "b.png": "",
        "c.png": "BI-RADS 4 not kept for this source (dataset.sources[1].birads)",
        "d.png": "BI-RADS 3 not kept for this source (dataset.sources[1].birads)",
        # an adapter's own reason comes first
        "missing.png": "table.csv line 6: no file images/missing.png under the root"}
    # no filter on the folder source: its labels pass
    assert all(not r.get("reason") for r in rows if r["dataset"] == "folder")


def test_filter_on_a_source_without_birads(data):
    rows = combined.read(data["base"], {"sources": [
        {"format": "folder", "root": str(data["folder"]), "birads": [1]}]})
    assert {r["reason"] for r in rows} == {
        "no BI-RADS value, and dataset.sources[0].birads keeps only BI-RADS 1"}


def test_same_data_set_twice(data):
    """Listed twice with different filters: distinct image ids, one patient id per patient; an
    image both filters keep is used once."""
    src = [{"format": "inbreast", "root": str(data["inbreast"]), "birads": ["1", "2"]},
           {"format": "inbreast", "root": str(data["inbreast"]), "birads": ["2", "3", "4a", "4b",
                                                                             "4c", "5", "6"]}]
    rows = combined.read(data["base"], {"sources": src})
    assert len({r["image_id"] for r in rows}) == len(rows)
    assert {r["patient_id"].split("-")[0] for r in rows} == {"inbreast0"}
    assert {r["source"].split("/")[0] for r in rows} == {"inbreast0", "inbreast1"}
    # the file under the source's name: used once
    twice = Counter(r["source"].split("/", 1)[1] for r in rows if not r.get("reason"))
    assert set(twice.values()) == {1}
    n2 = sum(normalize_birads(b) == "2" for b in data["phantom"]["birads"])
    assert n2 > 0
    dup = [r for r in rows if "listed by" in r.get("reason", "")]
    assert len(dup) == n2 and {r["reason"] for r in dup} == {
        "the same image is listed by dataset.sources[0]; it is used once"}
    ok = sum(not r.get("reason") for r in rows)
    assert ok == len(data["phantom"])  # every image used exactly once


# --- problems -------------------------------------------------------------------------------------
# The sources' shape, formats and roots are the config check's (mammosynth.config); the BI-RADS
# filter's values are read here.

@pytest.mark.parametrize("src, message", [
    ([{"format": "folder", "root": ".", "birads": ["7"]}],
     r"sources\[0\]\.birads: '7' is not a BI-RADS category"),
    ([{"format": "folder", "root": ".", "birads": []}],
     r"sources\[0\]\.birads: \[\] is not a list"),
])
def test_birads_filter_errors(data, src, message):
    with pytest.raises(UserError, match=message) as e:
        combined.read(data["base"], {"format": "combined", "sources": src})
    assert "\n" not in str(e.value)


def test_empty_source(data, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"sources\[1\]\.root: no inputs found under .*empty"):
        combined.read(data["base"], {"sources": [
            {"format": "folder", "root": str(data["folder"])},
            {"format": "folder", "root": str(tmp_path / "empty")}]})


def test_paper_002_sources_validate_against_the_schema():
    config = {"dataset": {"format": "combined", "root": "data", "sources": [
        {"format": "kau_bcmd", "root": "data/KAU-BCMD", "birads": [1, 3, 4, 5]},
        {"format": "cbis_ddsm", "root": "data/CBIS-DDSM", "birads": [0, 2]}]},
        "labels": {"scheme": "birads"}}
    validate(config, REPO / "workflow/schemas/config.schema.yaml")
    assert combined._keep(0, config["dataset"]["sources"][0]) == {"1", "3", "4", "5"}


# --- through ingest and preprocessing ------------------------------------------------------------

@pytest.mark.parametrize("labels", [BIRADS, BINARY])
def test_ingest_then_preprocess(data, tmp_path, labels):
    dataset = {"format": "combined", "root": str(data["base"]), "on_bad_image": "reject",
               "sources": sources(data, inbreast_birads=[1, 2, 3, "4a", "4b", "4c", 5],
                                  csv_birads=[0, 2], folder=labels is BINARY)}
    table = ingest(dataset, labels)
    assert "dataset" in table.columns
    assert set(table["dataset"]) == ({"inbreast", "csv", "folder"} if labels is BINARY
                                     else {"inbreast", "csv"})
    ok = table[table["status"] == "ok"]
    # BI-RADS 0 is a class of the birads scheme, not of the binary one (finalize rejects it)
    assert set(ok.loc[ok["dataset"] == "csv", "birads"]) == ({"0", "2"} if labels is BIRADS
                                                              else {"2"})
    if labels is BIRADS:
        assert set(ok["label"]) <= {f"birads{i}" for i in range(6)}
    assert not table["source"].str.contains(str(data["base"])).any()
    manifest = preprocess_table(table, source_roots(dataset), tmp_path / "images", size=32)
    done = manifest[manifest["status"] == "ok"]
    assert len(done) == len(ok) > 0
    for path in done["image_path"]:
        assert Path(path).is_file()
    assert (manifest["image_id"] == table["image_id"]).all()
    assert (manifest["dataset"] == table["dataset"]).all()  # the manifest names each row's source
    assert not manifest["reason"].str.contains("\n").any()
    assert isinstance(manifest, pd.DataFrame)
