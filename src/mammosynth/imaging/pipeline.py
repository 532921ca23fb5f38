"""Preprocess every accepted input of an ingest table into a 16-bit PNG: the manifest.

Runs the images over `workers` forked processes (fork, not spawn: a spawned worker would re-run
the calling script, e.g. a Snakemake job). An image that cannot be decoded is rejected with the
reason (or, with `on_bad_image="fail"`, stops the run naming the file), never dropped.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from mammosynth.datasets import MANIFEST_COLUMNS, OPTIONAL_COLUMNS, source_file
from mammosynth.errors import ImageError, UserError
from mammosynth.imaging.breast import preprocess_array
from mammosynth.imaging.decode import load_image
from mammosynth.imaging.png import write_png

log = logging.getLogger(__name__)
EXTRA_COLUMNS = ["orig_height", "orig_width", "flipped", "laterality_from", "chest_wall_seen"]
MAX_EXAMPLES = 10


def _one(task):
    image_id, path, laterality, out_path, size, orientation = task
    try:
        # size: a JPEG 2000 DICOM is decoded at reduced resolution when that is enough for it
        image, stored = load_image(path, target=size)
        image, info = preprocess_array(image, laterality, size, orientation)
        info["orig_height"], info["orig_width"] = stored  # the file's size, not the decoded one
        write_png(out_path, image)
        return image_id, "", info
    except ImageError as e:
        return image_id, " ".join(str(e).split()), {}  # the manifest's reason: one line


def fail_on_rejections(table: pd.DataFrame, on_bad_image: str) -> None:
    bad = table[table["status"] == "rejected"]
    if on_bad_image == "fail" and len(bad):
        first = bad.iloc[0]
        raise UserError(f"{first['source']}: {first['reason']} ({len(bad)} input(s) rejected; "
                        "set dataset.on_bad_image: reject to keep going without them)")


def laterality_disagreements(manifest: pd.DataFrame) -> dict:
    """How often the metadata's laterality and the image disagree on the chest wall side.

    Over the ok images with a laterality of L or R and a `chest_wall_seen` (the side the breast
    meets in the image as decoded, before any flip; see `preprocess_array`): `checked` counts
    them, `disagree` those whose laterality is not that side (e.g. the metadata says L, the
    left breast, whose chest wall should be on the left, but the breast meets the right edge),
    and `examples` lists the first MAX_EXAMPLES such image_ids in manifest order.
    """
    missing = [c for c in ("image_id", "status", "laterality", "chest_wall_seen")
               if c not in manifest.columns]
    if missing:
        raise UserError(f"manifest has no {', '.join(missing)} column(s): it predates this "
                        "version; delete results/data/manifest.csv and re-run preprocess")
    columns = ["image_id", "status", "laterality", "chest_wall_seen"]
    text = manifest[columns].astype(object).fillna("").astype(str)
    sides = ("L", "R")
    checked = text[(text["status"] == "ok") & text["laterality"].isin(sides)
                   & text["chest_wall_seen"].isin(sides)]
    disagree = checked[checked["laterality"] != checked["chest_wall_seen"]]
    return {"checked": len(checked), "disagree": len(disagree),
            "examples": disagree["image_id"].head(MAX_EXAMPLES).tolist()}


def preprocess_table(ingest: pd.DataFrame, roots: dict[str, str], out_dir: str | Path,
                     size: int, workers: int = 1, on_bad_image: str = "reject",
                     orientation: str = "metadata") -> pd.DataFrame:
    """Ingest table -> manifest (MANIFEST_COLUMNS + EXTRA_COLUMNS); PNGs in out_dir.

    roots: the folders the `source` column is relative to, `datasets.source_roots(dataset)`
    ({"": dataset.root}, or per source of a combined data set); each ok row's file is
    `datasets.source_file(source, roots)`.
    orientation (config preprocess.orientation) picks where the chest wall is taken to be:
    see `preprocess_array`. Either way the metadata/image disagreements are logged (see
    `laterality_disagreements`)."""
    fail_on_rejections(ingest, on_bad_image)
    out_dir = Path(out_dir)
    manifest = ingest.copy()
    ok = manifest["status"] == "ok"
    tasks = [(r.image_id, source_file(r.source, roots), r.laterality,
              out_dir / f"{r.image_id}.png", size, orientation)
             for r in manifest[ok].itertuples()]
    out_dir.mkdir(parents=True, exist_ok=True)
    if workers > 1 and len(tasks) > 1:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        results = pool.map(_one, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
    else:
        pool, results = None, map(_one, tasks)
    done = {image_id: (reason, info) for image_id, reason, info in
            tqdm(results, total=len(tasks), desc="preprocess", mininterval=5)}
    if pool:
        pool.shutdown()
    reasons = manifest["image_id"].map(lambda i: done.get(i, ("", {}))[0])
    failed = ok & (reasons != "")
    manifest.loc[failed, "status"] = "rejected"
    manifest.loc[failed, "reason"] = reasons[failed]
    usable = ok & ~failed
    manifest["image_path"] = ""
    manifest.loc[usable, "image_path"] = [(out_dir / f"{i}.png").as_posix()
                                          for i in manifest.loc[usable, "image_id"]]
    extras = pd.DataFrame([done[i][1] if usable[k] else {}
                           for k, i in zip(manifest.index, manifest["image_id"])],
                          index=manifest.index, columns=EXTRA_COLUMNS)
    manifest = pd.concat([manifest, extras], axis=1)
    fail_on_rejections(manifest, on_bad_image)
    counts = manifest["status"].value_counts().to_dict()
    log.info("manifest: %d inputs, %d ok, %d rejected", len(manifest), counts.get("ok", 0),
             counts.get("rejected", 0))
    sides = laterality_disagreements(manifest)
    log.info("laterality: %d of %d images with a metadata side disagree with the image "
             "(orientation: %s)", sides["disagree"], sides["checked"], orientation)
    return manifest[MANIFEST_COLUMNS + EXTRA_COLUMNS
                    + [c for c in OPTIONAL_COLUMNS if c in manifest.columns]]
