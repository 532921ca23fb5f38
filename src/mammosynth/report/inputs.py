"""Reading: every file the report is recomputed from (eval JSONs, predictions, training
histories, compositions, quality JSONs, the manifest, split files, synthetic samples), read into
frames and dicts keyed by the values the workflow passes in.

Nothing is computed here, nothing is written, and nothing is recovered from a path: which
model, split or label a file belongs to comes with it (the rule's params).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from mammosynth.errors import UserError

# The quality audit's figures (layout.quality's `figure`), in the order the page shows them.
QUALITY_FIGURES = ("nn", "pairs")


@dataclass(frozen=True)
class Inputs:
    """What build_report reads, in the workflow's order.

    evaluations: per evaluation its keys (arch, arm, n, split, ckpt) and `result`, the eval JSON;
    predictions: {(arch, arm, n, split, ckpt): predictions DataFrame};
    models: per model its keys (arch, arm, n, split), `composition` and `history` DataFrames;
    quality: per split x label of the audit: `split`, `label` (strings), `path`, `audit` (the
      JSON), `realism` (its verdict block, None in files written before it existed) and
      `figures` {"nn": path, "pairs": path} ({} when none was passed);
    samples: {label: (real image paths, synthetic image paths)} for the sample grids.
    """
    evaluations: list[dict]
    predictions: dict
    models: list[dict]
    quality: list[dict]
    manifest: pd.DataFrame
    splits: dict
    leakage: pd.DataFrame
    samples: dict


def arm_keys(entry: dict) -> dict:
    """A grid or model entry with `arm` and `n`; a scenario-only entry's `synth` is synth{n}."""
    if "arm" in entry:
        return entry
    out = {k: v for k, v in entry.items() if k != "synth"}
    return out | {"arm": "synth", "n": entry["synth"]}


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


def read_manifest(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def read_splits(ids: list, paths: list[str]) -> dict:
    """{split id: split file} in the order of `ids`."""
    return {s: pd.read_csv(p, dtype=str) for s, p in zip(ids, paths, strict=True)}


def read_evaluations(grid: list[dict], paths: list[str]) -> list[dict]:
    """Each grid entry (as given) with `result`, its eval JSON."""
    return [dict(g, result=read_json(p)) for g, p in zip(grid, paths, strict=True)]


def read_predictions(grid: list[dict], paths: list[str]) -> dict:
    """{(arch, arm, n, split, ckpt): predictions} of grid entries with arm and n."""
    return {(g["arch"], g["arm"], g["n"], g["split"], g["ckpt"]):
            pd.read_csv(p, dtype={"image_id": str}) for g, p in zip(grid, paths, strict=True)}


def read_models(models: list[dict]) -> list[dict]:
    """Each model entry with its `composition` and `history` paths replaced by their frames."""
    return [dict(m, composition=pd.read_csv(m["composition"]), history=pd.read_csv(m["history"]))
            for m in models]


def read_quality(keys: list[dict], paths: list[str], nn: list[str] | None = None,
                 pairs: list[str] | None = None) -> list[dict]:
    """One record per quality JSON (see Inputs.quality): `keys` [{split, label}], the JSONs and,
    when given, the audit's two figures, all in the same order."""
    given = {kind: files for kind, files in zip(QUALITY_FIGURES, (nn, pairs))
             if files is not None}
    for kind, files in given.items():
        if len(files) != len(paths):
            raise ValueError(f"{len(files)} {kind} figures for {len(paths)} quality files")
    out = []
    for i, (key, path) in enumerate(zip(keys, paths, strict=True)):
        audit = read_json(path)
        block = audit.get("realism")
        if block is not None and not (isinstance(block, dict) and "verdict" in block):
            raise UserError(f"{path}: 'realism' has no verdict; delete the file and re-run "
                            "the quality rule")
        out.append({"split": str(key["split"]), "label": str(key["label"]), "path": str(path),
                    "audit": audit, "realism": block,
                    "figures": {kind: str(files[i]) for kind, files in given.items()}})
    return out


def sample_images(manifest: pd.DataFrame, split_file: str | None, labels: list[str],
                  shards: list[str]) -> dict:
    """{label: (real training images of the DDPMs' split, that label's synthetic images)} for
    the sample grids (`shards`: one per label, in label order); {} when the run made no
    synthetic image."""
    from mammosynth.ddpm.sample import read_shards
    from mammosynth.splits import images_of

    if not shards:
        return {}
    split = pd.read_csv(split_file, dtype=str)
    return {label: (images_of(manifest, split, "train", label),
                    [str(p) for _, p in read_shards([shard])])
            for label, shard in zip(labels, shards)}


def read(*, grid: list[dict], evals: list[str], predictions: list[str], models: list[dict],
         manifest: pd.DataFrame, splits: dict, leakage: pd.DataFrame, quality: list[str],
         quality_keys: list[dict], quality_nn: list[str] | None,
         quality_pairs: list[str] | None, samples: dict) -> Inputs:
    """Every input of build_report (its arguments) read; grid and model entries get arm and n."""
    grid, models = [arm_keys(g) for g in grid], [arm_keys(m) for m in models]
    return Inputs(evaluations=read_evaluations(grid, evals),
                  predictions=read_predictions(grid, predictions), models=read_models(models),
                  quality=read_quality(quality_keys, quality, quality_nn, quality_pairs),
                  manifest=manifest, splits=splits, leakage=leakage, samples=samples)
