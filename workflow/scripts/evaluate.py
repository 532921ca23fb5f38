import json

from mammosynth.classify.data import read_composition
from mammosynth.classify.evaluate import evaluate
from mammosynth.runtime import job

with job(snakemake.log[0], snakemake.threads):
    test = read_composition(snakemake.input.composition)["test"]
    metrics, predictions = evaluate(snakemake.input.weights, test,
                                    bootstrap=snakemake.params.bootstrap,
                                    positive=snakemake.params.positive)
    metrics.update(checkpoint=snakemake.wildcards.ckpt, protocol=snakemake.params.protocol,
                   test_synthetic=int(test["synthetic"].sum()))
    with open(snakemake.output.metrics, "w") as f:
        json.dump(metrics, f, indent=2)
    predictions.to_csv(snakemake.output.predictions, index=False)
