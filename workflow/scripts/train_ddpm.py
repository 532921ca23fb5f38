import pandas as pd

from mammosynth.ddpm.train import train_ddpm
from mammosynth.runtime import job
from mammosynth.splits import images_of

with job(snakemake.log[0], snakemake.threads):
    params = snakemake.params
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(snakemake.input.split, dtype=str)
    images = {label: images_of(manifest, split, "train", label) for label in params.labels}
    train_ddpm(images, snakemake.output[0], params.ddpm, seed=params.seed,
               resume=params.resume, sampling=params.sampling, size=params.size)
