"""Statistics over splits: means and differences with Nadeau-Bengio corrected t intervals and
tests, Holm's adjustment, and a paired bootstrap over test images.

Splits are the unit of replication, but they are not independent: every split's training set
shares most of its images with every other split's (and hold-out test sets overlap too), so
results of different splits are positively correlated and a plain t interval over them is too
narrow. Nadeau and Bengio (2003, "Inference for the generalization error", Machine Learning
52:239-281) model the correlation between two splits' results as rho = n_test / (n_test +
n_train), which turns the variance of a mean over k splits from s^2 / k into

    s^2 * (1 / k + n_test / n_train)

(the "corrected resampled t"), still with k - 1 degrees of freedom. `ratio` below is
n_test / n_train (the mean over the splits of each split's test images over its real training
images); `factor(k, ratio)` = 1 + k * ratio is how much the variance grows (the interval by its
square root). The correction is a heuristic: it assumes the correlation is what the overlap of the
data implies, which Bouckaert and Frank (2004) found conservative enough in practice; it cannot
make five splits of one small data set worth five independent data sets.

- `mean_ci`: one quantity's mean over splits with its corrected t interval;
- `paired`: b - a on the same splits (same test images: scenarios under protocol rigorous, best
  vs last weights), corrected t interval and two-sided p;
- `unpaired`: b vs a when the test sets differ (protocol paper re-splits real + synthetic images
  per scenario): Welch's t on the two corrected variances, Welch-Satterthwaite degrees of
  freedom;
- a difference with no variance over splits has no interval and no p (never p = 0);
- `holm`: Holm's step-down adjustment of a family of p-values;
- `paired_bootstrap`: the test images' sampling error alone, for fixed trained models.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn import metrics as skm


NO_VARIANCE = "no variance over splits: no interval or p-value"
TOO_FEW = "fewer than 2 splits: no interval or p-value"


def factor(k: int, ratio: float) -> float:
    """How much the Nadeau-Bengio correction multiplies the variance of a mean over k splits."""
    return 1.0 + k * ratio


def _clean(values) -> np.ndarray:
    v = np.asarray([math.nan if x is None else x for x in values], dtype=float)
    return v[~np.isnan(v)]


def _constant(v: np.ndarray) -> bool:
    """The same value on every split, up to float round-off (metrics are fractions: 17/20 - 16/20
    and 18/20 - 17/20 differ by ~1e-16, which a t statistic would turn into p ~ 1e-60)."""
    return bool(np.ptp(v) <= 1e-12 * max(1.0, float(np.abs(v).max())))


def mean_ci(values, ratio: float = 0.0, bounds=(0.0, 1.0)) -> dict:
    """{mean, sd, low, high, n, note}: the mean over splits with its corrected t 95% CI
    (variance s^2 (1/k + ratio); ratio 0 gives the plain t interval), clipped to `bounds` (every
    metric here lies in [0, 1]); NaN interval below 2 splits or with no variance."""
    v = _clean(values)
    k = len(v)
    out = {"mean": float(v.mean()) if k else math.nan,
           "sd": float(v.std(ddof=1)) if k > 1 else math.nan,
           "low": math.nan, "high": math.nan, "n": int(k), "note": ""}
    if k < 2:
        out["note"] = TOO_FEW
    elif _constant(v):
        out["note"] = NO_VARIANCE
    else:
        half = stats.t.ppf(0.975, k - 1) * out["sd"] * math.sqrt(1 / k + ratio)
        out["low"] = max(bounds[0], out["mean"] - half)
        out["high"] = min(bounds[1], out["mean"] + half)
    return out


def paired(a, b, ratio: float = 0.0) -> dict:
    """b - a over splits (same order, same test images): the mean difference with its corrected
    t 95% CI and two-sided p (Nadeau-Bengio corrected resampled t; ratio 0: the paired t-test).
    -> {diff, diff_low, diff_high, p, n, note}; pairs with a NaN side are left out."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = b[keep] - a[keep]
    k = len(d)
    ci = mean_ci(d, ratio, bounds=(-1.0, 1.0))
    out = {"diff": ci["mean"], "diff_low": ci["low"], "diff_high": ci["high"], "p": math.nan,
           "n": k, "note": ci["note"]}
    if not ci["note"]:
        t = ci["mean"] / (ci["sd"] * math.sqrt(1 / k + ratio))
        out["p"] = float(2 * stats.t.sf(abs(t), k - 1))
    return out


def unpaired(a, b, ratio: float = 0.0) -> dict:
    """b - a when the two sets of splits were tested on different images: Welch's t with each
    mean's corrected variance s^2 (1/k + ratio) and Welch-Satterthwaite degrees of freedom.
    -> {diff, diff_low, diff_high, p, n, note} (n: the smaller number of splits)."""
    a, b = _clean(a), _clean(b)
    out = {"diff": (b.mean() - a.mean()) if len(a) and len(b) else math.nan,
           "diff_low": math.nan, "diff_high": math.nan, "p": math.nan,
           "n": int(min(len(a), len(b))), "note": ""}
    if min(len(a), len(b)) < 2:
        out["note"] = TOO_FEW
        return out
    if _constant(a) and _constant(b):
        out["note"] = NO_VARIANCE
        return out
    va = a.var(ddof=1) * (1 / len(a) + ratio)
    vb = b.var(ddof=1) * (1 / len(b) + ratio)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * se
    out.update(diff_low=max(-1.0, out["diff"] - half), diff_high=min(1.0, out["diff"] + half),
               p=float(2 * stats.t.sf(abs(out["diff"]) / se, df)))
    return out


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted in the family)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def primary_metric(report_cfg: dict, labels: list[str]) -> str:
    """config report.primary_metric, or its default: balanced accuracy for two labels, macro AUC
    (over the classes present) otherwise (config.check refuses a two-label metric with more
    labels)."""
    chosen = (report_cfg or {}).get("primary_metric")
    return chosen or ("balanced_accuracy" if len(labels) == 2 else "auc")


