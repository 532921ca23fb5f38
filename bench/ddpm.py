"""DDPM stage benchmark: one JSON object on stdout, progress on stderr. Not a timed test.

Everything is read at run time from config/config.yaml (the demo), filled with the defaults of
workflow/schemas/config.schema.yaml; the data are the demo's own (the phantom, ingested,
preprocessed to preprocess.size and split like the workflow does, split 0), built in a temporary
folder with the package alone (no Snakemake). What each figure means:

trainer_speed (--part trainer)
    Training images/s of mammosynth's `train_ddpm` against a plain loop doing the same math per
    step in the style of diffusers' examples/unconditional_image_generation/train_unconditional.py
    (batch draw, `add_noise`, the same target - v or epsilon - and min-SNR weights from
    `loss_weights`, backward, `clip_grad_norm_`, AdamW step, LR-schedule step, `zero_grad`, EMA
    step, `loss.item()`; fp32, torch's default AdamW, no channels_last, no resume state), on random
    images, for two setups: `demo` (config/config.yaml's U-Net, image size, batch size and
    conditioning) and `train_unconditional` (the U-Net that script builds - block_out_channels
    128,128,256,256,512,512, two layers per block, attention at the fifth level - at 64 px, one
    channel, batch 8, with its lr / warm-up / weight decay / EMA numbers and the demo's
    target and weighting). `--model paper` times instead the 256 px, 114 M-parameter U-Net of
    config/presets/sutjiadi2025.yaml (needs a GPU). Fairness on a busy machine: each trainer runs
    `warmup` steps that are not timed, then `timed` steps; the two alternate (ours first in odd
    rounds, plain first in even ones) for `--rounds` rounds; every round is reported and the
    figure is the median over rounds of ours / plain. Our images/s is train_ddpm's own
    history.csv `images_per_s` over the logged intervals after the warm-up (its timer, which
    covers the steps only: no data loading, model building or saving), the plain loop's is timed
    the same way around its timed steps; `ours_call_seconds` is the wall time of each whole
    train_ddpm call, for reference. Also the model FLOPs of one training step
    (torch.utils.flop_counter) and MFU: achieved FLOP/s over this machine's measured matmul peak
    (fp32 on a CPU, bf16 on CUDA).

steps_to_green (--part green)
    The optimisation steps a recipe needs before every label's synthetic images get a green
    realism verdict. Recipes: `before` (BEFORE below: the demo as it was at main 1ee764f) and
    `after` (config/config.yaml now). For each budget (ddpm.steps) the recipe's model(s) train on
    split 0's training images (one model per label, or one class-conditional model), 32 images
    per label are drawn with the recipe's sampler (`sample_shard`, the pipeline's own code:
    post-processed to preprocess.size), and `quality.audit` judges them against the label's real
    training images with the schema's default verdict thresholds, the label's held-out real
    images (val + test) as the floor, and a scenario-0 (real-only) classifier of split 0 trained
    with the demo's classifier config for label fidelity and precision / coverage. Recorded per
    budget: the verdict per label, the c2st AUC with its chance range, every check's value and
    colour, and the training seconds (wall time of the train_ddpm calls, summed over a
    recipe's models; sample grids off). `steps_to_green` is the smallest budget at which every
    label is green (null with a note when none is), and `ratio_before_over_after` compares the
    two recipes' steps and training seconds there.

samplers (--part samplers)
    On the `after` model at its largest budget, each sampler setting (default ddpm 1000, ddim 50,
    ddim 100, dpmsolver++ 25, dpmsolver++ 50; the first is the reference) draws 32 images per
    label from the same seeds; reported: images/s (wall time of the `sample_shard` calls,
    post-processing and PNG writing included), the speed-up over the reference, and the realism
    numbers of the same audit. A sampler `matched` the reference when, for every label, it is no
    further from the real images than the reference beyond a tolerance (one-sided: c2st AUC at
    most half the reference's chance range higher, image statistics within the tolerances below,
    a verdict no worse; see `match`) - a sampler closer to the real images than 1000 ancestral
    steps matches; `fastest_matched` names the fastest sampler that matched.

Also: device, threads, load average at start, the configs used, peak memory (max RSS of this
process on a CPU; max allocated on CUDA) and total seconds.

Run (from the repository root):

    .venv/bin/python bench/ddpm.py                # all three parts: ~45 min on a 2-core CPU
    .venv/bin/python bench/ddpm.py --quick        # smoke run: tiny budgets, ~2.5 min
    .venv/bin/python bench/ddpm.py --part trainer # one part: trainer | green | samplers | all
    .venv/bin/python bench/ddpm.py --model paper --part trainer   # GPU: the 114 M U-Net
    .venv/bin/python bench/ddpm.py --out bench-ddpm.json          # also write the JSON

Torch runs one thread on a CPU unless --threads says otherwise: rule train_ddpm runs with one in
the local profile, and on a 2-core machine shared with other jobs two threads made a training
step of the demo's U-Net 20x slower (OpenMP threads spinning while the other is descheduled).
At one thread the parts take roughly: trainer ~7 min (the 114 M-parameter U-Net: ~9 s a step),
green ~30 min (before: 2 labels x 3500 steps of batch 16 in all, after: 1750 steps of batch 32;
each audit ~15 s), samplers ~9 min (ddpm 1000 dominates).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

import mammosynth  # noqa: F401  (torchvision fix before diffusers)
import torch
import torch.nn.functional as F

from mammosynth import layout
from mammosynth.config import validate
from mammosynth.ddpm.sample import SAMPLER_SETTINGS, read_shards, sample_shard
from mammosynth.ddpm.train import build_scheduler, build_unet, load_images, loss_weights, train_ddpm
from mammosynth.imaging.png import write_png
from mammosynth.runtime import device

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "config.yaml"
PRESET = ROOT / "config" / "presets" / "sutjiadi2025.yaml"
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
log = logging.getLogger("bench.ddpm")

# The "before" recipe: main at 1ee764f, config/config.yaml - its ddpm and sampling sections as
# they were, plus what train_ddpm then did without a config key (an epsilon target on the linear
# schedule as is, plain MSE, EMA warm-up power 2/3 - diffusers' default -, one model per label).
# Keys it left out take the schema's defaults (timesteps 1000, linear betas, grad_clip 1, no
# weight decay, sampling.batch_size 16), as they did then. It runs through today's code: today's
# samplers' timestep spacing (SAMPLER_SETTINGS) and post-processing apply to both recipes.
BEFORE = {
    "ddpm": {
        "conditioning": "per_label", "prediction_type": "epsilon", "zero_terminal_snr": False,
        "snr_gamma": None, "ema_power": 2 / 3,
        "image_size": 32, "block_out_channels": [16, 32, 64],
        "attention_levels": [False, False, True], "layers_per_block": 1,
        "steps": 250, "batch_size": 16, "lr": 1.0e-3, "warmup_steps": 30, "ema_decay": 0.99,
        "log_every": 25, "resume_every": 100,
    },
    "sampling": {"scheduler": "ddim", "steps": 20, "shard_size": 16},
}
BUDGETS = {"before": [500, 1000, 2000], "after": [250, 500, 1000]}
SAMPLERS = ["ddpm:1000", "ddim:50", "ddim:100", "dpmsolver++:25", "dpmsolver++:50"]
IMAGES_PER_LABEL = 32

# When a sampler "matches" the reference sampler (DDPM 1000 steps), per label. The c2st AUC must
# lie within half the width of the reference's chance range [null_low, null_high] of the
# reference's AUC (that range centred on the reference: a difference chance alone gives at these
# set sizes). The image statistics must stay well inside one green band of the reference's value:
# the verdict's green bands are 0.05 for intensity_w1 and background_gap and a factor 1.5 for
# noise_ratio, so these tolerances are 40% of the first two and a third of the last (in log).
# And the sampler's verdict must be no worse than the reference's.
W1_TOLERANCE = 0.02           # intensity_w1 at most the reference's + 0.02
BACKGROUND_TOLERANCE = 0.02   # background_gap at most the reference's + 0.02
NOISE_FACTOR = 1.15           # noise_ratio at most a factor 1.15 further from 1 than the reference's
COLOURS = ("green", "amber", "red")

# diffusers' train_unconditional.py: its UNet2DModel (at --resolution 64, one channel here), its
# --train_batch_size default 8 and its optimiser / EMA defaults.
TRAIN_UNCONDITIONAL = {
    "image_size": 64, "block_out_channels": [128, 128, 256, 256, 512, 512],
    "attention_levels": [False, False, False, False, True, False], "layers_per_block": 2,
    "batch_size": 8, "conditioning": "per_label", "dropout": 0.0, "grad_accum": 1,
    "lr": 1.0e-4, "warmup_steps": 500, "weight_decay": 1.0e-6, "ema_decay": 0.9999,
    "ema_power": 0.75,
}
# (warm-up steps not timed, timed steps) per trainer and round; timed is a multiple of warm-up
# (train_ddpm logs every `warm-up` steps, and its history gives the timed intervals).
TRAINER_STEPS = {"demo": (10, 60), "train_unconditional": (1, 3), "paper": (10, 50)}
QUICK_TRAINER_STEPS = {"demo": (5, 10), "train_unconditional": (1, 1), "paper": (5, 10)}
QUICK = {"budgets": {"before": [20], "after": [20]}, "images": 8,
         "samplers": ["ddpm:20", "ddim:10"], "rounds": 1, "classifier_epochs": 1}


# --- configs ---------------------------------------------------------------------------------

def load_config(path: Path) -> dict:
    return validate(yaml.safe_load(path.read_text()), SCHEMA)


def recipes(demo: dict) -> dict:
    before = validate(copy.deepcopy(BEFORE), SCHEMA)
    return {"before": {"ddpm": before["ddpm"], "sampling": before["sampling"]},
            "after": {"ddpm": copy.deepcopy(demo["ddpm"]),
                      "sampling": copy.deepcopy(demo["sampling"])}}


def parse_samplers(specs: list[str]) -> list[tuple[str, int]]:
    out = []
    for spec in specs:
        name, _, steps = spec.rpartition(":")
        if not name or not steps.isdigit():
            raise SystemExit(f"--samplers: {spec!r} is not NAME:STEPS (e.g. ddim:50)")
        out.append((name, int(steps)))
    return out


# --- helpers ---------------------------------------------------------------------------------

def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def clean(value):
    """JSON-ready: floats rounded to 4 decimals, NaN/inf -> None, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def peak_memory_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "cpu"


