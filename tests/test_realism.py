"""mammosynth.realism: the real-vs-synthetic two-sample test, image statistics, PRDC and the
green / amber / red verdict, on procedurally drawn breast-like images (32 px, ~40 per set).

The thresholds are the schema's defaults (read through `mammosynth.config.validate`), so a
change of default that turns "a second draw of the real images" amber or red fails here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from mammosynth import realism
from mammosynth.config import validate

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
SIZE = 32
N = 40


def phantoms(n: int, seed: int, *, size: int = SIZE, background: float = 0.0) -> np.ndarray:
    """(n, 1, size, size) float32 in [0, 1]: preprocessed-mammogram look-alikes - a bright,
    textured half-ellipse whose flat side is the left edge (the chest wall), random width, height
    and vertical position, on an exact-0 background (or `background`)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((n, 1, size, size), np.float32)
    for k in range(n):
        a, b = rng.uniform(0.45, 0.8) * size, rng.uniform(0.3, 0.45) * size
        cy = size / 2 + rng.uniform(-0.1, 0.1) * size
        r = (x / a) ** 2 + ((y - cy) / b) ** 2
        texture = gaussian_filter(rng.normal(0.0, 1.0, (size, size)), 1.5)
        breast = (0.5 + 0.3 * (1.0 - np.sqrt(np.clip(r, 0, 1))) + 0.06 * texture / texture.std()
                  + rng.normal(0.0, 0.02, (size, size)))
        out[k, 0] = np.where(r <= 1.0, np.clip(breast, 0.1, 1.0), background)
    return out


@pytest.fixture(scope="module")
def thresholds() -> dict:
    return validate({}, SCHEMA)["quality"]["verdict"]


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return phantoms(N, seed=6)


@pytest.fixture(scope="module")
def other_real() -> np.ndarray:
    """A second, independent draw of the same generator: what a perfect DDPM would give."""
    return phantoms(N, seed=7)


def measures(real: np.ndarray, synthetic: np.ndarray) -> tuple[dict, dict]:
    """The flat measures quality.audit hands to `verdict` (no classifier: no fidelity / PRDC)."""
    c2st = realism.c2st(real, synthetic)
    return c2st, {**realism.image_statistics(real, synthetic), "c2st_auc": c2st["auc"]}


def check(result: dict, name: str) -> dict:
    (found,) = [c for c in result["checks"] if c["check"] == name]
    return found


def test_schema_defaults_cover_every_check(thresholds):
    assert set(thresholds) == set(realism.CHECKS)
    for name, band in thresholds.items():
        direction = realism.CHECKS[name][1]
        if direction == "high":
            assert band["green"] >= band["amber"], name
        else:
            assert band["green"] <= band["amber"], name


def test_real_vs_real_is_indistinguishable_and_green(real, other_real, thresholds):
    c2st, flat = measures(real, other_real)
    assert c2st["folds"] == 5 and (c2st["n_real"], c2st["n_synthetic"]) == (N, N)
    assert abs(c2st["auc"] - 0.5) <= 0.15, c2st
    # chance at these sizes, measured by permutation, covers the real-vs-real AUC
    assert c2st["null_low"] <= c2st["auc"] <= c2st["null_high"], c2st
    assert c2st["null_low"] < 0.5 < c2st["null_high"] and c2st["p_value"] > 0.05, c2st
    assert flat["background_gap"] < 0.05 and flat["intensity_w1"] < 0.02
    assert 0.8 < flat["noise_ratio"] < 1.25
    result = realism.verdict(flat, thresholds)
    assert result["verdict"] == "green", result
    assert [c["check"] for c in result["checks"]] == list(realism.CHECKS)
    # no classifier was given: those checks are not computed, and do not colour the verdict
    for name in ("label_fidelity_gap", "precision", "coverage"):
        assert check(result, name)["status"] is None and check(result, name)["value"] is None
    # deterministic
    assert realism.c2st(real, other_real) == c2st


