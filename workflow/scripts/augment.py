import pandas as pd

from mammosynth.augment import augment_split
from mammosynth.runtime import job

with job(snakemake.log[0], snakemake.threads):
    params = snakemake.params
    augment_split(pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False),
                  pd.read_csv(snakemake.input.split, dtype=str), snakemake.wildcards.label,
                  params.total, params.seed, params.labels, snakemake.output[0])
