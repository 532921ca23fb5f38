"""The report's one entry point, build_report: read its inputs (report.inputs), compute its tables
(report.tables), write results/report/ (report.render: tables, figures, the HTML page).

Every number is recomputed from the files the jobs wrote (eval JSON, predictions, history,
composition, split and quality files); nothing is carried over from memory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mammosynth.report import inputs, render, tables


def build_report(out_dir: str | Path, *, grid: list[dict], evals: list[str],
                 predictions: list[str], models: list[dict], manifest: pd.DataFrame,
                 splits: dict, leakage: pd.DataFrame, quality: list[str],
                 quality_keys: list[dict], quality_nn: list[str] | None = None,
                 quality_pairs: list[str] | None = None, samples: dict, config: dict,
                 labels: list[str]) -> None:
    """grid/evals/predictions: one entry per evaluation; models: one per model, each with its
    `composition` and `history` paths; quality_keys [{split, label}]: one per quality JSON
    (`quality`) and its figures (`quality_nn`, `quality_pairs`; None: none to show), in the
    same order; samples: {label: (real paths, synthetic paths)} (inputs.sample_images);
    config: the checked config."""
    read = inputs.read(grid=grid, evals=evals, predictions=predictions, models=models,
                       manifest=manifest, splits=splits, leakage=leakage, quality=quality,
                       quality_keys=quality_keys, quality_nn=quality_nn,
                       quality_pairs=quality_pairs, samples=samples)
    render.write(out_dir, read, tables.compute(read, config, labels), config, labels)
