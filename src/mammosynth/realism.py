"""Are these synthetic images usable? Realism measures and a green / amber / red verdict.

Every measure compares a set of synthetic images of one label with the real training images of
that label (the set their DDPM learned from), and needs nothing downloaded:

- `c2st`: a classifier two-sample test (Lopez-Paz & Oquab 2017). A ridge linear classifier on
  16x16 thumbnails plus a 16-bin intensity histogram tells real from synthetic; its
  cross-validated ROC AUC, with the AUCs that chance gives at these set sizes (a permutation
  null). 0.5: indistinguishable; 1.0: every image gives itself away.
- label fidelity (computed in `quality.audit` with the split's real-only classifier): the
  fraction of synthetic images given their intended label, beside that classifier's recall on
  the real test images of the label.
- `prdc`: precision, recall, density and coverage (Naeem et al. 2020; the authors' `prdc`
  package) in a feature space: the real-only classifier's penultimate features, on sets of
  equal size (the larger one subsampled).
- `image_statistics`: background fraction (pixels below `BACKGROUND`), the Wasserstein-1
  distance of breast-pixel intensities, and the noise level (std of the high-frequency residual
  x - gaussian(x, 1 px) inside the eroded breast) as a synthetic / real ratio.

`verdict` turns these into one colour per set with the thresholds of `quality.verdict` (the
schema's defaults are explained in README "Is the synthetic data usable?"): each check is green,
amber or red, and the set gets its worst colour. The same measures of held-out real images
(val + test) against the training images, computed beside them, are the floor a perfect
generator would reach.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np

BACKGROUND = 0.02  # [0, 1] intensity below which a pixel counts as background
THUMBNAIL = 16
HISTOGRAM_BINS = 16
C2ST_FOLDS = 5
REPEATS = 5
RIDGE_ALPHA = 10.0
PERMUTATIONS = 100
PRDC_K = 5
PRDC_DRAWS = 10

# check name -> (measure key, direction): "low" = smaller is better, "high" = larger is better,
# "ratio" = a factor away from 1 in either direction is worse
CHECKS = {
    "c2st_auc": ("c2st_auc", "low"),
    "label_fidelity_gap": ("label_fidelity_gap", "low"),
    "precision": ("precision", "high"),
    "coverage": ("coverage", "high"),
    "intensity_w1": ("intensity_w1", "low"),
    "background_gap": ("background_gap", "low"),
    "noise_ratio": ("noise_ratio", "ratio"),
}
COLOURS = ("green", "amber", "red")


def c2st_features(images: np.ndarray) -> np.ndarray:
    """(N, 1, S, S) in [0, 1] -> (N, 16*16 + 16): area-averaged thumbnail + intensity histogram."""
    n, size = len(images), images.shape[-1]
    x = images.reshape(n, size, size).astype(np.float64)
    if size % THUMBNAIL:
        from PIL import Image

        x = np.stack([np.asarray(Image.fromarray(im.astype(np.float32)).resize(
            (THUMBNAIL * math.ceil(size / THUMBNAIL),) * 2, Image.Resampling.BILINEAR))
            for im in x]).astype(np.float64)
        size = x.shape[-1]
    f = size // THUMBNAIL
    thumbs = x.reshape(n, THUMBNAIL, f, THUMBNAIL, f).mean((2, 4)).reshape(n, -1)
    hist = np.stack([np.histogram(im, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0] / im.size
                     for im in x])
    return np.concatenate([thumbs, hist], axis=1)


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def _cv_auc(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> float:
    """AUC of out-of-fold linear-classifier scores pooled over stratified folds."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.model_selection import StratifiedKFold

    score = np.empty(len(y))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = RidgeClassifier(alpha=RIDGE_ALPHA, class_weight="balanced")
        model.fit(x[train], y[train])
        score[test] = model.decision_function(x[test])
    return _auc(y, score)


def c2st(real: np.ndarray, synthetic: np.ndarray, *, seed: int = 0,
         permutations: int = PERMUTATIONS) -> dict:
    """Cross-validated real-vs-synthetic AUC, tested against its own chance distribution.

    The AUC is the mean over `REPEATS` shufflings of stratified k-fold cross-validation (one
    split of the folds is noisy at these sizes). Chance is measured, not assumed: the same
    cross-validation on `permutations` random relabellings of the pooled images gives the AUCs
    a generator indistinguishable from the real images would score at these set sizes
    (`null_low`, `null_high`: their 2.5 and 97.5 percentiles; `p_value`: the permutation p,
    (1 + #null >= auc) / (1 + permutations)). A bootstrap of pooled out-of-fold scores would
    ignore how much the fitted models vary, and its interval excluded 0.5 in 4 of 24 real-vs-real
    draws of 40 + 40 images. Assumes the images are exchangeable under the null; images of one
    woman are not independent, so with few women chance is wider than shown.
    """
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.concatenate([c2st_features(real),
                                                       c2st_features(synthetic)]))
    y = np.r_[np.zeros(len(real), int), np.ones(len(synthetic), int)]
    folds = min(C2ST_FOLDS, len(real), len(synthetic))
    if folds < 2:
        return {"auc": None, "p_value": None, "null_low": None, "null_high": None, "folds": 0,
                "note": "fewer than 2 images in a set"}
    auc = float(np.mean([_cv_auc(x, y, folds, seed + r) for r in range(REPEATS)]))
    rng = np.random.default_rng(seed)
    null = np.array([_cv_auc(x, rng.permutation(y), folds, seed) for _ in range(permutations)])
    low, high = np.percentile(null, [2.5, 97.5])
    return {"auc": auc, "p_value": float((1 + (null >= auc).sum()) / (1 + permutations)),
            "null_low": float(low), "null_high": float(high), "folds": folds,
            "repeats": REPEATS, "permutations": permutations,
            "n_real": len(real), "n_synthetic": len(synthetic)}


