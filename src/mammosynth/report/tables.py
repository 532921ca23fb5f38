"""The report's tables, recomputed from the files the jobs wrote: every evaluation (long), the
scenario table (paper 000's Table 4 shape), the checkpoint table (paper 002's Table 2 shape), data
and quality tables; Markdown renderings of the first two."""

from __future__ import annotations

import json
import math

import pandas as pd

from mammosynth.errors import UserError
from mammosynth.report import stats
from mammosynth.report.realism import RED_MARK, scenario_marker


def flatten(result: dict) -> dict:
    row = {m: result.get(m) for m in ("accuracy", "balanced_accuracy", "auc", "pr_auc",
                                      "sensitivity", "specificity")}
    row.update({f"macro_{k}": v for k, v in result["macro"].items()})
    for label, values in result["per_class"].items():
        row.update({f"{label}_{k}": v for k, v in values.items()})
    row["epoch"], row["n_test"] = result["epoch"], result["n"]
    row["test_synthetic"] = result.get("test_synthetic", 0)
    return row


def collect(evals: list[dict]) -> pd.DataFrame:
    """evals: [{'arch', 'synth', 'split', 'ckpt', 'path'}] -> one row per evaluation."""
    rows = []
    for e in evals:
        with open(e["path"]) as f:
            result = json.load(f)
        rows.append({k: e[k] for k in ("arch", "synth", "split", "ckpt")} | flatten(result))
    return pd.DataFrame(rows).sort_values(["arch", "synth", "ckpt", "split"], ignore_index=True)


SCENARIO_COLUMNS = ["arch", "synth", "ckpt", "metric", "splits", "mean", "sd", "ci_low",
                    "ci_high", "diff_vs_0", "diff_low", "diff_high", "p_t", "p_wilcoxon",
                    "published", "realism"]
CHECKPOINT_METRICS = ["accuracy", "macro_precision", "macro_recall", "macro_f1", "auc", "pr_auc"]
CHECKPOINT_COLUMNS = ["arch", "synth", "metric", "splits", "last_mean", "last_sd", "best_mean",
                      "best_sd", "diff", "diff_low", "diff_high", "resamples", "p_wilcoxon",
                      "p_t", "published_last", "published_best"]


def scenario_metrics(labels: list[str]) -> list[str]:
    """Paper 000's Table 4 columns (accuracy, per-class P/R/F1) plus the threshold-free ones."""
    per_class = [f"{label}_{m}" for label in labels for m in ("precision", "recall", "f1")]
    extra = ["sensitivity", "specificity"] if len(labels) == 2 else []
    return (["accuracy", "balanced_accuracy"] + per_class
            + ["macro_precision", "macro_recall", "macro_f1", "auc", "pr_auc"] + extra)


def _values(long: pd.DataFrame, metric: str) -> pd.Series:
    return pd.to_numeric(long[metric], errors="coerce") if metric in long else \
        pd.Series(math.nan, index=long.index)


def scenario_table(long: pd.DataFrame, labels: list[str], published: dict | None = None,
                   realism: dict | None = None, protocol: str = "rigorous") -> pd.DataFrame:
    """Per arch x scenario x checkpoint x metric: mean, sd and t 95% CI over splits; the paired
    change vs scenario 0 on the same splits (t CI, paired t and Wilcoxon p); published value;
    `realism`: for scenarios with synthetic images, the worst realism verdict of the split x
    label sets their models used (realism: {(split, label): verdict} of the quality files;
    report/realism.scenario_marker), "" for scenario 0 or when realism is None."""
    rows = []
    for (arch, synth, ckpt), group in long.groupby(["arch", "synth", "ckpt"], sort=True):
        base = long[(long["arch"] == arch) & (long["synth"] == 0) & (long["ckpt"] == ckpt)]
        both = group.merge(base, on="split", suffixes=("", "_base")) if synth != 0 else None
        marker = ("" if synth == 0 or realism is None else
                  scenario_marker(realism, group["split"].unique(), labels, protocol))
        for metric in scenario_metrics(labels):
            ci = stats.mean_ci(_values(group, metric))
            row = {"arch": arch, "synth": int(synth), "ckpt": ckpt, "metric": metric,
                   "splits": ci["n"], "mean": ci["mean"], "sd": ci["sd"], "ci_low": ci["low"],
                   "ci_high": ci["high"]}
            if both is not None and len(both) and metric in both:
                p = stats.paired(_values(both, metric + "_base"), _values(both, metric))
                row |= {"diff_vs_0": p["diff"], "diff_low": p["diff_low"],
                        "diff_high": p["diff_high"], "p_t": p["p_t"],
                        "p_wilcoxon": p["p_wilcoxon"]}
            row["published"] = published_value(published, arch, synth, ckpt, metric)
            row["realism"] = marker
            rows.append(row)
    return pd.DataFrame(rows, columns=SCENARIO_COLUMNS)


