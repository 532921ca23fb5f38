import pandas as pd

from mammosynth.augment import read_augmented
from mammosynth.classify.data import compose, write_composition
from mammosynth.classify.train import batches_per_epoch, train_classifier
from mammosynth.ddpm.sample import read_shards
from mammosynth.runtime import job

with job(snakemake.log[0], snakemake.threads):
    labels, params, wc = snakemake.params.labels, snakemake.params, snakemake.wildcards
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(snakemake.input.split, dtype=str)
    synthetic = {label: [p for _, p in read_shards(snakemake.input.get(label, []))]
                 for label in labels}
    augmented = {label: read_augmented(folder)
                 for label, folder in zip(labels, snakemake.input.get("augmented", []))}
    subsets = compose(manifest, split, synthetic, int(wc.n), labels, arm=wc.arm,
                      repool=params.repool, augmented=augmented, seed=params.seed)
    write_composition(subsets, snakemake.output.composition)
    # budget steps: every arm of the split makes scenario 0's updates (its real training images)
    updates = (batches_per_epoch(int((split["subset"] == "train").sum()),
                                 params.classifier["batch_size"])
               if params.classifier["budget"] == "steps" else None)
    train_classifier(subsets, last=snakemake.output.last, best=snakemake.output.best,
                     history=snakemake.output.history, resume=params.resume, arch=wc.arch,
                     labels=labels, cfg=params.classifier, seed=params.seed,
                     updates_per_epoch=updates)