def _breast(images: np.ndarray) -> np.ndarray:
    return images[:, 0] >= BACKGROUND


def noise_level(images: np.ndarray) -> float:
    """Std of x - gaussian(x, sigma 1 px) over breast pixels at least 2 px from the edge."""
    from scipy import ndimage

    values = []
    for im, inside in zip(images[:, 0].astype(np.float64), _breast(images)):
        inner = ndimage.binary_erosion(inside, iterations=2)
        if inner.any():
            values.append((im - ndimage.gaussian_filter(im, 1.0))[inner])
    return float(np.concatenate(values).std()) if values else float("nan")


def image_statistics(real: np.ndarray, synthetic: np.ndarray) -> dict:
    from scipy.stats import wasserstein_distance

    bg_real, bg_syn = (float((~_breast(x)).mean()) for x in (real, synthetic))
    r, s = real[:, 0][_breast(real)], synthetic[:, 0][_breast(synthetic)]
    w1 = (float(wasserstein_distance(r.astype(np.float64), s.astype(np.float64)))
          if r.size and s.size else 1.0)
    noise_real, noise_syn = noise_level(real), noise_level(synthetic)
    ratio = noise_syn / noise_real if noise_real > 0 else float("nan")
    return {"background_real": bg_real, "background_synthetic": bg_syn,
            "background_gap": abs(bg_syn - bg_real), "intensity_w1": w1,
            "noise_real": noise_real, "noise_synthetic": noise_syn, "noise_ratio": ratio}


def prdc(real_features: np.ndarray, synthetic_features: np.ndarray, k: int = PRDC_K,
         seed: int = 0) -> dict:
    """Naeem et al. 2020 with the authors' implementation, on sets of equal size.

    Coverage and density depend on the ratio of set sizes (Naeem et al. use as many fake as real
    samples; the demo's 32 synthetic images against 174 real ones could cover at most a fraction
    of them), so the larger set is subsampled to the smaller one's size, `PRDC_DRAWS` seeded times,
    and the metrics averaged. k is capped by the set size."""
    from prdc import compute_prdc

    real = np.asarray(real_features, np.float64)
    fake = np.asarray(synthetic_features, np.float64)
    m = min(len(real), len(fake))
    # a point's k-NN radius counts the point itself: a set of m points allows k <= m - 2
    k = min(k, m - 2)
    if k < 1:
        return {"precision": None, "recall": None, "density": None, "coverage": None, "k": 0}
    rng = np.random.default_rng(seed)
    draws = 1 if len(real) == len(fake) else PRDC_DRAWS
    runs = []
    for _ in range(draws):
        r = real if len(real) == m else real[rng.choice(len(real), m, replace=False)]
        f = fake if len(fake) == m else fake[rng.choice(len(fake), m, replace=False)]
        with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the set sizes
            runs.append(compute_prdc(real_features=r, fake_features=f, nearest_k=k))
    return {**{key: float(np.mean([run[key] for run in runs])) for key in runs[0]},
            "k": k, "n_each": m, "draws": draws}


def status(value, direction: str, green: float, amber: float) -> str | None:
    """green / amber / red for one measure; None when it could not be computed."""
    if value is None or math.isnan(float(value)):
        return None
    value = float(value)
    if direction == "ratio":
        value = math.exp(abs(math.log(value))) if value > 0 else math.inf
        direction = "low"
    if direction == "low":
        return "green" if value <= green else "amber" if value <= amber else "red"
    return "green" if value >= green else "amber" if value >= amber else "red"


def verdict(measures: dict, thresholds: dict) -> dict:
    """{verdict, checks: [{check, value, green, amber, status}]}: the worst colour of the checks
    that could be computed; "not computed" when none could."""
    checks = []
    for name, (key, direction) in CHECKS.items():
        limits = thresholds[name]
        checks.append({"check": name, "value": measures.get(key), "direction": direction,
                       "green": limits["green"], "amber": limits["amber"],
                       "status": status(measures.get(key), direction, limits["green"],
                                        limits["amber"])})
    seen = [c["status"] for c in checks if c["status"]]
    overall = max(seen, key=COLOURS.index) if seen else "not computed"
    return {"verdict": overall, "checks": checks}
