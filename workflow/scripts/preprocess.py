import pandas as pd

from mammosynth.runtime import job
from mammosynth.imaging.pipeline import preprocess_table

with job(snakemake.log[0]):
    ingest = pd.read_csv(snakemake.input.ingest, dtype=str, keep_default_na=False)
    manifest = preprocess_table(ingest, snakemake.params.roots, snakemake.output.images,
                                size=snakemake.params.size, workers=snakemake.threads,
                                on_bad_image=snakemake.params.on_bad_image,
                                orientation=snakemake.params.orientation)
    manifest.to_csv(snakemake.output.manifest, index=False)
