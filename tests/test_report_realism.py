"""The report's realism verdict ("Are the synthetic images usable?"): the realism table from the
quality JSONs, the scenario rows it marks under both protocols, and the page section and red
warning that build_report writes. Small JSON and CSV files in tmp_path, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mammosynth import layout
from mammosynth.config import validate

from mammosynth.classify.evaluate import compute_metrics
from mammosynth.report import realism
from mammosynth.report.inputs import QUALITY_FIGURES, read_quality
from mammosynth.report.leakage import LEAKAGE_COLUMNS
from mammosynth.report.page import build_report
from mammosynth.report.realism import (CHECKS, RED_MARK, REALISM_COLUMNS, realism_table,
                                       scenario_marker, set_verdicts, worst)
from mammosynth.report.tables import collect, scenario_markdown, scenario_table

LABELS = ["normal", "abnormal"]
# Deliberately not the schema's defaults: the page must show the thresholds the files used.
BANDS = {"c2st_auc": ("low", 0.71, 0.86), "label_fidelity_gap": ("low", 0.15, 0.3),
         "precision": ("high", 0.5, 0.25), "coverage": ("high", 0.5, 0.25),
         "intensity_w1": ("low", 0.05, 0.1), "background_gap": ("low", 0.05, 0.1),
         "noise_ratio": ("ratio", 1.5, 2.0)}
GOOD = {"c2st_auc": 0.62, "label_fidelity_gap": 0.05, "precision": 0.8, "coverage": 0.7,
        "intensity_w1": 0.02, "background_gap": 0.01, "noise_ratio": 1.1}
REFERENCE = {"c2st_auc": 0.5, "label_fidelity_gap": 0.0, "precision": 0.9, "coverage": 0.8,
             "intensity_w1": 0.01, "background_gap": 0.0, "noise_ratio": 1.0}


def _status(check, value):
    """The expected colour, written independently of the package (table above)."""
    direction, green, amber = BANDS[check]
    if value is None:
        return None
    if direction == "ratio":
        value, direction = max(value, 1 / value), "low"
    if direction == "low":
        return "green" if value <= green else "amber" if value <= amber else "red"
    return "green" if value >= green else "amber" if value >= amber else "red"


def _verdict(values: dict) -> dict:
    checks = [{"check": c, "value": values.get(c), "direction": BANDS[c][0],
               "green": BANDS[c][1], "amber": BANDS[c][2], "status": _status(c, values.get(c))}
              for c in CHECKS]
    seen = [c["status"] for c in checks if c["status"]]
    order = ["green", "amber", "red"]
    return {"verdict": max(seen, key=order.index) if seen else "not computed", "checks": checks}


def quality_json(path, split, label, values: dict | None = GOOD, reference=REFERENCE):
    """A quality JSON as the quality stage writes it; values None: no realism key (older run)."""
    q = {"split": str(split), "label": label, "n_synthetic": 4, "n_real": 9,
         "memorization": {"near_copies": 0, "nn_ncc": {"median": 0.5, "max": 0.8},
                          "real_nn_ncc": {"median": 0.6}},
         "diversity": {"ms_ssim_synthetic": 0.3, "ms_ssim_real": 0.2},
         "intensity": {"wasserstein": 0.01}, "fid": {"computed": False}}
    if values is not None:
        ref = (_verdict(reference) if reference is not None
               else {"verdict": "not computed", "checks": []})
        q["realism"] = {**_verdict(values), "reference": ref,
                        "c2st": {"auc": values.get("c2st_auc"), "p_value": 0.03, "null_low": 0.36, "null_high": 0.64,
                                 "folds": 5, "n_real": 9, "n_synthetic": 4},
                        "reference_c2st": {"auc": 0.5, "p_value": 0.5, "null_low": 0.35, "null_high": 0.66},
                        "label_fidelity": None, "prdc": None, "image": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(q))
    return str(path)


def quality_files(tmp_path, split, values_by_label: dict) -> list[tuple[dict, str]]:
    """[(key, quality JSON)] of one split, as the report rule passes them."""
    return [({"split": str(split), "label": label},
             quality_json(tmp_path / layout.quality(split, label), split, label, values))
            for label, values in values_by_label.items()]


def records(*files: tuple) -> list[dict]:
    """The quality records of [(split, label, path)] (report.inputs.read_quality)."""
    return read_quality([{"split": str(s), "label": label} for s, label, _ in files],
                        [path for _, _, path in files])


RED = dict(GOOD, c2st_auc=0.97, noise_ratio=0.3)  # c2st red, noise too smooth (factor 3.3)


# --------------------------------------------------------------------------- the table


def test_realism_table_rows_values_and_statuses(tmp_path):
    nulls = dict(GOOD, label_fidelity_gap=None, precision=None, coverage=None,
                 c2st_auc=0.8)  # no classifier; c2st amber
    table = realism_table(records(
        (0, "normal", quality_json(tmp_path / "q/split0/normal.json", 0, "normal", GOOD)),
        (0, "abnormal", quality_json(tmp_path / "q/split0/abnormal.json", 0, "abnormal", RED)),
        (1, "normal", quality_json(tmp_path / "q/split1/normal.json", 1, "normal", nulls,
                                   reference=None))))
    assert list(table.columns) == REALISM_COLUMNS
    assert len(table) == 6
    rows = table.set_index(["split", "label", "set"])
    syn, ref = rows.loc[("0", "normal", "synthetic")], rows.loc[("0", "normal", "held-out real")]
    assert syn["verdict"] == "green" and ref["verdict"] == "green"
    assert syn["c2st_auc"] == 0.62 and ref["c2st_auc"] == 0.5
    assert (syn["c2st_p"], syn["c2st_null_low"], syn["c2st_null_high"]) == (0.03, 0.36, 0.64)
    assert (ref["c2st_p"], ref["c2st_null_low"], ref["c2st_null_high"]) == (0.5, 0.35, 0.66)
    red = rows.loc[("0", "abnormal", "synthetic")]
    assert red["verdict"] == "red"
    assert (red["c2st_auc_status"], red["noise_ratio_status"]) == ("red", "red")
    assert red["precision_status"] == "green"
    partial = rows.loc[("1", "normal", "synthetic")]
    assert partial["verdict"] == "amber"
    for check in ("label_fidelity_gap", "precision", "coverage"):
        assert pd.isna(partial[check]) and partial[f"{check}_status"] == "not computed"
    missing = rows.loc[("1", "normal", "held-out real")]
    assert missing["verdict"] == "not computed" and pd.isna(missing["c2st_auc"])
    assert set_verdicts(table) == {("0", "normal"): "green", ("0", "abnormal"): "red",
                                   ("1", "normal"): "amber"}
    assert realism.red_sets(table) == ["split 0 / abnormal"]


def test_realism_table_and_section_without_verdict(tmp_path):
    """Quality files of older runs have no realism key: an empty table and one sentence."""
    quality = records((0, "normal", quality_json(tmp_path / "q/split0/normal.json", 0, "normal",
                                                 None)))
    table = realism_table(quality)
    assert table.empty
    text = realism.section(quality, table)
    assert "no realism verdict in these quality files" in text.lower()
    assert "no synthetic images in this run" in realism.section([], table).lower()
    assert realism.red_warning(table) == ""


def test_worst_verdict():
    assert worst(["green", "amber", "green"]) == "amber"
    assert worst(["green", "not computed", "red"]) == "red"
    assert worst(["not computed"]) == worst([]) == "not computed"


# --------------------------------------------------------------------------- scenario rows


def _long(tmp_path, splits=(0, 1), synths=(0, 4)) -> pd.DataFrame:
    """Eval JSONs of one arch x synths x splits x best, read back by collect()."""
    rng = np.random.default_rng(0)
    grid = []
    for synth in synths:
        for split in splits:
            y = np.arange(10) % 2
            result = compute_metrics(y, rng.dirichlet([1, 1], 10), LABELS)
            result.update(arch="a", epoch=1, labels=LABELS)
            path = tmp_path / f"eval{synth}_{split}.json"
            path.write_text(json.dumps(result))
            grid.append(dict(arch="a", synth=synth, split=split, ckpt="best", path=str(path)))
    return collect(grid)


def _markers(table: pd.DataFrame) -> dict:
    return table.groupby("synth")["realism"].agg(lambda v: set(v)).to_dict()


def test_scenario_rows_marked_by_their_splits_sets_rigorous(tmp_path):
    long = _long(tmp_path)
    verdicts = {("0", "normal"): "green", ("0", "abnormal"): "green",
                ("1", "normal"): "green", ("1", "abnormal"): "red",
                ("all", "normal"): "green", ("all", "abnormal"): "green"}
    table = scenario_table(long, LABELS, realism=verdicts, protocol="rigorous")
    assert _markers(table) == {0: {""}, 4: {"red"}}
    text = scenario_markdown(table, ["accuracy"])
    rows = {line.split("|")[2].strip(): line for line in text.splitlines()[2:4]}
    assert RED_MARK in rows["4"] and RED_MARK not in rows["0"]
    # only split 0 evaluated: split 1's red set is not this row's
    table = scenario_table(long[long["split"] == 0], LABELS, realism=verdicts)
    assert _markers(table) == {0: {""}, 4: {"green"}}
    amber = verdicts | {("1", "abnormal"): "amber"}
    assert _markers(scenario_table(long, LABELS, realism=amber)) == {0: {""}, 4: {"amber"}}
    # no realism passed: no marker and no column in the Markdown
    table = scenario_table(long, LABELS)
    assert _markers(table) == {0: {""}, 4: {""}}
    assert "realism" not in scenario_markdown(table, ["accuracy"])


def test_scenario_rows_marked_by_split_all_under_paper(tmp_path):
    long = _long(tmp_path)
    per_split_red = {("0", "normal"): "red", ("1", "abnormal"): "red",
                     ("all", "normal"): "green", ("all", "abnormal"): "amber"}
    table = scenario_table(long, LABELS, realism=per_split_red, protocol="paper")
    assert _markers(table) == {0: {""}, 4: {"amber"}}
    all_red = per_split_red | {("all", "normal"): "red"}
    table = scenario_table(long, LABELS, realism=all_red, protocol="paper")
    assert _markers(table) == {0: {""}, 4: {"red"}}
    assert scenario_marker({}, [0, 1], LABELS, "paper") == "not computed"


# --------------------------------------------------------------------------- the page

# a checked config, as the report gets it from the workflow (the schema fills every default)
CONFIG = validate({
    "protocol": "rigorous", "seed": 0,
    "dataset": {"format": "phantom", "root": "resources/phantom"},
    "labels": {"scheme": "binary"}, "preprocess": {"size": 64},
    "splits": {"ids": [0, 1], "test_fraction": 0.2, "val_fraction": 0.2},
    "ddpm": {"image_size": 32, "block_out_channels": [16, 32], "timesteps": 100, "steps": 10,
             "batch_size": 4},
    "sampling": {"scheduler": "ddim", "steps": 10}, "scenarios": [0, 4],
    "classifier": {"archs": ["a"], "image_size": 64, "in_chans": 1, "optimizer": "adam",
                   "lr": 1e-3, "batch_size": 4, "epochs": 2, "patience": None,
                   "monitor": "val_loss", "pretrained": None, "bootstrap": 0},
    "report": {"published": None},
}, Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml")


def _build(tmp_path, quality: list[tuple[dict, str]], protocol: str = "rigorous") -> str:
    """A two-split, two-scenario run of one arch written to tmp_path, with the quality files
    [(key, JSON)] and a stand-in for each audit figure; returns index.html."""
    rng = np.random.default_rng(1)
    grid, evals, predictions, models, leakage = [], [], [], [], []
    ids = [f"i{k}" for k in range(10)]
    for synth in (0, 4):
        for split in (0, 1):
            run = tmp_path / f"results/classifier/a/synth{synth}/split{split}"
            run.mkdir(parents=True)
            for ckpt in ("last", "best"):
                y, prob = np.arange(10) % 2, rng.dirichlet([1, 1], 10)
                result = compute_metrics(y, prob, LABELS)
                result.update(arch="a", epoch=1, labels=LABELS, checkpoint=ckpt)
                (run / f"eval_{ckpt}.json").write_text(json.dumps(result))
                pd.DataFrame({"image_id": ids, "y": y, "pred": prob.argmax(1),
                              "prob_normal": prob[:, 0], "prob_abnormal": prob[:, 1]}
                             ).to_csv(run / f"predictions_{ckpt}.csv", index=False)
                grid.append(dict(arch="a", synth=synth, split=split, ckpt=ckpt))
                evals.append(str(run / f"eval_{ckpt}.json"))
                predictions.append(str(run / f"predictions_{ckpt}.csv"))
            pd.DataFrame({"image_id": ids, "subset": ["train"] * 6 + ["val"] * 2 + ["test"] * 2,
                          "synthetic": False}).to_csv(run / "composition.csv", index=False)
            pd.DataFrame({"epoch": [1, 2], "train_acc": [0.5, 0.6], "train_loss": [0.7, 0.6],
                          "val_acc": [0.5, 0.5], "val_loss": [0.7, 0.65]}
                         ).to_csv(run / "history.csv", index=False)
            models.append(dict(arch="a", synth=synth, split=split,
                               composition=str(run / "composition.csv"),
                               history=str(run / "history.csv")))
            leakage.append(dict(arch="a", synth=synth, split=split, test_images=2,
                                test_synthetic=0, test_patients_seen=0,
                                test_images_seen_by_ddpm=0))
    manifest = pd.DataFrame({"image_id": ids, "patient_id": ids, "label": LABELS * 5,
                             "status": "ok", "reason": "", "source": ids, "image_path": "",
                             "laterality": "L", "chest_wall_seen": ["R"] + ["L"] * 9})
    splits = {s: pd.read_csv(models[s]["composition"], dtype=str)[["image_id", "subset"]]
              for s in (0, 1)}
    figures = {kind: [] for kind in QUALITY_FIGURES}
    for key, _ in quality:  # copied onto the page as they are: any bytes do
        for kind, paths in figures.items():
            path = tmp_path / layout.quality(key["split"], key["label"], kind)
            path.write_bytes(f"{kind} {key['split']} {key['label']}".encode())
            paths.append(str(path))
    out = tmp_path / "results/report"
    build_report(out, grid=grid, evals=evals, predictions=predictions, models=models,
                 manifest=manifest, splits=splits,
                 leakage=pd.DataFrame(leakage, columns=LEAKAGE_COLUMNS),
                 quality=[path for _, path in quality], quality_keys=[k for k, _ in quality],
                 quality_nn=figures["nn"], quality_pairs=figures["pairs"], samples={},
                 config=dict(CONFIG, protocol=protocol), labels=LABELS)
    return (out / "index.html").read_text()


def test_build_report_red_set_warned_at_the_top_and_rows_marked(tmp_path):
    quality = (quality_files(tmp_path, 0, {"normal": GOOD, "abnormal": GOOD})
               + quality_files(tmp_path, 1, {"normal": GOOD, "abnormal": RED}))
    page = _build(tmp_path, quality)
    section = page.index("<h2>Are the synthetic images usable?</h2>")
    warning = page.index("Synthetic images rated red: split 1 / abnormal")
    assert page.index("<h1>") < warning < page.index("<p>Protocol:") < section
    assert section < page.index("<h2>Configuration") < page.index("<h2>Data")
    assert section < page.index("<h2>Scenarios") < page.index("<h2>Synthetic images: quality")
    assert "<td class='red'>synthetic images rated red</td>" in page
    # thresholds and directions as the files give them, the reference and the CI caveat
    assert "green ≤ 0.71, amber ≤ 0.86" in page
    assert "green ≥ 0.5, amber ≥ 0.25" in page and "×1.5" in page
    assert "floor a perfect generator" in page and "chance is wider than shown" in page
    assert "0.620 (chance 0.36–0.64, p 0.03)" in page

    report = tmp_path / "results/report"
    table = pd.read_csv(report / "realism.csv", dtype={"split": str})
    assert list(table.columns) == REALISM_COLUMNS and len(table) == 8
    assert set(table.loc[table["set"] == "synthetic", "verdict"]) == {"green", "red"}
    scenario = pd.read_csv(report / "scenario.csv", keep_default_na=False)
    assert set(scenario.loc[scenario["synth"] == 4, "realism"]) == {"red"}
    assert set(scenario.loc[scenario["synth"] == 0, "realism"]) == {""}
    assert RED_MARK in (report / "scenario.md").read_text()
    assert len(pd.read_csv(report / "quality.csv")) == 4  # the quality table still works
    # the Data section counts the image whose breast sits against the other edge
    assert "1 of 10 images with a metadata side (L/R) have their breast against the other" in page
    # every audit figure copied under the split and label it was passed with, and captioned
    copied = sorted(p.name for p in (report / "figures").glob("*-split*.png"))
    assert copied == sorted(f"{kind}-split{s}-{label}.png" for kind in ("memorization", "pairs")
                            for s in (0, 1) for label in LABELS)
    assert (report / "figures/pairs-split1-abnormal.png").read_bytes() == b"pairs 1 abnormal"
    assert (report / "figures/memorization-split0-normal.png").read_bytes() == b"nn 0 normal"
    for name in copied:
        assert f"<b>{name}</b>. " in page


@pytest.mark.parametrize("old", [False, True], ids=["all-green", "no-realism-key"])
def test_build_report_without_red_has_no_warning(tmp_path, old):
    values = None if old else GOOD
    quality = quality_files(tmp_path, "all", {"normal": values, "abnormal": values})
    page = _build(tmp_path, quality, protocol="paper")
    assert "Synthetic images rated red" not in page and RED_MARK not in page
    section = page.index("<h2>Are the synthetic images usable?</h2>")
    assert section < page.index("<h2>Configuration") < page.index("<h2>Scenarios")
    scenario = pd.read_csv(tmp_path / "results/report/scenario.csv", keep_default_na=False)
    expected = "not computed" if old else "green"
    assert set(scenario.loc[scenario["synth"] == 4, "realism"]) == {expected}
    if old:
        assert "no realism verdict in these quality files" in page.lower()
    else:
        assert page.count("<span class='badge green'>green</span>") == 2