def checkpoint_table(long: pd.DataFrame, predictions: dict, n_classes: int, bootstrap: int,
                     published: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """Per arch x scenario x metric: last vs best over splits, the paired difference (best -
    last) with a paired-bootstrap 95% CI over the test images of every split, and the Wilcoxon
    signed-rank (and paired t) p-value over splits.

    predictions: {(arch, synth, split, ckpt): DataFrame from predictions_{ckpt}.csv}.
    """
    rows = []
    for (arch, synth), group in long.groupby(["arch", "synth"], sort=True):
        last = group[group["ckpt"] == "last"].set_index("split")
        best = group[group["ckpt"] == "best"].set_index("split")
        splits = sorted(set(last.index) & set(best.index))
        if not splits:
            continue
        pairs = [_paired_predictions(predictions[(arch, synth, s, "last")],
                                     predictions[(arch, synth, s, "best")]) for s in splits]
        boot = stats.paired_bootstrap(pairs, n_classes, bootstrap, seed) if bootstrap else {}
        for metric in CHECKPOINT_METRICS:
            a, b = _values(last.loc[splits], metric), _values(best.loc[splits], metric)
            p = stats.paired(a, b)
            ci = boot.get(metric) or {}
            rows.append({
                "arch": arch, "synth": int(synth), "metric": metric, "splits": len(splits),
                "last_mean": a.mean(), "last_sd": a.std(ddof=1), "best_mean": b.mean(),
                "best_sd": b.std(ddof=1), "diff": p["diff"],
                "diff_low": ci.get("low", math.nan), "diff_high": ci.get("high", math.nan),
                "resamples": ci.get("resamples", 0), "p_wilcoxon": p["p_wilcoxon"],
                "p_t": p["p_t"],
                "published_last": published_value(published, arch, synth, "last", metric),
                "published_best": published_value(published, arch, synth, "best", metric)})
    return pd.DataFrame(rows, columns=CHECKPOINT_COLUMNS)


def _paired_predictions(last: pd.DataFrame, best: pd.DataFrame):
    if list(last["image_id"].astype(str)) != list(best["image_id"].astype(str)):
        raise UserError("predictions_last.csv and predictions_best.csv of one model list "
                        "different test images; delete the model folder and re-run")
    cols = [c for c in last.columns if c.startswith("prob_")]
    return (last["y"].to_numpy(dtype=int), last[cols].to_numpy(dtype=float),
            best[cols].to_numpy(dtype=float))


def published_value(published: dict | None, arch: str, synth, ckpt: str, metric: str):
    """The paper's value for this cell, or None (see report/published.py)."""
    if not published:
        return None
    return published["values"].get((arch, int(synth), ckpt), {}).get(metric)


def _cell(mean, sd=math.nan, low=math.nan, high=math.nan) -> str:
    if pd.isna(mean):
        return "n/a"
    text = f"{mean:.3f}" + ("" if pd.isna(sd) else f" ± {sd:.3f}")
    return text + ("" if pd.isna(low) else f" [{low:.3f}, {high:.3f}]")


def _p(value) -> str:
    return "" if pd.isna(value) else f"{value:.3g}"


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _realism_cell(value) -> str:
    """The scenario row's realism marker as shown: red rows say so in words."""
    if not isinstance(value, str) or not value:
        return ""
    return RED_MARK if value == "red" else value


def scenario_markdown(table: pd.DataFrame, metrics: list[str]) -> str:
    """Paper 000's Table 4 shape: one row per arch x scenario x checkpoint, mean ± sd [95% CI];
    then the change vs scenario 0 with its CI and p-values; published values where known. A
    `realism` column (the verdict of the synthetic images the row used) when any row has one."""
    wide = table.set_index(["arch", "synth", "ckpt", "metric"])
    keys = table[["arch", "synth", "ckpt"]].drop_duplicates().itertuples(index=False)
    keys = list(keys)
    marks = {k: _realism_cell(wide.loc[k + (metrics[0],)].get("realism")) for k in keys}
    shown = any(marks.values())
    head = ["arch", "synthetic n", "weights", "splits"] + ["realism"] * shown + metrics
    rows = []
    for arch, synth, ckpt in keys:
        cells = [arch, str(synth), ckpt, str(int(wide.loc[(arch, synth, ckpt, metrics[0]),
                                                            "splits"]))]
        cells += [marks[(arch, synth, ckpt)]] * shown
        for m in metrics:
            r = wide.loc[(arch, synth, ckpt, m)]
            cell = _cell(r["mean"], r["sd"], r["ci_low"], r["ci_high"])
            if not pd.isna(r["published"]) and r["published"] is not None:
                cell += f" (paper {r['published']:.2f})"
            cells.append(cell)
        rows.append(cells)
    text = _markdown(head, rows)
    changes = [[arch, str(synth), ckpt] + [marks[(arch, synth, ckpt)]] * shown + [
        "n/a" if pd.isna(wide.loc[(arch, synth, ckpt, m), "diff_vs_0"]) else
        f"{wide.loc[(arch, synth, ckpt, m), 'diff_vs_0']:+.3f} "
        f"[{wide.loc[(arch, synth, ckpt, m), 'diff_low']:+.3f}, "
        f"{wide.loc[(arch, synth, ckpt, m), 'diff_high']:+.3f}] "
        f"p={_p(wide.loc[(arch, synth, ckpt, m), 'p_t'])}" for m in metrics]
        for arch, synth, ckpt in keys if synth != 0]
    if changes:
        text += ("\nChange vs scenario 0 on the same splits: mean difference [t 95% CI] and "
                 "paired t-test p (Wilcoxon in scenario.csv).\n\n"
                 + _markdown(["arch", "synthetic n", "weights"] + ["realism"] * shown + metrics,
                             changes))
    return text


def checkpoint_markdown(table: pd.DataFrame) -> str:
    """Paper 002's Table 2 shape: per arch (and scenario), last vs best, the paired difference
    with its bootstrap 95% CI and the Wilcoxon p over splits."""
    head = ["arch", "synthetic n", "metric", "splits", "last", "best", "best - last [95% CI]",
            "Wilcoxon p", "paper last / best"]
    rows = []
    for r in table.itertuples(index=False):
        paper = ("" if r.published_last is None or pd.isna(r.published_last) else
                 f"{r.published_last:.3f} / {r.published_best:.3f}")
        diff = "n/a" if pd.isna(r.diff) else (
            f"{r.diff:+.3f}" + ("" if pd.isna(r.diff_low) else
                               f" [{r.diff_low:+.3f}, {r.diff_high:+.3f}]"))
        rows.append([r.arch, str(r.synth), r.metric, str(r.splits),
                     _cell(r.last_mean, r.last_sd), _cell(r.best_mean, r.best_sd), diff,
                     _p(r.p_wilcoxon), paper])
    return _markdown(head, rows)


def data_table(manifest: pd.DataFrame, splits: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Images per split x subset x label (ok images), and rejected inputs."""
    rows = []
    for split_id, split in splits.items():
        merged = split.merge(manifest[["image_id", "label"]], on="image_id")
        for (subset, label), n in merged.groupby(["subset", "label"]).size().items():
            rows.append({"split": split_id, "subset": subset, "label": label, "images": n})
    return pd.DataFrame(rows)


QUALITY_COLUMNS = ["split", "label", "synthetic", "real", "near_copies", "nn_ncc_median",
                   "nn_ncc_max", "real_nn_ncc_median", "ms_ssim_synthetic", "ms_ssim_real",
                   "intensity_wasserstein", "fid"]


def quality_table(paths: list[str]) -> pd.DataFrame:
    """One row per split x label from the quality audit JSONs."""
    rows = []
    for path in paths:
        with open(path) as f:
            q = json.load(f)
        mem, div = q["memorization"], q["diversity"]
        rows.append({"split": q["split"], "label": q["label"], "synthetic": q["n_synthetic"],
                     "real": q["n_real"], "near_copies": mem["near_copies"],
                     "nn_ncc_median": mem["nn_ncc"]["median"], "nn_ncc_max": mem["nn_ncc"]["max"],
                     "real_nn_ncc_median": mem["real_nn_ncc"]["median"],
                     "ms_ssim_synthetic": div["ms_ssim_synthetic"],
                     "ms_ssim_real": div["ms_ssim_real"],
                     "intensity_wasserstein": q["intensity"]["wasserstein"],
                     "fid": q["fid"].get("fid")})
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)
