"""Tables over arch x scenario x split x checkpoint, from the eval JSON files."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import pandas as pd

from mammosynth.report.leakage import LEAKAGE_COLUMNS

METRICS = ["accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1",
           "auc", "pr_auc"]


def flatten(result: dict) -> dict:
    row = {m: result.get(m) for m in ("accuracy", "balanced_accuracy", "auc", "pr_auc",
                                      "sensitivity", "specificity")}
    row.update({f"macro_{k}": v for k, v in result["macro"].items()})
    for label, values in result["per_class"].items():
        row.update({f"{label}_{k}": v for k, v in values.items()})
    row["epoch"], row["n_test"] = result["epoch"], result["n"]
    return row


def collect(evals: list[dict]) -> pd.DataFrame:
    """evals: [{'arch', 'synth', 'split', 'ckpt', 'path'}] -> one row per evaluation."""
    rows = []
    for e in evals:
        with open(e["path"]) as f:
            result = json.load(f)
        rows.append({k: e[k] for k in ("arch", "synth", "split", "ckpt")} | flatten(result))
    return pd.DataFrame(rows).sort_values(["arch", "synth", "ckpt", "split"], ignore_index=True)


def summarize(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sd and number of splits of each metric per arch x synth x ckpt."""
    metrics = [c for c in long.columns if c not in ("arch", "synth", "split", "ckpt", "epoch",
                                                    "n_test")]
    grouped = long.groupby(["arch", "synth", "ckpt"], sort=True)
    mean = grouped[metrics].mean().add_suffix("_mean")
    sd = grouped[metrics].std(ddof=1).add_suffix("_sd")
    out = pd.concat([mean, sd], axis=1)
    out.insert(0, "splits", grouped.size())
    return out[["splits"] + [f"{m}_{s}" for m in metrics for s in ("mean", "sd")]].reset_index()


def markdown(summary: pd.DataFrame, metrics=METRICS) -> str:
    head = ["arch", "synthetic n", "weights", "splits"] + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in summary.iterrows():
        cells = [str(r["arch"]), str(r["synth"]), str(r["ckpt"]), str(r["splits"])]
        for m in metrics:
            mean, sd = r.get(f"{m}_mean"), r.get(f"{m}_sd")
            cells.append("n/a" if pd.isna(mean) else
                         f"{mean:.3f}" + ("" if pd.isna(sd) else f" ± {sd:.3f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(out_dir: str | Path, long: pd.DataFrame, data: pd.DataFrame,
                 manifest: pd.DataFrame, protocol: str,
                 quality: pd.DataFrame | None = None,
                 leakage: pd.DataFrame | None = None) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(long)
    long.to_csv(out_dir / "metrics.csv", index=False)
    summary.to_csv(out_dir / "summary.csv", index=False)
    _write(out_dir / "summary.md", markdown(summary))
    data.to_csv(out_dir / "data.csv", index=False)
    rejected = manifest[manifest["status"] == "rejected"][["image_id", "source", "reason"]]
    rejected.to_csv(out_dir / "rejected.csv", index=False)
    quality = pd.DataFrame(columns=QUALITY_COLUMNS) if quality is None else quality
    quality.to_csv(out_dir / "quality.csv", index=False)
    leakage = pd.DataFrame(columns=LEAKAGE_COLUMNS) if leakage is None else leakage
    leakage.to_csv(out_dir / "leakage.csv", index=False)
    counts = manifest.groupby(["status", "label"], dropna=False).size().rename("inputs")
    warning = "" if protocol == "rigorous" else (
        "<p style='border:2px solid #c00;padding:.5em'><b>Leaky numbers.</b> Protocol "
        "<b>paper</b> reproduces the papers' own procedure: image-level random splits (patients "
        "straddle train and test), DDPMs trained on every real image (test images included), "
        "synthetic images pooled before the split (so some test images are synthetic), no "
        "validation set when splits.val_fraction is 0. Compare with protocol rigorous before "
        "drawing conclusions; the leakage table below counts each of these per model.</p>")
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mammosynth report</title>",
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}</style>",
        "</head><body><h1>mammosynth report</h1>",
        f"<p>Protocol: <b>{html.escape(protocol)}</b>. Every number below is recomputed from "
        "the evaluation files under <code>results/classifier/</code>; mean ± sd over splits.</p>",
        warning,
        "<h2>Inputs</h2>", counts.reset_index().to_html(index=False),
        f"<p>{len(rejected)} input(s) rejected; see <code>rejected.csv</code>.</p>",
        "<h2>Images per split</h2>",
        data.pivot_table(index=["split", "subset"], columns="label", values="images",
                         fill_value=0).to_html(),
        "<h2>Test metrics</h2>", summary.to_html(index=False, float_format="%.3f"),
        "<h2>Leakage checks</h2>",
        "<p>Per model, from its <code>composition.csv</code>: synthetic test images, test "
        "patients also seen in train or val, real test images the DDPMs trained on "
        "(<code>leakage.csv</code>). All zero under protocol rigorous (checked).</p>",
        leakage.to_html(index=False),
        "<h2>Synthetic images: quality and memorization</h2>",
        "<p>nn_ncc: each synthetic image's normalised cross-correlation with its nearest real "
        "training image; real_nn_ncc: the same for real images among themselves; near_copies: "
        "synthetic images above the threshold. MS-SSIM: mean pairwise similarity (lower = more "
        "diverse).</p>",
        quality.to_html(index=False, float_format="%.3f") if len(quality) else
        "<p>No synthetic images in this run.</p>",
        "</body></html>"]
    _write(out_dir / "index.html", "\n".join(page))
