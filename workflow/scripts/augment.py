import pandas as pd

from mammosynth.augment import copy_seed, write_augmented
from mammosynth.classify.data import control_draws, real_images
from mammosynth.errors import job

with job(snakemake.log[0], snakemake.threads):
    params, label = snakemake.params, snakemake.wildcards.label
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(snakemake.input.split, dtype=str)
    frame = real_images(manifest, split)
    train = frame[frame["subset"] == "train"]
    paths = train.set_index("image_id")["path"]
    draws = control_draws(train, label, params.total, params.seed, params.labels)
    # each label's copies get their own augmentation seeds (the draws are seeded per label too)
    write_augmented([(image_id, paths[image_id]) for image_id in draws], snakemake.output[0],
                    seed=copy_seed(params.seed, label))