# --- data: the demo's, split 0, and its scenario-0 classifier --------------------------------

class Data:
    """Split 0 of the demo's data: paths per label, and the real-only classifier."""

    def __init__(self, demo: dict, work: Path, classifier_epochs: int | None):
        import pandas as pd

        from mammosynth.classify.data import compose
        from mammosynth.classify.train import train_classifier
        from mammosynth.datasets import source_roots
        from mammosynth.datasets.ingest import ingest
        from mammosynth.datasets.phantom import write_phantom
        from mammosynth.imaging.pipeline import preprocess_table
        from mammosynth.labels import label_names
        from mammosynth.splits import images_of, make_split

        start = time.perf_counter()
        root = work / "phantom"
        write_phantom(root, seed=demo["seed"], **demo["phantom"])
        dataset = {**demo["dataset"], "format": "phantom", "root": str(root)}
        table = ingest(dataset, demo["labels"])
        self.size = demo["preprocess"]["size"]
        manifest = preprocess_table(table, source_roots(dataset), work / "images", size=self.size, workers=1,
                                    on_bad_image=dataset["on_bad_image"])
        # through CSV and back, as the workflow's scripts read them
        manifest.to_csv(work / "manifest.csv", index=False)
        manifest = pd.read_csv(work / "manifest.csv", dtype=str, keep_default_na=False)
        s = demo["splits"]
        split = make_split(manifest, 0, seed=demo["seed"], test_fraction=s["test_fraction"],
                           val_fraction=s["val_fraction"],
                           official_test=bool(s.get("official_test", False)))
        split.to_csv(work / "split0.csv", index=False)
        split = pd.read_csv(work / "split0.csv", dtype=str)
        self.labels = label_names(demo["labels"])
        self.train = {k: images_of(manifest, split, "train", k) for k in self.labels}
        self.held_out = {k: images_of(manifest, split, "val", k)
                         + images_of(manifest, split, "test", k) for k in self.labels}
        self.data_seconds = time.perf_counter() - start

        start = time.perf_counter()
        self.classifier_cfg = copy.deepcopy(demo["classifier"])
        if classifier_epochs:
            self.classifier_cfg["epochs"] = classifier_epochs
        arch = self.classifier_cfg["archs"][0]
        subsets = compose(manifest, split, {}, 0, self.labels)
        folder = work / "classifier" / arch / "synth0" / "split0"
        log.info("scenario-0 classifier %s, %d epochs", arch, self.classifier_cfg["epochs"])
        train_classifier(subsets, last=folder / layout.weights_file("last"),
                         best=folder / layout.weights_file("best"),
                         history=folder / layout.HISTORY,
                         resume=folder / layout.CLASSIFIER_RESUME, arch=arch, labels=self.labels,
                         cfg=self.classifier_cfg, seed=demo["seed"] + 0)
        self.classifier = str(folder / layout.weights_file("best"))
        test = subsets["test"]
        self.test = {k: test[(test["label"] == k) & ~test["synthetic"]]["path"].tolist()
                     for k in self.labels}
        self.classifier_seconds = time.perf_counter() - start

    def describe(self) -> dict:
        return {"split": 0, "preprocess_size": self.size,
                "train": {k: len(v) for k, v in self.train.items()},
                "held_out": {k: len(v) for k, v in self.held_out.items()},
                "test": {k: len(v) for k, v in self.test.items()},
                "build_seconds": self.data_seconds,
                "classifier_seconds": self.classifier_seconds}


