import pandas as pd

from mammosynth.errors import job
from mammosynth.report.leakage import leakage_table
from mammosynth.report.page import build_report, sample_images

with job(snakemake.log[0]):
    params, inputs = snakemake.params, snakemake.input
    manifest = pd.read_csv(inputs.manifest, dtype=str, keep_default_na=False)
    splits = {s: pd.read_csv(p, dtype=str) for s, p in zip(params.split_ids, inputs.splits)}
    models = [dict(m, composition=c, history=h)
              for m, c, h in zip(params.models, inputs.compositions, inputs.histories)]
    leakage = leakage_table(models, manifest, dict(zip(params.ddpm_split_ids, inputs.ddpm_splits)),
                            params.config["protocol"])
    # the first DDPM split's real training images beside its synthetic ones
    samples = sample_images(manifest, (inputs.ddpm_splits or [None])[0], params.labels,
                            inputs.samples)
    build_report(snakemake.output[0], grid=params.grid, evals=inputs.evals,
                 predictions=inputs.predictions, models=models, manifest=manifest,
                 splits=splits, leakage=leakage, quality=inputs.quality,
                 quality_figures=inputs.quality_figures, samples=samples,
                 config=params.config, labels=params.labels)
