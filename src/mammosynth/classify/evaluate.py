"""Evaluate saved weights on a split's real test images: metrics JSON + per-image predictions."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mammosynth.classify import model as models
from mammosynth.classify.data import load_tensor
from mammosynth.classify.train import predict
from mammosynth.runtime import device


def _finite(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def compute_metrics(y: np.ndarray, prob: np.ndarray, labels: list[str], ci: int = 0,
                    positive: int | None = None) -> dict:
    """Accuracy, balanced accuracy, per-class P/R/F1/support, macro/weighted, AUC, PR-AUC, CM;
    with `ci` > 0, bootstrap 95% confidence intervals from that many resamples.

    Every macro average (P/R/F1, AUC, PR-AUC) is over the classes present in `y`: a class with
    no test image has no recall, and averaging it in as 0 (or as a perfect 1) would say nothing
    about the classifier. Undefined values are NaN (None in JSON), never 0: a class never
    predicted has no precision, and the macro precision averages the classes that have one
    (scikit-learn's zero_division=np.nan); its recall (0) and F1 (0) still count.
    positive: the positive class's index for two labels (config labels.positive; default 1):
    sensitivity is its recall, specificity the other's, AUC / PR-AUC score its probability."""
    classes = list(range(len(labels)))
    present = [int(c) for c in np.unique(y)]
    pred = prob.argmax(1)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=classes,
                                                     zero_division=np.nan)
    out = {"n": int(len(y)), "accuracy": skm.accuracy_score(y, pred),
           "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
           "per_class": {lab: {"precision": p[i], "recall": r[i], "f1": f[i], "support": int(s[i])}
                         for i, lab in enumerate(labels)},
           "confusion_matrix": skm.confusion_matrix(y, pred, labels=classes).tolist()}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y, pred, labels=present, average=avg,
                                                            zero_division=np.nan)
        out[avg] = {"precision": ap, "recall": ar, "f1": af}
    if len(present) < 2:
        out["auc"] = out["pr_auc"] = None
        out["note"] = "the test set has one class only: AUC and PR-AUC are undefined"
    elif len(labels) == 2:
        pos = 1 if positive is None else int(positive)
        out["auc"] = skm.roc_auc_score(y == pos, prob[:, pos])
        out["pr_auc"] = skm.average_precision_score(y == pos, prob[:, pos])
        out["positive"] = labels[pos]
        out["sensitivity"], out["specificity"] = r[pos], r[1 - pos]
    else:
        onehot = np.eye(len(labels))[y]
        aucs = [skm.roc_auc_score(onehot[:, c], prob[:, c]) for c in present]
        aps = [skm.average_precision_score(onehot[:, c], prob[:, c]) for c in present]
        out["auc"], out["pr_auc"] = float(np.mean(aucs)), float(np.mean(aps))
        if len(present) < len(labels):
            out["note"] = "macro metrics over the classes present in the test set"
    if ci:
        out["ci95"] = bootstrap_ci(y, prob, labels, ci, positive=positive)
    return _clean(out)


CI_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "pr_auc")


def bootstrap_ci(y: np.ndarray, prob: np.ndarray, labels: list[str], n: int, seed: int = 0,
                 positive: int | None = None) -> dict:
    """Percentile 95% CIs over `n` test-set resamples (fixed seed), given the trained model: they
    measure the test set's sampling error only. A resample that lacks a class of the test set
    changes what the macro averages are over, so it is skipped for every metric and counted:
    -> {metric: {low, high, resamples} or None, "skipped": n skipped}."""
    rng = np.random.default_rng(seed)
    present = np.unique(y)
    values: dict[str, list[float]] = {m: [] for m in CI_METRICS}
    skipped = 0
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if len(np.unique(y[idx])) < len(present):
            skipped += 1
            continue
        m = compute_metrics(y[idx], prob[idx], labels, ci=0, positive=positive)
        m["macro_f1"] = m["macro"]["f1"]
        for key in CI_METRICS:
            if m.get(key) is not None:
                values[key].append(m[key])
    out = {key: {"low": float(np.percentile(v, 2.5)), "high": float(np.percentile(v, 97.5)),
                 "resamples": len(v)} if v else None for key, v in values.items()}
    out["skipped"] = skipped
    return out


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    return _finite(value)


def evaluate(weights: str | Path, test: pd.DataFrame, batch_size: int = 32, bootstrap: int = 0,
             positive: str | None = None):
    """-> (metrics dict, predictions DataFrame with one probability column per label);
    positive: the positive label of a two-label task (config labels.positive)."""
    state, meta = models.load_weights(weights)
    labels = meta["labels"]
    model = models.create(meta["arch"], len(labels), meta["in_chans"])
    model.load_state_dict(state)
    model = model.to(device())
    normalize = models.Normalize(model, meta["in_chans"]).to(device())
    x = load_tensor(test["path"], meta["image_size"])
    prob = models.probabilities(predict(model, normalize, x, batch_size)).numpy()
    y = test["y"].to_numpy()
    result = compute_metrics(y, prob, labels, ci=bootstrap, positive=positive_index(labels,
                                                                               positive))
    result.update({"arch": meta["arch"], "epoch": meta["epoch"], "labels": labels})
    predictions = pd.DataFrame({"image_id": test["image_id"], "label": test["label"], "y": y,
                                "pred": prob.argmax(1)})
    for i, label in enumerate(labels):
        predictions[f"prob_{label}"] = prob[:, i]
    if "synthetic" in test:  # protocol paper puts synthetic images into the test set
        predictions["synthetic"] = test["synthetic"].to_numpy()
    return result, predictions


def positive_index(labels: list[str], positive: str | None) -> int | None:
    """The index of config labels.positive among two labels (config.check makes it one of
    them); None otherwise."""
    if len(labels) != 2 or positive is None:
        return None
    return labels.index(positive)


def probe(weights: str | Path, paths: list[str], batch_size: int = 32):
    """A trained classifier applied to images: (labels, probabilities (N, classes), penultimate
    features (N, F) - timm's `forward_head(pre_logits=True)`) for the realism checks."""
    import torch

    state, meta = models.load_weights(weights)
    model = models.create(meta["arch"], len(meta["labels"]), meta["in_chans"])
    model.load_state_dict(state)
    model = model.to(device()).eval()
    normalize = models.Normalize(model, meta["in_chans"]).to(device())
    x = load_tensor(paths, meta["image_size"])
    logits, features = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            f = model.forward_features(normalize(x[i:i + batch_size].to(device())))
            pre = model.forward_head(f, pre_logits=True)
            features.append(pre.float().cpu())
            logits.append(model.get_classifier()(pre).float().cpu())
    prob = models.probabilities(torch.cat(logits)).numpy()
    return meta["labels"], prob, torch.cat(features).flatten(1).numpy()
