"""The report's figures (matplotlib, PNG): one function per figure kind.

Figure files are named `{kind}-{detail}.png`; report.captions.CAPTIONS[kind] is the caption the
HTML page (report.render, which keeps each figure's kind beside its path) and Snakemake's report
(workflow/report/report.rst) show under each.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from mammosynth.imaging.png import read_png  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def scenarios(table: pd.DataFrame, out: Path,
              metrics=("accuracy", "balanced_accuracy", "macro_f1", "auc")) -> Path:
    """table: the scenario table (tidy)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        rows = table[table["metric"] == metric]
        for i, ((arch, ckpt), g) in enumerate(rows.groupby(["arch", "ckpt"], sort=True)):
            g = g.sort_values("synth")
            err = np.vstack([g["mean"] - g["ci_low"], g["ci_high"] - g["mean"]])
            ax.errorbar(g["synth"], g["mean"], yerr=np.nan_to_num(err), marker="o", capsize=3,
                        color=COLORS[i % 10], ls="-" if ckpt == "best" else "--",
                        label=f"{arch} {ckpt}")
        ax.set(title=metric.replace("_", " "), xlabel="synthetic training images")
        ax.set_xticks(sorted(table["synth"].unique()))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _save(fig, out)


def curves(histories: dict, arch: str, out: Path) -> Path:
    """histories: {(synth, split): history DataFrame} of one arch."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for i, synth in enumerate(sorted({s for s, _ in histories})):
        runs = [h for (s, _), h in histories.items() if s == synth]
        for ax, metric in zip(axes, ("acc", "loss")):
            for part, ls in (("train", "-"), ("val", "--")):
                table = pd.concat([h.set_index("epoch")[f"{part}_{metric}"] for h in runs],
                                  axis=1)
                if table.isna().all().all():
                    continue  # no validation set
                ax.plot(table.index, table.mean(axis=1), ls=ls, color=COLORS[i % 10],
                        label=f"{synth} synthetic, {part}")
                ax.fill_between(table.index, table.min(axis=1), table.max(axis=1),
                                color=COLORS[i % 10], alpha=0.12, lw=0)
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[0].set(title=f"{arch}: accuracy", xlabel="epoch")
    axes[1].set(title=f"{arch}: loss", xlabel="epoch")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    return _save(fig, out)


def checkpoints(long: pd.DataFrame, arch: str, out: Path, metric: str = "accuracy") -> Path:
    """Per-split last vs best, one panel per scenario."""
    rows = long[long["arch"] == arch]
    synths = sorted(rows["synth"].unique())
    fig, axes = plt.subplots(1, len(synths), figsize=(3 * len(synths), 3.4), squeeze=False,
                             sharey=True)
    for ax, synth in zip(axes[0], synths):
        g = rows[rows["synth"] == synth].pivot_table(index="split", columns="ckpt",
                                                     values=metric)
        for j, (split, r) in enumerate(g.iterrows()):
            ax.plot([0, 1], [r.get("last"), r.get("best")], marker="o", color=COLORS[j % 10],
                    label=f"split {split}")
        ax.set_xticks([0, 1], ["last", "best"])
        ax.set_xlim(-0.3, 1.3)
        ax.set(title=f"{arch}, {synth} synthetic")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric}")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, out)


def roc(predictions: dict, arch: str, labels: list[str], out: Path,
        positive: int | None = None) -> Path:
    """predictions: {synth: DataFrame of the best weights' predictions, splits concatenated};
    positive: the positive class's index for two labels (default 1)."""
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(9, 3.8))
    for i, (synth, p) in enumerate(sorted(predictions.items())):
        y = p["y"].to_numpy(dtype=int)
        prob = p[[f"prob_{label}" for label in labels]].to_numpy(dtype=float)
        if len(labels) == 2:
            pos = 1 if positive is None else positive
            truth, score = (y == pos).astype(int), prob[:, pos]
        else:
            truth, score = np.eye(len(labels))[y].ravel(), prob.ravel()
        if len(np.unique(truth)) < 2:
            continue
        fpr, tpr, _ = skm.roc_curve(truth, score)
        precision, recall, _ = skm.precision_recall_curve(truth, score)
        color = COLORS[i % 10]
        ax_roc.plot(fpr, tpr, color=color,
                    label=f"{synth} synthetic (AUC {skm.roc_auc_score(truth, score):.3f})")
        ax_pr.step(recall, precision, where="post", color=color,
                   label=f"{synth} synthetic (AP {skm.average_precision_score(truth, score):.3f})")
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax_roc.set(title=f"{arch}: ROC", xlabel="false positive rate", ylabel="true positive rate")
    ax_pr.set(title=f"{arch}: precision-recall", xlabel="recall", ylabel="precision")
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out)


def confusion(matrices: dict, arch: str, labels: list[str], out: Path) -> Path:
    """matrices: {(synth, ckpt): summed confusion matrix (list of lists)}."""
    keys = sorted(matrices)
    cols = min(4, len(keys))
    rows = -(-len(keys) // cols)
    size = 1.0 + 0.45 * len(labels)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols + 1.5, size * rows + 0.8),
                             squeeze=False)
    fig.subplots_adjust(wspace=0.15)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    for ax, key in zip(axes.ravel(), keys):
        cm = np.asarray(matrices[key], dtype=float)
        frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, f"{int(v)}", ha="center", va="center", fontsize=8,
                    color="white" if frac[r, c] > 0.6 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels if ax in axes[:, 0] else [], fontsize=7)
        ax.set_title(f"{key[0]} synthetic, {key[1]}", fontsize=8)
    fig.suptitle(f"{arch}: confusion matrices (rows true, columns predicted)", fontsize=9)
    return _save(fig, out)


def samples(real: list[str], synthetic: list[str], label: str, out: Path, n: int = 8) -> Path:
    real, synthetic = real[:n], synthetic[:n]
    cols = max(len(real), len(synthetic), 1)
    fig, axes = plt.subplots(2, cols, figsize=(1.4 * cols, 3.2), squeeze=False)
    for row, (name, paths) in enumerate((("real", real), ("synthetic", synthetic))):
        for ax in axes[row]:
            ax.axis("off")
        for ax, path in zip(axes[row], paths):
            ax.imshow(read_png(path), cmap="gray", vmin=0, vmax=1)
        axes[row][0].set_title(f"{name} {label}", fontsize=8, loc="left")
    return _save(fig, out)
