"""Integration: real `snakemake` runs of the whole DAG on a tiny phantom data set (no mocks)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
MANIFEST_COLUMNS = ["image_id", "patient_id", "laterality", "view", "birads", "label", "status",
                    "reason", "source", "image_path"]

TINY = {
    "seed": 3,
    "dataset": {"format": "phantom", "root": "resources/phantom"},
    "phantom": {"patients": 16, "height": 128, "width": 104},
    "preprocess": {"size": 32},
    "splits": {"ids": [0], "test_fraction": 0.25, "val_fraction": 0.2},
    "ddpm": {"image_size": 16, "block_out_channels": [8, 16], "attention_levels": [False, True],
             "layers_per_block": 1, "timesteps": 100, "steps": 12, "batch_size": 4,
             "warmup_steps": 2, "log_every": 4, "checkpoint_every": 5, "grid_images": 4},
    "quality": {"size": 32},
    "sampling": {"scheduler": "ddim", "steps": 4, "shard_size": 3, "batch_size": 2},
    "scenarios": [0, 8],
    "classifier": {"archs": ["mobilenetv3_small_050"], "image_size": 32, "batch_size": 8,
                   "epochs": 2, "optimizer": "adam", "optimizer_args": {"amsgrad": True},
                   "lr": 1e-3, "bootstrap": 50},
}


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def write_config(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


# The demo run: the tiny grid with every control arm and one real fraction.
ARMS = dict(TINY, controls=["dup", "aug", "synthonly"], real_fractions=[50])
MODELS = ["synth0", "synth8", "dup8", "aug8", "synthonly8", "real50"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    write_config(workdir, ARMS)
    run = snakemake(workdir)
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


@pytest.mark.integration
def test_every_stage_produces_its_contracted_files(demo_run):
    w = demo_run
    phantom = list((w / "resources/phantom/AllDICOMs").glob("*.dcm"))
    manifest = pd.read_csv(w / "results/data/manifest.csv", dtype=str, keep_default_na=False)
    assert list(manifest.columns[:10]) == MANIFEST_COLUMNS
    assert len(manifest) == len(phantom) and (manifest["status"] == "ok").all()
    for path in manifest["image_path"]:
        with Image.open(w / path) as im:
            assert im.size == (32, 32) and im.mode.startswith("I;16")

    split = pd.read_csv(w / "results/splits/split0.csv", dtype=str)
    assert set(split["subset"]) == {"train", "val", "test"}
    merged = split.merge(manifest, on="image_id")
    assert (merged.groupby("patient_id")["subset"].nunique() == 1).all()

    from diffusers import DDPMPipeline

    for label in ("normal", "abnormal"):
        pipe = DDPMPipeline.from_pretrained(w / f"results/ddpm/split0/{label}")
        assert pipe.unet.config.sample_size == 16
        history = pd.read_csv(w / f"results/ddpm/split0/{label}/history.csv")
        assert history["step"].iloc[-1] == 12
        assert not (w / f"results/ddpm/split0/{label}.resume.pt").exists()
        # 8 synthetic images / 2 labels = 4 per label, shards of 3: shard0 has 0-2, shard1 has 3.
        index = pd.concat(pd.read_csv(w / f"results/synthetic/split0/{label}/shard{k}/index.csv")
                          for k in (0, 1))
        assert list(index["index"]) == [0, 1, 2, 3]

    for n in (0, 8):
        run = w / f"results/classifier/mobilenetv3_small_050/synth{n}/split0"
        history = pd.read_csv(run / "history.csv")
        assert list(history["epoch"]) == [1, 2]
        for ckpt in ("last", "best"):
            metrics = json.loads((run / f"eval_{ckpt}.json").read_text())
            predictions = pd.read_csv(run / f"predictions_{ckpt}.csv")
            test_ids = set(split.loc[split["subset"] == "test", "image_id"])
            assert set(predictions["image_id"].astype(str)) == test_ids  # real test images only
            assert metrics["n"] == len(test_ids)
            recomputed = (predictions["y"] == predictions["pred"]).mean()
            assert metrics["accuracy"] == pytest.approx(recomputed)
            assert set(metrics["per_class"]) == {"normal", "abnormal"}

    for label in ("normal", "abnormal"):
        quality = json.loads((w / f"results/quality/split0/{label}.json").read_text())
        assert quality["n_synthetic"] == 4 and quality["label"] == label
        assert len(quality["memorization"]["per_image"]) == 4
        assert (w / f"results/quality/split0/{label}_pairs.png").stat().st_size > 1000
        samples = Image.open(w / f"results/ddpm/split0/{label}/samples.png")
        assert samples.mode.startswith("I;16")
    assert len(pd.read_csv(w / "results/report/quality.csv")) == 2
    # the realism verdict: per split x label, judged with the split's real-only classifier
    for label in ("normal", "abnormal"):
        realism = json.loads((w / f"results/quality/split0/{label}.json").read_text())["realism"]
        assert realism["verdict"] in ("green", "amber", "red")
        assert realism["label_fidelity"]["classifier"] == \
            "results/classifier/mobilenetv3_small_050/synth0/split0/best.safetensors"
        assert realism["reference"]["verdict"] in ("green", "amber", "red")
    verdicts = pd.read_csv(w / "results/report/realism.csv")
    assert sorted(verdicts["set"]) == ["held-out real"] * 2 + ["synthetic"] * 2
    page = (w / "results/report/index.html").read_text()
    assert page.index("Are the synthetic images usable?") < page.index("<h2>Scenarios")
    marked = pd.read_csv(w / "results/report/scenario.csv")
    assert set(marked.loc[marked["synth"] == 8, "realism"]) <= {"green", "amber", "red"}
    # synthetic images keep the real images' PNG contract and background rule
    for png in (w / "results/synthetic/split0/normal/shard0").glob("*.png"):
        with Image.open(png) as im:
            assert im.size == (32, 32) and im.mode.startswith("I;16")

    scenario = pd.read_csv(w / "results/report/scenario.csv")
    assert len(scenario[["synth", "ckpt"]].drop_duplicates()) == 2 * 2  # scenarios x checkpoints
    assert (w / "results/report/index.html").read_text().count("<table") >= 6
    long = pd.read_csv(w / "results/report/metrics.csv")
    row = long[(long["arm"] == "synth") & (long["n"] == 8) & (long["ckpt"] == "best")].iloc[0]
    best = json.loads((w / "results/classifier/mobilenetv3_small_050/synth8/split0/"
                       "eval_best.json").read_text())
    assert row["accuracy"] == pytest.approx(best["accuracy"])


@pytest.mark.integration
def test_composition_lists_what_each_model_saw(demo_run):
    split = pd.read_csv(demo_run / "results/splits/split0.csv", dtype=str)
    for n in (0, 8):
        run = demo_run / f"results/classifier/mobilenetv3_small_050/synth{n}/split0"
        comp = pd.read_csv(run / "composition.csv", dtype={"image_id": str})
        assert comp["synthetic"].sum() == n
        assert set(comp.loc[comp["synthetic"], "subset"]) <= {"train"}
        real = comp[~comp["synthetic"]].merge(split, on="image_id", suffixes=("", "_split"))
        assert len(real) == len(split) and (real["subset"] == real["subset_split"]).all()
    leakage = pd.read_csv(demo_run / "results/report/leakage.csv")
    assert len(leakage) == len(MODELS)
    assert (leakage[["test_synthetic", "test_patients_seen", "test_images_seen_by_ddpm"]]
            == 0).all().all()
    assert "leaky</b>" not in (demo_run / "results/report/index.html").read_text()


@pytest.mark.integration
def test_every_arm_trains_on_what_it_says_and_reaches_the_report(demo_run):
    """Control arms end to end: each composition.csv holds what its arm promises, every arm of
    the split makes scenario 0's updates (budget steps), and the report compares them."""
    w = demo_run
    split = pd.read_csv(w / "results/splits/split0.csv", dtype=str)
    train_ids = set(split.loc[split["subset"] == "train", "image_id"])
    held = split[split["subset"] != "train"].sort_values("image_id")
    steps = {}
    for model in MODELS:
        run = w / f"results/classifier/mobilenetv3_small_050/{model}/split0"
        comp = pd.read_csv(run / "composition.csv", dtype=str, keep_default_na=False)
        train = comp[comp["subset"] == "train"]
        rest = comp[comp["subset"] != "train"].sort_values("image_id")
        assert list(rest["image_id"]) == list(held["image_id"])  # val and test untouched
        assert set(rest["kind"]) == {"real"}
        kinds = train["kind"].value_counts().to_dict()
        expected = {"synth0": {"real": len(train_ids)},
                    "synth8": {"real": len(train_ids), "synthetic": 8},
                    "dup8": {"real": len(train_ids), "duplicate": 8},
                    "aug8": {"real": len(train_ids), "augmented": 8},
                    "synthonly8": {"synthetic": 8}}.get(model)
        if expected:
            assert kinds == expected, model
            extra = train[train["kind"].isin(["duplicate", "augmented", "synthetic"])]
            assert (extra.groupby("label").size() == 4).all()  # 8 over 2 labels
        else:  # real50: about half the training images, whole patients
            assert set(train["image_id"]) < train_ids and kinds == {"real": len(train)}
        assert set(train.loc[train["kind"].isin(["duplicate", "augmented"]), "source_image"]) \
            <= train_ids
        steps[model] = list(pd.read_csv(run / "history.csv")["step"])
    assert len({tuple(v) for v in steps.values()}) == 1, steps  # the same updates for every arm
    augmented = pd.read_csv(w / "results/augmented/split0/normal/index.csv", dtype=str)
    assert len(augmented) == 4 and set(augmented["source_image"]) <= train_ids

    controls = pd.read_csv(w / "results/report/controls.csv")
    assert {"dup", "aug", "synthonly", "real", "synth"} <= set(controls["arm"])
    assert {"synth0", "dup8", "aug8"} <= set(controls["versus"].dropna())
    assert (w / "results/report/real_equivalents.csv").exists()
    page = (w / "results/report/index.html").read_text()
    assert page.index("<h2>Scenarios") < page.index("Is it the synthetic images?")
    long = pd.read_csv(w / "results/report/metrics.csv")
    assert set(zip(long["arm"], long["n"])) == {
        ("synth", 0), ("synth", 8), ("dup", 8), ("aug", 8), ("synthonly", 8), ("real", 50)}