# --- training, sampling and auditing one recipe ----------------------------------------------

def train_recipe(recipe: dict, steps: int, data: Data, out: Path, seed: int) -> dict:
    """Train the recipe's model(s) for `steps` on split 0, as rule train_ddpm does (seeds as
    common.smk's ddpm_seed for split 0). -> {models: {label: pipeline dir}, seconds, ...}."""
    cfg = dict(recipe["ddpm"], steps=steps, grid_images=0)
    labels = data.labels
    if cfg["conditioning"] == "class":
        jobs = {"all-labels": ({k: data.train[k] for k in labels}, seed + len(labels))}
    else:
        jobs = {k: ({k: data.train[k]}, seed + labels.index(k)) for k in labels}
    seconds = {}
    out.mkdir(parents=True, exist_ok=True)  # the resume files sit beside the model folders
    for name, (images, model_seed) in jobs.items():
        log.info("train_ddpm %s: %d steps", out / name, steps)
        start = time.perf_counter()
        train_ddpm(images, out / name, cfg, seed=model_seed, resume=out / f"{name}.resume.pt",
                   sampling=recipe["sampling"], size=data.size)
        seconds[name] = time.perf_counter() - start
    models = {k: out / ("all-labels" if "all-labels" in jobs else k) for k in labels}
    n_models = len(jobs)
    return {"models": models, "seconds": sum(seconds.values()), "seconds_per_model": seconds,
            "images_seen": steps * cfg["batch_size"] * cfg["grad_accum"] * n_models}


