"""mammosynth.quality.audit: intensity, diversity, memorisation (NCC), figures, FID/KID."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from mammosynth import layout
from mammosynth.config import validate
from mammosynth.errors import UserError
from mammosynth.imaging.png import write_png
from mammosynth.imaging.png import read_pngs
from mammosynth.quality import (_nn_figure, _pairs, _unit_rows, audit, ms_ssim_scales,
                                patients_of)

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


def blob(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random image in [0, 1] (Gaussian-filtered noise, min-max scaled)."""
    a = gaussian_filter(np.random.default_rng(seed).random((size, size)), 4)
    return (a - a.min()) / (a.max() - a.min())


def write_set(folder: Path, name: str, images) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, image in enumerate(images):
        path = folder / f"{name}_{k:03d}.png"
        write_png(path, np.clip(image, 0.0, 1.0))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """12 real and 10 unrelated synthetic blobs, plus a near copy of real #3."""
    root = tmp_path_factory.mktemp("quality")
    real = write_set(root / "real", "real", [blob(i) for i in range(12)])
    synthetic = write_set(root / "syn", "syn", [blob(1000 + i) for i in range(10)])
    noisy = blob(3) + np.random.default_rng(7).normal(0.0, 0.01, (64, 64))
    copy = write_set(root / "copy", "copy", [noisy])
    return {"root": root, "real": real, "synthetic": synthetic, "copy": copy}


@pytest.fixture(scope="module")
def base_result(sets):
    return audit(sets["real"], sets["synthetic"])


def test_fields_ranges_and_json(sets, base_result):
    r = base_result
    json.dumps(r, allow_nan=False)
    assert (r["n_real"], r["n_synthetic"], r["size"]) == (12, 10, 64)

    inten = r["intensity"]
    assert inten["wasserstein"] >= 0.0
    assert 0.0 <= inten["histogram_intersection"] <= 1.0
    for side in ("real", "synthetic"):
        assert 0.0 <= inten[side]["mean"] <= 1.0 and inten[side]["std"] > 0.0

    div = r["diversity"]
    assert div["scales"] == 3 and div["kernel_size"] == 11
    assert math.isclose(sum(div["betas"]), 1.0)
    assert div["pairs"] == {"synthetic": 45, "real": 66}  # all pairs: fewer than 500
    assert 0.0 <= div["ms_ssim_synthetic"] <= 1.0 and 0.0 <= div["ms_ssim_real"] <= 1.0

    mem = r["memorization"]
    for key in ("nn_ncc", "real_nn_ncc"):
        s = mem[key]
        assert set(s) == {"mean", "median", "p95", "max"}
        assert -1.0 <= s["mean"] <= s["max"] <= 1.0 and s["median"] <= s["p95"] <= s["max"]
    assert mem["near_copy_threshold"] == 0.95
    assert len(mem["closest"]) == 8
    nccs = [c["ncc"] for c in mem["closest"]]
    assert nccs == sorted(nccs, reverse=True) and nccs[0] == mem["nn_ncc"]["max"]
    assert all(c["synthetic"] in sets["synthetic"] and c["real"] in sets["real"]
               for c in mem["closest"])
    assert [p["synthetic"] for p in mem["per_image"]] == sets["synthetic"]
    assert all(p["nearest_real"] in sets["real"] for p in mem["per_image"])
    assert [p["real"] for p in mem["real_per_image"]] == sets["real"]
    assert all(p["nearest_other_real"] != p["real"] for p in mem["real_per_image"])
    assert r["fid"] == {"computed": False, "reason": "quality.fid is off"}
    assert "realism" not in r  # only with thresholds (config quality.verdict)


