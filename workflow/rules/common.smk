import sys

from snakemake.utils import min_version

min_version("9.0")

from mammosynth import layout
from mammosynth.config import check as check_config, pretrained_file
from mammosynth.datasets import source_roots
from mammosynth.ddpm import n_shards
from mammosynth.errors import UserError
from mammosynth.labels import label_names
from mammosynth.report.captions import CAPTIONS as FIGURE_CAPTIONS

# The whole config, checked once (mammosynth.config.check: the schema, then every rule between
# keys) before any job runs, for the stages this run reaches: `--until preprocess` is not refused
# for a classifier's reason. A problem stops the run with one line naming the key.
try:
    check_config(
        config,
        workflow.source_path("../schemas/config.schema.yaml"),
        stage=layout.last_stage_of_command(sys.argv[1:]),
        # timm's registry: the main process only (every cluster job parses this file again)
        model_names=workflow.is_main_process,
    )
except UserError as e:
    raise WorkflowError(str(e)) from None

LABELS = label_names(config["labels"])
SPLITS = config["splits"]["ids"]
ARCHS = config["classifier"]["archs"]
SCENARIOS = config["scenarios"]
CONTROLS = config["controls"]
REAL_FRACTIONS = config["real_fractions"]
CHECKPOINTS = config["classifier"]["checkpoints"]
PAPER = config["protocol"] == "paper"
SYNTHETIC = max(SCENARIOS) > 0
# The split(s) the DDPMs train on: each split's training images, or (paper) every real image.
DDPM_SPLITS = ["all"] if PAPER else SPLITS
PHANTOM = config["dataset"]["format"] == "phantom"
# The folders ingest reads, by the prefix of the manifest's `source` column.
ROOTS = source_roots(config["dataset"])
ENV = "../envs/mammosynth.yaml"

# The DDPM folders of a split: one per label, or (ddpm.conditioning class) one for all labels;
# "all-labels" cannot be a label name (labels are letters, digits and _).
CLASS_MODEL = "all-labels"
DDPM_MODELS = LABELS if config["ddpm"]["conditioning"] == "per_label" else [CLASS_MODEL]


wildcard_constraints:
    split=r"\d+|all",
    label="|".join(LABELS),
    model="|".join(LABELS + [CLASS_MODEL]),
    shard=r"\d+",
    n=r"\d+",
    arm="|".join(layout.ARMS),
    arch=r"[A-Za-z0-9_.\-]+",
    ckpt="last|best",


def section(name, *unused):
    """config[name] less the keys that change no output of a rule: Snakemake re-runs a job
    whose params change, and a new bootstrap count must not retrain every classifier."""
    return {k: v for k, v in config[name].items() if k not in unused}


def per_label(n):
    return int(n) // len(LABELS)


def largest_per_label():
    """Synthetic images sampled, and augmented copies made, per label and split: enough for the
    largest n of scenarios (every arm's n is one of them)."""
    return per_label(max(SCENARIOS))


def shards_for(n):
    return range(n_shards(per_label(n), config["sampling"]["shard_size"]))


def pretrained(wildcards):
    return (
        pretrained_file(config["classifier"]["pretrained"], wildcards.arch, len(ARCHS))
        or []
    )


def ddpm_labels(wildcards):
    """The labels a DDPM folder's model learns: its own, or every label (conditioning class)."""
    return LABELS if wildcards.model == CLASS_MODEL else [wildcards.model]


def ddpm_seed(wildcards):
    model = (LABELS + [CLASS_MODEL]).index(wildcards.model)
    return layout.ddpm_seed(config["seed"], wildcards.split, model)


def split_seed(wildcards):
    return layout.split_seed(config["seed"], wildcards.split)


def ddpm_model(wildcards):
    """The DDPM folder that draws a label's synthetic images."""
    model = wildcards.label if CLASS_MODEL not in DDPM_MODELS else CLASS_MODEL
    return layout.ddpm(wildcards.split, model)


def label_fidelity_classifier(wildcards):
    """The real-only (scenario 0) classifier of the split, first arch: the realism verdict's
    judge of label fidelity and its feature space; split "all" (protocol paper) borrows the
    first split's."""
    split = SPLITS[0] if wildcards.split == "all" else wildcards.split
    model = dict(arch=ARCHS[0], arm="synth", n=0, split=split)
    return {
        "classifier": layout.classifier(**model, file=layout.weights_file("best")),
        "composition": layout.classifier(**model, file=layout.COMPOSITION),
    }


def ddpm_split(split):
    """The split whose DDPMs feed a classifier split's scenarios."""
    return "all" if PAPER else split


def repool(wildcards):
    """protocol paper: re-split real + synthetic at random, as paper 000 did; else None."""
    if not PAPER:
        return None
    return dict(
        test_fraction=config["splits"]["test_fraction"],
        val_fraction=config["splits"]["val_fraction"],
        seed=split_seed(wildcards),
    )


def arm_inputs(wildcards):
    """What arm{n} of a split adds to its real images: synthetic shards (synth, synthonly),
    augmented copies (aug), nothing (dup, real: the split's own images)."""
    n = int(wildcards.n)
    if wildcards.arm in ("synth", "synthonly") and n:
        split = ddpm_split(wildcards.split)
        return {
            label: [layout.shard(split, label, s) for s in shards_for(n)]
            for label in LABELS
        }
    if wildcards.arm == "aug":
        return {
            "augmented": [layout.augmented(wildcards.split, label) for label in LABELS]
        }
    return {}


def quality_inputs(wildcards):
    """All synthetic shards of one split and label: the set the quality audit looks at."""
    return {
        "shards": [
            layout.shard(wildcards.split, wildcards.label, s)
            for s in shards_for(max(SCENARIOS))
        ]
    }


# The realism audits: one per DDPM split and label (none without synthetic arms).
QUALITY = [
    dict(split=s, label=label) for s in DDPM_SPLITS if SYNTHETIC for label in LABELS
]

# The arms (config/README.md): scenarios synth{n}, the control arms at every non-zero n, the
# real-data learning curve real{p}.
ARMS = (
    [("synth", n) for n in SCENARIOS]
    + [(arm, n) for arm in CONTROLS for n in SCENARIOS if n]
    + [("real", p) for p in REAL_FRACTIONS]
)

# One model per arch x arm x split; composition.csv lists the images it saw.
MODELS = [
    dict(arch=a, arm=arm, n=n, split=s, ddpm_split=ddpm_split(s))
    for a in ARCHS
    for arm, n in ARMS
    for s in SPLITS
]

# One evaluation per arch x arm x split x checkpoint: the report's rows.
GRID = [
    dict(arch=m["arch"], arm=m["arm"], n=m["n"], split=m["split"], ckpt=c)
    for m in MODELS
    for c in CHECKPOINTS
]


def model_path(model, file):
    return layout.classifier(
        model["arch"], model["arm"], model["n"], model["split"], file
    )


def evaluations(file):
    """One file per GRID entry, e.g. evaluations(layout.eval_file)."""
    return [model_path(g, file(g["ckpt"])) for g in GRID]


def model_files(file):
    """One file per model (MODELS order): layout.COMPOSITION, layout.HISTORY."""
    return [model_path(m, file) for m in MODELS]