@pytest.mark.integration
def test_report_numbers_equal_a_recomputation_from_predictions(demo_run):
    """Independently of the package: sklearn on predictions_*.csv -> the scenario table's means."""
    from sklearn import metrics as skm

    scenario = pd.read_csv(demo_run / "results/report/scenario.csv").set_index(
        ["arch", "synth", "ckpt", "metric"])
    checkpoints = pd.read_csv(demo_run / "results/report/checkpoints.csv").set_index(
        ["arch", "synth", "metric"])
    arch = "mobilenetv3_small_050"
    for n in (0, 8):
        per_ckpt = {}
        for ckpt in ("last", "best"):
            p = pd.read_csv(demo_run / f"results/classifier/{arch}/synth{n}/split0/"
                            f"predictions_{ckpt}.csv")
            y, prob = p["y"].to_numpy(), p["prob_abnormal"].to_numpy()
            pred = (prob > p["prob_normal"].to_numpy()).astype(int)
            expected = {
                "accuracy": skm.accuracy_score(y, pred),
                "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
                "abnormal_recall": skm.recall_score(y, pred, zero_division=0),
                # undefined precision (a class never predicted) is NaN, never 0
                "normal_precision": skm.precision_score(1 - y, 1 - pred,
                                                        zero_division=np.nan),
                "macro_f1": skm.f1_score(y, pred, average="macro", zero_division=np.nan),
                "auc": skm.roc_auc_score(y, prob),
                "pr_auc": skm.average_precision_score(y, prob)}
            for metric, value in expected.items():
                assert scenario.loc[(arch, n, ckpt, metric), "mean"] == pytest.approx(
                    value, nan_ok=True), \
                    (n, ckpt, metric)
            per_ckpt[ckpt] = expected
        for metric in ("accuracy", "macro_f1", "auc", "pr_auc"):
            row = checkpoints.loc[(arch, n, metric)]
            assert row["diff"] == pytest.approx(per_ckpt["best"][metric] - per_ckpt["last"][metric],
                                                nan_ok=True)
    # scenario 8 vs 0 is paired by split (the same real test images) under protocol rigorous
    assert set(scenario.xs(8, level="synth")["test"]) == {"paired corrected t"}
    assert "Nadeau-Bengio corrected" in (demo_run / "results/report/index.html").read_text()


