import pandas as pd

from mammosynth.ddpm.train import train_ddpm
from mammosynth.errors import job

with job(snakemake.log[0], snakemake.threads):
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(snakemake.input.split, dtype=str)
    train = split[split["subset"] == "train"].merge(manifest, on="image_id")
    paths = train.loc[train["label"] == snakemake.wildcards.label, "image_path"].tolist()
    train_ddpm(paths, snakemake.output[0], snakemake.params.ddpm, seed=snakemake.params.seed,
               checkpoint=snakemake.params.checkpoint)
