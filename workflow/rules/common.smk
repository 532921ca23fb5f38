from snakemake.utils import min_version

min_version("9.0")

import os

from mammosynth.config import validate as validate_config
from mammosynth.errors import UserError
from mammosynth.labels import label_map, label_names

# A bad config stops the run before any job with one line naming the key (`config <key>: ...`).
try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
    label_map(config["labels"])  # labels.map: BI-RADS values only, each in one label
except UserError as e:
    raise WorkflowError(str(e)) from None

LABELS = label_names(config["labels"])
if len(LABELS) == 2 and config["labels"]["positive"] not in LABELS:
    raise WorkflowError(
        f"config labels.positive: {config['labels']['positive']!r} is not one of the labels "
        f"({', '.join(LABELS)}); set labels.positive to the positive class"
    )
if config["report"]["primary_metric"] in ("sensitivity", "specificity") and len(LABELS) != 2:
    raise WorkflowError(
        f"config report.primary_metric: {config['report']['primary_metric']} needs two labels, "
        f"there are {len(LABELS)}; use balanced_accuracy, auc or a macro metric"
    )
SPLITS = config["splits"]["ids"]
ARCHS = config["classifier"]["archs"]
SCENARIOS = config["scenarios"]
CONTROLS = config["controls"]
REAL_FRACTIONS = config["real_fractions"]
CHECKPOINTS = config["classifier"]["checkpoints"]
PAPER = config["protocol"] == "paper"
# The split(s) the DDPMs train on: each split's training images, or (paper) every real image.
DDPM_SPLITS = ["all"] if PAPER else SPLITS
PHANTOM = config["dataset"]["format"] == "phantom"
DATA_ROOT = config["dataset"]["root"]
# The folders ingest reads: the data set's root, or each source's root (format combined).
DATA_ROOTS = (
    [s["root"] for s in config["dataset"].get("sources", [])]
    if config["dataset"]["format"] == "combined"
    else [DATA_ROOT]
)
ENV = "../envs/mammosynth.yaml"

# What the schema cannot say, checked here (cheap ones first, before torch is imported) rather
# than when a job meets it.
for n in SCENARIOS:
    if n % len(LABELS):
        raise WorkflowError(
            f"config scenarios: {n} synthetic images cannot be split evenly over "
            f"{len(LABELS)} labels ({', '.join(LABELS)}); use multiples of {len(LABELS)}"
        )

if (CONTROLS or REAL_FRACTIONS) and PAPER:
    raise WorkflowError(
        "config controls / real_fractions: control arms need protocol rigorous (under paper "
        "every arm would re-split its images, so no two arms share a test set); set controls: "
        "[] and real_fractions: [], or protocol: rigorous"
    )
if CONTROLS and max(SCENARIOS) == 0:
    raise WorkflowError(
        "config controls: control arms run at the non-zero n of scenarios, and there is none; "
        "add one to scenarios (e.g. [0, 100]) or set controls: []"
    )

if config["classifier"]["monitor"] == "val_loss" and not config["splits"]["val_fraction"]:
    raise WorkflowError(
        "config classifier.monitor: val_loss needs a validation set; set "
        "splits.val_fraction above 0, or classifier.monitor: train_loss"
    )

if config["classifier"]["freeze_backbone"] and not config["classifier"]["pretrained"]:
    raise WorkflowError(
        "config classifier.pretrained: freeze_backbone trains only the head, on a random "
        "backbone without pretrained weights; set classifier.pretrained to a local weights "
        "file, or freeze_backbone: false"
    )

_levels = len(config["ddpm"]["block_out_channels"])
_attention = config["ddpm"]["attention_levels"]
if max(SCENARIOS) > 0 and _attention and len(_attention) != _levels:
    raise WorkflowError(
        f"config ddpm.attention_levels: {len(_attention)} entries for {_levels} "
        f"ddpm.block_out_channels; give one true/false per level ({_levels})"
    )

if config["ddpm"]["zero_terminal_snr"] and config["ddpm"]["prediction_type"] == "epsilon":
    raise WorkflowError(
        "config ddpm.zero_terminal_snr: a zero-SNR schedule needs prediction_type: "
        "v_prediction (epsilon cannot give the clean image from pure noise); set "
        "zero_terminal_snr: false, or prediction_type: v_prediction"
    )

if config["dataset"]["format"] == "combined":
    if not config["dataset"].get("sources"):
        raise WorkflowError(
            "config dataset.sources: format combined needs a list of sources "
            "({format, root, birads}); see README, Data sets"
        )
    for _i, _source in enumerate(config["dataset"]["sources"]):
        if not os.path.exists(_source["root"]):
            raise WorkflowError(
                f"config dataset.sources[{_i}].root: {_source['root']} does not exist; point it "
                f"at the {_source['format']} data set as downloaded"
            )
elif not PHANTOM and not os.path.exists(DATA_ROOT):
    raise WorkflowError(
        f"config dataset.root: {DATA_ROOT} does not exist; point it at the "
        f"{config['dataset']['format']} data set as downloaded"
    )

from mammosynth.config import pretrained_file
from mammosynth.ddpm import n_shards
from mammosynth.report.captions import CAPTIONS as FIGURE_CAPTIONS

# Only in the main process: every cluster job parses this file again, and importing timm (and
# torch) costs seconds per job.
if workflow.is_main_process:
    import difflib
    import mammosynth.classify  # registers the timm model nasnetamobile
    import timm

    for _arch in ARCHS:
        if not timm.is_model(_arch):
            _close = difflib.get_close_matches(_arch, timm.list_models(), n=1)
            raise WorkflowError(
                f"config classifier.archs: {_arch!r} is not a timm model name; "
                + (f"did you mean {_close[0]!r}?" if _close else "see timm.list_models()")
            )

