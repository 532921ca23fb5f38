"""The Snakemake workflow end to end: real `snakemake` runs of the whole DAG on a tiny phantom
data set (tests/configs/tiny.yaml; no mocks), checked from the files every stage leaves under
results/ (paths from mammosynth.layout). Dry runs (job grids of the presets) are in
test_workflow_dry_runs.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mammosynth import layout

from conftest import job_counts, load_config, snakemake, write_config

MANIFEST_COLUMNS = ["image_id", "patient_id", "laterality", "view", "birads", "label", "status",
                    "reason", "source", "image_path"]

TINY = load_config("tiny")
ARCH = TINY["classifier"]["archs"][0]
LABELS = ("normal", "abnormal")
REPORT = Path(layout.report())


def model(arm: str, n: int, file: str = "") -> str:
    """The tiny grid's classifier of split 0 (layout.classifier), or `file` in it."""
    return layout.classifier(ARCH, arm, n, 0, file)


# The demo run: the tiny grid with every control arm and one real fraction; its classifiers
# as (arm, n).
ARMS = load_config("tiny", controls=["dup", "aug", "synthonly"], real_fractions=[50])
MODELS = [("synth", 0), ("synth", 8), ("dup", 8), ("aug", 8), ("synthonly", 8), ("real", 50)]


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
    manifest = pd.read_csv(w / layout.manifest(), dtype=str, keep_default_na=False)
    assert list(manifest.columns[:10]) == MANIFEST_COLUMNS
    assert len(manifest) == len(phantom) and (manifest["status"] == "ok").all()
    for path in manifest["image_path"]:
        with Image.open(w / path) as im:
            assert im.size == (32, 32) and im.mode.startswith("I;16")

    split = pd.read_csv(w / layout.split(0), dtype=str)
    assert set(split["subset"]) == {"train", "val", "test"}
    merged = split.merge(manifest, on="image_id")
    assert (merged.groupby("patient_id")["subset"].nunique() == 1).all()

    from diffusers import DDPMPipeline

    for label in LABELS:
        pipe = DDPMPipeline.from_pretrained(w / layout.ddpm(0, label))
        assert pipe.unet.config.sample_size == 16
        history = pd.read_csv(w / layout.ddpm(0, label) / "history.csv")
        assert history["step"].iloc[-1] == 12
        assert not (w / layout.ddpm_resume(0, label)).exists()
        # 8 synthetic images / 2 labels = 4 per label, shards of 3: shard0 has 0-2, shard1 has 3.
        index = pd.concat(pd.read_csv(w / layout.shard(0, label, k) / "index.csv")
                          for k in (0, 1))
        assert list(index["index"]) == [0, 1, 2, 3]

    for n in (0, 8):
        run = w / model("synth", n)
        history = pd.read_csv(run / layout.HISTORY)
        assert list(history["epoch"]) == [1, 2]
        for ckpt in ("last", "best"):
            metrics = json.loads((run / layout.eval_file(ckpt)).read_text())
            predictions = pd.read_csv(run / layout.predictions_file(ckpt))
            test_ids = set(split.loc[split["subset"] == "test", "image_id"])
            assert set(predictions["image_id"].astype(str)) == test_ids  # real test images only
            assert metrics["n"] == len(test_ids)
            recomputed = (predictions["y"] == predictions["pred"]).mean()
            assert metrics["accuracy"] == pytest.approx(recomputed)
            assert set(metrics["per_class"]) == {"normal", "abnormal"}

    for label in LABELS:
        quality = json.loads((w / layout.quality(0, label)).read_text())
        assert quality["n_synthetic"] == 4 and quality["label"] == label
        assert len(quality["memorization"]["per_image"]) == 4
        assert (w / layout.quality(0, label, "pairs")).stat().st_size > 1000
        samples = Image.open(w / layout.ddpm(0, label) / "samples.png")
        assert samples.mode.startswith("I;16")
    assert len(pd.read_csv(w / REPORT / "quality.csv")) == 2
    # the realism verdict: per split x label, judged with the split's real-only classifier
    for label in LABELS:
        realism = json.loads((w / layout.quality(0, label)).read_text())["realism"]
        assert realism["verdict"] in ("green", "amber", "red")
        assert realism["label_fidelity"]["classifier"] == \
            model("synth", 0, layout.weights_file("best"))
        assert realism["reference"]["verdict"] in ("green", "amber", "red")
    verdicts = pd.read_csv(w / REPORT / "realism.csv")
    assert sorted(verdicts["set"]) == ["held-out real"] * 2 + ["synthetic"] * 2
    page = (w / REPORT / "index.html").read_text()
    assert page.index("Are the synthetic images usable?") < page.index("<h2>Scenarios")
    marked = pd.read_csv(w / REPORT / "scenario.csv")
    assert set(marked.loc[marked["synth"] == 8, "realism"]) <= {"green", "amber", "red"}
    # synthetic images keep the real images' PNG contract and background rule
    for png in (w / layout.shard(0, "normal", 0)).glob("*.png"):
        with Image.open(png) as im:
            assert im.size == (32, 32) and im.mode.startswith("I;16")

    scenario = pd.read_csv(w / REPORT / "scenario.csv")
    assert len(scenario[["synth", "ckpt"]].drop_duplicates()) == 2 * 2  # scenarios x checkpoints
    assert (w / REPORT / "index.html").read_text().count("<table") >= 6
    long = pd.read_csv(w / REPORT / "metrics.csv")
    row = long[(long["arm"] == "synth") & (long["n"] == 8) & (long["ckpt"] == "best")].iloc[0]
    best = json.loads((w / model("synth", 8, layout.eval_file("best"))).read_text())
    assert row["accuracy"] == pytest.approx(best["accuracy"])


