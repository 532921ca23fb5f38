"""Leakage checks, computed from the files each model was actually trained and tested on.

For every model (arch x arm x split), from its composition.csv, the manifest and the split
file its DDPMs trained on:
- test_synthetic: synthetic images in the test subset;
- test_patients_seen: patients with a real test image who also have an image in train or val;
- test_images_seen_by_ddpm: real test images the DDPMs behind its synthetic images trained on.
Under protocol rigorous every count must be 0 and any other value stops the report; under
protocol paper they are expected, and the report shows them beside the numbers they taint.
"""

from __future__ import annotations

import pandas as pd

from mammosynth.errors import UserError

LEAKAGE_COLUMNS = ["arch", "arm", "n", "split", "test_images", "test_synthetic",
                   "test_patients_seen", "test_images_seen_by_ddpm"]
LEAK_COUNTS = LEAKAGE_COLUMNS[5:]  # must all be 0 under protocol rigorous


def model_leakage(composition: pd.DataFrame, manifest: pd.DataFrame,
                  ddpm_split: pd.DataFrame | None) -> dict:
    """Counts for one model; ddpm_split None when the model used no synthetic image."""
    real = composition[~composition["synthetic"].astype(bool)]
    real = real.merge(manifest[["image_id", "patient_id"]], on="image_id", how="left")
    test = real[real["subset"] == "test"]
    seen = set(real.loc[real["subset"] != "test", "patient_id"])
    by_ddpm = 0
    if ddpm_split is not None:
        by_ddpm = int(test["image_id"].isin(
            ddpm_split.loc[ddpm_split["subset"] == "train", "image_id"]).sum())
    return {"test_images": int((composition["subset"] == "test").sum()),
            "test_synthetic": int(composition.loc[composition["subset"] == "test", "synthetic"]
                                  .astype(bool).sum()),
            "test_patients_seen": int(test.loc[test["patient_id"].isin(seen), "patient_id"]
                                      .nunique()),
            "test_images_seen_by_ddpm": by_ddpm}


def leakage_table(models: list[dict], manifest: pd.DataFrame, ddpm_splits: dict[str, str],
                  protocol: str) -> pd.DataFrame:
    """models: [{'arch', 'arm', 'n', 'split', 'composition', 'ddpm_split'}] -> one row per model.

    ddpm_splits maps a DDPM split id to its split file. Raises UserError under protocol rigorous
    if any count is not 0, naming the model's composition file.
    """
    splits = {str(k): pd.read_csv(p, dtype=str) for k, p in ddpm_splits.items()}
    rows = []
    for m in models:
        composition = pd.read_csv(m["composition"], dtype={"image_id": str})
        uses_ddpm = m["arm"] in ("synth", "synthonly") and int(m["n"]) > 0
        ddpm = splits[str(m["ddpm_split"])] if uses_ddpm else None
        row = {"arch": m["arch"], "arm": m["arm"], "n": int(m["n"]), "split": m["split"]}
        row |= model_leakage(composition, manifest, ddpm)
        leaks = {k: v for k, v in row.items() if k in LEAK_COUNTS and v}
        if protocol == "rigorous" and leaks:
            raise UserError(f"{m['composition']}: leakage under protocol rigorous ("
                            + ", ".join(f"{k} {v}" for k, v in leaks.items())
                            + "); the split or composition files were changed by hand or by an "
                            "older version - delete results/splits/ and results/classifier/ and "
                            "re-run")
        rows.append(row)
    return pd.DataFrame(rows, columns=LEAKAGE_COLUMNS)