def draw(model: Path, out: Path, label: str, n: int, scheduler: str, steps: int,
         sampling: dict, data: Data, seed: int) -> tuple[list[str], float]:
    """n images of `label` from the pipeline at `model`, as rule sample_shard draws them
    (split 0, images 0..n-1): -> (png paths, seconds)."""
    start = time.perf_counter()
    sample_shard(model, out, seed=seed, split=0, label=label, start=0, count=n,
                 scheduler=scheduler, steps=steps, batch_size=sampling["batch_size"],
                 guidance_scale=sampling["guidance_scale"], size=data.size)
    seconds = time.perf_counter() - start
    return [str(p) for _, p in read_shards([out])], seconds


def judge(data: Data, label: str, synthetic: list[str], quality: dict,
          thresholds: dict) -> dict:
    """quality.audit as rule quality runs it, reduced to the realism numbers."""
    from mammosynth.quality import audit

    result = audit(data.train[label], synthetic, size=quality["size"],
                   near_copy_threshold=quality["near_copy_threshold"], fid=quality["fid"],
                   inception_weights=quality["inception_weights"],
                   held_out_paths=data.held_out[label], test_paths=data.test[label],
                   classifier=data.classifier, label=label, thresholds=thresholds)
    r = result["realism"]
    image, prdc, fidelity = r["image"], r.get("prdc") or {}, r.get("label_fidelity") or {}
    c2st = r.get("c2st") or {}
    reference = r.get("reference_c2st") or {}
    return {
        "verdict": r["verdict"],
        "c2st": {k: c2st.get(k) for k in ("auc", "p_value", "null_low", "null_high")},
        "intensity_w1": image["intensity_w1"], "background_gap": image["background_gap"],
        "noise_ratio": image["noise_ratio"], "precision": prdc.get("precision"),
        "coverage": prdc.get("coverage"), "label_fidelity": fidelity.get("fraction"),
        "label_fidelity_real_recall": fidelity.get("real_recall"),
        "checks": {c["check"]: {"value": c["value"], "status": c["status"]}
                   for c in r["checks"]},
        "floor": {"verdict": r["reference"]["verdict"], "c2st_auc": reference.get("auc"),
                  "checks": {c["check"]: {"value": c["value"], "status": c["status"]}
                             for c in r["reference"]["checks"]}},
    }


# --- part 2: steps to green ------------------------------------------------------------------

def steps_to_green(recs: dict, budgets: dict, data: Data, demo: dict, thresholds: dict,
                   n_images: int, work: Path, trained: dict, stop_at_green: bool) -> dict:
    out, floor = {}, {}
    for name in ("before", "after"):
        recipe, runs = recs[name], []
        sampling = recipe["sampling"]
        for steps in sorted(budgets[name]):
            model_dir = work / "ddpm" / f"{name}-{steps}"
            run = train_recipe(recipe, steps, data, model_dir, demo["seed"])
            trained[(name, steps)] = run
            labels, sample_seconds = {}, 0.0
            for label in data.labels:
                paths, seconds = draw(run["models"][label],
                                      work / "synthetic" / f"{name}-{steps}" / label, label,
                                      n_images, sampling["scheduler"], sampling["steps"],
                                      sampling, data, demo["seed"])
                sample_seconds += seconds
                labels[label] = judge(data, label, paths, demo["quality"], thresholds)
                floor.setdefault(label, labels[label].pop("floor"))
                log.info("%s %d steps, %s: %s (c2st %.3f)", name, steps, label,
                         labels[label]["verdict"], labels[label]["c2st"]["auc"] or float("nan"))
            green = all(v["verdict"] == "green" for v in labels.values())
            runs.append({"steps": steps, "train_seconds": run["seconds"],
                         "train_seconds_per_model": run["seconds_per_model"],
                         "images_seen": run["images_seen"], "sample_seconds": sample_seconds,
                         "all_green": green, "labels": labels})
            if green and stop_at_green:
                break
        first = next((r for r in runs if r["all_green"]), None)
        out[name] = {
            "sampler": f"{sampling['scheduler']} {sampling['steps']}",
            "budgets": runs,
            "steps_to_green": first and first["steps"],
            "train_seconds_to_green": first and first["train_seconds"],
            "note": None if first else "not green within the budgets tried",
        }
    out["floor"] = {"what": "the label's held-out real images (val + test) audited as if "
                            "synthetic: what a perfect generator would score", **floor}
    b, a = out["before"], out["after"]
    out["ratio_before_over_after"] = (
        {"steps": b["steps_to_green"] / a["steps_to_green"],
         "train_seconds": b["train_seconds_to_green"] / a["train_seconds_to_green"]}
        if b["steps_to_green"] and a["steps_to_green"] else
        {"steps": None, "train_seconds": None,
         "note": "needs both recipes green within their budgets"})
    return out


