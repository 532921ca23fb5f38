import pandas as pd

from mammosynth.errors import job
from mammosynth.report.leakage import leakage_table
from mammosynth.report.tables import collect, data_table, quality_table, write_report

with job(snakemake.log[0]):
    params, inputs = snakemake.params, snakemake.input
    evals = [dict(g, path=p) for g, p in zip(params.grid, inputs.evals)]
    manifest = pd.read_csv(inputs.manifest, dtype=str, keep_default_na=False)
    splits = {s: pd.read_csv(p, dtype=str) for s, p in zip(params.split_ids, inputs.splits)}
    models = [dict(m, composition=p) for m, p in zip(params.models, inputs.compositions)]
    leakage = leakage_table(models, manifest, dict(zip(params.ddpm_split_ids, inputs.ddpm_splits)),
                            params.protocol)
    write_report(snakemake.output[0], collect(evals), data_table(manifest, splits), manifest,
                 params.protocol, quality_table(inputs.quality), leakage)
