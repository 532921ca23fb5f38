"""Computing: the report's tables from what report.inputs read - every evaluation (long), the
scenario table (paper 000's Table 4 shape), the checkpoint table (paper 002's Table 2 shape),
data, synthetic, rejected, quality and realism tables - and Markdown renderings of the first two.
`compute` makes every table the report writes but the control arms' and confounds' (their
sections make their own). Nothing here reads or writes a file."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from mammosynth.classify.evaluate import compute_metrics, positive_index
from mammosynth.errors import UserError
from mammosynth.report import realism, stats
from mammosynth.report.inputs import Inputs, read_evaluations
from mammosynth.report.published import PUBLISHED
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


KEYS = ("arch", "arm", "n", "synth", "split", "ckpt")


def long_table(evaluations: list[dict]) -> pd.DataFrame:
    """evaluations: [{'arch', 'arm', 'n', 'split', 'ckpt', 'result'}] (or the scenarios' 'synth'
    for 'arm', 'n'; `result`: the eval JSON) -> one row per evaluation."""
    rows = [{k: e[k] for k in KEYS if k in e} | flatten(e["result"]) for e in evaluations]
    keys = [k for k in KEYS if k in rows[0] and k != "split"] + ["split"]
    return pd.DataFrame(rows).sort_values(keys, ignore_index=True)


def collect(evals: list[dict]) -> pd.DataFrame:
    """long_table of eval JSON files: evals as long_table's, with each file's `path` for
    `result` (read by report.inputs)."""
    return long_table(read_evaluations(evals, [e["path"] for e in evals]))


def scenarios_only(long: pd.DataFrame) -> pd.DataFrame:
    """The scenario rows (arm synth) of an all-arms table, with their n as column `synth`."""
    return long[long["arm"] == "synth"].drop(columns="arm").rename(columns={"n": "synth"}) \
        .reset_index(drop=True)


SCENARIO_COLUMNS = ["arch", "synth", "ckpt", "metric", "splits", "mean", "sd", "ci_low",
                    "ci_high", "diff_vs_0", "diff_low", "diff_high", "p", "p_holm", "test", "note",
                    "published", "realism"]
CHECKPOINT_COLUMNS = ["arch", "synth", "metric", "splits", "last_mean", "last_sd", "best_mean",
                      "best_sd", "diff", "diff_low", "diff_high", "p", "p_holm", "note",
                      "boot_low", "boot_high", "resamples", "skipped", "published_last",
                      "published_best"]
PAIRED = "paired corrected t"
UNPAIRED = "unpaired corrected Welch t"


def scenario_metrics(labels: list[str]) -> list[str]:
    """Paper 000's Table 4 columns (accuracy, per-class P/R/F1) plus the threshold-free ones."""
    per_class = [f"{label}_{m}" for label in labels for m in ("precision", "recall", "f1")]
    extra = ["sensitivity", "specificity"] if len(labels) == 2 else []
    return (["accuracy", "balanced_accuracy"] + per_class
            + ["macro_precision", "macro_recall", "macro_f1", "auc", "pr_auc"] + extra)


def checkpoint_metrics(labels: list[str]) -> list[str]:
    """Paper 002's Table 2 columns (accuracy, macro P/R/F1, AUC, PR-AUC) plus balanced accuracy
    and, for two labels, sensitivity and specificity."""
    extra = ["sensitivity", "specificity"] if len(labels) == 2 else []
    return (["accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
             "auc", "pr_auc"] + extra)


def _values(long: pd.DataFrame, metric: str) -> pd.Series:
    return pd.to_numeric(long[metric], errors="coerce") if metric in long else \
        pd.Series(math.nan, index=long.index)


def holm_family(metrics: list[str], primary: str, aliases: dict[str, str]) -> tuple[list, dict]:
    """One comparison's Holm family: every metric but the primary and those that are another
    metric of the list by definition (stats.same_as) -> (family, {duplicate: the metric it
    is}); a duplicate of the primary makes the primary its stand-in."""
    dup = {}
    for m, a in aliases.items():
        if m in metrics and a in metrics:
            dup |= {a: m} if m == primary else {m: a}
    return [m for m in metrics if m != primary and m not in dup], dup