@pytest.mark.integration
def test_report_html_embeds_every_figure(demo_run):
    from html.parser import HTMLParser

    report = demo_run / "results/report"
    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    kinds = {name.split("-")[0] for name in figures}
    assert kinds == {"scenarios", "curves", "checkpoints", "roc", "confusion", "samples",
                     "memorization", "pairs", "controls"}

    class Page(HTMLParser):
        images, captions, tags = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "img":
                self.images.append(dict(attrs))

        def handle_data(self, data):
            if self.tags and self.tags[-1] == "b" and data.endswith(".png"):
                self.captions.append(data)

    page = Page()
    page.feed((report / "index.html").read_text())
    assert len(page.images) == len(figures)
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)
    assert sorted(img["alt"] for img in page.images) == figures
    assert sorted(page.captions) == figures
    text = (report / "index.html").read_text()
    for section in ("Configuration", "Data", "Leakage checks", "Scenarios", "Checkpoints",
                    "Figures"):
        assert f"<h2>{section}" in text
    assert "src='figures/" not in text and 'src="figures/' not in text  # self-contained


@pytest.mark.integration
def test_leakage_check_fails_on_the_demo_files_with_a_planted_shared_patient(demo_run):
    from mammosynth.errors import UserError
    from mammosynth.report.leakage import leakage_table

    w = demo_run / "results"
    manifest = pd.read_csv(w / "data/manifest.csv", dtype=str, keep_default_na=False)
    ddpm = {0: str(w / "splits/split0.csv")}
    for arm in ("synth", "dup"):  # a scenario and a control arm
        model = {"arch": "mobilenetv3_small_050", "arm": arm, "n": 8, "split": 0,
                 "ddpm_split": 0, "composition": str(
                     w / f"classifier/mobilenetv3_small_050/{arm}8/split0/composition.csv")}
        assert leakage_table([model], manifest, ddpm, "rigorous")["test_patients_seen"] \
            .eq(0).all()
        comp = pd.read_csv(model["composition"], dtype={"image_id": str})
        test_id = comp.loc[comp["subset"] == "test", "image_id"].iloc[0]
        train_id = comp.loc[(comp["subset"] == "train") & (comp["kind"] == "real"),
                            "image_id"].iloc[0]
        planted = manifest.copy()
        planted.loc[planted["image_id"] == train_id, "patient_id"] = \
            planted.loc[planted["image_id"] == test_id, "patient_id"].iloc[0]
        with pytest.raises(UserError, match="test_patients_seen 1"):
            leakage_table([model], planted, ddpm, "rigorous")


