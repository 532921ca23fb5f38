"""Confounds in view (report/confounds.py): per-source label counts, labels from a single source,
the source-only baseline, the CNNs' metrics within each source, and the report section; plus the
manifest the real `combined` adapter produces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mammosynth.classify.evaluate import compute_metrics
from mammosynth.datasets import source_roots
from mammosynth.datasets.ingest import ingest
from mammosynth.datasets.phantom import write_phantom
from mammosynth.imaging.pipeline import preprocess_table
from mammosynth.report import confounds

from conftest import breast_image

LABELS = ["birads0", "birads1", "birads2"]
# scikit-learn's balanced accuracy on a source's test rows that lack a class
pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


def manifest_and_split(rows: list[tuple[str, str, str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """rows: (label, source, subset) -> a combined-style manifest (all columns strings, one extra
    rejected row that must never count) and its split file."""
    ids = [f"{source}0-img{i:03d}" for i, (_, source, _) in enumerate(rows)]
    manifest = pd.DataFrame({
        "image_id": ids + ["film0-bad"],
        "patient_id": [f"p{i}" for i in range(len(rows))] + ["pbad"],
        "label": [r[0] for r in rows] + [rows[0][0]],
        "status": ["ok"] * len(rows) + ["rejected"],
        "reason": [""] * len(rows) + ["cannot decode"],
        "image_path": [f"images/{i}.png" for i in ids] + [""],
        "dataset": [r[1] for r in rows] + ["film"]})
    split = pd.DataFrame({"image_id": ids, "subset": [r[2] for r in rows],
                          "label": [r[0] for r in rows]})
    return manifest, split


def repeat(label: str, source: str, subset: str, n: int) -> list[tuple[str, str, str]]:
    return [(label, source, subset)] * n


@pytest.fixture
def confounded():
    """birads0 only from `film`; birads1 and birads2 from both sources."""
    rows = (repeat("birads0", "film", "train", 4) + repeat("birads0", "film", "test", 2)
            + repeat("birads1", "film", "train", 2) + repeat("birads1", "digital", "train", 4)
            + repeat("birads1", "digital", "test", 2) + repeat("birads2", "film", "train", 1)
            + repeat("birads2", "digital", "train", 3) + repeat("birads2", "film", "test", 1)
            + repeat("birads2", "digital", "test", 1) + repeat("birads1", "digital", "val", 1))
    return manifest_and_split(rows)


@pytest.fixture
def balanced():
    """Every label from both sources, in the same proportions (3:2) in train and in test: the
    source says nothing about the label."""
    rows = []
    for source in ("film", "digital"):
        rows += (repeat("birads1", source, "train", 3) + repeat("birads2", source, "train", 2)
                 + repeat("birads1", source, "test", 3) + repeat("birads2", source, "test", 2))
    return manifest_and_split(rows)


def predictions_for(manifest: pd.DataFrame, split: pd.DataFrame, labels: list[str],
                    seed: int = 0, synthetic: int = 3) -> pd.DataFrame:
    """A predictions_{ckpt}.csv for the split's test images (random probabilities), with
    `synthetic` test rows added as protocol paper writes them."""
    rng = np.random.default_rng(seed)
    test = split[split["subset"] == "test"]
    index = {label: i for i, label in enumerate(labels)}
    ids = list(test["image_id"]) + [f"synthetic-{labels[0]}-{i:05d}" for i in range(synthetic)]
    y = [index[x] for x in test["label"]] + [0] * synthetic
    prob = rng.dirichlet(np.ones(len(labels)), len(ids))
    prob[len(test):, 0] = 1.0  # synthetic rows: confident and right; they must not count
    prob[len(test):, 1:] = 0.0
    frame = pd.DataFrame({"image_id": ids, "label": [labels[i] for i in y], "y": y,
                          "pred": prob.argmax(1)})
    for i, label in enumerate(labels):
        frame[f"prob_{label}"] = prob[:, i]
    frame["synthetic"] = [False] * len(test) + [True] * synthetic
    return frame


def roundtrip(frame: pd.DataFrame, tmp_path: Path, name: str) -> pd.DataFrame:
    """As the report reads a predictions file."""
    frame.to_csv(tmp_path / name, index=False)
    return pd.read_csv(tmp_path / name, dtype={"image_id": str})


# --- the per-source label table -----------------------------------------------------------------

def test_source_label_table_counts(confounded):
    manifest, _ = confounded
    table = confounds.source_label_table(manifest, LABELS)
    assert list(table.columns) == LABELS
    assert list(table.index) == ["digital", "film"]
    assert table.loc["film"].tolist() == [6, 2, 2]  # the rejected film row does not count
    assert table.loc["digital"].tolist() == [0, 7, 4]
    # without labels: the labels found, sorted
    assert confounds.source_label_table(manifest).equals(table)


def test_single_source_labels(confounded, balanced):
    table = confounds.source_label_table(confounded[0], LABELS)
    assert confounds.single_source_labels(table) == {"birads0": "film"}
    # a label with no image at all is not "from one source"
    table = confounds.source_label_table(balanced[0], LABELS)
    assert table["birads0"].tolist() == [0, 0]
    assert confounds.single_source_labels(table) == {}


def test_nothing_without_a_dataset_column_or_with_one_source(confounded):
    manifest, split = confounded
    plain = manifest.drop(columns="dataset")
    assert confounds.source_label_table(plain).empty
    assert confounds.single_source_labels(confounds.source_label_table(plain)) == {}
    preds = {("resnet18", 0, "0", "best"): predictions_for(manifest, split, LABELS)}
    assert confounds.section(plain, {"0": split}, preds, LABELS) == ("", {})
    one = manifest.assign(dataset="film")
    assert confounds.source_label_table(one).empty
    assert confounds.section(one, {"0": split}, preds, LABELS) == ("", {})


# --- the source-only baseline -------------------------------------------------------------------

def test_baseline_perfect_when_the_source_determines_the_label():
    rows = []
    for n_train, n_test in [(3, 2), (5, 1)]:
        rows += (repeat("normal", "film", "train", n_train)
                 + repeat("normal", "film", "test", n_test)
                 + repeat("abnormal", "digital", "train", n_train + 1)
                 + repeat("abnormal", "digital", "test", n_test + 1))
    manifest, split = manifest_and_split(rows)
    labels = ["normal", "abnormal"]
    table = confounds.source_label_table(manifest, labels)
    assert confounds.single_source_labels(table) == {"normal": "film", "abnormal": "digital"}
    base = confounds.source_only_baseline(manifest, {"0": split, "1": split}, labels)
    assert list(base.columns) == confounds.BASELINE_COLUMNS
    assert base["split"].tolist() == ["0", "1"]
    assert (base["n_test"] == 2 + 3 + 1 + 2).all()
    for metric in confounds.BASELINE_METRICS:
        assert base[metric].tolist() == pytest.approx([1.0, 1.0]), metric


def test_baseline_is_the_majority_rate_when_the_source_says_nothing(balanced):
    manifest, split = balanced
    labels = ["birads1", "birads2"]
    base = confounds.source_only_baseline(manifest, {"0": split}, labels)
    [row] = base.to_dict("records")
    # each source: 3 birads1 and 2 birads2 in train -> (3+1)/(5+2) vs (2+1)/(5+2): always birads1
    assert row["n_test"] == 10
    assert row["accuracy"] == pytest.approx(6 / 10)  # the test set's majority rate
    assert row["balanced_accuracy"] == pytest.approx(0.5)
    assert row["auc"] == pytest.approx(0.5)  # every test image gets the same probabilities
    assert row["macro_recall"] == pytest.approx(0.5)


def test_baseline_smoothing_and_unseen_source(confounded):
    """Probabilities are add-one smoothed per source; a source absent from training gets the
    training set's overall frequencies. Checked against compute_metrics on hand-made probs."""
    manifest, split = confounded
    extra = pd.DataFrame({"image_id": ["mri0-x", "mri0-y"], "patient_id": ["q1", "q2"],
                          "label": ["birads2", "birads1"], "status": "ok", "reason": "",
                          "image_path": "", "dataset": "mri"})
    manifest = pd.concat([manifest, extra], ignore_index=True)
    split = pd.concat([split, pd.DataFrame({"image_id": ["mri0-x", "mri0-y"], "subset": "test",
                                            "label": ["birads2", "birads1"]})],
                      ignore_index=True)
    base = confounds.source_only_baseline(manifest, {7: split}, LABELS)
    # train: film 4/2/1, digital 0/4/3, overall 4/6/4 (+1 each, over n+3)
    film, digital, overall = (np.array([5, 3, 2]) / 10, np.array([1, 5, 4]) / 10,
                              np.array([5, 7, 5]) / 17)
    test = manifest.merge(split[split["subset"] == "test"][["image_id"]], on="image_id")
    prob = np.stack([{"film": film, "digital": digital}.get(s, overall) for s in test["dataset"]])
    y = test["label"].map({label: i for i, label in enumerate(LABELS)}).to_numpy()
    expected = compute_metrics(y, prob, LABELS)
    [row] = base.to_dict("records")
    assert row["split"] == 7 and row["n_test"] == len(test) == 8
    assert row["accuracy"] == pytest.approx(expected["accuracy"])
    assert row["balanced_accuracy"] == pytest.approx(expected["balanced_accuracy"])
    assert row["macro_f1"] == pytest.approx(expected["macro"]["f1"])
    assert row["auc"] == pytest.approx(expected["auc"])
    assert row["pr_auc"] == pytest.approx(expected["pr_auc"])


