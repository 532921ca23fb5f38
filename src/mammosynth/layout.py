"""Where every artifact of the pipeline lives, and which seed makes it: defined here once.

Light on purpose (no torch, no pandas): the Snakefile imports it at every parse. Each path
function called without arguments gives the rule's template (`{split}`, `{label}`, ... left as
Snakemake wildcards); called with values it gives one file. Rules, scripts, the report and the
tests build paths here; nothing parses a path back.

Seeds: every random draw of the pipeline starts from `config seed` through one function below,
so two stages that must draw alike (protocol paper's split file and its re-split of real +
synthetic images) cannot drift apart.
"""

from __future__ import annotations

import hashlib

RESULTS = "results"

# The stages, in DAG order; `stage_of` maps a rule or a file to one (the config check runs the
# checks of the stages a run reaches: README "Config checks").
STAGES = ("data", "ddpm", "classify", "report")
RULE_STAGES = {
    "phantom": "data", "ingest": "data", "preprocess": "data", "split": "data",
    "train_ddpm": "ddpm", "sample_shard": "ddpm",
    "augment": "classify", "train_classifier": "classify", "evaluate": "classify",
    "quality": "report", "report": "report", "all": "report",
}
_FOLDER_STAGES = {
    "data": "data", "splits": "data", "ddpm": "ddpm", "synthetic": "ddpm",
    "augmented": "classify", "classifier": "classify", "quality": "report", "report": "report",
}


def stage_of(target: str) -> str:
    """The stage of a rule name or a results path; "report" (all checks) for anything else."""
    if target in RULE_STAGES:
        return RULE_STAGES[target]
    parts = target.replace("\\", "/").split("/")
    if RESULTS in parts and parts.index(RESULTS) + 1 < len(parts):
        return _FOLDER_STAGES.get(parts[parts.index(RESULTS) + 1], "report")
    return "report"


def last_stage(targets, until=()) -> str:
    """The furthest stage a run reaches: of its --until targets if any, else of its targets
    (none: the default target, the report)."""
    chosen = list(until) or list(targets)
    if not chosen:
        return STAGES[-1]
    return max((stage_of(t) for t in chosen), key=STAGES.index)


# Options whose values name rules or files but are not targets (their values are skipped).
_NOT_TARGETS = {"--forcerun", "-R", "--forcerules", "--omit-from", "-O", "--allowed-rules",
                "--prioritize", "-P", "--batch", "--configfile", "--configfiles", "--config",
                "-C", "--directory", "-d", "--snakefile", "-s", "--profile",
                "--workflow-profile", "--set-threads", "--set-resources", "--cores", "-c",
                "--jobs", "-j", "--report"}


def last_stage_of_command(argv: list[str]) -> str:
    """last_stage() of a Snakemake command line (Snakemake parses the Snakefile before it hands
    the run's targets to the workflow, so they are read here): its --until values and targets,
    a cluster job's --target-jobs (`rule:wildcards`) included."""
    until, targets, option = [], [], None
    for token in argv:
        if token.startswith("-"):
            option = token.split("=", 1)[0]
            if "=" in token and option in ("--until", "-U"):
                until.append(token.split("=", 1)[1])
            continue
        if option in ("--until", "-U"):
            until.append(token)
        elif option == "--target-jobs":
            targets.append(token.split(":", 1)[0])
        elif option not in _NOT_TARGETS:
            targets.append(token)
            option = None  # a flag's positional neighbour is a target
    return last_stage(targets, until)


# -- data -----------------------------------------------------------------------------------------

def ingest() -> str:
    return f"{RESULTS}/data/ingest.csv"


def manifest() -> str:
    return f"{RESULTS}/data/manifest.csv"


def images() -> str:
    """The preprocessed PNGs (the manifest's `path` column points into it)."""
    return f"{RESULTS}/data/images"


def split(split="{split}") -> str:
    return f"{RESULTS}/splits/split{split}.csv"


# -- ddpm -----------------------------------------------------------------------------------------

def ddpm(split="{split}", model="{model}") -> str:
    """A trained DDPM pipeline folder (diffusers save_pretrained)."""
    return f"{RESULTS}/ddpm/split{split}/{model}"


def ddpm_resume(split="{split}", model="{model}") -> str:
    """The DDPM trainer's resume state (runtime.TrainerState), deleted when training ends."""
    return f"{ddpm(split, model)}.resume.pt"


