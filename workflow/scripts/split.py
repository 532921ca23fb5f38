import pandas as pd

from mammosynth.errors import job
from mammosynth.splits import make_split

with job(snakemake.log[0]) as log:
    manifest = pd.read_csv(snakemake.input[0], dtype=str, keep_default_na=False)
    cfg = snakemake.params.splits
    split = make_split(manifest, int(snakemake.wildcards.split), seed=snakemake.params.seed,
                       test_fraction=cfg["test_fraction"], val_fraction=cfg["val_fraction"],
                       group_by=cfg["group_by"])
    split.to_csv(snakemake.output[0], index=False)
    log.info("split %s: %s", snakemake.wildcards.split, split["subset"].value_counts().to_dict())