def _holm(rows: list[dict], primary: str, aliases: dict[str, str]) -> None:
    """p_holm: Holm-adjusted within one comparison's family (holm_family); the primary metric
    keeps its nominal p; a metric that is another by definition takes that one's p_holm."""
    by_metric = {r["metric"]: r for r in rows}
    family, dup = holm_family(list(by_metric), primary, aliases)
    for m, adjusted in zip(family, stats.holm([by_metric[m].get("p", math.nan) for m in family])):
        by_metric[m]["p_holm"] = adjusted
    if primary in by_metric:
        by_metric[primary]["p_holm"] = by_metric[primary].get("p", math.nan)
    for m, a in dup.items():
        by_metric[m]["p_holm"] = by_metric[a].get("p_holm", math.nan)


def scenario_table(long: pd.DataFrame, labels: list[str], published: dict | None = None,
                   realism: dict | None = None, protocol: str = "rigorous", *,
                   ratio: float = 0.0, primary: str = "balanced_accuracy",
                   positive: int | None = None) -> pd.DataFrame:
    """Per arch x scenario x checkpoint x metric: mean, sd and corrected t 95% CI over splits
    (`ratio` = n_test / n_train, report/stats.py); the change vs scenario 0 - paired by split
    under protocol rigorous (the same test images), unpaired under paper (each scenario
    re-splits real + synthetic images, so its test set differs) - with its CI, p and Holm-adjusted
    p (the `primary` metric unadjusted); published value; `realism`: for scenarios with
    synthetic images, the worst realism verdict of the split x label sets their models used
    (realism: {(split, label): verdict} of the quality files; report/realism.scenario_marker),
    "" for scenario 0 or when realism is None."""
    rows = []
    for (arch, synth, ckpt), group in long.groupby(["arch", "synth", "ckpt"], sort=True):
        base = long[(long["arch"] == arch) & (long["synth"] == 0) & (long["ckpt"] == ckpt)]
        both = group.merge(base, on="split", suffixes=("", "_base")) if synth != 0 else None
        marker = ("" if synth == 0 or realism is None else
                  scenario_marker(realism, group["split"].unique(), labels, protocol))
        family = []
        for metric in scenario_metrics(labels):
            ci = stats.mean_ci(_values(group, metric), ratio)
            row = {"arch": arch, "synth": int(synth), "ckpt": ckpt, "metric": metric,
                   "splits": ci["n"], "mean": ci["mean"], "sd": ci["sd"], "ci_low": ci["low"],
                   "ci_high": ci["high"], "note": ci["note"]}
            if both is not None and len(both) and metric in both:
                if protocol == "paper":
                    p = stats.unpaired(_values(base, metric), _values(group, metric), ratio)
                else:
                    p = stats.paired(_values(both, metric + "_base"), _values(both, metric),
                                     ratio)
                row |= {"diff_vs_0": p["diff"], "diff_low": p["diff_low"],
                        "diff_high": p["diff_high"], "p": p["p"],
                        "note": p["note"],  # about the comparison from here on
                        "test": UNPAIRED if protocol == "paper" else PAIRED}
            row["published"] = published_value(published, arch, synth, ckpt, metric)
            row["realism"] = marker
            family.append(row)
        if synth != 0:
            _holm(family, primary, stats.same_as(labels, positive))
        rows += family
    return pd.DataFrame(rows, columns=SCENARIO_COLUMNS)


