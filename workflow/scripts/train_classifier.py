import pandas as pd

from mammosynth.classify.data import compose, write_composition
from mammosynth.classify.train import train_classifier
from mammosynth.ddpm.sample import read_shards
from mammosynth.errors import job

with job(snakemake.log[0], snakemake.threads):
    labels, params = snakemake.params.labels, snakemake.params
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(snakemake.input.split, dtype=str)
    synthetic = {label: [p for _, p in read_shards(snakemake.input.get(label, []))]
                 for label in labels}
    subsets = compose(manifest, split, synthetic, int(snakemake.wildcards.n), labels,
                      repool=params.repool)
    write_composition(subsets, snakemake.output.composition)
    train_classifier(subsets, snakemake.output.last.rsplit("/", 1)[0],
                     arch=snakemake.wildcards.arch, labels=labels,
                     cfg=params.classifier, seed=params.seed)
