"""The workflow on a real SLURM cluster (tests/slurm/start_local_slurm.sh: single node, loopback,
two fake GPUs): the demo DAG through `--profile profiles/slurm`, preemption (scancel) of training
jobs that then resume, and a kill -9 of a local run followed by --rerun-incomplete.

Needs root (apt and daemons); if the cluster cannot come up, the tests fail and say why. Outside
CI, `pytest -m "not slurm"` leaves them out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mammosynth import layout

from conftest import (REPO, job_counts, load_config, snakemake, snakemake_command, snakemake_env,
                      write_config)

pytestmark = [pytest.mark.slurm, pytest.mark.integration]
SLURM = REPO / "tests/slurm"
TINY = load_config("tiny")
ARCH = TINY["classifier"]["archs"][0]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["timeout", "300", str(SLURM / "start_local_slurm.sh"), str(state)],
                           capture_output=True, text=True)
    if start.returncode != 0:
        pytest.fail(f"the local SLURM cluster did not come up:\n{start.stderr[-3000:]}")
    env = snakemake_env(SLURM_CONF=str(state / "slurm.conf"))
    yield env
    subprocess.run([str(SLURM / "stop_local_slurm.sh"), str(state)], capture_output=True)


def small_profile(folder: Path) -> Path:
    """profiles/slurm as users get it, with memory, CPUs and runtime scaled to this machine.
    The GPU requests (gpu: 1 on the GPU rules) stay exactly as written."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    gpu_rules = {r for r, res in profile["set-resources"].items() if res.get("gpu")}
    assert gpu_rules == {"train_ddpm", "sample_shard", "train_classifier", "evaluate"}
    for res in profile["set-resources"].values():
        res["mem_mb"] = 1500
        res["runtime"] = "10 * attempt"
        for key in ("cpus_per_gpu", "cpus_per_task"):
            if key in res:
                res[key] = 1
    profile["default-resources"] = {"mem_mb": 1500, "runtime": "10 * attempt",
                                    "cpus_per_task": 1}
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["seconds-between-status-checks"] = 2
    profile["latency-wait"] = 5
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


def run_slurm(workdir: Path, env: dict, *targets: str, timeout: int = 900, popen=False):
    cmd = ["timeout", "-k", "15", str(timeout), *snakemake_command(
        workdir, "--profile", str(small_profile(workdir / "profile")), *targets, cores=None)]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, start_new_session=True)
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def slurm_jobs(env: dict) -> list[dict]:
    """Every job the controller still remembers (MinJobAge=600): id, name, state, TRES."""
    out = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True,
                         text=True, env=env).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            jobs.append(fields)
    return jobs


def rule_jobs(workdir: Path) -> dict[str, int]:
    """Jobs per rule, from `snakemake -n` of a fresh workdir's full DAG."""
    run = snakemake(workdir, "-n", "--forceall")
    assert run.returncode == 0, run.stderr[-2000:]
    return {rule: n for rule, n in job_counts(run.stdout).items() if rule not in ("total", "all")}


def test_demo_dag_runs_as_slurm_jobs(cluster, tmp_path):
    write_config(tmp_path, TINY)
    expected = rule_jobs(tmp_path)
    before = {j["JobId"] for j in slurm_jobs(cluster)}
    run = run_slurm(tmp_path, cluster)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / layout.report() / "index.html").exists()
    jobs = [j for j in slurm_jobs(cluster) if j["JobId"] not in before]
    assert all(j["JobState"] == "COMPLETED" for j in jobs), [(j["JobName"], j["JobState"])
                                                             for j in jobs]
    # one SLURM job per DAG job: the plugin names them by run, the comment holds the rule
    per_rule: dict[str, int] = {}
    for j in jobs:
        rule = re.search(r"rule_(\w+?)(?:_wildcards|$)", j.get("Comment", ""))
        assert rule, j.get("Comment")
        per_rule[rule.group(1)] = per_rule.get(rule.group(1), 0) + 1
    assert per_rule == expected
    for j in jobs:  # GPU rules got a GPU, CPU rules none
        gpu = "gres/gpu=1" in j.get("TRES", "") or "gpu:1" in j.get("TresPerJob", "")
        rule = re.search(r"rule_(\w+?)(?:_wildcards|$)", j["Comment"]).group(1)
        assert gpu == (rule in {"train_ddpm", "sample_shard", "train_classifier", "evaluate"}), j
    logs = list((tmp_path / ".snakemake/slurm_logs").rglob("*.log"))
    assert len(logs) == sum(expected.values())


