"""Statistics over splits: mean, sd, t-based 95% CIs, paired tests, paired bootstrap.

Splits are the unit of replication: a scenario (or checkpoint) is compared with another on the
same split ids, so every comparison is paired by split. With k splits the t interval has k - 1
degrees of freedom; the smallest two-sided Wilcoxon signed-rank p-value is 2 / 2**k (0.0625 for
k = 5), so with five splits it can never fall below 0.05 - the report says so.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def mean_ci(values, bounds=(0.0, 1.0)) -> dict:
    """{mean, sd, low, high, n}: the t-based 95% CI of the mean over splits (NaN below 2),
    clipped to `bounds` (every metric here lies in [0, 1]; differences in [-1, 1])."""
    v = np.asarray([x for x in values if x is not None and not _nan(x)], dtype=float)
    out = {"mean": float(v.mean()) if len(v) else math.nan,
           "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
           "low": math.nan, "high": math.nan, "n": int(len(v))}
    if len(v) > 1:
        half = stats.t.ppf(0.975, len(v) - 1) * out["sd"] / math.sqrt(len(v))
        out["low"] = max(bounds[0], out["mean"] - half)
        out["high"] = min(bounds[1], out["mean"] + half)
    return out


def paired(a, b) -> dict:
    """b - a over splits (same order): mean difference, its t 95% CI, paired t and Wilcoxon p."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    d = b[keep] - a[keep]
    ci = mean_ci(d, bounds=(-1.0, 1.0))
    out = {"diff": ci["mean"], "diff_low": ci["low"], "diff_high": ci["high"], "n": ci["n"],
           "p_t": math.nan, "p_wilcoxon": math.nan}
    if len(d) > 1 and np.any(d != 0):
        out["p_t"] = float(stats.ttest_rel(b[keep], a[keep]).pvalue) if np.std(d) > 0 else 0.0
        out["p_wilcoxon"] = float(stats.wilcoxon(d, zero_method="zsplit").pvalue)
    elif len(d) > 1:
        out["p_t"] = out["p_wilcoxon"] = 1.0
    return out


def min_wilcoxon_p(k: int) -> float:
    """The smallest two-sided exact Wilcoxon signed-rank p-value with k pairs."""
    return min(1.0, 2 / 2 ** k) if k else math.nan


BOOTSTRAP_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "auc", "pr_auc")


def fast_metrics(y: np.ndarray, prob: np.ndarray, n_classes: int) -> dict:
    """The checkpoint table's metrics, as classify.evaluate.compute_metrics defines them
    (zero_division 0; AUC/PR-AUC: binary on the positive class, else the macro over the classes
    present; None with one class), without its other outputs - for bootstrap loops."""
    pred = prob.argmax(1)
    cm = np.bincount(y * n_classes + pred, minlength=n_classes ** 2).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros(n_classes), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(n_classes), where=actual > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(n_classes), where=denom > 0)
    out = {"accuracy": tp.sum() / len(y), "macro_precision": precision.mean(),
           "macro_recall": recall.mean(), "macro_f1": f1.mean(), "auc": None, "pr_auc": None}
    present = np.unique(y)
    if len(present) > 1:
        if n_classes == 2:
            out["auc"] = skm.roc_auc_score(y, prob[:, 1])
            out["pr_auc"] = skm.average_precision_score(y, prob[:, 1])
        else:
            onehot = np.eye(n_classes)[y]
            out["auc"] = float(np.mean([skm.roc_auc_score(onehot[:, c], prob[:, c])
                                        for c in present]))
            out["pr_auc"] = float(np.mean([skm.average_precision_score(onehot[:, c], prob[:, c])
                                           for c in present]))
    return out


def paired_bootstrap(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_classes: int,
                     resamples: int, seed: int = 0) -> dict:
    """Percentile 95% CI of the mean over splits of metric(b) - metric(a).

    pairs: per split (y, prob_a, prob_b) on the same test images. Each resample draws every
    split's test images with replacement, the same draw for a and b (paired); resamples where a
    metric is undefined (one class drawn) are skipped for that metric.
    -> {metric: {"low", "high", "resamples"} or None}
    """
    rng = np.random.default_rng(seed)
    diffs = {m: [] for m in BOOTSTRAP_METRICS}
    for _ in range(resamples):
        per_split = {m: [] for m in BOOTSTRAP_METRICS}
        for y, a, b in pairs:
            idx = rng.integers(0, len(y), len(y))
            ma, mb = fast_metrics(y[idx], a[idx], n_classes), fast_metrics(y[idx], b[idx],
                                                                          n_classes)
            for m in BOOTSTRAP_METRICS:
                if ma[m] is not None and mb[m] is not None:
                    per_split[m].append(mb[m] - ma[m])
        for m, values in per_split.items():
            if len(values) == len(pairs):
                diffs[m].append(float(np.mean(values)))
    return {m: {"low": float(np.percentile(v, 2.5)), "high": float(np.percentile(v, 97.5)),
                "resamples": len(v)} if v else None for m, v in diffs.items()}


def _nan(x) -> bool:
    return isinstance(x, float) and math.isnan(x)