@pytest.mark.integration
def test_snakemake_report_zip(demo_run, tmp_path):
    import zipfile

    run = snakemake(demo_run, "--report", str(tmp_path / "report.zip"))
    assert run.returncode == 0, run.stderr[-3000:]
    names = zipfile.ZipFile(tmp_path / "report.zip").namelist()
    figures = list((demo_run / "results/report/figures").glob("*.png"))
    assert sum(n.endswith(".png") and "/figures/" in n for n in names) == len(figures)
    assert any(n.endswith("index.html") for n in names)


@pytest.mark.integration
def test_paper_protocol_reproduces_the_leaks_and_flags_them(tmp_path):
    """protocol paper end to end: one DDPM per label on every image, pooled random split with
    synthetic test images, best by training loss; the report counts every leak from the files."""
    config = dict(TINY, protocol="paper", splits={"ids": [0], "test_fraction": 0.25,
                                                   "val_fraction": 0},
                  classifier=dict(TINY["classifier"], monitor="train_loss"))
    write_config(tmp_path, config)
    run = snakemake(tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    w = tmp_path / "results"
    manifest = pd.read_csv(w / "data/manifest.csv", dtype=str, keep_default_na=False)
    everything = pd.read_csv(w / "splits/splitall.csv", dtype=str)
    assert set(everything["subset"]) == {"train"} and len(everything) == len(manifest)
    assert sorted(p.name for p in (w / "ddpm").iterdir()) == ["splitall"]
    split = pd.read_csv(w / "splits/split0.csv", dtype=str)
    assert set(split["subset"]) == {"train", "test"}
    assert (split["subset"] == "test").sum() == round(0.25 * len(manifest))

    leakage = pd.read_csv(w / "report/leakage.csv").set_index("n")
    for n in (0, 8):
        run_dir = w / f"classifier/mobilenetv3_small_050/synth{n}/split0"
        comp = pd.read_csv(run_dir / "composition.csv", dtype={"image_id": str})
        assert len(comp) == len(manifest) + n and comp["synthetic"].sum() == n
        test = comp[comp["subset"] == "test"]
        assert len(test) == round(0.25 * len(comp))
        history = pd.read_csv(run_dir / "history.csv")
        assert history["val_loss"].isna().all()
        predictions = pd.read_csv(run_dir / "predictions_best.csv", dtype={"image_id": str})
        assert list(predictions["image_id"]) == list(test["image_id"])
        assert predictions["synthetic"].sum() == test["synthetic"].sum()
        assert json.loads((run_dir / "eval_best.json").read_text())["protocol"] == "paper"
        row = leakage.loc[n]
        assert row["test_synthetic"] == test["synthetic"].sum()
        # every real test image trained the DDPMs - when synthetic images are used at all
        assert row["test_images_seen_by_ddpm"] == (len(test) - test["synthetic"].sum()
                                                   if n else 0)
    assert leakage.loc[8, "test_images_seen_by_ddpm"] > 0
    assert "leaky</b>" in (w / "report/index.html").read_text()
    # the scenarios' test sets differ: the change vs scenario 0 is unpaired, and the metrics are
    # repeated on the real test images only
    scenario = pd.read_csv(w / "report/scenario.csv")
    assert set(scenario.loc[scenario["synth"] == 8, "test"]) == {"unpaired corrected Welch t"}
    real = pd.read_csv(w / "report/metrics_real_test.csv").set_index(["synth", "ckpt"])
    for n in (0, 8):
        p = pd.read_csv(w / f"classifier/mobilenetv3_small_050/synth{n}/split0/"
                        "predictions_best.csv")
        p = p[~p["synthetic"]]
        assert real.loc[(n, "best"), "n_test"] == len(p)
        assert real.loc[(n, "best"), "accuracy"] == pytest.approx((p["y"] == p["pred"]).mean())


@pytest.mark.integration
def test_weights_load_back_with_timm(demo_run):
    import timm
    from safetensors.torch import load_file

    path = demo_run / "results/classifier/mobilenetv3_small_050/synth8/split0/best.safetensors"
    # num_classes goes in the overlay too: otherwise timm sees 1 != 1000 and drops the head.
    model = timm.create_model("mobilenetv3_small_050", num_classes=1, in_chans=1, pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path), num_classes=1))
    saved = load_file(str(path))
    for key, value in model.state_dict().items():
        assert np.array_equal(value.numpy(), saved[key].numpy()), key