def checkpoint_table(long: pd.DataFrame, predictions: dict, labels: list[str], bootstrap: int,
                     published: dict | None = None, seed: int = 0, *, ratio: float = 0.0,
                     primary: str = "balanced_accuracy",
                     positive: int | None = None) -> pd.DataFrame:
    """Per arch x scenario x metric: last vs best over splits, the paired difference (best -
    last; the same test images) with its corrected t 95% CI, p and Holm-adjusted p over splits,
    and a paired-bootstrap 95% CI over every split's test images (the models fixed: test-set
    sampling error only; `skipped`: resamples left out because a draw lacked a class).

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
        boot = (stats.paired_bootstrap(pairs, len(labels), bootstrap, seed, positive)
                if bootstrap else {})
        family = []
        for metric in checkpoint_metrics(labels):
            a, b = _values(last.loc[splits], metric), _values(best.loc[splits], metric)
            p = stats.paired(a, b, ratio)
            ci = boot.get(metric) or {}
            family.append({
                "arch": arch, "synth": int(synth), "metric": metric, "splits": p["n"],
                "last_mean": a.mean(), "last_sd": a.std(ddof=1), "best_mean": b.mean(),
                "best_sd": b.std(ddof=1), "diff": p["diff"], "diff_low": p["diff_low"],
                "diff_high": p["diff_high"], "p": p["p"], "note": p["note"],
                "boot_low": ci.get("low", math.nan), "boot_high": ci.get("high", math.nan),
                "resamples": ci.get("resamples", 0), "skipped": boot.get("skipped", 0),
                "published_last": published_value(published, arch, synth, "last", metric),
                "published_best": published_value(published, arch, synth, "best", metric)})
        _holm(family, primary, stats.same_as(labels, positive))
        rows += family
    return pd.DataFrame(rows, columns=CHECKPOINT_COLUMNS)


def from_predictions(grid: list[dict], predictions: dict, long: pd.DataFrame,
                     labels: list[str], positive: int | None = None) -> pd.DataFrame:
    """metrics.csv's rows recomputed on the real test images only (predictions whose
    `synthetic` column is false): protocol paper's test sets hold synthetic images too."""
    rows = []
    epochs = long.set_index(["arch", "synth", "split", "ckpt"])["epoch"]
    for g in grid:
        key = (g["arch"], g["synth"], g["split"], g["ckpt"])
        p = predictions[key]
        if "synthetic" in p:
            p = p[~p["synthetic"].astype(str).str.lower().isin(["true", "1"])]
        prob = p[[f"prob_{label}" for label in labels]].to_numpy(dtype=float)
        result = compute_metrics(p["y"].to_numpy(dtype=int), prob, labels, positive=positive)
        result["epoch"] = epochs.get(key)
        rows.append({k: g[k] for k in ("arch", "synth", "split", "ckpt")} | flatten(result))
    return pd.DataFrame(rows).sort_values(["arch", "synth", "ckpt", "split"], ignore_index=True)


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


DASH = "–"  # an undefined value on the page (NaN in the CSV files)


def _cell(mean, sd=math.nan, low=math.nan, high=math.nan) -> str:
    if pd.isna(mean):
        return DASH
    text = f"{mean:.3f}" + ("" if pd.isna(sd) else f" ± {sd:.3f}")
    return text + ("" if pd.isna(low) else f" [{low:.3f}, {high:.3f}]")


def _p(value) -> str:
    return DASH if pd.isna(value) else f"{value:.3g}"


def _diff(diff, low, high, p, p_holm, primary: bool, note) -> str:
    """A difference as shown: +d [low, high] p=..; the Holm-adjusted p beside a secondary
    metric's; the note (no variance, too few splits) instead of an interval."""
    if pd.isna(diff):
        return DASH
    text = f"{diff:+.3f}"
    if isinstance(note, str) and note:
        return text + f" ({note.split(':')[0]})"
    text += f" [{low:+.3f}, {high:+.3f}] p={_p(p)}"
    return text + ("" if primary or pd.isna(p_holm) else f" (Holm {_p(p_holm)})")


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _realism_cell(value) -> str:
    """The scenario row's realism marker as shown: red rows say so in words."""
    if not isinstance(value, str) or not value:
        return ""
    return RED_MARK if value == "red" else value