try:
    PRETRAINED = {
        a: pretrained_file(config["classifier"]["pretrained"], a, len(ARCHS)) for a in ARCHS
    }
except UserError as e:
    raise WorkflowError(str(e)) from None


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
    arm="synthonly|synth|dup|aug|real",
    arch=r"[A-Za-z0-9_.\-]+",
    ckpt="last|best",


def per_label(n):
    return int(n) // len(LABELS)


def augmented_per_label():
    """Augmented copies made per label and split: enough for the largest aug{n}."""
    return per_label(max(SCENARIOS))


def synthetic_per_label():
    """Synthetic images sampled per label and split: enough for the largest scenario."""
    return per_label(max(SCENARIOS))


def shards_for(n):
    return range(n_shards(per_label(n), config["sampling"]["shard_size"]))


def ddpm_labels(wildcards):
    """The labels a DDPM folder's model learns: its own, or every label (conditioning class)."""
    return LABELS if wildcards.model == CLASS_MODEL else [wildcards.model]


def ddpm_seed(wildcards):
    model = (LABELS + [CLASS_MODEL]).index(wildcards.model)
    return config["seed"] + 1000 * split_seed(wildcards.split) + model


def ddpm_model(wildcards):
    """The DDPM folder that draws a label's synthetic images."""
    model = wildcards.label if CLASS_MODEL not in DDPM_MODELS else CLASS_MODEL
    return f"results/ddpm/split{wildcards.split}/{model}"


def label_fidelity_classifier(wildcards):
    """The real-only (scenario 0) classifier of the split, first arch: the realism verdict's
    judge of label fidelity and its feature space; split "all" (protocol paper) borrows the
    first split's."""
    split = SPLITS[0] if wildcards.split == "all" else wildcards.split
    folder = f"results/classifier/{ARCHS[0]}/synth0/split{split}"
    return {"classifier": f"{folder}/best.safetensors", "composition": f"{folder}/composition.csv"}


def ddpm_split(split):
    """The split whose DDPMs feed a classifier split's scenarios."""
    return "all" if PAPER else split


def split_seed(split):
    """A seed offset per split id; -1 for "all" (protocol paper's one DDPM per label)."""
    return -1 if split == "all" else int(split)


def repool(wildcards):
    """protocol paper: re-split real + synthetic at random, as paper 000 did; else None."""
    if not PAPER:
        return None
    return dict(
        test_fraction=config["splits"]["test_fraction"],
        val_fraction=config["splits"]["val_fraction"],
        seed=config["seed"] + int(wildcards.split),
    )


def arm_inputs(wildcards):
    """What arm{n} of a split adds to its real images: synthetic shards (synth, synthonly),
    augmented copies (aug), nothing (dup, real: the split's own images)."""
    n = int(wildcards.n)
    if wildcards.arm in ("synth", "synthonly") and n:
        return {
            label: expand(
                "results/synthetic/split{split}/{label}/shard{shard}",
                split=ddpm_split(wildcards.split),
                label=label,
                shard=shards_for(n),
            )
            for label in LABELS
        }
    if wildcards.arm == "aug":
        return {
            "augmented": expand(
                "results/augmented/split{split}/{label}", split=wildcards.split, label=LABELS
            )
        }
    return {}


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
    return expand("results/quality/split{split}/{label}.json", split=DDPM_SPLITS, label=LABELS)


# The arms (README "Is it the synthetic images?"): scenarios synth{n}, the control arms at every
# non-zero n, the real-data learning curve real{p}.
ARMS = (
    [("synth", n) for n in SCENARIOS]
    + [(arm, n) for arm in CONTROLS for n in SCENARIOS if n]
    + [("real", p) for p in REAL_FRACTIONS]
)

# One evaluation per arch x arm x split x checkpoint: the report's rows.
GRID = [
    dict(arch=a, arm=arm, n=n, split=s, ckpt=c)
    for a in ARCHS
    for arm, n in ARMS
    for s in SPLITS
    for c in CHECKPOINTS
]


# One model per arch x arm x split; composition.csv lists the images it saw.
MODELS = [
    dict(arch=a, arm=arm, n=n, split=s, ddpm_split=ddpm_split(s))
    for a in ARCHS
    for arm, n in ARMS
    for s in SPLITS
]


def ddpm_split_files():
    """The split files the DDPMs trained on (for the report's leakage checks)."""
    if max(SCENARIOS) == 0:
        return []
    return expand("results/splits/split{split}.csv", split=DDPM_SPLITS)


def sample_shards():
    """The first synthetic shard per label of the first DDPM split: the report's sample grids."""
    if max(SCENARIOS) == 0:
        return []
    return expand(
        "results/synthetic/split{split}/{label}/shard0", split=DDPM_SPLITS[0], label=LABELS
    )


def evaluations(kind="eval", ext="json"):
    """One file per GRID entry: eval_{ckpt}.json, or (kind="predictions", ext="csv") the
    predictions."""
    return [
        f"results/classifier/{g['arch']}/{g['arm']}{g['n']}/split{g['split']}/"
        f"{kind}_{g['ckpt']}.{ext}"
        for g in GRID
    ]


def model_files(name):
    """One file per model (MODELS order): composition.csv, history.csv, ..."""
    return [
        f"results/classifier/{m['arch']}/{m['arm']}{m['n']}/split{m['split']}/{name}"
        for m in MODELS
    ]