@pytest.mark.integration
def test_no_phi_in_any_output(demo_run):
    """The phantom's DICOMs carry fake PatientName, PatientID, PatientBirthDate, InstitutionName,
    AccessionNumber and ReferringPhysicianName (datasets/phantom.py PHI_MARKERS): none may appear
    in any file under results/, logs/ or benchmarks/ - raw bytes of every file, PNG text chunks
    and safetensors metadata decoded."""
    import struct

    from mammosynth.datasets.phantom import PHI_MARKERS

    dicom = next((demo_run / "resources/phantom/AllDICOMs").glob("*.dcm")).read_bytes()
    assert all(m.encode() in dicom for m in PHI_MARKERS)  # planted
    files = [p for d in ("results", "logs", "benchmarks") for p in (demo_run / d).rglob("*")
             if p.is_file()]
    assert len(files) > 50
    kinds = set()
    for path in files:
        texts = [path.read_bytes().decode("latin-1")]
        if path.suffix == ".png":
            with Image.open(path) as im:
                texts += [f"{k}={v}" for k, v in im.text.items()]
            kinds.add("png")
        elif path.suffix == ".safetensors":
            raw = path.read_bytes()
            texts.append(raw[8:8 + struct.unpack("<Q", raw[:8])[0]].decode())
            kinds.add("safetensors")
        for text in texts:
            for marker in PHI_MARKERS:
                assert marker not in text, f"{marker} in {path}"
    assert kinds == {"png", "safetensors"}


