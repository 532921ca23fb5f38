from mammosynth.datasets.phantom import write_phantom
from mammosynth.runtime import job

with job(snakemake.log[0]) as log:
    table = write_phantom(snakemake.output[0], seed=snakemake.params.seed,
                          **snakemake.params.phantom)
    log.info("phantom: %d images of %d patients", len(table), table["patient_hash"].nunique())