@pytest.mark.integration
def test_composition_lists_what_each_model_saw(demo_run):
    split = pd.read_csv(demo_run / layout.split(0), dtype=str)
    for n in (0, 8):
        comp = pd.read_csv(demo_run / model("synth", n, layout.COMPOSITION),
                           dtype={"image_id": str})
        assert comp["synthetic"].sum() == n
        assert set(comp.loc[comp["synthetic"], "subset"]) <= {"train"}
        real = comp[~comp["synthetic"]].merge(split, on="image_id", suffixes=("", "_split"))
        assert len(real) == len(split) and (real["subset"] == real["subset_split"]).all()
    leakage = pd.read_csv(demo_run / REPORT / "leakage.csv")
    assert len(leakage) == len(MODELS)
    assert (leakage[["test_synthetic", "test_patients_seen", "test_images_seen_by_ddpm"]]
            == 0).all().all()
    assert "leaky</b>" not in (demo_run / REPORT / "index.html").read_text()


@pytest.mark.integration
def test_every_arm_trains_on_what_it_says_and_reaches_the_report(demo_run):
    """Control arms end to end: each composition.csv holds what its arm promises, every arm of
    the split makes scenario 0's updates (budget steps), and the report compares them."""
    w = demo_run
    split = pd.read_csv(w / layout.split(0), dtype=str)
    train_ids = set(split.loc[split["subset"] == "train", "image_id"])
    held = split[split["subset"] != "train"].sort_values("image_id")
    steps = {}
    for arm, n in MODELS:
        run = w / model(arm, n)
        comp = pd.read_csv(run / layout.COMPOSITION, dtype=str, keep_default_na=False)
        train = comp[comp["subset"] == "train"]
        rest = comp[comp["subset"] != "train"].sort_values("image_id")
        assert list(rest["image_id"]) == list(held["image_id"])  # val and test untouched
        assert set(rest["kind"]) == {"real"}
        kinds = train["kind"].value_counts().to_dict()
        expected = {("synth", 0): {"real": len(train_ids)},
                    ("synth", 8): {"real": len(train_ids), "synthetic": 8},
                    ("dup", 8): {"real": len(train_ids), "duplicate": 8},
                    ("aug", 8): {"real": len(train_ids), "augmented": 8},
                    ("synthonly", 8): {"synthetic": 8}}.get((arm, n))
        if expected:
            assert kinds == expected, (arm, n)
            extra = train[train["kind"].isin(["duplicate", "augmented", "synthetic"])]
            assert (extra.groupby("label").size() == 4).all()  # 8 over 2 labels
        else:  # real50: about half the training images, whole patients
            assert set(train["image_id"]) < train_ids and kinds == {"real": len(train)}
        assert set(train.loc[train["kind"].isin(["duplicate", "augmented"]), "source_image"]) \
            <= train_ids
        steps[arm, n] = list(pd.read_csv(run / layout.HISTORY)["step"])
    assert len({tuple(v) for v in steps.values()}) == 1, steps  # the same updates for every arm
    augmented = pd.read_csv(w / layout.augmented(0, "normal") / "index.csv", dtype=str)
    assert len(augmented) == 4 and set(augmented["source_image"]) <= train_ids

    controls = pd.read_csv(w / REPORT / "controls.csv")
    assert {"dup", "aug", "synthonly", "real", "synth"} <= set(controls["arm"])
    assert {"synth0", "dup8", "aug8"} <= set(controls["versus"].dropna())
    assert (w / REPORT / "real_equivalents.csv").exists()
    page = (w / REPORT / "index.html").read_text()
    assert page.index("<h2>Scenarios") < page.index("Is it the synthetic images?")
    long = pd.read_csv(w / REPORT / "metrics.csv")
    assert set(zip(long["arm"], long["n"])) == {
        ("synth", 0), ("synth", 8), ("dup", 8), ("aug", 8), ("synthonly", 8), ("real", 50)}