def test_planted_near_copy_is_found(sets, base_result):
    assert base_result["memorization"]["near_copies"] == 0
    assert base_result["memorization"]["near_copy_fraction"] == 0.0

    r = audit(sets["real"], sets["synthetic"] + sets["copy"])
    mem = r["memorization"]
    assert mem["near_copies"] >= 1
    assert math.isclose(mem["near_copy_fraction"], mem["near_copies"] / 11)
    top = mem["closest"][0]
    assert top["synthetic"] == sets["copy"][0]
    assert top["real"] == sets["real"][3] and top["ncc"] > 0.95
    # the copy is far closer to its source than real images are to each other
    assert top["ncc"] > mem["real_nn_ncc"]["max"]


def test_deterministic(sets, base_result):
    assert audit(sets["real"], sets["synthetic"]) == base_result


def test_collapsed_generator_has_high_ms_ssim(sets):
    same = write_set(sets["root"] / "collapsed", "same", [blob(500)] * 8)
    div = audit(sets["real"], same)["diversity"]
    assert div["ms_ssim_synthetic"] == pytest.approx(1.0, abs=1e-4)
    assert div["ms_ssim_synthetic"] > div["ms_ssim_real"] + 0.2


def test_intensity_distances(sets):
    same = audit(sets["real"], sets["real"])["intensity"]
    assert same["wasserstein"] == pytest.approx(0.0, abs=1e-9)
    assert same["histogram_intersection"] == pytest.approx(1.0)
    assert same["real"] == same["synthetic"]

    bright = write_set(sets["root"] / "bright", "bright",
                       [np.clip(blob(i) * 0.8 + 0.2, 0, 1) for i in range(12)])
    shifted = audit(sets["real"], bright)["intensity"]
    assert shifted["wasserstein"] > 0.05
    assert shifted["histogram_intersection"] < 0.9
    assert shifted["synthetic"]["mean"] > shifted["real"]["mean"] + 0.05


