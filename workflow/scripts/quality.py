import json
from pathlib import Path

import pandas as pd

from mammosynth.ddpm.sample import read_shards
from mammosynth.errors import job
from mammosynth.quality import audit
from mammosynth.splits import images_of

with job(snakemake.log[0], snakemake.threads):
    cfg, wc = snakemake.params.quality, snakemake.wildcards
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(snakemake.input.split, dtype=str)
    real = images_of(manifest, split, "train", wc.label)
    synthetic = [str(p) for _, p in read_shards(snakemake.input.shards)]
    result = audit(real, synthetic, size=cfg["size"], near_copy_threshold=cfg["near_copy_threshold"],
                   fid=cfg["fid"], inception_weights=cfg["inception_weights"],
                   figure_prefix=Path(snakemake.output.json).with_suffix(""))
    result.update(split=wc.split, label=wc.label)
    with open(snakemake.output.json, "w") as f:
        json.dump(result, f, indent=2)