def same_as(labels: list[str], positive: int | None = None) -> dict[str, str]:
    """Metrics that are another metric by definition, so one hypothesis, not two: macro recall
    (over the classes present) is balanced accuracy; for two labels sensitivity and specificity
    are the positive and the other class's recall."""
    out = {"macro_recall": "balanced_accuracy"}
    if len(labels) == 2:
        pos = 1 if positive is None else positive
        out |= {"sensitivity": f"{labels[pos]}_recall", "specificity": f"{labels[1 - pos]}_recall"}
    return out


def nb_ratio(splits: dict) -> float:
    """n_test / n_train of the splits (mean over them): each split file's test images over its
    training images (subset train, real images)."""
    ratios = [(s["subset"] == "test").sum() / max(1, (s["subset"] == "train").sum())
              for s in splits.values()]
    return float(np.mean(ratios)) if ratios else 0.0


BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall",
                     "macro_f1", "auc", "pr_auc", "sensitivity", "specificity")


def fast_metrics(y: np.ndarray, prob: np.ndarray, n_classes: int,
                 positive: int | None = None) -> dict:
    """The checkpoint table's metrics as classify.evaluate.compute_metrics defines them (macro
    averages over the classes present in y; undefined precision left out of the macro
    precision, as zero_division=np.nan does; AUC/PR-AUC on the positive class for two labels),
    without its other outputs - for bootstrap loops. None where undefined."""
    pred = prob.argmax(1)
    cm = np.bincount(y * n_classes + pred, minlength=n_classes ** 2).reshape(n_classes, n_classes)
    present = np.unique(y)
    tp = np.diag(cm).astype(float)[present]
    predicted, actual = cm.sum(0)[present], cm.sum(1)[present]
    precision = np.divide(tp, predicted, out=np.full(len(present), np.nan), where=predicted > 0)
    recall = tp / actual
    f1 = 2 * tp / (predicted + actual)
    out = {"accuracy": float(np.diag(cm).sum() / len(y)), "balanced_accuracy": recall.mean(),
           "macro_precision": None if np.isnan(precision).all() else np.nanmean(precision),
           "macro_recall": recall.mean(), "macro_f1": f1.mean(), "auc": None, "pr_auc": None,
           "sensitivity": None, "specificity": None}
    if len(present) > 1:
        if n_classes == 2:
            pos = 1 if positive is None else positive
            out["auc"] = skm.roc_auc_score(y == pos, prob[:, pos])
            out["pr_auc"] = skm.average_precision_score(y == pos, prob[:, pos])
            out["sensitivity"], out["specificity"] = recall[pos], recall[1 - pos]
        else:
            onehot = np.eye(n_classes)[y]
            out["auc"] = float(np.mean([skm.roc_auc_score(onehot[:, c], prob[:, c])
                                        for c in present]))
            out["pr_auc"] = float(np.mean([skm.average_precision_score(onehot[:, c], prob[:, c])
                                           for c in present]))
    return out


def paired_bootstrap(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_classes: int,
                     resamples: int, seed: int = 0, positive: int | None = None) -> dict:
    """Percentile 95% CI of the mean over splits of metric(b) - metric(a), the models fixed:
    the test images' sampling error only, not the training's.

    pairs: per split (y, prob_a, prob_b) on the same test images. Each resample draws every
    split's test images with replacement, the same draw for a and b (paired). A resample in
    which some split's draw lacks a class of its test set is skipped (the macro averages would
    be over other classes) and counted.
    -> {metric: {"low", "high", "resamples"} or None, "skipped": n}
    """
    rng = np.random.default_rng(seed)
    diffs = {m: [] for m in BOOTSTRAP_METRICS}
    skipped = 0
    for _ in range(resamples):
        draws = [rng.integers(0, len(y), len(y)) for y, _, _ in pairs]
        if any(len(np.unique(y[idx])) < len(np.unique(y)) for (y, _, _), idx in zip(pairs, draws)):
            skipped += 1
            continue
        per_split = {m: [] for m in BOOTSTRAP_METRICS}
        for (y, a, b), idx in zip(pairs, draws):
            ma = fast_metrics(y[idx], a[idx], n_classes, positive)
            mb = fast_metrics(y[idx], b[idx], n_classes, positive)
            for m in BOOTSTRAP_METRICS:
                if ma[m] is not None and mb[m] is not None:
                    per_split[m].append(mb[m] - ma[m])
        for m, values in per_split.items():
            if len(values) == len(pairs):
                diffs[m].append(float(np.mean(values)))
    out = {m: {"low": float(np.percentile(v, 2.5)), "high": float(np.percentile(v, 97.5)),
               "resamples": len(v)} if v else None for m, v in diffs.items()}
    out["skipped"] = skipped
    return out