# --- part 3: samplers ------------------------------------------------------------------------

def match(candidate: dict, reference: dict) -> list[str]:
    """Why `candidate` (per label realism) is worse than `reference`; [] when it matches.

    Matched = no further from the real images than the reference on any measure, beyond a
    tolerance: c2st AUC at most the reference's plus half its chance range; intensity W1 and
    background gap at most the reference's plus W1_TOLERANCE / BACKGROUND_TOLERANCE; the noise
    ratio at most NOISE_FACTOR further from 1 (in log terms) than the reference's; a verdict no
    worse. One-sided on purpose: a fast sampler that lands closer to the real images than
    1000 ancestral steps must not fail for being different."""
    reasons = []
    for label, ref in reference.items():
        got = candidate[label]
        a, r = got["c2st"], ref["c2st"]
        if None in (a["auc"], r["auc"], r["null_low"], r["null_high"]):
            reasons.append(f"{label}: c2st not computed")
        else:
            half = (r["null_high"] - r["null_low"]) / 2
            if a["auc"] > r["auc"] + half:
                reasons.append(f"{label}: c2st auc {a['auc']:.3f} vs {r['auc']:.3f}, more than "
                               f"{half:.3f} (half the reference's chance range) higher")
        for key, tolerance in (("intensity_w1", W1_TOLERANCE),
                               ("background_gap", BACKGROUND_TOLERANCE)):
            if got[key] > ref[key] + tolerance:
                reasons.append(f"{label}: {key} {got[key]:.3f} vs {ref[key]:.3f}, more than "
                               f"{tolerance} higher")
        off, ref_off = (abs(math.log(x)) if x and x > 0 else math.inf
                        for x in (got["noise_ratio"], ref["noise_ratio"]))
        if off > ref_off + math.log(NOISE_FACTOR):
            reasons.append(f"{label}: noise_ratio {got['noise_ratio']:.3f} vs "
                           f"{ref['noise_ratio']:.3f}, more than a factor {NOISE_FACTOR} further "
                           "from 1")
        rank = {c: i for i, c in enumerate(COLOURS)}
        if rank.get(got["verdict"], len(COLOURS)) > rank.get(ref["verdict"], len(COLOURS)):
            reasons.append(f"{label}: verdict {got['verdict']}, worse than {ref['verdict']}")
    return reasons


def samplers(recs: dict, budgets: dict, specs: list[tuple[str, int]], data: Data, demo: dict,
             thresholds: dict, n_images: int, work: Path, trained: dict) -> dict:
    steps = max(budgets["after"])
    run = trained.get(("after", steps))
    folder = work / "ddpm" / f"after-{steps}"
    if run is None and (folder / "all-labels" / "model_index.json").exists():
        # an earlier `--part green` with the same --work trained it (class conditioning)
        run = {"models": {k: folder / "all-labels" for k in data.labels}}
    if run is None:
        run = train_recipe(recs["after"], steps, data, folder, demo["seed"])
    sampling = recs["after"]["sampling"]
    rows = []
    for name, n_steps in specs:
        key = f"{name}-{n_steps}"
        labels, seconds = {}, 0.0
        for label in data.labels:
            paths, took = draw(run["models"][label], work / "samplers" / key / label, label,
                               n_images, name, n_steps, sampling, data, demo["seed"])
            seconds += took
            labels[label] = judge(data, label, paths, demo["quality"], thresholds)
            labels[label].pop("floor")
            labels[label]["checks"] = {k: v["status"] for k, v in labels[label]["checks"].items()}
        n = n_images * len(data.labels)
        log.info("sampler %s: %.2f images/s, %s", key, n / seconds,
                 {k: v["verdict"] for k, v in labels.items()})
        rows.append({"sampler": key, "scheduler": name, "steps": n_steps, "images": n,
                     "seconds": seconds, "images_per_s": n / seconds, "labels": labels})
    reference = rows[0]
    for row in rows:
        row["speedup_vs_reference"] = row["images_per_s"] / reference["images_per_s"]
        reasons = [] if row is reference else match(row["labels"], reference["labels"])
        row["matched"] = not reasons
        row["reason"] = "; ".join(reasons) or None
    matched = [r for r in rows if r["matched"]]
    fastest = max(matched, key=lambda r: r["images_per_s"])
    return {"model": f"after, {steps} steps", "reference": reference["sampler"],
            "images_per_label": n_images,
            "tolerances": {"rule": "one-sided: no further from the real images than the "
                                    "reference beyond these",
                           "c2st_auc": "half the reference's chance range (null_high - "
                                       "null_low) / 2, per label",
                           "intensity_w1": W1_TOLERANCE, "background_gap": BACKGROUND_TOLERANCE,
                           "noise_ratio_factor": NOISE_FACTOR,
                           "verdict": "no worse than the reference's"},
            "settings": rows, "fastest_matched": fastest["sampler"],
            "fastest_matched_speedup": fastest["speedup_vs_reference"]}