def test_gaussian_noise_is_told_apart_and_red(real, thresholds):
    noise = np.random.default_rng(0).random((N, 1, SIZE, SIZE)).astype(np.float32)
    c2st, flat = measures(real, noise)
    assert c2st["auc"] > 0.95 and c2st["auc"] > c2st["null_high"]
    assert c2st["p_value"] == pytest.approx(1 / (1 + c2st["permutations"]))
    result = realism.verdict(flat, thresholds)
    assert result["verdict"] == "red"
    assert check(result, "c2st_auc")["status"] == "red"
    assert check(result, "background_gap")["status"] == "red"


def test_grey_background_is_red(real, thresholds):
    grey = phantoms(N, seed=7, background=0.15)
    stats = realism.image_statistics(real, grey)
    assert stats["background_synthetic"] == 0.0  # nothing is black
    assert stats["background_gap"] == pytest.approx(stats["background_real"])
    _, flat = measures(real, grey)
    result = realism.verdict(flat, thresholds)
    assert check(result, "background_gap")["status"] == "red"
    assert result["verdict"] == "red"


def test_noisier_images_fail_the_noise_check(real, other_real, thresholds):
    inside = other_real > 0
    noisy = other_real + np.random.default_rng(1).normal(0.0, 0.1, other_real.shape) * inside
    noisy = np.where(inside, np.clip(noisy, 0.05, 1.0), 0.0).astype(np.float32)
    stats = realism.image_statistics(real, noisy)
    assert stats["noise_ratio"] > 2.0
    assert stats["background_gap"] == pytest.approx(
        realism.image_statistics(real, other_real)["background_gap"])  # the same masks
    result = realism.verdict({**stats, "c2st_auc": None}, thresholds)
    assert check(result, "noise_ratio")["status"] != "green"
    assert result["verdict"] != "green"
    # and a smoother (denoised) copy is flagged just the same: the ratio works both ways
    smooth = np.stack([gaussian_filter(im, (0, 1.5, 1.5)) for im in other_real]) * inside
    ratio = realism.image_statistics(real, smooth.astype(np.float32))["noise_ratio"]
    assert ratio < 0.67
    assert realism.status(ratio, "ratio", **thresholds["noise_ratio"]) != "green"


def test_noise_level_and_small_sets():
    flat = np.zeros((3, 1, SIZE, SIZE), np.float32)
    flat[:, :, 4:28, :20] = 0.5
    # a flat breast: only its edge's blur reaches 2-4 px inside, far below texture's ~0.02
    assert realism.noise_level(flat) < 2e-3
    assert math.isnan(realism.noise_level(np.zeros((2, 1, SIZE, SIZE), np.float32)))
    one = realism.c2st(phantoms(1, seed=0), phantoms(5, seed=1))
    assert one["auc"] is None and one["folds"] == 0
    # an odd size (not a multiple of the 16-px thumbnail) works
    odd = realism.c2st(phantoms(6, seed=0, size=36), phantoms(6, seed=1, size=36), permutations=20)
    assert 0.0 <= odd["auc"] <= 1.0


@pytest.mark.parametrize("value", [None, float("nan"), np.nan, np.float64("nan")])
def test_status_not_computed(value):
    for direction in ("low", "high", "ratio"):
        assert realism.status(value, direction, 1.5, 2.0) is None


def test_status_directions():
    # low: smaller is better; the bounds are inclusive
    assert [realism.status(v, "low", 0.75, 0.9) for v in (0.5, 0.75, 0.8, 0.9, 0.95)] == \
        ["green", "green", "amber", "amber", "red"]
    # high: larger is better
    assert [realism.status(v, "high", 0.5, 0.25) for v in (0.9, 0.5, 0.3, 0.25, 0.1, 0.0)] == \
        ["green", "green", "amber", "amber", "red", "red"]
    # ratio: a factor away from 1 either way
    for factor in (1.0, 1.2, 1.5, 1.8, 2.0, 2.5, 10.0):
        assert realism.status(factor, "ratio", 1.5, 2.0) == \
            realism.status(1 / factor, "ratio", 1.5, 2.0), factor
    assert realism.status(0.5, "ratio", 1.5, 2.0) == realism.status(2.0, "ratio", 1.5, 2.0) \
        == "amber"
    assert realism.status(1.0, "ratio", 1.5, 2.0) == "green"
    assert realism.status(0.4, "ratio", 1.5, 2.0) == realism.status(2.5, "ratio", 1.5, 2.0) \
        == "red"
    assert realism.status(0.0, "ratio", 1.5, 2.0) == "red"  # no noise at all