def shard(split="{split}", label="{label}", shard="{shard}") -> str:
    """A folder of synthetic PNGs and their index.csv."""
    return f"{RESULTS}/synthetic/split{split}/{label}/shard{shard}"


def quality(split="{split}", label="{label}", figure: str | None = None) -> str:
    """The realism audit of one split and label: its JSON, or `figure` "nn" / "pairs"."""
    stem = f"{RESULTS}/quality/split{split}/{label}"
    return f"{stem}_{figure}.png" if figure else f"{stem}.json"



# -- classify -------------------------------------------------------------------------------------

def augmented(split="{split}", label="{label}") -> str:
    """A folder of augmented copies of real training images and their index.csv (arm aug)."""
    return f"{RESULTS}/augmented/split{split}/{label}"


# What a classifier adds to its split's real training images (config/README.md, "Arms"): its
# folder is {arm}{n}.
ARMS = ("synth", "dup", "aug", "synthonly", "real")


def model_key(arch="{arch}", arm="{arm}", n="{n}", split="{split}") -> str:
    """One classifier: arch x arm{n} x split; its folder, log and benchmark names."""
    return f"{arch}/{arm}{n}/split{split}"


def classifier(arch="{arch}", arm="{arm}", n="{n}", split="{split}", file: str = "") -> str:
    """A classifier's folder, or `file` in it (CLASSIFIER_FILES)."""
    folder = f"{RESULTS}/classifier/{model_key(arch, arm, n, split)}"
    return f"{folder}/{file}" if file else folder


def weights_file(ckpt="{ckpt}") -> str:
    """The weights a classifier ends with (`last`) or its lowest monitored loss (`best`)."""
    return f"{ckpt}.safetensors"


def eval_file(ckpt="{ckpt}") -> str:
    return f"eval_{ckpt}.json"


def predictions_file(ckpt="{ckpt}") -> str:
    return f"predictions_{ckpt}.csv"


HISTORY = "history.csv"
COMPOSITION = "composition.csv"
CLASSIFIER_RESUME = "resume.pt"


# -- report ---------------------------------------------------------------------------------------

def report() -> str:
    return f"{RESULTS}/report"


def log(rule: str, output: str = "") -> str:
    """logs/<rule>.log, or (a rule with wildcards) its output's path below the stage folder:
    log("train_ddpm", ddpm()) -> logs/train_ddpm/split{split}/{model}.log."""
    return f"logs/{rule}{_job_key(output)}.log"


def benchmark(rule: str, output: str = "") -> str:
    return f"benchmarks/{rule}{_job_key(output)}.tsv"


def _job_key(output: str) -> str:
    if not output:
        return ""
    if not output.startswith(f"{RESULTS}/") or output.count("/") < 2:
        raise ValueError(f"log/benchmark: {output!r} is not a path under {RESULTS}/<stage>/")
    key = output.split("/", 2)[2]  # below results/<stage folder>/
    stem, dot, suffix = key.rpartition(".")
    return "/" + (stem if dot and "/" not in suffix else key)


# -- seeds ----------------------------------------------------------------------------------------

def split_offset(split) -> int:
    """A seed offset per split id; -1 for "all" (protocol paper's one DDPM per label)."""
    return -1 if str(split) == "all" else int(split)


def split_seed(seed: int, split) -> int:
    """Split `split`'s seed: its holdout test draw (splits.make_split), protocol paper's random
    split *and* the classifier's re-split of real + synthetic images (which must be equal for
    the paper protocol to reproduce its split file), the classifier's initialisation and batch
    order, and the control arms' draws (dup, aug, real{p})."""
    return seed + split_offset(split)


def val_seed(seed: int, split) -> int:
    """The validation draw of holdout and k-fold splits (kept apart from the test draw)."""
    return split_seed(seed, split) + 10_000


def ddpm_seed(seed: int, split, model_index: int) -> int:
    """The DDPM of `split` and model number `model_index` (its label's index, or the number of
    labels for the one class-conditional model)."""
    return seed + 1000 * split_offset(split) + model_index


def image_seed(seed: int, split, label: str, index: int) -> int:
    """Synthetic image `index` of (split, label): its starting noise, whatever the shard."""
    digest = hashlib.sha256(f"{seed}/{split}/{label}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def copy_seed(seed: int, *keys) -> int:
    """A 63-bit seed from (seed, *keys), e.g. an augmented copy's (label seed, copy index)."""
    text = "/".join(map(str, (seed, "augment", *keys)))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)