# --- part 1: trainer speed -------------------------------------------------------------------

def plain_loop(data: torch.Tensor, classes: torch.Tensor, cfg: dict, n_classes: int,
               warmup: int, timed: int, dev: torch.device) -> float:
    """train_unconditional.py-style loop, the same math as train_ddpm per step: fp32, no
    channels_last, torch's default AdamW, diffusers' EMAModel defaults. -> images/s over the
    `timed` steps after `warmup`."""
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    unet, scheduler = build_unet(cfg, n_classes).to(dev), build_scheduler(cfg)
    ema = EMAModel(unet.parameters(), decay=cfg["ema_decay"], use_ema_warmup=True,
                   power=cfg["ema_power"], model_cls=type(unet), model_config=unet.config)
    ema.to(dev)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"],
                                  weight_decay=cfg["weight_decay"])
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, cfg["warmup_steps"], warmup + timed)
    v_target = scheduler.config.prediction_type == "v_prediction"
    gamma, batch = cfg.get("snr_gamma"), cfg["batch_size"]
    dropout = cfg.get("label_dropout", 0.0)
    unet.train()
    start = time.perf_counter()
    for step in range(warmup + timed):
        if step == warmup:
            sync(dev)
            start = time.perf_counter()
        index = torch.randint(0, len(data), (batch,))
        clean = data[index].to(dev)
        noise = torch.randn_like(clean)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=dev)
        class_labels = None
        if n_classes:
            drop = torch.rand(batch) < dropout
            class_labels = torch.where(drop, n_classes, classes[index]).to(dev)
        noisy = scheduler.add_noise(clean, noise, t)
        target = scheduler.get_velocity(clean, noise, t) if v_target else noise
        pred = unet(noisy, t, class_labels=class_labels).sample
        per_image = F.mse_loss(pred.float(), target, reduction="none").mean((1, 2, 3))
        weights = loss_weights(scheduler, t, gamma)
        if weights is not None:
            per_image = per_image * weights.to(dev)
        loss = per_image.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg["grad_clip"])
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad()
        ema.step(unet.parameters())
        loss.detach().item()  # train_unconditional logs the loss every step
    sync(dev)
    return timed * batch / (time.perf_counter() - start)


def ours(paths: dict, cfg: dict, warmup: int, timed: int, work: Path) -> tuple[float, float]:
    """train_ddpm for warmup + timed steps -> (images/s over the timed steps from its
    history.csv, wall seconds of the whole call)."""
    import csv

    run_cfg = dict(cfg, steps=warmup + timed, log_every=warmup, resume_every=10**9,
                   grid_images=0)
    out = work / "ours"
    start = time.perf_counter()
    train_ddpm(paths, out, run_cfg, seed=0, resume=work / "ours.resume.pt")
    wall = time.perf_counter() - start
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    images, seconds, previous = 0, 0.0, 0
    per_step = cfg["batch_size"] * cfg.get("grad_accum", 1)
    for row in rows:
        step = int(row["step"])
        if step > warmup:
            n = (step - previous) * per_step
            images += n
            seconds += n / float(row["images_per_s"])
        previous = step
    return images / seconds, wall


