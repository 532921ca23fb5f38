from snakemake.utils import min_version, validate

min_version("9.0")

validate(config, workflow.source_path("../schemas/config.schema.yaml"))

from mammosynth.ddpm.sample import n_shards
from mammosynth.labels import label_names

LABELS = label_names(config["labels"])
SPLITS = config["splits"]["ids"]
ARCHS = config["classifier"]["archs"]
SCENARIOS = config["scenarios"]
CHECKPOINTS = config["classifier"]["checkpoints"]
PHANTOM = config["dataset"]["format"] == "phantom"
DATA_ROOT = config["dataset"]["root"]
ENV = "../envs/mammosynth.yaml"

for n in SCENARIOS:
    if n % len(LABELS):
        raise WorkflowError(
            f"config scenarios: {n} synthetic images cannot be split evenly over "
            f"{len(LABELS)} labels ({', '.join(LABELS)}); use multiples of {len(LABELS)}"
        )


wildcard_constraints:
    split=r"\d+",
    label="|".join(LABELS),
    shard=r"\d+",
    n=r"\d+",
    arch=r"[A-Za-z0-9_.\-]+",
    ckpt="last|best",


def per_label(n):
    return int(n) // len(LABELS)


def synthetic_per_label():
    """Synthetic images sampled per label and split: enough for the largest scenario."""
    return per_label(max(SCENARIOS))


def shards_for(n):
    return range(n_shards(per_label(n), config["sampling"]["shard_size"]))


def synthetic_shards(wildcards):
    """The shard folders scenario synth{n} draws its first n / len(LABELS) images per label from."""
    return {
        label: expand(
            "results/synthetic/split{split}/{label}/shard{shard}",
            split=wildcards.split,
            label=label,
            shard=shards_for(wildcards.n),
        )
        for label in LABELS
    }


def quality_inputs(wildcards):
    """All synthetic shards of one split and label: the set the quality audit looks at."""
    return {
        "shards": expand(
            "results/synthetic/split{split}/{label}/shard{shard}",
            split=wildcards.split,
            label=wildcards.label,
            shard=shards_for(max(SCENARIOS)),
        )
    }


def quality_reports():
    if max(SCENARIOS) == 0:
        return []
    return expand("results/quality/split{split}/{label}.json", split=SPLITS, label=LABELS)


# One evaluation per arch x scenario x split x checkpoint: the report's rows.
GRID = [
    dict(arch=a, synth=n, split=s, ckpt=c)
    for a in ARCHS
    for n in SCENARIOS
    for s in SPLITS
    for c in CHECKPOINTS
]


def evaluations():
    return [
        f"results/classifier/{g['arch']}/synth{g['synth']}/split{g['split']}/eval_{g['ckpt']}.json"
        for g in GRID
    ]
