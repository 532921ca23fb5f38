from mammosynth.datasets.ingest import ingest
from mammosynth.runtime import job
from mammosynth.imaging.pipeline import fail_on_rejections

with job(snakemake.log[0]) as log:
    table = ingest(snakemake.params.dataset, snakemake.params.labels)
    fail_on_rejections(table, snakemake.params.dataset["on_bad_image"])
    table.to_csv(snakemake.output[0], index=False)
    log.info("ingest: %s", table["status"].value_counts().to_dict())