# --- the CNNs per source -----------------------------------------------------------------------

def test_per_source_metrics_leave_synthetic_rows_out(confounded, tmp_path):
    manifest, split = confounded
    preds = {("resnet18", s, "0", ck): roundtrip(predictions_for(manifest, split, LABELS,
                                                                 seed=s * 2 + i), tmp_path,
                                                 f"p{s}{ck}.csv")
             for s in (0, 100) for i, ck in enumerate(("best", "last"))}
    assert preds[("resnet18", 0, "0", "best")]["synthetic"].sum() == 3
    table = confounds.per_source_metrics(preds, manifest, LABELS)
    assert list(table.columns) == confounds.PER_SOURCE_COLUMNS
    assert len(table) == 4 * 2
    assert set(table["source"]) == {"film", "digital"}
    # film: 2 birads0 + 1 birads2 test images; digital: 2 birads1 + 1 birads2 (synthetic: none)
    assert table.groupby("source")["n"].unique().map(list).to_dict() == {"film": [3],
                                                                       "digital": [3]}
    # by hand on one source of one model
    p = preds[("resnet18", 100, "0", "last")]
    p = p[~p["synthetic"]]
    film = p[p["image_id"].isin(manifest.loc[manifest["dataset"] == "film", "image_id"])]
    expected = compute_metrics(film["y"].to_numpy(), film[[f"prob_{x}" for x in LABELS]]
                               .to_numpy(), LABELS)
    [row] = table[(table["synth"] == 100) & (table["ckpt"] == "last")
                  & (table["source"] == "film")].to_dict("records")
    assert row["n"] == 3
    for key in ("accuracy", "balanced_accuracy", "auc"):
        assert row[key] == pytest.approx(expected[key]), key
    assert row["macro_f1"] == pytest.approx(expected["macro"]["f1"])