def test_figures_written_only_when_asked(sets, tmp_path):
    audit(sets["real"], sets["synthetic"])
    assert not list(tmp_path.iterdir())

    figs = tmp_path / "figs"
    audit(sets["real"], sets["synthetic"] + sets["copy"],
          figures={"nn": figs / "label_A_nn.png", "pairs": figs / "label_A_pairs.png"})
    written = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert written == ["label_A_nn.png", "label_A_pairs.png"]  # no temp files left over
    for name in written:
        data = (tmp_path / "figs" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_too_few_images(sets):
    with pytest.raises(UserError, match="synthetic"):
        audit(sets["real"], sets["synthetic"][:1])
    with pytest.raises(UserError, match="real"):
        audit(sets["real"][:1], sets["synthetic"])
    with pytest.raises(UserError, match="at least 32"):
        audit(sets["real"], sets["synthetic"], size=16)


def test_constant_images_do_not_divide_by_zero(sets):
    flat = write_set(sets["root"] / "flat", "flat", [np.full((64, 64), 0.5)] * 3)
    r = audit(sets["real"][:4], flat)
    json.dumps(r, allow_nan=False)
    assert [p["ncc"] for p in r["memorization"]["per_image"]] == [0.0, 0.0, 0.0]
    assert r["memorization"]["near_copies"] == 0


# --- NCC over the breast; the baseline excludes the same patient ----------------------------

def masked_ncc(a: np.ndarray, b: np.ndarray) -> float:
    """The breast-region NCC written out directly: each image's pixels > 0 centred on their own
    mean, background 0, and the dot product over the product of the two norms."""
    ca = np.where(a > 0, a - a[a > 0].mean(), 0.0).astype(np.float64)
    cb = np.where(b > 0, b - b[b > 0].mean(), 0.0).astype(np.float64)
    return float((ca * cb).sum() / (np.linalg.norm(ca) * np.linalg.norm(cb)))


def textured(seed: int, size: int = 64) -> np.ndarray:
    """A half-ellipse "breast" against the left edge, filled with white noise around 0.5, on an
    exact-0 background: the same region in every image, the texture independent per seed."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    inside = (x / (0.6 * size)) ** 2 + ((y - size / 2) / (0.42 * size)) ** 2 <= 1.0
    return np.where(inside, 0.5 + 0.1 * np.random.default_rng(seed).uniform(-1, 1, (size, size)),
                    0.0)


def test_background_does_not_inflate_ncc(tmp_path):
    a, b = textured(1), textured(2)
    # over the whole image the shared black background makes two unrelated breasts look alike
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    rows = _unit_rows(np.stack([a, b, a, 0.5 * a])[:, None].astype(np.float32))
    assert abs(float(rows[0] @ rows[1])) < 0.1
    assert float(rows[0] @ rows[1]) == pytest.approx(masked_ncc(a, b), abs=1e-5)
    assert float(rows[0] @ rows[2]) == pytest.approx(1.0, abs=1e-5)  # itself
    assert float(rows[0] @ rows[3]) == pytest.approx(1.0, abs=1e-5)  # intensity-scaled copy

    # the same through audit: unrelated textures are not near copies, a scaled copy is
    real = write_set(tmp_path / "real", "real", [a, textured(3)])
    syn = write_set(tmp_path / "syn", "syn", [b, textured(4), 0.5 * a])
    mem = audit(real, syn)["memorization"]
    ncc = [p["ncc"] for p in mem["per_image"]]
    assert max(abs(ncc[0]), abs(ncc[1])) < 0.1
    assert ncc[2] == pytest.approx(1.0, abs=1e-4) and mem["per_image"][2]["nearest_real"] == real[0]
    assert mem["near_copies"] == 1


def test_constant_breast_has_ncc_zero():
    flat = np.where(textured(1) > 0, 0.6, 0.0)
    rows = _unit_rows(np.stack([flat, np.zeros_like(flat), textured(2)])[:, None]
                      .astype(np.float32))
    assert not rows[0].any() and not rows[1].any() and rows[2].any()


@pytest.fixture(scope="module")
def patients(tmp_path_factory):
    """Breast-like 32-px images: patient "p0" has the same breast twice (two views, slight
    noise: near-identical), patients p1..p6 one image each; and 4 synthetic images."""
    root = tmp_path_factory.mktemp("patients")
    base = breast(np.random.default_rng(100))
    twins = [np.where(base > 0, np.clip(base + np.random.default_rng(s).normal(0, 0.003,
                                                                                 base.shape),
                                        0.01, 1.0), 0.0) for s in (1, 2)]
    rng = np.random.default_rng(0)
    real = write_set(root / "real", "real", twins + [breast(rng) for _ in range(6)])
    synthetic = write_set(root / "syn", "syn", [breast(rng) for _ in range(4)])
    groups = ["p0", "p0"] + [f"p{k}" for k in range(1, 7)]
    return {"real": real, "synthetic": synthetic, "groups": groups}


def test_baseline_excludes_the_same_patient(patients):
    real, groups = patients["real"], patients["groups"]
    images = read_pngs(real, 32)[:, 0]
    assert masked_ncc(images[0], images[1]) > 0.99  # the same breast twice

    alone = audit(real, patients["synthetic"], size=32)["memorization"]
    assert alone["baseline_excludes"] == "self"
    assert alone["real_per_image"][0]["nearest_other_real"] == real[1]
    assert alone["real_per_image"][1]["nearest_other_real"] == real[0]
    assert alone["real_per_image"][0]["ncc"] > 0.99

    mem = audit(real, patients["synthetic"], size=32, real_groups=groups)["memorization"]
    assert mem["baseline_excludes"] == "same patient"
    for k, row in enumerate(mem["real_per_image"]):
        other = [j for j in range(len(real)) if groups[j] != groups[k]]
        expected = max(masked_ncc(images[k], images[j]) for j in other)
        assert groups[real.index(row["nearest_other_real"])] != groups[k]
        assert row["ncc"] == pytest.approx(expected, abs=1e-4)
    for k in (0, 1):  # the twins: now their NCC with another patient's breast, not ~1
        assert mem["real_per_image"][k]["ncc"] < alone["real_per_image"][k]["ncc"] - 0.01
    # patients with one image each keep their baseline; the synthetic side is untouched
    assert mem["real_per_image"][2:] == alone["real_per_image"][2:]
    assert mem["per_image"] == alone["per_image"]
    assert mem["real_nn_ncc"]["max"] < alone["real_nn_ncc"]["max"]

    # an unknown (empty) patient id is a patient of its own: the same as excluding only self
    unknown = audit(real, patients["synthetic"], size=32,
                    real_groups=[""] * len(real))["memorization"]
    assert unknown["real_per_image"] == alone["real_per_image"]


def test_one_patient_has_no_baseline(patients, tmp_path):
    real = patients["real"]
    out = audit(real, patients["synthetic"], size=32, real_groups=["p0"] * len(real),
                figures={"nn": tmp_path / "one_nn.png", "pairs": tmp_path / "one_pairs.png"})
    mem = out["memorization"]
    assert mem["real_nn_ncc"]["median"] is None and mem["real_per_image"] == []
    assert mem["baseline_note"].startswith("all 8 real training images are of one patient")
    assert mem["nn_ncc"]["median"] is not None  # the synthetic images are still compared
    # two patients are enough
    audit(real[:3], patients["synthetic"], size=32, real_groups=["p0", "p0", "p1"])

    import pandas as pd

    manifest = pd.DataFrame({"image_path": real[:3] + [""], "patient_id": ["a", "a", "b", "c"]})
    assert patients_of(manifest, [real[2], real[0]]) == ["b", "a"]
    with pytest.raises(UserError, match="manifest: no row has image_path"):
        patients_of(manifest, [real[5]])


def test_nn_figure_names_the_baseline(patients, tmp_path):
    syn, real = np.array([0.2, 0.5, 0.97]), np.array([0.4, 0.6])
    for by_patient, legend in ((False, "real → nearest other real (n=2)"),
                               (True, "real → nearest real of another patient (n=2)")):
        path = tmp_path / f"{by_patient}_nn.png"
        fig = _nn_figure(path, syn, real, 0.95, by_patient=by_patient)
        assert legend in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert path.stat().st_size > 10_000
    # audit draws it with the patients when it has them
    figures = {"nn": tmp_path / "audit_nn.png", "pairs": tmp_path / "audit_pairs.png"}
    audit(patients["real"], patients["synthetic"], size=32, real_groups=patients["groups"],
          figures=figures)
    assert figures["nn"].stat().st_size > 10_000


def test_small_size_and_pair_sampling(sets):
    sizes = (32, 43, 44, 98, 99, 175, 176, 256)
    assert [ms_ssim_scales(s) for s in sizes] == [2, 2, 3, 3, 4, 4, 5, 5]
    r = audit(sets["real"], sets["synthetic"], size=32)
    assert r["size"] == 32 and r["diversity"]["scales"] == 2
    i, j = _pairs(100, seed=0)
    assert len(i) == 500 and (i < j).all() and (j < 100).all() and (i >= 0).all()
    assert len(set(zip(i.tolist(), j.tolist()))) == 500
    assert np.array_equal(_pairs(100, seed=0)[1], j)


def test_fid_refuses_weights_that_are_not_inception(sets, tmp_path):
    # a missing file is config.check's (tests/test_config_check.py); its content is the audit's
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(UserError, match=r"quality\.inception_weights.*not an Inception-v3"):
        audit(sets["real"], sets["synthetic"], fid=True, inception_weights=str(junk))


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory) -> str:
    """A weights file with torch-fidelity's Inception-v3 layout but random weights.

    The extractor's constructor always loads a state dict (downloading one when given no path),
    so a subclass that skips loading builds the network offline; Kaiming init keeps activations
    at a usable scale through the depth (PyTorch's default init shrinks them to ~1e-8)."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class RandomInit(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    root = tmp_path_factory.mktemp("inception")
    empty = root / "empty.pth"
    torch.save({}, empty)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = RandomInit("random", ["2048"], feature_extractor_weights_path=str(empty))
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path = root / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return str(path)


def test_fid_kid_with_local_weights(sets, random_inception):
    real = sets["real"][:4]
    noise = write_set(sets["root"] / "noise", "noise",
                      [np.random.default_rng(50 + i).random((64, 64)) for i in range(4)])
    same = audit(real, real, fid=True, inception_weights=random_inception)
    other = audit(real, noise, fid=True, inception_weights=random_inception)
    json.dumps(same, allow_nan=False)
    for r in (same, other):
        f = r["fid"]
        assert f["computed"] is True and f["weights"] == "random-inception.pth"
        assert f["kid_subset_size"] == 4
        assert all(isinstance(f[k], float) and math.isfinite(f[k])
                   for k in ("fid", "kid_mean", "kid_std"))
    assert other["fid"]["fid"] > 1.0
    assert same["fid"]["fid"] < 1e-3 * other["fid"]["fid"]
    # KID is an unbiased estimate: about 0 (either sign) for identical sets
    assert abs(same["fid"]["kid_mean"]) < 0.1 * other["fid"]["kid_mean"]


# --- realism verdict -------------------------------------------------------------------------

LABELS = ["normal", "abnormal"]


def breast(rng, size: int = 32, spot: bool = False) -> np.ndarray:
    """A preprocessed-mammogram look-alike: a textured half-ellipse against the left edge on an
    exact-0 background; `spot` adds a bright round "mass" (the abnormal class)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    a, b = rng.uniform(0.5, 0.8) * size, rng.uniform(0.3, 0.45) * size
    r = (x / a) ** 2 + ((y - size / 2) / b) ** 2
    image = 0.5 + 0.3 * (1 - np.sqrt(np.clip(r, 0, 1))) + 0.05 * gaussian_filter(
        rng.normal(0, 1, (size, size)), 1.0)
    if spot:
        cy, cx = size / 2 + rng.uniform(-3, 3), rng.uniform(4, 0.6 * a)
        image += 0.4 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 6.0)
    return np.where(r <= 1.0, np.clip(image, 0.1, 1.0), 0.0)


@pytest.fixture(scope="module")
def thresholds() -> dict:
    return validate({}, SCHEMA)["quality"]["verdict"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Breast-like 32-px sets of the label "normal" (train, val + test, test, synthetic) and a
    tiny resnet10t trained on normal vs abnormal (bright spot): the split's real-only classifier."""
    import pandas as pd

    from mammosynth.classify.train import train_classifier

    root = tmp_path_factory.mktemp("realism")
    rng = np.random.default_rng(0)

    def draw(name, n, spot=False):
        return write_set(root / name, name, [breast(rng, spot=spot) for _ in range(n)])

    sets = {"real": draw("real", 16), "abnormal": draw("abnormal", 16, spot=True),
            "val": draw("val", 4), "test": draw("test", 6), "synthetic": draw("synthetic", 10),
            "val_abnormal": draw("val_abnormal", 4, spot=True)}
    frame = lambda normal, abnormal: pd.DataFrame(  # noqa: E731
        [{"image_id": Path(p).stem, "path": p, "label": LABELS[y], "y": y, "synthetic": False}
         for y, paths in enumerate((normal, abnormal)) for p in paths])
    cfg = dict(image_size=32, in_chans=1, pretrained=None, optimizer="adam", optimizer_args={},
               lr=3e-3, weight_decay=0.0, batch_size=8, epochs=2, patience=None,
               monitor="val_loss", class_weights="balanced")
    folder = root / "classifier"
    train_classifier({"train": frame(sets["real"], sets["abnormal"]),
                      "val": frame(sets["val"], sets["val_abnormal"])},
                     last=folder / layout.weights_file("last"),
                     best=folder / layout.weights_file("best"),
                     history=folder / layout.HISTORY, resume=folder / layout.CLASSIFIER_RESUME,
                     arch="resnet10t", labels=LABELS, cfg=cfg, seed=0)
    sets["classifier"] = str(folder / layout.weights_file("best"))
    return sets


def test_realism_needs_thresholds_and_works_without_a_classifier(labelled, thresholds):
    r = audit(labelled["real"], labelled["synthetic"], size=32, thresholds=thresholds,
              held_out_paths=labelled["val"] + labelled["test"])
    json.dumps(r, allow_nan=False)
    realism = r["realism"]
    assert realism["verdict"] in ("green", "amber", "red")
    assert realism["label_fidelity"] is None and realism["prdc"] is None
    assert realism["c2st"]["n_real"] == 16 and realism["c2st"]["n_synthetic"] == 10
    assert realism["reference_c2st"]["n_synthetic"] == 10
    assert realism["thresholds"] == thresholds
    statuses = {c["check"]: c["status"] for c in realism["checks"]}
    assert statuses["label_fidelity_gap"] is None and statuses["precision"] is None
    assert statuses["c2st_auc"] is not None and statuses["background_gap"] is not None

    # no held-out images: no reference, and the synthetic verdict is unchanged
    alone = audit(labelled["real"], labelled["synthetic"], size=32, thresholds=thresholds)
    assert alone["realism"]["reference"]["verdict"] == "not computed"
    assert alone["realism"]["checks"] == realism["checks"]


def test_realism_with_a_real_only_classifier(labelled, thresholds):
    r = audit(labelled["real"], labelled["synthetic"], size=32, thresholds=thresholds,
              held_out_paths=labelled["val"] + labelled["test"], test_paths=labelled["test"],
              classifier=labelled["classifier"], label="normal")
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r

    realism = r["realism"]
    # the "synthetic" images are a further draw of the real images' generator: all green, as
    # is the reference (held-out real images)
    assert realism["verdict"] == "green", realism["checks"]
    assert realism["reference"]["verdict"] == "green", realism["reference"]["checks"]
    assert [c["check"] for c in realism["reference"]["checks"]] == \
        [c["check"] for c in realism["checks"]]

    fidelity = realism["label_fidelity"]
    assert 0.0 <= fidelity["fraction"] <= 1.0 and fidelity["n"] == 10
    assert 0.0 <= fidelity["real_recall"] <= 1.0 and fidelity["n_real_test"] == 6
    assert fidelity["fraction"] * 10 == pytest.approx(round(fidelity["fraction"] * 10))
    gap = {c["check"]: c for c in realism["checks"]}["label_fidelity_gap"]
    assert gap["value"] == pytest.approx(fidelity["real_recall"] - fidelity["fraction"])
    assert gap["status"] in ("green", "amber", "red")

    prdc = realism["prdc"]
    assert set(prdc) == {"precision", "recall", "density", "coverage", "k", "n_each", "draws"}
    assert 1 <= prdc["k"] <= 5
    for key in ("precision", "recall", "coverage"):
        assert isinstance(prdc[key], float) and 0.0 <= prdc[key] <= 1.0, key
    assert prdc["density"] >= 0.0
    checks = {c["check"]: c for c in realism["checks"]}
    assert checks["precision"]["value"] == prdc["precision"]
    assert checks["coverage"]["value"] == prdc["coverage"]

    # the reference (held-out real images as if synthetic) goes through the same measures
    ref = realism["reference_detail"]
    assert ref["label_fidelity"]["n"] == 10 and 0.0 <= ref["label_fidelity"]["fraction"] <= 1.0
    assert ref["prdc"]["k"] >= 1 and ref["c2st"] == realism["reference_c2st"]


def test_realism_with_the_fewest_images_allowed(labelled, thresholds):
    """audit accepts 2 synthetic images; with a classifier that must not crash in PRDC."""
    r = audit(labelled["real"], labelled["synthetic"][:2], size=32, thresholds=thresholds,
              held_out_paths=labelled["val"][:2], test_paths=labelled["test"],
              classifier=labelled["classifier"], label="normal")
    json.dumps(r, allow_nan=False)
    assert r["realism"]["verdict"] in ("green", "amber", "red")
