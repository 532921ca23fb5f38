import pandas as pd

from mammosynth.ddpm.train import train_ddpm
from mammosynth.errors import job
from mammosynth.splits import images_of

with job(snakemake.log[0], snakemake.threads):
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(snakemake.input.split, dtype=str)
    paths = images_of(manifest, split, "train", snakemake.wildcards.label)
    train_ddpm(paths, snakemake.output[0], snakemake.params.ddpm, seed=snakemake.params.seed,
               checkpoint=snakemake.params.checkpoint)