@pytest.mark.integration
def test_rerun_has_nothing_to_do(demo_run):
    run = snakemake(demo_run, "-n")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


@pytest.mark.integration
def test_inbreast_layout_folder_works_unchanged(tmp_path):
    """Point dataset.format: inbreast at an INbreast-layout folder (the phantom, made apart)."""
    from mammosynth.datasets.phantom import write_phantom

    root = tmp_path / "INbreast Release 1.0"
    table = write_phantom(root, patients=18, height=128, width=104, seed=5)
    config = dict(TINY, dataset={"format": "inbreast", "root": str(root)})
    write_config(tmp_path / "work", config)
    run = snakemake(tmp_path / "work", "results/splits/split0.csv")
    assert run.returncode == 0, run.stderr[-4000:]
    manifest = pd.read_csv(tmp_path / "work/results/data/manifest.csv", dtype=str,
                           keep_default_na=False)
    assert len(manifest) == len(table) and (manifest["status"] == "ok").all()
    assert set(manifest["view"]) <= {"CC", "MLO"}
    assert set(manifest["patient_id"]) == set(table["patient_hash"])
    counts = table["birads"].eq("1").sum()
    assert (manifest["label"] == "normal").sum() == counts


@pytest.mark.integration
def test_config_val_loss_without_validation_set_is_refused(tmp_path):
    write_config(tmp_path, dict(TINY, splits={"ids": [0], "val_fraction": 0}))
    run = snakemake(tmp_path, "-n")
    assert run.returncode != 0
    assert "classifier.monitor: val_loss needs a validation set" in run.stdout + run.stderr


@pytest.mark.integration
def test_a_configfile_stands_alone(tmp_path):
    """From a checkout (config/config.yaml present), --configfile does not inherit the demo's
    values: a config that sets only the data set gets the schema's 5 splits, not the demo's 2."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text((REPO / "config/config.yaml").read_text())
    write_config(tmp_path / "mine", {"dataset": {"format": "phantom"}})
    base = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
            "-n"]
    for extra, splits in (([], "2"), (["--configfile", str(tmp_path / "mine/config.yaml")], "5")):
        run = subprocess.run(base + extra, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.M))["split"] == splits


@pytest.mark.integration
def test_config_pretrained_true_is_refused_before_any_job(tmp_path):
    write_config(tmp_path, dict(TINY, classifier=dict(TINY["classifier"], pretrained=True)))
    run = snakemake(tmp_path, "-n")
    assert run.returncode != 0
    assert "classifier.pretrained: true, but nothing is downloaded" in run.stdout + run.stderr


@pytest.mark.integration
def test_config_typo_names_the_key(tmp_path):
    write_config(tmp_path, dict(TINY, scenarois=[0]))
    run = snakemake(tmp_path, "-n")
    assert run.returncode != 0
    assert "scenarois" in run.stdout + run.stderr


@pytest.mark.integration
def test_sutjiadi2025_preset_lists_the_paper_grid(tmp_path):
    """The preset validates and describes paper 000 at full scale: 5 splits x 2 labels DDPMs,
    250 images per label in shards of 50, 4 scenarios, last and best weights; and its controls:
    dup, aug and synthonly at n = 100 / 250 / 500 plus real 25 / 50 / 75 % (12 more classifiers
    per split), the augmented copies per split and label."""
    from mammosynth.datasets.phantom import write_phantom

    root = tmp_path / "INbreast Release 1.0"
    write_phantom(root, patients=30, height=96, width=80)
    (tmp_path / "config.yaml").write_text(
        (REPO / "config/presets/sutjiadi2025.yaml").read_text())
    run = snakemake(tmp_path, "-n", "--config", f"dataset={{root: '{root}'}}")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.M))
    assert {k: int(counts[k]) for k in ("split", "train_ddpm", "sample_shard", "quality",
                                        "train_classifier", "evaluate", "augment")} == {
        "split": 5, "train_ddpm": 10, "sample_shard": 50, "quality": 10,
        "train_classifier": 5 * (4 + 3 * 3 + 3), "evaluate": 2 * 5 * (4 + 3 * 3 + 3),
        "augment": 10}
    for model in ("synth500", "dup500", "aug100", "synthonly250", "real25"):
        assert f"results/classifier/tf_efficientnetv2_l/{model}/split4" in run.stdout


def pretend_pretrained(workdir: Path, preset: dict) -> None:
    """Empty files where a preset's classifier.pretrained points (relative to the working
    directory): enough for a dry run, which only checks that they exist."""
    files = preset["classifier"].get("pretrained") or {}
    for path in files.values():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).touch()


@pytest.mark.integration
def test_best_weights_preset_lists_six_archs_by_five_splits(tmp_path):
    """Paper 002's preset: KAU-BCMD (1,3,4,5) + CBIS-DDSM (0,2) pooled; 6 archs x 5 splits."""
    preset = yaml.safe_load((REPO / "config/presets/best_weights.yaml").read_text())
    assert [(s["format"], s["birads"]) for s in preset["dataset"]["sources"]] == [
        ("kau_bcmd", [1, 3, 4, 5]), ("cbis_ddsm", [0, 2])]
    for source in preset["dataset"]["sources"]:
        source["root"] = str(tmp_path / source["format"])
        Path(source["root"]).mkdir()
    pretend_pretrained(tmp_path, preset)
    write_config(tmp_path, preset)
    run = snakemake(tmp_path, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.M))
    assert {k: int(counts.get(k, 0)) for k in ("train_ddpm", "train_classifier", "evaluate")} \
        == {"train_ddpm": 0, "train_classifier": 30, "evaluate": 60}
    assert "nasnetamobile" in run.stdout