@pytest.mark.integration
def test_report_numbers_equal_a_recomputation_from_predictions(demo_run):
    """Independently of the package: sklearn on predictions_*.csv -> the scenario table's means."""
    from sklearn import metrics as skm

    scenario = pd.read_csv(demo_run / REPORT / "scenario.csv").set_index(
        ["arch", "synth", "ckpt", "metric"])
    checkpoints = pd.read_csv(demo_run / REPORT / "checkpoints.csv").set_index(
        ["arch", "synth", "metric"])
    for n in (0, 8):
        per_ckpt = {}
        for ckpt in ("last", "best"):
            p = pd.read_csv(demo_run / model("synth", n, layout.predictions_file(ckpt)))
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
                assert scenario.loc[(ARCH, n, ckpt, metric), "mean"] == pytest.approx(
                    value, nan_ok=True), \
                    (n, ckpt, metric)
            per_ckpt[ckpt] = expected
        for metric in ("accuracy", "macro_f1", "auc", "pr_auc"):
            row = checkpoints.loc[(ARCH, n, metric)]
            assert row["diff"] == pytest.approx(per_ckpt["best"][metric] - per_ckpt["last"][metric],
                                                nan_ok=True)
    # scenario 8 vs 0 is paired by split (the same real test images) under protocol rigorous
    assert set(scenario.xs(8, level="synth")["test"]) == {"paired corrected t"}
    assert "Nadeau-Bengio corrected" in (demo_run / REPORT / "index.html").read_text()


@pytest.mark.integration
def test_report_html_embeds_every_figure(demo_run):
    from html.parser import HTMLParser

    report = demo_run / REPORT
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

    manifest = pd.read_csv(demo_run / layout.manifest(), dtype=str, keep_default_na=False)
    ddpm = {0: str(demo_run / layout.split(0))}
    for arm in ("synth", "dup"):  # a scenario and a control arm
        entry = {"arch": ARCH, "arm": arm, "n": 8, "split": 0, "ddpm_split": 0,
                 "composition": str(demo_run / model(arm, 8, layout.COMPOSITION))}
        assert leakage_table([entry], manifest, ddpm, "rigorous")["test_patients_seen"] \
            .eq(0).all()
        comp = pd.read_csv(entry["composition"], dtype={"image_id": str})
        test_id = comp.loc[comp["subset"] == "test", "image_id"].iloc[0]
        train_id = comp.loc[(comp["subset"] == "train") & (comp["kind"] == "real"),
                            "image_id"].iloc[0]
        planted = manifest.copy()
        planted.loc[planted["image_id"] == train_id, "patient_id"] = \
            planted.loc[planted["image_id"] == test_id, "patient_id"].iloc[0]
        with pytest.raises(UserError, match="test_patients_seen 1"):
            leakage_table([entry], planted, ddpm, "rigorous")


@pytest.mark.integration
def test_snakemake_report_zip_holds_the_page_and_every_figure(demo_run, tmp_path):
    import zipfile

    run = snakemake(demo_run, "--report", str(tmp_path / "report.zip"))
    assert run.returncode == 0, run.stderr[-3000:]
    names = zipfile.ZipFile(tmp_path / "report.zip").namelist()
    figures = list((demo_run / REPORT / "figures").glob("*.png"))
    assert sum(n.endswith(".png") and "/figures/" in n for n in names) == len(figures)
    assert any(n.endswith("index.html") for n in names)


