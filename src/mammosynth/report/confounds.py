"""Confounds in view: data source and label, for data sets pooled with `dataset.format: combined`.

When a label comes from one source only (paper 002: BI-RADS 0 and 2 only from CBIS-DDSM, scanned
film; 1, 3, 4 and 5 only from KAU-BCMD, digital JPEG), a classifier can score by telling the
sources apart instead of reading the breast. This module shows:
- the ok images per source x label, and which labels come from a single source;
- the "source-only" baseline: per split, the label frequencies of each source in the training
  images (add-one smoothing over labels; a source absent from training gets the training set's
  overall frequencies, smoothed the same way) predict every test image from its source alone -
  the score of a classifier that knows nothing but the source;
- the CNNs' metrics per source (real test images only: synthetic rows have no source).
Everything comes from the manifest's optional `dataset` column (see datasets/combined.py); without
it, or with one source, there is nothing to show.
"""

from __future__ import annotations

import html
import math
import warnings

import numpy as np
import pandas as pd

from mammosynth.classify.evaluate import compute_metrics

BASELINE_METRICS = ["accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
                    "auc", "pr_auc"]
BASELINE_COLUMNS = ["split", "n_test"] + BASELINE_METRICS
PER_SOURCE_METRICS = ["accuracy", "balanced_accuracy", "macro_f1", "auc"]
PER_SOURCE_COLUMNS = ["arch", "synth", "split", "ckpt", "source", "n"] + PER_SOURCE_METRICS
TITLE = "Confounds: data source and label"
TABLES = ("sources.csv", "source_only.csv", "per_source.csv")


def _ok(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest's ok rows with a source, image_id / label / dataset as strings."""
    if "dataset" not in manifest.columns:
        return pd.DataFrame(columns=["image_id", "label", "dataset"], dtype=str)
    frame = manifest
    if "status" in frame.columns:
        frame = frame[frame["status"].astype(str) == "ok"]
    frame = frame[["image_id", "label", "dataset"]].astype(str)
    return frame[frame["dataset"] != ""]


def _sources(manifest: pd.DataFrame) -> list[str]:
    return sorted(set(_ok(manifest)["dataset"]))


def source_label_table(manifest: pd.DataFrame, labels: list[str] | None = None) -> pd.DataFrame:
    """Ok images per source (rows, index named `source`) x label (columns: `labels` in that
    order when given, else the labels found, sorted); 0 where none. Empty when the manifest has
    no `dataset` column or one source only."""
    ok = _ok(manifest)
    if ok["dataset"].nunique() < 2:
        return pd.DataFrame()
    found = sorted(set(ok["label"]) - {""})
    columns = list(labels) + [x for x in found if x not in labels] if labels else found
    table = pd.crosstab(ok["dataset"], ok["label"]).reindex(columns=columns, fill_value=0)
    table = table.fillna(0).astype(int)
    table.index.name, table.columns.name = "source", None
    return table.sort_index()


def single_source_labels(table: pd.DataFrame) -> dict[str, str]:
    """{label: its one source} for every label all of whose images come from one source (of a
    table with two or more sources; labels with no image are left out)."""
    if table.empty or len(table.index) < 2:
        return {}
    out = {}
    for label in table.columns:
        having = table.index[table[label] > 0]
        if len(having) == 1:
            out[str(label)] = str(having[0])
    return out


def _metrics(y: np.ndarray, prob: np.ndarray, labels: list[str], positive: int | None) -> dict:
    kw = {"positive": positive} if positive is not None else {}
    with warnings.catch_warnings():  # a source's test rows often lack a class: expected here
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        m = compute_metrics(y, prob, labels, **kw)
    flat = {k: m.get(k) for k in ("accuracy", "balanced_accuracy", "auc", "pr_auc")}
    for avg in ("precision", "recall", "f1"):
        flat[f"macro_{avg}"] = (m.get("macro") or {}).get(avg)
    return {k: math.nan if v is None else float(v) for k, v in flat.items()}


def _frequencies(labels_of: pd.Series, labels: list[str]) -> np.ndarray:
    counts = labels_of.value_counts().reindex(labels, fill_value=0).to_numpy(dtype=float)
    return (counts + 1) / (counts.sum() + len(labels))


def source_only_baseline(manifest: pd.DataFrame, splits: dict, labels: list[str],
                         positive: int | None = None) -> pd.DataFrame:
    """Per split (splits: {split id: DataFrame with image_id, subset}): the classifier that
    knows only each image's source, fit on the split's training images and scored on its test
    images with compute_metrics. Columns BASELINE_COLUMNS; metrics NaN where a split has no test
    image with a source (or AUC is undefined)."""
    ok = _ok(manifest)
    ok = ok[ok["label"].isin(labels)]
    index = {label: i for i, label in enumerate(labels)}
    rows = []
    for split_id, split in splits.items():
        part = split[["image_id", "subset"]].astype(str).merge(ok, on="image_id", how="inner")
        train, test = part[part["subset"] == "train"], part[part["subset"] == "test"]
        overall = _frequencies(train["label"], labels)
        per_source = {s: _frequencies(g["label"], labels) for s, g in train.groupby("dataset")}
        row = {"split": split_id, "n_test": len(test)}
        if len(test):
            prob = np.stack([per_source.get(s, overall) for s in test["dataset"]])
            y = test["label"].map(index).to_numpy(dtype=int)
            row |= _metrics(y, prob, labels, positive)
        rows.append(row)
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def _synthetic(frame: pd.DataFrame) -> pd.Series:
    if "synthetic" not in frame.columns:
        return pd.Series(False, index=frame.index)
    col = frame["synthetic"]
    if col.dtype == bool:
        return col
    return col.astype(str).str.strip().str.lower().isin({"true", "1", "yes"})


def per_source_metrics(predictions: dict, manifest: pd.DataFrame, labels: list[str],
                       positive: int | None = None) -> pd.DataFrame:
    """predictions: {(arch, synth, split, ckpt): DataFrame of predictions_{ckpt}.csv} -> one row
    per model, checkpoint and source (synthetic rows left out), columns PER_SOURCE_COLUMNS."""
    ok = _ok(manifest)[["image_id", "dataset"]].drop_duplicates("image_id")
    prob_cols = [f"prob_{label}" for label in labels]
    index = {label: i for i, label in enumerate(labels)}
    rows = []
    for (arch, synth, split, ckpt), frame in predictions.items():
        real = frame[~_synthetic(frame)].copy()
        real["image_id"] = real["image_id"].astype(str)
        real = real.merge(ok, on="image_id", how="inner")
        for source, part in real.groupby("dataset", sort=True):
            if "y" in part.columns:
                y = part["y"].to_numpy(dtype=int)
            else:
                y = part["label"].astype(str).map(index).to_numpy(dtype=int)
            m = _metrics(y, part[prob_cols].to_numpy(dtype=float), labels, positive)
            rows.append({"arch": arch, "synth": synth, "split": split, "ckpt": ckpt,
                         "source": source, "n": len(part),
                         **{k: m[k] for k in PER_SOURCE_METRICS}})
    return pd.DataFrame(rows, columns=PER_SOURCE_COLUMNS)


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format="%.3f", na_rep="–", border=0)