@pytest.mark.integration
def test_class_conditioning_trains_one_ddpm_per_split(tmp_path):
    """ddpm.conditioning class: one model per split (all-labels) feeds every label's shards."""
    config = dict(TINY, splits={"ids": [0, 1], "test_fraction": 0.25, "val_fraction": 0.2},
                  ddpm=dict(TINY["ddpm"], conditioning="class"))
    write_config(tmp_path, config)
    run = snakemake(tmp_path, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.M))
    assert int(counts["train_ddpm"]) == 2 and int(counts["sample_shard"]) == 8
    assert "results/ddpm/split1/all-labels" in run.stdout
    assert "results/ddpm/split0/normal" not in run.stdout


@pytest.mark.integration
@pytest.mark.parametrize("preset, expected", [
    # paper 000: one DDPM per label on every image (split "all"), 5 shards of 50 per label
    ("sutjiadi2025", {"split": 6, "train_ddpm": 2, "sample_shard": 10, "quality": 2,
                      "train_classifier": 20, "evaluate": 40}),
    ("best_weights", {"split": 5, "train_ddpm": 0, "sample_shard": 0, "quality": 0,
                      "train_classifier": 30, "evaluate": 60}),
])
def test_paper_protocol_overlay_on_the_presets(tmp_path, preset, expected):
    from mammosynth.datasets.phantom import write_phantom

    root = tmp_path / "data"
    write_phantom(root, patients=30, height=96, width=80)
    for source in ("KAU-BCMD", "CBIS-DDSM"):  # best_weights' sources, relative to the workdir
        (root / source).mkdir()
    pretend_pretrained(tmp_path, yaml.safe_load(
        (REPO / f"config/presets/{preset}.yaml").read_text()))
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "-n", "--configfile", str(REPO / f"config/presets/{preset}.yaml"),
           str(REPO / "config/presets/paper_protocol.yaml"),
           "--config", f"dataset={{root: '{root}'}}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.M))
    assert {k: int(counts.get(k, 0)) for k in expected} == expected
    if preset == "sutjiadi2025":
        assert "results/ddpm/splitall/normal" in run.stdout