def test_per_source_auc_undefined_for_one_class(balanced):
    manifest, split = balanced
    labels = ["birads1", "birads2"]
    # only the film source's birads1 test images predicted: one class there
    split = split[~((split["subset"] == "test") & (split["label"] == "birads2")
                    & split["image_id"].str.startswith("film"))]
    preds = {("a", 0, "0", "best"): predictions_for(manifest, split, labels, synthetic=0)}
    table = confounds.per_source_metrics(preds, manifest, labels).set_index("source")
    assert math.isnan(table.loc["film", "auc"])
    assert not math.isnan(table.loc["digital", "auc"])
    # the positive class reaches compute_metrics
    p = preds[("a", 0, "0", "best")]
    digital = p[p["image_id"].str.startswith("digital")]
    for positive in (0, 1):
        prob = digital[["prob_birads1", "prob_birads2"]].to_numpy()
        expected = compute_metrics(digital["y"].to_numpy(), prob, labels, positive=positive)
        got = confounds.per_source_metrics(preds, manifest, labels, positive=positive)
        assert got.set_index("source").loc["digital", "auc"] == pytest.approx(expected["auc"])


# --- the section --------------------------------------------------------------------------------

def test_section_warns_when_a_label_has_one_source(confounded, balanced):
    manifest, split = confounded
    preds = {("resnet18", 0, s, ck): predictions_for(manifest, split, LABELS, seed=i)
             for i, (s, ck) in enumerate([("0", "best"), ("0", "last"), ("1", "best"),
                                          ("1", "last")])}
    html, tables = confounds.section(manifest, {"0": split, "1": split}, preds, LABELS)
    assert html.startswith("<h2 id='confounds'>Confounds: data source and label</h2>")
    assert "<p class='warn'>" in html
    warning = html[html.index("<p class='warn'>"):]
    warning = warning[:warning.index("</p>")]
    assert "<b>birads0</b>" in warning and "<b>film</b>" in warning
    assert "birads1" not in warning and "birads2" not in warning
    assert "recognising the source" in warning and "published" in warning
    assert set(tables) == {"sources.csv", "source_only.csv", "per_source.csv"}
    assert tables["sources.csv"].columns.tolist() == ["source"] + LABELS
    assert len(tables["source_only.csv"]) == 2
    assert len(tables["per_source.csv"]) == 4 * 2
    assert "Source-only baseline" in html
    assert " ± 0.000" in html  # the same split twice: sd 0
    # one row per arch x synth x ckpt x source in the CNN table
    assert html.count("<td>resnet18</td>") == 2 * 2

    manifest, split = balanced
    labels = ["birads1", "birads2"]
    preds = {("resnet18", 0, "0", "best"): predictions_for(manifest, split, labels)}
    html, tables = confounds.section(manifest, {"0": split}, preds, labels)
    assert html.startswith("<h2 id='confounds'>") and "class='warn'" not in html
    assert "more than one source" in html