def _mean_sd(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return "–"
    if len(v) < 2:
        return f"{v.mean():.3f}"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def _warning(single: dict[str, str]) -> str:
    e = html.escape
    named = "; ".join(f"every <b>{e(label)}</b> image comes from <b>{e(source)}</b>"
                      for label, source in single.items())
    return (f"<p class='warn'>Label and data source are confounded: {named}. A classifier can "
            "score on these labels by recognising the source - the scanner, scanned film vs "
            "digital, the image format and processing - without looking at the breast, so high "
            "scores may not measure what they seem to. Compare the CNNs with the source-only "
            "baseline below, and look at their scores within each source. Published numbers "
            "from data pooled the same way (paper 002's, beside ours when report.published is "
            "best_weights) share the problem.</p>")


def top_warning(manifest: pd.DataFrame, labels: list[str]) -> str:
    """A red box for the top of the page when some label comes from one source only; "" else."""
    single = single_source_labels(source_label_table(manifest, labels))
    if not single:
        return ""
    named = ", ".join(f"{html.escape(label)} only from {html.escape(source)}"
                      for label, source in single.items())
    return (f"<p class='warn'><b>Label and data source are confounded</b> ({named}): a "
            "classifier can score by recognising the source. Read every number below beside the "
            f"source-only baseline and the per-source metrics (<a href='#confounds'>{TITLE}</a>)."
            "</p>")


def section(manifest: pd.DataFrame, splits: dict, predictions: dict, labels: list[str],
            positive: int | None = None) -> tuple[str, dict[str, pd.DataFrame]]:
    """The report section (HTML) and its tables {"sources.csv", "source_only.csv",
    "per_source.csv"} (write them with index=False); ("", {}) without two or more sources."""
    table = source_label_table(manifest, labels)
    if table.empty:
        return "", {}
    single = single_source_labels(table)
    baseline = source_only_baseline(manifest, splits, labels, positive)
    per_source = per_source_metrics(predictions, manifest, labels, positive)
    sources = table.reset_index()

    parts = [f"<h2 id='confounds'>{html.escape(TITLE)}</h2>",
             "<p>The data set pools several sources (manifest column <code>dataset</code>). "
             "Ok images per source and label:</p>", _table(sources)]
    if single:
        parts.append(_warning(single))
    else:
        parts.append("<p>Every label has images from more than one source.</p>")

    parts.append("<h3>Source-only baseline</h3>"
                 "<p>A classifier that knows only each image's source: per split, the label "
                 "frequencies of each source among the training images (add-one smoothing; a "
                 "source absent from training gets the overall frequencies) predict every test "
                 "image. If a CNN scores near this, it may be reading the source rather than the "
                 f"breast. Mean ± sd over {len(baseline)} split(s); n_test: test images per "
                 "split (mean):</p>")
    summary = {"splits": len(baseline), "n_test": f"{baseline['n_test'].mean():g}"}
    summary |= {m: _mean_sd(baseline[m].astype(float)) for m in BASELINE_METRICS}
    parts.append(_table(pd.DataFrame([summary])))

    if not per_source.empty:
        keys = ["arch", "synth", "ckpt", "source"]
        mean = (per_source.astype({m: float for m in PER_SOURCE_METRICS})
                .groupby(keys, sort=True, dropna=False)
                .agg(splits=("split", "nunique"), n=("n", "mean"),
                     **{m: (m, "mean") for m in PER_SOURCE_METRICS}).reset_index())
        mean["n"] = mean["n"].map(lambda v: f"{v:.1f}".removesuffix(".0"))
        # to_html escapes the cells
        parts.append("<h3>The CNNs within each source</h3>"
                     "<p>Metrics on the real test images of one source at a time (mean over "
                     "splits; n: test images per split). A score that is high overall but low "
                     "within every source comes from telling the sources apart. AUC is undefined "
                     "(–) where a source's test images have one class.</p>")
        parts.append(_table(mean))
    return "\n".join(parts), {"sources.csv": sources, "source_only.csv": baseline,
                              "per_source.csv": per_source}