def test_verdict_is_the_worst_colour(thresholds):
    good = {"c2st_auc": 0.5, "intensity_w1": 0.0, "background_gap": 0.0, "noise_ratio": 1.0,
            "precision": 0.9, "coverage": 0.9, "label_fidelity_gap": 0.0}
    assert realism.verdict(good, thresholds)["verdict"] == "green"
    amber = realism.verdict({**good, "coverage": 0.3}, thresholds)
    assert amber["verdict"] == "amber" and check(amber, "coverage")["status"] == "amber"
    red = realism.verdict({**good, "coverage": 0.3, "label_fidelity_gap": 0.9}, thresholds)
    assert red["verdict"] == "red"
    for c in red["checks"]:
        assert c["green"] == thresholds[c["check"]]["green"]
        assert c["amber"] == thresholds[c["check"]]["amber"]
        assert c["direction"] == realism.CHECKS[c["check"]][1]
    assert realism.verdict({}, thresholds)["verdict"] == "not computed"


def test_prdc_identical_and_far_apart():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 8))
    same = realism.prdc(a, a.copy())
    assert same["k"] == realism.PRDC_K
    assert same["precision"] == pytest.approx(1.0) and same["coverage"] == pytest.approx(1.0)
    assert same["recall"] == pytest.approx(1.0)
    far = realism.prdc(a, rng.normal(size=(40, 8)) + 100.0)
    assert far["precision"] == pytest.approx(0.0) and far["coverage"] == pytest.approx(0.0)
    assert far["recall"] == pytest.approx(0.0) and far["density"] == pytest.approx(0.0)
    # a second draw of the same distribution sits in between, well above the far set
    near = realism.prdc(a, rng.normal(size=(40, 8)))
    assert 0.5 < near["precision"] <= 1.0 and 0.5 < near["coverage"] <= 1.0
    assert all(isinstance(near[k], float) for k in ("precision", "recall", "density", "coverage"))
    assert (near["n_each"], near["draws"]) == (40, 1)  # equal sets: no subsampling


def test_prdc_caps_k_by_the_smaller_set():
    """prdc's k-NN radius is the (k+1)-th smallest distance of a point to its own set (itself
    included), so a set of m points allows k <= m - 2; smaller sets give no PRDC, not a crash."""
    rng = np.random.default_rng(1)
    big = rng.normal(size=(10, 4))
    assert realism.prdc(big, rng.normal(size=(4, 4)))["k"] == 2
    three = realism.prdc(big, rng.normal(size=(3, 4)))
    assert three["k"] == 1 and 0.0 <= three["precision"] <= 1.0
    assert realism.prdc(rng.normal(size=(3, 4)), big)["k"] == 1
    for m in (1, 2):
        none = realism.prdc(big, rng.normal(size=(m, 4)))
        assert none["k"] == 0 and none["precision"] is None and none["coverage"] is None, m


def test_prdc_coverage_does_not_depend_on_the_ratio_of_set_sizes():
    """32 synthetic images against 170 real ones from the same distribution: on the raw sets
    coverage is capped by the ratio (most real images have no synthetic neighbour), on the
    equal-size draws it is as high as for equal sets."""
    from prdc import compute_prdc

    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(170, 8)), rng.normal(size=(32, 8))
    raw = compute_prdc(real_features=real, fake_features=fake, nearest_k=5)["coverage"]
    ours = realism.prdc(real, fake)
    equal = realism.prdc(real[:32], fake)
    assert raw < 0.7 and ours["coverage"] > 0.9 and abs(ours["coverage"] - equal["coverage"]) < 0.05
    assert (ours["n_each"], ours["draws"]) == (32, realism.PRDC_DRAWS)
