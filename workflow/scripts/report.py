import pandas as pd

from mammosynth.errors import job
from mammosynth.report.tables import collect, data_table, quality_table, write_report

with job(snakemake.log[0]):
    evals = [dict(g, path=p) for g, p in zip(snakemake.params.grid, snakemake.input.evals)]
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    splits = {s: pd.read_csv(p, dtype=str)
              for s, p in zip(snakemake.params.split_ids, snakemake.input.splits)}
    write_report(snakemake.output[0], collect(evals), data_table(manifest, splits), manifest,
                 snakemake.params.protocol, quality_table(snakemake.input.quality))
