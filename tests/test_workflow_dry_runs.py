"""The Snakemake workflow's plans: dry runs (`snakemake -n`) of the presets (config/presets/) and of
config options that change the DAG, checked by the jobs per rule and the outputs they list (paths
from mammosynth.layout). Which config a run reads is checked here too. Real runs are in
test_workflow.py; refused configs in test_config_validation.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mammosynth import layout

from conftest import (CONFIGS, PRESETS, REPO, job_counts, load_config, load_preset, snakemake,
                      write_config)

pytestmark = pytest.mark.integration


def test_a_configfile_stands_alone(tmp_path):
    """From a checkout (config/config.yaml present), --configfile does not inherit the demo's
    values: a config that sets only the data set (tests/configs/dataset_only.yaml) gets the
    schema's 5 splits, not the demo's 2."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text((REPO / "config/config.yaml").read_text())
    for configfiles, splits in (((), 2), ((CONFIGS / "dataset_only.yaml",), 5)):
        run = snakemake(tmp_path, "-n", configfiles=configfiles, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert job_counts(run.stdout)["split"] == splits


def test_sutjiadi2025_preset_lists_the_paper_grid(tmp_path):
    """The preset validates and describes paper 000 at full scale: 5 splits x 2 labels DDPMs,
    250 images per label in shards of 50, 4 scenarios, last and best weights; and its controls:
    dup, aug and synthonly at n = 100 / 250 / 500 plus real 25 / 50 / 75 % (12 more classifiers
    per split), the augmented copies per split and label."""
    from mammosynth.datasets.phantom import write_phantom

    root = tmp_path / "INbreast Release 1.0"
    write_phantom(root, patients=30, height=96, width=80)
    (tmp_path / "config.yaml").write_text((PRESETS / "sutjiadi2025.yaml").read_text())
    run = snakemake(tmp_path, "-n", "--config", f"dataset={{root: '{root}'}}")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    assert {k: counts[k] for k in ("split", "train_ddpm", "sample_shard", "quality",
                                   "train_classifier", "evaluate", "augment")} == {
        "split": 5, "train_ddpm": 10, "sample_shard": 50, "quality": 10,
        "train_classifier": 5 * (4 + 3 * 3 + 3), "evaluate": 2 * 5 * (4 + 3 * 3 + 3),
        "augment": 10}
    for arm, n in (("synth", 500), ("dup", 500), ("aug", 100), ("synthonly", 250), ("real", 25)):
        assert layout.classifier("tf_efficientnetv2_l", arm, n, 4) in run.stdout


def pretend_pretrained(workdir: Path, preset: dict) -> None:
    """Empty files where a preset's classifier.pretrained points (relative to the working
    directory): enough for a dry run, which only checks that they exist."""
    files = preset["classifier"].get("pretrained") or {}
    for path in files.values():
        (workdir / path).parent.mkdir(parents=True, exist_ok=True)
        (workdir / path).touch()


def test_best_weights_preset_lists_six_archs_by_five_splits(tmp_path):
    """Paper 002's preset: KAU-BCMD (1,3,4,5) + CBIS-DDSM (0,2) pooled; 6 archs x 5 splits."""
    preset = load_preset("best_weights")
    assert [(s["format"], s["birads"]) for s in preset["dataset"]["sources"]] == [
        ("kau_bcmd", [1, 3, 4, 5]), ("cbis_ddsm", [0, 2])]
    for source in preset["dataset"]["sources"]:
        source["root"] = str(tmp_path / source["format"])
        Path(source["root"]).mkdir()
    pretend_pretrained(tmp_path, preset)
    write_config(tmp_path, preset)
    run = snakemake(tmp_path, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    assert {k: counts.get(k, 0) for k in ("train_ddpm", "train_classifier", "evaluate")} \
        == {"train_ddpm": 0, "train_classifier": 30, "evaluate": 60}
    assert "nasnetamobile" in run.stdout


def test_class_conditioning_trains_one_ddpm_per_split(tmp_path):
    """ddpm.conditioning class: one model per split (all-labels) feeds every label's shards."""
    config = load_config("tiny", splits={"ids": [0, 1], "test_fraction": 0.25,
                                         "val_fraction": 0.2},
                         ddpm={"conditioning": "class"})
    write_config(tmp_path, config)
    run = snakemake(tmp_path, "-n")
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    assert counts["train_ddpm"] == 2 and counts["sample_shard"] == 8
    assert layout.ddpm(1, "all-labels") in run.stdout
    assert layout.ddpm(0, "normal") not in run.stdout


@pytest.mark.parametrize("preset, expected", [
    # paper 000: one DDPM per label on every image (split "all"), 5 shards of 50 per label
    ("sutjiadi2025", {"split": 6, "train_ddpm": 2, "sample_shard": 10, "quality": 2,
                      "train_classifier": 20, "evaluate": 40}),
    ("best_weights", {"split": 5, "train_ddpm": 0, "sample_shard": 0, "quality": 0,
                      "train_classifier": 30, "evaluate": 60}),
])
def test_paper_protocol_overlay_on_the_presets(tmp_path, preset, expected):
    from mammosynth.datasets.phantom import write_phantom

    root = tmp_path / "data"
    write_phantom(root, patients=30, height=96, width=80)
    for source in ("KAU-BCMD", "CBIS-DDSM"):  # best_weights' sources, relative to the workdir
        (root / source).mkdir()
    pretend_pretrained(tmp_path, load_preset(preset))
    run = snakemake(tmp_path, "-n", "--config", f"dataset={{root: '{root}'}}",
                    configfiles=[PRESETS / f"{preset}.yaml", PRESETS / "paper_protocol.yaml"],
                    timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = job_counts(run.stdout)
    assert {k: counts.get(k, 0) for k in expected} == expected
    if preset == "sutjiadi2025":
        assert layout.ddpm("all", "normal") in run.stdout


def job_threads(output: str) -> dict[str, set[int]]:
    """The threads of each rule's jobs in a dry run's plan (Snakemake prints `threads: N` only
    above 1)."""
    threads: dict[str, set[int]] = {}
    for block in output.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        found = re.search(r"^\s+threads: (\d+)$", block, flags=re.M)
        threads.setdefault(rule, set()).add(int(found.group(1)) if found else 1)
    return threads


def test_computing_jobs_get_threads_without_a_profile(tmp_path):
    """Run without any profile (no SLURM, no profiles/default) on a 2-core workstation: every
    computing rule's jobs get the cores (the job runner hands them to torch), not one thread."""
    write_config(tmp_path, load_config("tiny", splits={"ids": [0]}, controls=["aug"]))
    run = snakemake(tmp_path, "-n", "--workflow-profile", "none", cores=2, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    threads = job_threads(run.stdout)
    for rule in ("preprocess", "train_ddpm", "sample_shard", "augment", "train_classifier",
                 "evaluate", "quality", "report"):
        assert threads[rule] == {2}, (rule, threads.get(rule))
    assert threads["split"] == {1} and threads["ingest"] == {1}  # pandas: one thread


def test_the_slurm_profile_sets_the_threads_it_asks_cpus_for():
    """profiles/slurm: each GPU rule's threads equal its cpus_per_gpu (so torch uses the CPUs
    the job holds), the others' their cpus_per_task."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    for rule, resources in profile["set-resources"].items():
        cpus = resources.get("cpus_per_gpu", resources.get("cpus_per_task"))
        assert profile["set-threads"][rule] == cpus, rule
