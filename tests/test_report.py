"""Report tables: collect eval JSONs, mean/sd over splits, markdown, the written report files."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from mammosynth.classify.evaluate import compute_metrics
from mammosynth.report.leakage import LEAKAGE_COLUMNS
from mammosynth.report.tables import (METRICS, QUALITY_COLUMNS, collect, data_table, flatten,
                                      markdown, summarize,
                                      write_report)

LABELS = ["normal", "abnormal"]
ARCHS = ["resnet10t", "mobilenetv3_small_050"]
SYNTH = [0, 100]
SPLITS = [0, 1, 2]
CKPTS = ["last", "best"]


def fake_eval(rng, arch, epoch, labels=LABELS, n=20, one_class=False):
    """An eval JSON as evaluate() + the evaluate script write it, from random predictions."""
    y = np.zeros(n, dtype=int) if one_class else rng.integers(0, len(labels), n)
    if not one_class:
        y[: len(labels)] = np.arange(len(labels))  # every class present
    logits = rng.normal(size=(n, len(labels))) + np.eye(len(labels))[y]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    result = compute_metrics(y, prob, labels)
    result.update({"arch": arch, "epoch": epoch, "labels": labels})
    return result


@pytest.fixture
def evals(tmp_path):
    """2 archs x 2 scenarios x 3 splits x 2 checkpoints of eval JSON files, as the GRID lists them."""
    rng = np.random.default_rng(0)
    grid = []
    for arch in ARCHS:
        for n in SYNTH:
            for s in SPLITS:
                for ckpt in CKPTS:
                    result = fake_eval(rng, arch, epoch=int(rng.integers(1, 10)))
                    result["checkpoint"] = ckpt
                    path = tmp_path / "results" / arch / f"synth{n}" / f"split{s}" / f"eval_{ckpt}.json"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(result, indent=2))
                    grid.append(dict(arch=arch, synth=n, split=s, ckpt=ckpt, path=str(path)))
    return grid


def test_flatten():
    result = fake_eval(np.random.default_rng(3), "a", epoch=4)
    row = flatten(result)
    assert row["accuracy"] == result["accuracy"] and row["auc"] == result["auc"]
    assert row["macro_f1"] == result["macro"]["f1"]
    assert row["abnormal_recall"] == result["per_class"]["abnormal"]["recall"]
    assert row["normal_support"] == result["per_class"]["normal"]["support"]
    assert row["sensitivity"] == result["sensitivity"]
    assert row["epoch"] == 4 and row["n_test"] == 20


def test_collect_one_row_per_file(evals):
    long = collect(evals)
    assert len(long) == len(evals) == 24
    assert not long.duplicated(["arch", "synth", "split", "ckpt"]).any()
    assert list(long.columns[:4]) == ["arch", "synth", "split", "ckpt"]
    for m in METRICS:
        assert m in long.columns
    # sorted by arch, synth, ckpt, split
    keys = list(zip(long["arch"], long["synth"], long["ckpt"], long["split"]))
    assert keys == sorted(keys)
    for e in evals:
        with open(e["path"]) as f:
            result = json.load(f)
        row = long[(long["arch"] == e["arch"]) & (long["synth"] == e["synth"])
                   & (long["split"] == e["split"]) & (long["ckpt"] == e["ckpt"])]
        assert len(row) == 1
        row = row.iloc[0]
        assert row["accuracy"] == result["accuracy"]
        assert row["macro_precision"] == result["macro"]["precision"]
        assert row["epoch"] == result["epoch"] and row["n_test"] == result["n"]


def test_summarize_mean_and_sd_over_splits(evals):
    long = collect(evals)
    summary = summarize(long)
    assert len(summary) == len(ARCHS) * len(SYNTH) * len(CKPTS)
    assert list(summary.columns[:4]) == ["arch", "synth", "ckpt", "splits"]
    assert (summary["splits"] == 3).all()
    assert "epoch_mean" not in summary.columns and "n_test_mean" not in summary.columns
    for _, r in summary.iterrows():
        group = [e for e in evals
                 if (e["arch"], e["synth"], e["ckpt"]) == (r["arch"], r["synth"], r["ckpt"])]
        assert len(group) == 3
        results = [json.load(open(e["path"])) for e in group]
        for m in METRICS:
            if m.startswith("macro_"):
                values = [res["macro"][m[len("macro_"):]] for res in results]
            else:
                values = [res[m] for res in results]
            assert r[f"{m}_mean"] == pytest.approx(np.mean(values)), m
            assert r[f"{m}_sd"] == pytest.approx(np.std(values, ddof=1)), m
        values = [res["per_class"]["abnormal"]["f1"] for res in results]
        assert r["abnormal_f1_mean"] == pytest.approx(np.mean(values))
        assert r["abnormal_f1_sd"] == pytest.approx(np.std(values, ddof=1))


def test_summarize_skips_undefined_auc(tmp_path):
    """A split whose test set has one class has no AUC: the mean is over the other splits."""
    rng = np.random.default_rng(1)
    grid = []
    for s in SPLITS:
        result = fake_eval(rng, "a", epoch=1, one_class=(s == 0))
        path = tmp_path / f"{s}.json"
        path.write_text(json.dumps(result))
        grid.append(dict(arch="a", synth=0, split=s, ckpt="best", path=str(path)))
    long = collect(grid)
    assert pd.isna(long.loc[long["split"] == 0, "auc"]).all()
    summary = summarize(long)
    aucs = long.loc[long["split"] != 0, "auc"].to_numpy(dtype=float)
    assert summary.loc[0, "auc_mean"] == pytest.approx(aucs.mean())
    assert summary.loc[0, "auc_sd"] == pytest.approx(np.std(aucs, ddof=1))
    assert "nan" not in markdown(summary).lower()


def test_markdown(evals):
    summary = summarize(collect(evals))
    text = markdown(summary)
    lines = text.strip().split("\n")
    assert lines[0] == "| arch | synthetic n | weights | splits | " + " | ".join(METRICS) + " |"
    assert lines[1] == "|" + "---|" * (4 + len(METRICS))
    assert len(lines) == 2 + len(summary)
    for line, (_, r) in zip(lines[2:], summary.iterrows()):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:4] == [r["arch"], str(r["synth"]), r["ckpt"], "3"]
        for cell, m in zip(cells[4:], METRICS):
            assert cell == f"{r[m + '_mean']:.3f} ± {r[m + '_sd']:.3f}"
            assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", cell)


def test_markdown_single_split_and_missing_metric():
    summary = pd.DataFrame([{"arch": "a", "synth": 0, "ckpt": "best", "splits": 1,
                             "accuracy_mean": 0.5, "accuracy_sd": np.nan,
                             "auc_mean": np.nan, "auc_sd": np.nan}])
    text = markdown(summary, metrics=["accuracy", "auc"])
    assert text.strip().split("\n")[-1] == "| a | 0 | best | 1 | 0.500 | n/a |"


def manifest_and_splits():
    rows = []
    for i in range(10):
        rows.append({"image_id": f"i{i}", "patient_id": f"p{i}", "label": LABELS[i % 2],
                     "status": "ok", "reason": "", "source": f"src/i{i}.dcm",
                     "image_path": f"png/i{i}.png"})
    rows += [{"image_id": "bad1", "patient_id": "p1", "label": "", "status": "rejected",
              "reason": "file is empty (0 bytes)", "source": "src/bad1.dcm", "image_path": ""},
             {"image_id": "bad2", "patient_id": "p2", "label": "normal", "status": "rejected",
              "reason": "not a mammogram", "source": "src/bad2.dcm", "image_path": ""}]
    manifest = pd.DataFrame(rows)
    subsets = ["train"] * 6 + ["val"] * 2 + ["test"] * 2
    splits = {}
    for s in (0, 1):
        order = np.random.default_rng(s).permutation(10)
        splits[s] = pd.DataFrame({"image_id": [f"i{k}" for k in order], "subset": subsets})
    return manifest, splits


def test_data_table_counts():
    manifest, splits = manifest_and_splits()
    data = data_table(manifest, splits)
    assert list(data.columns) == ["split", "subset", "label", "images"]
    assert data["images"].sum() == 20
    labels = manifest.set_index("image_id")["label"]
    for s, split in splits.items():
        for subset in ("train", "val", "test"):
            ids = split.loc[split["subset"] == subset, "image_id"]
            for label in LABELS:
                expected = int((labels[ids] == label).sum())
                got = data[(data["split"] == s) & (data["subset"] == subset)
                           & (data["label"] == label)]["images"]
                assert int(got.sum()) == expected, (s, subset, label)


def test_write_report(tmp_path, evals):
    manifest, splits = manifest_and_splits()
    long = collect(evals)
    data = data_table(manifest, splits)
    out = tmp_path / "report"
    write_report(out, long, data, manifest, "rigorous <&>")
    names = {p.name for p in out.iterdir()}
    assert list(pd.read_csv(out / "quality.csv").columns) == QUALITY_COLUMNS  # empty, typed
    assert list(pd.read_csv(out / "leakage.csv").columns) == LEAKAGE_COLUMNS
    names -= {"quality.csv", "leakage.csv"}
    assert names == {"metrics.csv", "summary.csv", "summary.md", "data.csv", "rejected.csv",
                     "index.html"}

    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 24
    assert np.allclose(metrics["accuracy"], long["accuracy"])
    summary = pd.read_csv(out / "summary.csv")
    expected = summarize(long)
    assert len(summary) == 8
    assert np.allclose(summary["macro_f1_mean"], expected["macro_f1_mean"])
    assert np.allclose(summary["auc_sd"], expected["auc_sd"])
    assert (out / "summary.md").read_text() == markdown(expected)
    assert pd.read_csv(out / "data.csv")["images"].sum() == 20
    rejected = pd.read_csv(out / "rejected.csv")
    assert list(rejected.columns) == ["image_id", "source", "reason"]
    assert list(rejected["image_id"]) == ["bad1", "bad2"]

    page = (out / "index.html").read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    for section in ("<h2>Inputs</h2>", "<h2>Images per split</h2>", "<h2>Test metrics</h2>"):
        assert page.count(section) == 1
    assert page.count("<table") == 4  # inputs, images, metrics, leakage
    # each section is followed by its own table
    sections = page.split("<h2>")[1:]
    assert all("<table" in s for s in sections if not s.startswith("Synthetic images"))
    assert "No synthetic images in this run" in sections[-1]  # no quality audits were given
    assert "rigorous &lt;&amp;&gt;" in page
    assert "2 input(s) rejected" in page
    assert f"{expected.loc[0, 'accuracy_mean']:.3f}" in page
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary files left


def test_quality_table_from_audit_json(tmp_path):
    from mammosynth.report.tables import quality_table

    q = {"split": 0, "label": "normal", "n_synthetic": 4, "n_real": 9,
         "memorization": {"near_copies": 1, "nn_ncc": {"median": 0.5, "max": 0.97},
                          "real_nn_ncc": {"median": 0.6}},
         "diversity": {"ms_ssim_synthetic": 0.3, "ms_ssim_real": 0.2},
         "intensity": {"wasserstein": 0.01}, "fid": {"computed": False}}
    path = tmp_path / "normal.json"
    path.write_text(json.dumps(q))
    table = quality_table([str(path)])
    assert list(table.columns) == QUALITY_COLUMNS
    row = table.iloc[0]
    assert (row["near_copies"], row["nn_ncc_max"], row["real"]) == (1, 0.97, 9)
    assert pd.isna(row["fid"])