def _wait(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _running(env, rule):
    for j in slurm_jobs(env):
        if j["JobState"] == "RUNNING" and f"rule_{rule}" in j.get("Comment", ""):
            return j["JobId"]
    return None


# Long enough (~10 s of training each) that a job is still running after its first checkpoint.
PREEMPT = load_config("tiny", scenarios=[0],
                      ddpm={"steps": 400, "resume_every": 20, "log_every": 20},
                      classifier={"epochs": 60})


def test_preempted_training_jobs_resume_and_match_an_uninterrupted_run(cluster, tmp_path):
    """scancel a running train_ddpm and train_classifier job after their first checkpoint:
    Snakemake re-submits them (retries), they resume, and the final weights equal a local,
    uninterrupted run's at the same thread count."""
    ddpm = layout.ddpm(0, "normal")
    model = layout.classifier(ARCH, "synth", 0, 0)
    targets = [ddpm, layout.classifier(ARCH, "synth", 0, 0, layout.weights_file("best"))]
    reference = tmp_path / "reference"
    write_config(reference, PREEMPT)
    # torch's CPU reductions depend on the thread count: the reference runs with the cluster
    # jobs' one thread (small_profile), so the weights can be compared bit for bit
    ref = snakemake(reference, *targets, "--set-threads", "train_ddpm=1", "train_classifier=1")
    assert ref.returncode == 0, ref.stderr[-3000:]

    work = tmp_path / "slurm"
    write_config(work, PREEMPT)
    proc = run_slurm(work, cluster, *targets, popen=True)
    try:
        cancelled = []
        for rule, resume in (("train_ddpm", work / layout.ddpm_resume(0, "normal")),
                             ("train_classifier", work / model / layout.CLASSIFIER_RESUME)):
            job = _wait(lambda: _running(cluster, rule) if resume.exists() else None, 600,
                        f"a running {rule} job with a checkpoint")
            subprocess.run(["scancel", job], check=True, env=cluster)
            cancelled.append(job)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-4000:]
    states = {j["JobId"]: j["JobState"] for j in slurm_jobs(cluster)}
    assert [states[j] for j in cancelled] == ["CANCELLED", "CANCELLED"]
    log = (work / layout.log("train_ddpm", layout.ddpm(0, "normal"))).read_text()
    assert "resumed from" in log
    model = layout.classifier(ARCH, "synth", 0, 0)
    assert "resumed from" in (work / layout.log("train_classifier", model)).read_text()

    for path in (f"{ddpm}/unet/diffusion_pytorch_model.safetensors",
                 *(f"{model}/{layout.weights_file(ckpt)}" for ckpt in ("best", "last"))):
        a, b = load_file(str(reference / path)), load_file(str(work / path))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), path


def test_kill_9_then_rerun_incomplete_redoes_only_what_is_missing(tmp_path):
    """A local run killed with SIGKILL (snakemake and its job) mid-train_classifier; after
    --unlock, --rerun-incomplete finishes it without redoing the finished jobs."""
    config = load_config("tiny", scenarios=[0], classifier={"epochs": 40})
    write_config(tmp_path, config)
    target = layout.classifier(ARCH, "synth", 0, 0, layout.weights_file("best"))
    proc = subprocess.Popen(snakemake_command(tmp_path, target), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env=snakemake_env())
    resume = tmp_path / layout.classifier(ARCH, "synth", 0, 0, layout.CLASSIFIER_RESUME)
    try:
        _wait(resume.exists, 300, "the classifier's first checkpoint")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    data = (tmp_path / layout.manifest()).parent  # results/data: ingest, manifest, images
    splits = (tmp_path / layout.split(0)).parent
    done = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}
    done |= {p: p.stat().st_mtime_ns for p in splits.glob("*.csv")}
    # killed mid-training: best.safetensors may exist already, history.csv comes at the end
    assert done and not (tmp_path / target).with_name(layout.HISTORY).exists()

    unlock = snakemake(tmp_path, "--unlock", target)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    plan = snakemake(tmp_path, "-n", "--rerun-incomplete", target)
    assert plan.returncode == 0, plan.stderr[-2000:]
    counts = job_counts(plan.stdout)
    assert counts.get("train_classifier") == 1 and "preprocess" not in counts \
        and "split" not in counts, plan.stdout
    run = snakemake(tmp_path, "--rerun-incomplete", target)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / target).exists()
    assert {p: p.stat().st_mtime_ns for p in done} == done  # finished jobs were not redone
    log = (tmp_path / layout.log("train_classifier", layout.classifier(ARCH, "synth", 0, 0)))\
        .read_text()
    assert "resumed from" in log