def scenario_markdown(table: pd.DataFrame, metrics: list[str], primary: str = "") -> str:
    """Paper 000's Table 4 shape: one row per arch x scenario x checkpoint, mean ± sd [95% CI]
    (a cell computed on fewer splits than its row says so); then the change vs scenario 0 with its
    CI, p and Holm-adjusted p; published values where known. A `realism` column (the verdict of
    the synthetic images the row used) when any row has one. `primary` is marked with *."""
    wide = table.set_index(["arch", "synth", "ckpt", "metric"])
    keys = list(table[["arch", "synth", "ckpt"]].drop_duplicates().itertuples(index=False))
    marks = {k: _realism_cell(wide.loc[k + (metrics[0],)].get("realism")) for k in keys}
    shown = any(marks.values())
    names = [m + (" *" if m == primary else "") for m in metrics]
    head = ["arch", "synthetic n", "weights", "splits"] + ["realism"] * shown + names
    rows = []
    for arch, synth, ckpt in keys:
        k = int(max(wide.loc[(arch, synth, ckpt, m), "splits"] for m in metrics))
        cells = [arch, str(synth), ckpt, str(k)] + [marks[(arch, synth, ckpt)]] * shown
        for m in metrics:
            r = wide.loc[(arch, synth, ckpt, m)]
            cell = _cell(r["mean"], r["sd"], r["ci_low"], r["ci_high"])
            if 0 < r["splits"] < k:
                cell += f" ({int(r['splits'])} of {k} splits)"
            if not pd.isna(r["published"]) and r["published"] is not None:
                cell += f" (paper {r['published']:.2f})"
            cells.append(cell)
        rows.append(cells)
    text = _markdown(head, rows)
    changes = []
    for arch, synth, ckpt in keys:
        if synth == 0:
            continue
        cells = [arch, str(synth), ckpt] + [marks[(arch, synth, ckpt)]] * shown
        for m in metrics:
            r = wide.loc[(arch, synth, ckpt, m)]
            cells.append(_diff(r["diff_vs_0"], r["diff_low"], r["diff_high"], r["p"],
                               r["p_holm"], m == primary, r["note"]))
        changes.append(cells)
    if changes:
        test = table["test"].dropna()
        test = test.iloc[0] if len(test) else PAIRED
        how = ("paired by split (the same test images)" if test == PAIRED else
               "unpaired (each scenario's test set differs)")
        text += (f"\nChange vs scenario 0, {how}: mean difference [95% CI] and p of the "
                 f"{test} test; Holm-adjusted p beside every metric but the primary (*).\n\n"
                 + _markdown(["arch", "synthetic n", "weights"] + ["realism"] * shown + names,
                             changes))
    return text


def checkpoint_markdown(table: pd.DataFrame, primary: str = "") -> str:
    """Paper 002's Table 2 shape: per arch (and scenario), last vs best, the paired difference
    with its corrected t 95% CI, p and Holm p over splits, and the bootstrap CI over test
    images (models fixed)."""
    head = ["arch", "synthetic n", "metric", "splits", "last", "best",
            "best - last [95% CI] p (Holm)", "bootstrap 95% CI (models fixed)",
            "paper last / best"]
    rows = []
    for r in table.itertuples(index=False):
        paper = ("" if r.published_last is None or pd.isna(r.published_last) else
                 f"{r.published_last:.3f} / {r.published_best:.3f}")
        boot = "" if pd.isna(r.boot_low) else f"[{r.boot_low:+.3f}, {r.boot_high:+.3f}]"
        rows.append([r.arch, str(r.synth), r.metric + (" *" if r.metric == primary else ""),
                     str(r.splits), _cell(r.last_mean, r.last_sd), _cell(r.best_mean, r.best_sd),
                     _diff(r.diff, r.diff_low, r.diff_high, r.p, r.p_holm, r.metric == primary,
                           r.note), boot, paper])
    return _markdown(head, rows)


def confusion_matrices(evaluations: list[dict], arch: str) -> dict:
    """{(synth, ckpt): confusion matrix summed over splits (list of lists)} of one arch's
    scenario evaluations (each with `synth` and `result`)."""
    matrices = {}
    for e in evaluations:
        if e["arch"] == arch:
            cm = pd.DataFrame(e["result"]["confusion_matrix"])
            key = (e["synth"], e["ckpt"])
            matrices[key] = cm if key not in matrices else matrices[key] + cm
    return {k: v.values.tolist() for k, v in matrices.items()}


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