def matmul_peak(dev: torch.device) -> float:
    """Measured FLOP/s of a large square matmul (fp32 on a CPU, bf16 on CUDA)."""
    n = 2048 if dev.type == "cpu" else 8192
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
    for _ in range(2):
        a @ b
    sync(dev)
    reps = 5 if dev.type == "cpu" else 50
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(dev)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def step_flops(cfg: dict, n_classes: int, dev: torch.device) -> int:
    """Model FLOPs (forward + backward) of one training step."""
    from torch.utils.flop_counter import FlopCounterMode

    unet = build_unet(cfg, n_classes).to(dev)
    b, s = cfg["batch_size"], cfg["image_size"]
    x = torch.randn(b, 1, s, s, device=dev)
    t = torch.randint(0, cfg["timesteps"], (b,), device=dev)
    labels = torch.zeros(b, dtype=torch.long, device=dev) if n_classes else None
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(unet(x, t, class_labels=labels).sample, x).backward()
    return counter.get_total_flops() * cfg.get("grad_accum", 1)


def trainer_setups(model: str, demo: dict) -> dict:
    if model == "paper":
        paper = load_config(PRESET)["ddpm"]
        return {"paper": paper}
    return {"demo": copy.deepcopy(demo["ddpm"]),
            "train_unconditional": dict(copy.deepcopy(demo["ddpm"]), **TRAIN_UNCONDITIONAL)}


def trainer_speed(model: str, demo: dict, labels: list[str], rounds: int, steps: dict,
                  work: Path, dev: torch.device) -> dict:
    out = {"ours_measured": "train_ddpm's history.csv images_per_s over the intervals after the "
                            "warm-up steps (its own timer: steps only)",
           "plain_measured": "perf_counter around the timed steps, after the warm-up steps"}
    peak = matmul_peak(dev)
    out["matmul_peak_gflops"] = peak / 1e9
    for name, cfg in trainer_setups(model, demo).items():
        warmup, timed = steps[name]
        conditional = cfg["conditioning"] == "class"
        n_classes = len(labels) if conditional else 0
        folder = work / "trainer" / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        paths = {}
        for k, label in enumerate(labels if conditional else labels[:1]):
            paths[label] = []
            for i in range(32):
                path = folder / "images" / f"{label}_{i}.png"
                write_png(path, rng.random((cfg["image_size"],) * 2, dtype=np.float32))
                paths[label].append(str(path))
        tensor = load_images([p for v in paths.values() for p in v], cfg["image_size"])
        classes = torch.tensor([k for k, v in enumerate(paths.values()) for _ in v])
        per_round = []
        for r in range(rounds):
            order = ("ours", "plain") if r % 2 == 0 else ("plain", "ours")
            row = {"order": " then ".join(order), "load_average": os.getloadavg()[0]}
            for trainer in order:
                log.info("trainer speed %s, round %d: %s (%d + %d steps)", name, r + 1, trainer,
                         warmup, timed)
                if trainer == "ours":
                    row["ours"], row["ours_call_seconds"] = ours(paths, cfg, warmup, timed,
                                                                 folder)
                else:
                    row["plain"] = plain_loop(tensor, classes, cfg, n_classes, warmup, timed,
                                              dev)
            row["ours_over_plain"] = row["ours"] / row["plain"]
            per_round.append(row)
        flops = step_flops(cfg, n_classes, dev)
        ours_median = statistics.median(r["ours"] for r in per_round)
        achieved = flops * ours_median / (cfg["batch_size"] * cfg.get("grad_accum", 1))
        out[name] = {
            "model": {k: cfg[k] for k in ("image_size", "block_out_channels", "attention_levels",
                                          "layers_per_block", "batch_size", "conditioning",
                                          "prediction_type", "zero_terminal_snr", "snr_gamma")},
            "parameters_m": sum(p.numel() for p in build_unet(cfg, n_classes).parameters()) / 1e6,
            "warmup_steps_untimed": warmup, "timed_steps": timed, "rounds": per_round,
            "ours_images_per_s_median": ours_median,
            "plain_images_per_s_median": statistics.median(r["plain"] for r in per_round),
            "ours_over_plain_median": statistics.median(r["ours_over_plain"] for r in per_round),
            "step_gflops": flops / 1e9, "achieved_gflops": achieved / 1e9, "mfu": achieved / peak,
        }
    return out


def summary(result: dict) -> dict:
    out = {}
    speed = result.get("trainer_speed")
    if speed:
        out["ours_over_plain"] = {k: v["ours_over_plain_median"] for k, v in speed.items()
                                  if isinstance(v, dict)}
    green = result.get("steps_to_green")
    if green:
        out["steps_to_green"] = {k: green[k]["steps_to_green"] for k in ("before", "after")}
        out["ratio_before_over_after"] = green["ratio_before_over_after"]
    sampling = result.get("samplers")
    if sampling:
        out["samplers"] = {r["sampler"]: {"images_per_s": r["images_per_s"],
                                          "matched": r["matched"],
                                          "verdicts": {k: v["verdict"]
                                                       for k, v in r["labels"].items()}}
                           for r in sampling["settings"]}
        out["fastest_matched"] = sampling["fastest_matched"]
    return out


