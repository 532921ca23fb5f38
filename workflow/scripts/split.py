import pandas as pd

from mammosynth.runtime import job
from mammosynth.splits import make_split, paper_split

with job(snakemake.log[0]) as log:
    manifest = pd.read_csv(snakemake.input[0], dtype=str, keep_default_na=False)
    cfg, split_id = snakemake.params.splits, snakemake.wildcards.split
    fractions = dict(test_fraction=cfg["test_fraction"], val_fraction=cfg["val_fraction"])
    official_test, scheme = cfg["official_test"], cfg["scheme"]
    labels = list(snakemake.params.labels)
    if snakemake.params.protocol == "paper":
        if official_test:
            log.warning("splits.official_test is ignored under protocol paper (random "
                        "image-level splits)")
        if scheme == "kfold":
            log.warning("splits.scheme kfold is ignored under protocol paper (random "
                        "image-level splits)")
        split = paper_split(manifest, split_id, seed=snakemake.params.seed, labels=labels,
                            **fractions)
    else:
        split = make_split(manifest, int(split_id), seed=snakemake.params.seed,
                           official_test=official_test, scheme=scheme, labels=labels,
                           **fractions)
    split.to_csv(snakemake.output[0], index=False)
    log.info("split %s: %s", split_id, split["subset"].value_counts().to_dict())
