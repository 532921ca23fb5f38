from mammosynth.runtime import job
from mammosynth.report.inputs import read_manifest, read_splits, sample_images
from mammosynth.report.leakage import leakage_table
from mammosynth.report.page import build_report

with job(snakemake.log[0]):
    params, inputs = snakemake.params, snakemake.input
    manifest = read_manifest(inputs.manifest)
    models = [dict(m, composition=c, history=h)
              for m, c, h in zip(params.models, inputs.compositions, inputs.histories)]
    leakage = leakage_table(models, manifest, dict(zip(params.ddpm_split_ids, inputs.ddpm_splits)),
                            params.config["protocol"])
    # the first DDPM split's real training images beside its synthetic ones
    samples = sample_images(manifest, (inputs.ddpm_splits or [None])[0], params.labels,
                            inputs.samples)
    build_report(snakemake.output[0], grid=params.grid, evals=inputs.evals,
                 predictions=inputs.predictions, models=models, manifest=manifest,
                 splits=read_splits(params.split_ids, inputs.splits), leakage=leakage,
                 quality=inputs.quality, quality_keys=params.quality_keys,
                 quality_nn=inputs.quality_nn, quality_pairs=inputs.quality_pairs,
                 samples=samples, config=params.config, labels=params.labels)