def input_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Inputs per status (ok, rejected) and label."""
    return manifest.groupby(["status", "label"], dropna=False).size().rename("inputs") \
        .reset_index()


def rejected_table(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest[manifest["status"] == "rejected"][["image_id", "source", "reason"]]


def synthetic_table(models: list[dict]) -> pd.DataFrame:
    """Synthetic images per model (each with its `composition` frame) and subset."""
    return pd.DataFrame([{"arch": m["arch"], "arm": m["arm"], "n": m["n"], "split": m["split"],
                          **m["composition"].groupby("subset")["synthetic"].sum().astype(int)
                          .reindex(["train", "val", "test"], fill_value=0)
                          .add_prefix("synthetic_").to_dict()} for m in models])


def quality_table(quality: list[dict]) -> pd.DataFrame:
    """One row per split x label of the quality audits (report.inputs.read_quality's records)."""
    rows = []
    for record in quality:
        q = record["audit"]
        mem, div = q["memorization"], q["diversity"]
        rows.append({"split": record["split"], "label": record["label"],
                     "synthetic": q["n_synthetic"],
                     "real": q["n_real"], "near_copies": mem["near_copies"],
                     "nn_ncc_median": mem["nn_ncc"]["median"], "nn_ncc_max": mem["nn_ncc"]["max"],
                     "real_nn_ncc_median": mem["real_nn_ncc"]["median"],
                     "ms_ssim_synthetic": div["ms_ssim_synthetic"],
                     "ms_ssim_real": div["ms_ssim_real"],
                     "intensity_wasserstein": q["intensity"]["wasserstein"],
                     "fid": q["fid"].get("fid")})
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


@dataclass(frozen=True)
class Tables:
    """Every table compute() makes, and the statistics settings they were made with.

    every: metrics.csv, every evaluation of every arm; long: the scenarios' (arm synth) rows
    with their n as `synth`; predictions: the scenarios' {(arch, synth, split, ckpt): frame};
    scenario_evals: the scenarios' evaluations (with `synth` and `result`); long_real and
    scenario_real: protocol paper's tables on the real test images only (None otherwise);
    realism: the realism table (report.realism); n_train: real training images per split.
    """
    every: pd.DataFrame
    long: pd.DataFrame
    predictions: dict
    scenario_evals: list[dict]
    scenario: pd.DataFrame
    checkpoints: pd.DataFrame
    long_real: pd.DataFrame | None
    scenario_real: pd.DataFrame | None
    realism: pd.DataFrame
    data: pd.DataFrame
    synthetic: pd.DataFrame
    quality: pd.DataFrame
    rejected: pd.DataFrame
    metrics_shown: list[str]
    positive: int | None
    primary: str
    ratio: float
    k: int
    n_train: dict
    published: dict | None


def compute(inputs: Inputs, config: dict, labels: list[str]) -> Tables:
    """Every table of the report from its inputs (report.inputs.read) and the checked config."""
    protocol, cfg = config["protocol"], config["classifier"]
    published = PUBLISHED.get(config["report"]["published"] or "")
    positive = positive_index(labels, config["labels"]["positive"])
    primary = stats.primary_metric(config["report"], labels)
    ratio, k = stats.nb_ratio(inputs.splits), len(config["splits"]["ids"])
    every = long_table(inputs.evaluations)  # every arm
    # the scenarios (arm synth), keyed by their n as `synth`
    long = scenarios_only(every)
    preds = {(a, n, s, c): p for (a, arm, n, s, c), p in inputs.predictions.items()
             if arm == "synth"}
    scenario_evals = [dict(e, synth=e["n"]) for e in inputs.evaluations if e["arm"] == "synth"]
    verdicts = realism.realism_table(inputs.quality)
    set_verdicts = realism.set_verdicts(verdicts)
    stats_args = dict(ratio=ratio, primary=primary, positive=positive)
    scen = scenario_table(long, labels, published, set_verdicts, protocol, **stats_args)
    ckpt = checkpoint_table(long, preds, labels, cfg["bootstrap"], published, config["seed"],
                            **stats_args)
    # protocol paper: its test sets hold synthetic images; the same tables on the real ones
    long_real = (from_predictions(scenario_evals, preds, long, labels, positive)
                 if protocol == "paper" else None)
    scen_real = (scenario_table(long_real, labels, published, set_verdicts, protocol,
                                **stats_args)
                 if long_real is not None else None)
    return Tables(
        every=every, long=long, predictions=preds, scenario_evals=scenario_evals,
        scenario=scen, checkpoints=ckpt, long_real=long_real, scenario_real=scen_real,
        realism=verdicts, data=data_table(inputs.manifest, inputs.splits),
        synthetic=synthetic_table(inputs.models), quality=quality_table(inputs.quality),
        rejected=rejected_table(inputs.manifest),
        metrics_shown=[m for m in scenario_metrics(labels) if len(labels) == 2 or
                       not any(m.startswith(f"{label}_") for label in labels)],
        positive=positive, primary=primary, ratio=ratio, k=k,
        n_train={s: int((split["subset"] == "train").sum())
                 for s, split in inputs.splits.items()},
        published=published)