@pytest.mark.integration
def test_paper_protocol_reproduces_the_leaks_and_flags_them(tmp_path):
    """protocol paper end to end: one DDPM per label on every image, pooled random split with
    synthetic test images, best by training loss; the report counts every leak from the files."""
    config = load_config("tiny", protocol="paper",
                         splits={"ids": [0], "test_fraction": 0.25, "val_fraction": 0},
                         classifier={"monitor": "train_loss"})
    write_config(tmp_path, config)
    run = snakemake(tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    w = tmp_path
    manifest = pd.read_csv(w / layout.manifest(), dtype=str, keep_default_na=False)
    everything = pd.read_csv(w / layout.split("all"), dtype=str)
    assert set(everything["subset"]) == {"train"} and len(everything) == len(manifest)
    # only split "all" has DDPMs: results/ddpm holds splitall and nothing else
    splitall = Path(layout.ddpm("all", "normal")).parent
    assert [p.relative_to(w) for p in (w / splitall.parent).iterdir()] == [splitall]
    split = pd.read_csv(w / layout.split(0), dtype=str)
    assert set(split["subset"]) == {"train", "test"}
    assert (split["subset"] == "test").sum() == round(0.25 * len(manifest))

    leakage = pd.read_csv(w / REPORT / "leakage.csv").set_index("n")
    for n in (0, 8):
        run_dir = w / model("synth", n)
        comp = pd.read_csv(run_dir / layout.COMPOSITION, dtype={"image_id": str})
        assert len(comp) == len(manifest) + n and comp["synthetic"].sum() == n
        test = comp[comp["subset"] == "test"]
        assert len(test) == round(0.25 * len(comp))
        history = pd.read_csv(run_dir / layout.HISTORY)
        assert history["val_loss"].isna().all()
        predictions = pd.read_csv(run_dir / layout.predictions_file("best"),
                                  dtype={"image_id": str})
        assert list(predictions["image_id"]) == list(test["image_id"])
        assert predictions["synthetic"].sum() == test["synthetic"].sum()
        assert json.loads((run_dir / layout.eval_file("best")).read_text())["protocol"] == \
            "paper"
        row = leakage.loc[n]
        assert row["test_synthetic"] == test["synthetic"].sum()
        # every real test image trained the DDPMs - when synthetic images are used at all
        assert row["test_images_seen_by_ddpm"] == (len(test) - test["synthetic"].sum()
                                                   if n else 0)
    assert leakage.loc[8, "test_images_seen_by_ddpm"] > 0
    assert "leaky</b>" in (w / REPORT / "index.html").read_text()
    # the scenarios' test sets differ: the change vs scenario 0 is unpaired, and the metrics are
    # repeated on the real test images only
    scenario = pd.read_csv(w / REPORT / "scenario.csv")
    assert set(scenario.loc[scenario["synth"] == 8, "test"]) == {"unpaired corrected Welch t"}
    real = pd.read_csv(w / REPORT / "metrics_real_test.csv").set_index(["synth", "ckpt"])
    for n in (0, 8):
        p = pd.read_csv(w / model("synth", n, layout.predictions_file("best")))
        p = p[~p["synthetic"]]
        assert real.loc[(n, "best"), "n_test"] == len(p)
        assert real.loc[(n, "best"), "accuracy"] == pytest.approx((p["y"] == p["pred"]).mean())


@pytest.mark.integration
def test_weights_load_back_with_timm(demo_run):
    import timm
    from safetensors.torch import load_file

    path = demo_run / model("synth", 8, layout.weights_file("best"))
    # num_classes goes in the overlay too: otherwise timm sees 1 != 1000 and drops the head.
    net = timm.create_model(ARCH, num_classes=1, in_chans=1, pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(path), num_classes=1))
    saved = load_file(str(path))
    for key, value in net.state_dict().items():
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
    files = [p for d in (layout.RESULTS, "logs", "benchmarks") for p in (demo_run / d).rglob("*")
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
def test_a_rerun_has_nothing_to_do(demo_run):
    run = snakemake(demo_run, "-n")
    assert run.returncode == 0
    assert "Nothing to be done" in run.stdout + run.stderr


@pytest.mark.integration
def test_a_new_bootstrap_count_re_evaluates_without_retraining(demo_run):
    """Snakemake re-runs a job whose params change: the trainer's params carry only what
    changes its weights (`--config` strings are read by the schema's types too)."""
    run = snakemake(demo_run, "-n", "--config", "classifier={bootstrap: 7}")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    assert counts["evaluate"] > 0 and counts["report"] == 1
    assert not {"train_classifier", "train_ddpm", "sample_shard"} & set(counts), counts


@pytest.mark.integration
def test_an_inbreast_layout_folder_runs_unchanged(tmp_path):
    """Point dataset.format: inbreast at an INbreast-layout folder (the phantom, made apart)."""
    from mammosynth.datasets.phantom import write_phantom

    root = tmp_path / "INbreast Release 1.0"
    table = write_phantom(root, patients=18, height=128, width=104, seed=5)
    config = load_config("tiny", dataset={"format": "inbreast", "root": str(root)})
    write_config(tmp_path / "work", config)
    run = snakemake(tmp_path / "work", layout.split(0))
    assert run.returncode == 0, run.stderr[-4000:]
    manifest = pd.read_csv(tmp_path / "work" / layout.manifest(), dtype=str,
                           keep_default_na=False)
    assert len(manifest) == len(table) and (manifest["status"] == "ok").all()
    assert set(manifest["view"]) <= {"CC", "MLO"}
    assert set(manifest["patient_id"]) == set(table["patient_hash"])
    counts = table["birads"].eq("1").sum()
    assert (manifest["label"] == "normal").sum() == counts
