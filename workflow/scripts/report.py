import pandas as pd

from mammosynth.ddpm.sample import read_shards
from mammosynth.errors import job
from mammosynth.report.leakage import leakage_table
from mammosynth.report.page import build_report
from mammosynth.splits import images_of

with job(snakemake.log[0]):
    params, inputs = snakemake.params, snakemake.input
    protocol = params.config["protocol"]
    manifest = pd.read_csv(inputs.manifest, dtype=str, keep_default_na=False)
    splits = {s: pd.read_csv(p, dtype=str) for s, p in zip(params.split_ids, inputs.splits)}
    models = [dict(m, composition=c, history=h)
              for m, c, h in zip(params.models, inputs.compositions, inputs.histories)]
    ddpm_splits = dict(zip(params.ddpm_split_ids, inputs.ddpm_splits))
    leakage = leakage_table(models, manifest, ddpm_splits, protocol)
    samples = {}
    if inputs.samples:  # the first DDPM split's real training images vs its synthetic ones
        first = pd.read_csv(inputs.ddpm_splits[0], dtype=str)
        for label, shard in zip(params.labels, inputs.samples):
            samples[label] = (images_of(manifest, first, "train", label),
                              [str(p) for _, p in read_shards([shard])])
    build_report(snakemake.output[0], grid=params.grid, evals=inputs.evals,
                 predictions=inputs.predictions, models=models, manifest=manifest,
                 splits=splits, leakage=leakage, quality=inputs.quality,
                 quality_figures=inputs.quality_figures, samples=samples,
                 config=params.config, labels=params.labels)