# --- main ------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for what each figure means.")
    parser.add_argument("--part", choices=["trainer", "green", "samplers", "all"], default="all")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: budgets [20], 8 images per label, samplers ddpm:20 and "
                             "ddim:10, 1 round, 1 classifier epoch")
    parser.add_argument("--model", choices=["demo", "paper"], default="demo",
                        help="trainer-speed setups: demo - the demo's U-Net and "
                             "train_unconditional's at 64 px; paper - the 256 px U-Net of "
                             "config/presets/sutjiadi2025.yaml (needs a GPU)")
    parser.add_argument("--before-budgets", type=int, nargs="+", metavar="STEPS",
                        help=f"ddpm.steps tried for the before recipe (default "
                             f"{BUDGETS['before']})")
    parser.add_argument("--after-budgets", type=int, nargs="+", metavar="STEPS",
                        help=f"ddpm.steps tried for the after recipe (default {BUDGETS['after']})")
    parser.add_argument("--samplers", nargs="+", metavar="NAME:STEPS",
                        help=f"sampler settings, the first the reference (default "
                             f"{' '.join(SAMPLERS)})")
    parser.add_argument("--images", type=int, help=f"images per label (default "
                                                   f"{IMAGES_PER_LABEL})")
    parser.add_argument("--rounds", type=int, help="trainer-speed rounds (default 3)")
    parser.add_argument("--stop-at-green", action="store_true",
                        help="stop a recipe's budgets at the first all-green one")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default on a CPU: 1, as rule train_ddpm runs in the "
                             "local profile; more threads on a busy 2-core machine made a "
                             "training step 20x slower)")
    parser.add_argument("--work", type=Path,
                        help="keep models, images and data here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    dev = device()
    if args.threads or dev.type == "cpu":
        torch.set_num_threads(args.threads or 1)
    if args.model == "paper" and dev.type != "cuda" and args.part in ("trainer", "all"):
        raise SystemExit("--model paper: the 256 px, 114 M-parameter U-Net needs a GPU "
                         "(torch.cuda.is_available() is false here); use --model demo")
    quick = QUICK if args.quick else {}
    budgets = {"before": args.before_budgets or quick.get("budgets", BUDGETS)["before"],
               "after": args.after_budgets or quick.get("budgets", BUDGETS)["after"]}
    specs = parse_samplers(args.samplers or quick.get("samplers", SAMPLERS))
    n_images = args.images or quick.get("images", IMAGES_PER_LABEL)
    rounds = args.rounds or quick.get("rounds", 3)
    trainer_steps = QUICK_TRAINER_STEPS if args.quick else TRAINER_STEPS
    parts = ["trainer", "green", "samplers"] if args.part == "all" else [args.part]

    begin = time.perf_counter()
    demo = load_config(CONFIG)
    thresholds = validate({}, SCHEMA)["quality"]["verdict"]
    recs = recipes(demo)
    from mammosynth.labels import label_names

    result = {
        "device": torch.cuda.get_device_name() if dev.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()), "quick": args.quick, "parts": parts,
        "configs": {"before": recs["before"], "after": recs["after"],
                    "quality": {k: v for k, v in demo["quality"].items() if k != "verdict"},
                    "thresholds": thresholds, "sampler_settings": SAMPLER_SETTINGS,
                    "budgets": budgets, "samplers": [f"{n}:{s}" for n, s in specs],
                    "overrides": "steps_to_green / samplers train with ddpm.steps = the budget "
                                 "and ddpm.grid_images = 0 (no sample grid); trainer_speed "
                                 "with steps = warm-up + timed, no resume states, no grid",
                    "images_per_label": n_images, "rounds": rounds,
                    "trainer_steps": trainer_steps},
    }
    # everything the libraries print goes to stderr; stdout holds the JSON only
    with contextlib.redirect_stdout(sys.stderr), contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-ddpm-")))
        work.mkdir(parents=True, exist_ok=True)
        if "trainer" in parts:
            result["trainer_speed"] = trainer_speed(args.model, demo, label_names(demo["labels"]),
                                                    rounds, trainer_steps, work, dev)
        if "green" in parts or "samplers" in parts:
            data = Data(demo, work / "data", quick.get("classifier_epochs"))
            result["data"] = data.describe()
            result["configs"]["classifier"] = data.classifier_cfg
            trained: dict = {}
            if "green" in parts:
                result["steps_to_green"] = steps_to_green(recs, budgets, data, demo, thresholds,
                                                          n_images, work, trained,
                                                          args.stop_at_green)
            if "samplers" in parts:
                result["samplers"] = samplers(recs, budgets, specs, data, demo, thresholds,
                                              n_images, work, trained)
    result["summary"] = summary(result)
    result["peak_memory_mb"] = peak_memory_mb(dev)
    result["total_seconds"] = time.perf_counter() - begin
    text = json.dumps(clean(result), indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