def test_section_escapes_data(confounded):
    manifest, split = confounded
    manifest = manifest.assign(dataset=manifest["dataset"].replace("film", "<film&co>"))
    html, _ = confounds.section(manifest, {"0": split}, {}, LABELS)
    assert "<film&co>" not in html and "&lt;film&amp;co&gt;" in html
    assert "The CNNs within each source" not in html  # no predictions, no table


# --- end to end: the manifest the combined adapter writes ----------------------------------------

def png(path: Path, side: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(breast_image(40, 32, side) * 255).astype(np.uint8)).save(path)
    return path


def test_combined_manifest_shows_one_source_per_confounded_label(tmp_path):
    """As paper 002 pools its data: BI-RADS 0 and 2 from one source, the rest from another."""
    write_phantom(tmp_path / "INbreast Release 1.0", patients=5, height=96, width=80)
    csv_root = tmp_path / "csvset"
    rows = {"a.png": "BI-RADS 0", "b.png": "2", "c.png": "BI-RADS 4", "d.png": "0"}
    for name in rows:
        png(csv_root / "images" / name, "R")
    lines = ["path,birads,patient_id"] + [f"images/{name},{b},P{i // 2}"
                                          for i, (name, b) in enumerate(rows.items())]
    (csv_root / "table.csv").write_text("\n".join(lines) + "\n")
    dataset = {"format": "combined", "root": str(tmp_path), "on_bad_image": "reject",
               "sources": [{"format": "inbreast", "root": str(tmp_path / "INbreast Release 1.0"),
                            "birads": [1, 3, "4a", "4b", "4c", 5]},
                           {"format": "csv", "root": str(csv_root), "table": "table.csv",
                            "birads": [0, 2]}]}
    table = ingest(dataset, {"scheme": "birads"})
    preprocess_table(table, source_roots(dataset), tmp_path / "images", size=32).to_csv(
        tmp_path / "manifest.csv", index=False)
    manifest = pd.read_csv(tmp_path / "manifest.csv", dtype=str, keep_default_na=False)

    counts = confounds.source_label_table(manifest)
    assert list(counts.index) == ["csv", "inbreast"]
    assert (counts > 0).sum().tolist() == [1] * len(counts.columns)  # one source per label
    assert counts.loc["csv", "birads0"] == 2 and counts.loc["csv", "birads2"] == 1
    single = confounds.single_source_labels(counts)
    assert single["birads0"] == single["birads2"] == "csv"
    assert set(single) == set(counts.columns)
    assert {v for k, v in single.items() if k not in ("birads0", "birads2")} == {"inbreast"}
    assert len(single) >= 3  # the phantom gives at least one of BI-RADS 1, 3, 4, 5


def test_top_warning_names_each_confounded_label(confounded, balanced):
    """The red box at the top of the page: only when a label has one source, naming it."""
    manifest, _ = confounded
    labels = sorted(set(manifest.loc[manifest["status"] == "ok", "label"]))
    box = confounds.top_warning(manifest, labels)
    assert box.startswith("<p class='warn'><b>Label and data source are confounded</b>")
    assert "birads0 only from film" in box and "href='#confounds'" in box
    assert confounds.top_warning(balanced[0], labels) == ""
