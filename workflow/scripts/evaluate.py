import json

import pandas as pd

from mammosynth.classify.data import compose
from mammosynth.classify.evaluate import evaluate
from mammosynth.errors import job

with job(snakemake.log[0], snakemake.threads):
    manifest = pd.read_csv(snakemake.input.manifest, dtype=str, keep_default_na=False)
    split = pd.read_csv(snakemake.input.split, dtype=str)
    test = compose(manifest, split, {}, 0, snakemake.params.labels)["test"]
    metrics, predictions = evaluate(snakemake.input.weights, test,
                                    bootstrap=snakemake.params.bootstrap)
    metrics["checkpoint"] = snakemake.wildcards.ckpt
    with open(snakemake.output.metrics, "w") as f:
        json.dump(metrics, f, indent=2)
    predictions.to_csv(snakemake.output.predictions, index=False)
