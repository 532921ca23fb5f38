import json
import pandas as pd

from mammosynth.classify.data import read_composition
from mammosynth.ddpm.sample import read_shards
from mammosynth.runtime import job
from mammosynth.quality import audit, patients_of
from mammosynth.splits import images_of

with job(snakemake.log[0], snakemake.threads):
    cfg, wc, inputs = snakemake.params.quality, snakemake.wildcards, snakemake.input
    manifest = pd.read_csv(inputs.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(inputs.split, dtype=str)
    test = read_composition(inputs.composition)["test"]
    real = images_of(manifest, split, "train", wc.label)
    result = audit(
        real,
        [str(p) for _, p in read_shards(inputs.shards)],
        size=cfg["size"], near_copy_threshold=cfg["near_copy_threshold"], fid=cfg["fid"],
        inception_weights=cfg["inception_weights"],
        figures={"nn": snakemake.output.nn, "pairs": snakemake.output.pairs},
        held_out_paths=images_of(manifest, split, "val", wc.label)
        + images_of(manifest, split, "test", wc.label),
        test_paths=test[(test["label"] == wc.label) & ~test["synthetic"]]["path"].tolist(),
        classifier=inputs.classifier, label=wc.label, thresholds=cfg["verdict"],
        real_groups=patients_of(manifest, real))  # the baseline skips a patient's own images
    result.update(split=wc.split, label=wc.label)
    with open(snakemake.output.json, "w") as f:
        json.dump(result, f, indent=2)
