"""DDPM training (checkpoint/resume, determinism) and sharded sampling (shard/batch invariance).

Tiny CPU-only models: 16x16 images, a two-level UNet with 8/16 channels, a handful of steps.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mammosynth.ddpm.train as ddpm_train
from mammosynth.ddpm.sample import (SCHEDULERS, image_seed, make_scheduler, model_hash, n_shards,
                                    read_shards, sample_shard, shard_range)
from mammosynth.ddpm.train import load_images, train_ddpm
from mammosynth.errors import UserError
from mammosynth.imaging.png import read_png, write_png

WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
INDEX_COLUMNS = ["image", "index", "seed", "scheduler", "steps", "model_hash"]


def ddpm_cfg(**overrides) -> dict:
    """Every key train_ddpm reads, tiny values."""
    cfg = dict(image_size=16, block_out_channels=[8, 16], attention_levels=[False, True],
               layers_per_block=1, dropout=0.0, timesteps=50, beta_schedule="linear", steps=6,
               batch_size=2, lr=1e-3, weight_decay=0.0, warmup_steps=1, ema_decay=0.9,
               grad_clip=1.0, log_every=2, checkpoint_every=3)
    cfg.update(overrides)
    return cfg


def write_images(folder: Path, n: int = 6, size: int = 16, seed: int = 0) -> list[str]:
    """n random-ish 16-bit PNGs (a smooth blob plus noise) of size x size."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    paths = []
    for i in range(n):
        cx, cy = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 0.05)
        image = np.clip(0.7 * blob + 0.2 * rng.random((size, size)), 0.0, 1.0)
        path = folder / f"img{i}.png"
        write_png(path, image)
        paths.append(str(path))
    return paths


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(model_dir) / WEIGHTS))


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} of {len(a)} tensors differ, e.g. {different[:3]}"


def read_history(model_dir: Path) -> list[dict]:
    with open(Path(model_dir) / "history.csv") as f:
        return list(csv.DictReader(f))


def read_index(shard: Path) -> list[dict]:
    with open(shard / "index.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    return write_images(tmp_path_factory.mktemp("ddpm_images"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, images) -> Path:
    """One tiny pipeline trained for 6 steps with seed 0 (shared by the sampling tests)."""
    root = tmp_path_factory.mktemp("ddpm_model")
    out = root / "model"
    train_ddpm(images, out, ddpm_cfg(), seed=0, checkpoint=root / "model.ckpt")
    return out


# --------------------------------------------------------------------------- training


def test_train_writes_loadable_pipeline(trained):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    pipeline = DDPMPipeline.from_pretrained(trained)
    assert isinstance(pipeline.unet, UNet2DModel)
    assert isinstance(pipeline.scheduler, DDPMScheduler)
    assert pipeline.unet.config.sample_size == 16
    assert pipeline.unet.config.in_channels == pipeline.unet.config.out_channels == 1
    assert tuple(pipeline.unet.config.block_out_channels) == (8, 16)
    assert pipeline.unet.config.down_block_types == ["DownBlock2D", "AttnDownBlock2D"]
    assert pipeline.scheduler.config.num_train_timesteps == 50
    assert pipeline.scheduler.config.clip_sample is True

    history = read_history(trained)
    assert [int(r["step"]) for r in history] == [2, 4, 6]
    assert list(history[0]) == ["step", "loss", "lr", "images_per_s"]
    assert all(np.isfinite(float(r["loss"])) and float(r["images_per_s"]) > 0 for r in history)
    assert float(history[-1]["lr"]) == pytest.approx(0.0, abs=1e-12)  # cosine decay ends at 0

    # the resume checkpoint (written at step 3) is gone, and no temporary output is left behind
    assert not (trained.parent / "model.ckpt").exists()
    assert sorted(p.name for p in trained.parent.iterdir()) == ["model"]


def test_same_seed_gives_bitwise_identical_weights(tmp_path, images, trained):
    train_ddpm(images, tmp_path / "again", ddpm_cfg(), seed=0, checkpoint=tmp_path / "again.ckpt")
    assert_bitwise_equal(weights(trained), weights(tmp_path / "again"))
    assert [r["loss"] for r in read_history(trained)] == \
        [r["loss"] for r in read_history(tmp_path / "again")]

    train_ddpm(images, tmp_path / "other", ddpm_cfg(), seed=1, checkpoint=tmp_path / "other.ckpt")
    a, b = weights(trained), weights(tmp_path / "other")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_rerun_replaces_the_output(tmp_path, images):
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    train_ddpm(images, out, ddpm_cfg(steps=2), seed=0, checkpoint=tmp_path / "ckpt")
    assert not (out / "stale.txt").exists()
    assert (out / WEIGHTS).is_file()


class _Interrupted(Exception):
    pass


def _interrupt_after_first_checkpoint(monkeypatch):
    """Make train_ddpm stop right after it has written its first checkpoint (a crash there)."""
    original = ddpm_train.save_atomic
    calls = []

    def save_then_crash(obj, path):
        original(obj, path)
        calls.append(obj["step"])
        raise _Interrupted

    monkeypatch.setattr(ddpm_train, "save_atomic", save_then_crash)
    return calls


def test_resume_after_interruption_is_bitwise_identical(tmp_path, images, trained, monkeypatch):
    checkpoint = tmp_path / "b.ckpt"
    calls = _interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(_Interrupted):
        train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, checkpoint=checkpoint)
    monkeypatch.undo()
    assert calls == [3] and checkpoint.is_file() and not (tmp_path / "b").exists()

    torch.manual_seed(12345)  # the resumed run must not depend on the process' RNG state
    train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, checkpoint=checkpoint)
    assert not checkpoint.exists()
    assert_bitwise_equal(weights(trained), weights(tmp_path / "b"))
    assert [int(r["step"]) for r in read_history(tmp_path / "b")] == [2, 4, 6]


def test_resume_keeps_the_logged_losses(tmp_path, images, trained, monkeypatch):
    """history.csv after a resume equals the uninterrupted one (loss column).

    The checkpoint at step 3 falls inside the logging interval 3..4: the uninterrupted run logs
    the mean loss of steps 3 and 4 at step 4, so a resumed run must too.
    """
    checkpoint = tmp_path / "b.ckpt"
    _interrupt_after_first_checkpoint(monkeypatch)
    with pytest.raises(_Interrupted):
        train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, checkpoint=checkpoint)
    monkeypatch.undo()
    train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, checkpoint=checkpoint)
    expected = [(r["step"], float(r["loss"])) for r in read_history(trained)]
    resumed = [(r["step"], float(r["loss"])) for r in read_history(tmp_path / "b")]
    assert resumed == expected


CHILD = """
import json, sys
import torch
import mammosynth
from mammosynth.ddpm.train import train_ddpm
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
train_ddpm(a["paths"], a["out"], a["cfg"], seed=a["seed"], checkpoint=a["checkpoint"])
"""


def test_resume_after_sigkill_is_bitwise_identical(tmp_path, images):
    """Kill -9 a training process as soon as its first checkpoint exists, then finish in-process."""
    cfg = ddpm_cfg(steps=40, checkpoint_every=5, log_every=5)
    train_ddpm(images, tmp_path / "a", cfg, seed=3, checkpoint=tmp_path / "a.ckpt")

    checkpoint, out = tmp_path / "b.ckpt", tmp_path / "b"
    args = dict(paths=images, out=str(out), cfg=cfg, seed=3, checkpoint=str(checkpoint),
                threads=torch.get_num_threads())
    env = dict(os.environ, OMP_NUM_THREADS=str(args["threads"]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=tmp_path,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while child.poll() is None and not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        if checkpoint.exists():
            child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None and not checkpoint.exists():
            child.kill()
        _, stderr = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, (
        f"the child was not killed mid-training (rc {child.returncode}); "
        f"stderr tail: {stderr.decode(errors='replace')[-2000:]}")
    assert checkpoint.is_file() and not out.exists()
    step = torch.load(checkpoint, weights_only=True)["step"]
    assert step in range(5, 40, 5)

    train_ddpm(images, out, cfg, seed=3, checkpoint=checkpoint)
    assert not checkpoint.exists()
    assert_bitwise_equal(weights(tmp_path / "a"), weights(out))
    assert [int(r["step"]) for r in read_history(out)] == list(range(5, 41, 5))


def test_no_images_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no training images"):
        train_ddpm([], tmp_path / "m", ddpm_cfg(), seed=0, checkpoint=tmp_path / "c")
    assert not (tmp_path / "m").exists()


def test_attention_levels_must_match_block_count(tmp_path, images):
    with pytest.raises(UserError, match="attention_levels"):
        train_ddpm(images, tmp_path / "m", ddpm_cfg(attention_levels=[True]), seed=0,
                   checkpoint=tmp_path / "c")


def test_load_images_scales_and_resizes(tmp_path):
    path = tmp_path / "big.png"
    image = np.zeros((24, 24))
    image[:, 12:] = 1.0
    write_png(path, image)
    x = load_images([str(path), str(path)], 16)
    assert x.shape == (2, 1, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert x[0, 0, :, 0].eq(-1.0).all() and x[0, 0, :, -1].eq(1.0).all()


# --------------------------------------------------------------------------- sampling helpers


def test_image_seed_depends_on_seed_split_label_index_only():
    base = image_seed(0, 1, "normal", 5)
    assert base == image_seed(0, 1, "normal", 5)
    assert 0 <= base < 2**63
    variants = [image_seed(1, 1, "normal", 5), image_seed(0, 2, "normal", 5),
                image_seed(0, 1, "abnormal", 5), image_seed(0, 1, "normal", 6)]
    assert len({base, *variants}) == 5
    seeds = {image_seed(0, 0, "normal", i) for i in range(1000)}
    assert len(seeds) == 1000


@pytest.mark.parametrize("total, size, expected", [
    (10, 4, [(0, 4), (4, 4), (8, 2)]),
    (8, 4, [(0, 4), (4, 4)]),
    (3, 50, [(0, 3)]),
    (1, 1, [(0, 1)]),
    (0, 4, []),
])
def test_shard_arithmetic(total, size, expected):
    assert n_shards(total, size) == len(expected)
    assert [shard_range(s, total, size) for s in range(n_shards(total, size))] == expected
    covered = [i for s in range(n_shards(total, size))
               for i in range(shard_range(s, total, size)[0], sum(shard_range(s, total, size)))]
    assert covered == list(range(total))


def test_shard_range_past_the_end_is_empty():
    assert shard_range(5, 10, 4) == (20, 0)


# --------------------------------------------------------------------------- sampling


def _pixels(path: Path) -> np.ndarray:
    return np.round(read_png(path).astype(np.float64) * 65535).astype(np.int64)


@pytest.mark.parametrize("scheduler, steps", [("ddim", 3), ("ddpm", 5)])
def test_images_are_bit_identical_whatever_the_shard_size(tmp_path, trained, scheduler, steps):
    # shard sizes that are multiples of the batch size: batches align, images are identical
    kw = dict(seed=0, split=1, label="normal", scheduler=scheduler, steps=steps, batch_size=2)
    sample_shard(trained, tmp_path / "whole", start=0, count=8, **kw)
    for start in (0, 4):
        sample_shard(trained, tmp_path / f"s{start}", start=start, count=4, **kw)
    whole = read_shards([tmp_path / "whole"])
    parts = read_shards([tmp_path / "s0", tmp_path / "s4"])
    for (i, a), (j, b) in zip(whole, parts):
        assert i == j and np.array_equal(_pixels(a), _pixels(b)), i


@pytest.mark.parametrize("scheduler, steps", [("ddim", 3), ("ddpm", 5)])
def test_images_do_not_depend_on_shard_or_batch_size(tmp_path, trained, scheduler, steps):
    kw = dict(seed=0, split=1, label="normal", scheduler=scheduler, steps=steps)
    sample_shard(trained, tmp_path / "whole", start=0, count=6, batch_size=4, **kw)
    sample_shard(trained, tmp_path / "s0", start=0, count=3, batch_size=1, **kw)
    sample_shard(trained, tmp_path / "s1", start=3, count=3, batch_size=3, **kw)

    whole = read_shards([tmp_path / "whole"])
    parts = read_shards([tmp_path / "s1", tmp_path / "s0"])
    assert [i for i, _ in whole] == [i for i, _ in parts] == list(range(6))
    diffs = []
    for (i, a), (_, b) in zip(whole, parts):
        assert a.name == b.name == f"normal_{i:05d}.png"
        pa, pb = _pixels(a), _pixels(b)
        assert pa.shape == (16, 16)
        diffs.append(int(np.abs(pa - pb).max()))
    # Batched convolutions may round differently from unbatched ones: allow one 16-bit level.
    # (Observed on CPU: most images are bit-identical, some differ by exactly 1 level.)
    assert max(diffs) <= 1, f"max |difference| per image in 16-bit levels: {diffs}"
    # the images themselves differ from each other
    assert len({_pixels(p).tobytes() for _, p in whole}) == 6

    rows = read_index(tmp_path / "whole")
    assert list(rows[0]) == INDEX_COLUMNS
    assert [int(r["index"]) for r in rows] == list(range(6))
    assert [int(r["seed"]) for r in rows] == [image_seed(0, 1, "normal", i) for i in range(6)]
    assert {r["scheduler"] for r in rows} == {scheduler}
    assert {int(r["steps"]) for r in rows} == {steps}
    assert {r["model_hash"] for r in rows} == {model_hash(trained)}
    assert rows == [dict(r) for r in read_index(tmp_path / "s0") + read_index(tmp_path / "s1")]


def test_sampling_is_repeatable_and_label_seeded(tmp_path, trained):
    kw = dict(seed=0, split=0, start=0, count=2, scheduler="ddim", steps=2, batch_size=2)
    sample_shard(trained, tmp_path / "a", label="normal", **kw)
    sample_shard(trained, tmp_path / "b", label="normal", **kw)
    sample_shard(trained, tmp_path / "c", label="abnormal", **kw)
    for i in range(2):
        a = (tmp_path / "a" / f"normal_{i:05d}.png").read_bytes()
        assert a == (tmp_path / "b" / f"normal_{i:05d}.png").read_bytes()
        assert _pixels(tmp_path / "a" / f"normal_{i:05d}.png").tobytes() != \
            _pixels(tmp_path / "c" / f"abnormal_{i:05d}.png").tobytes()
    with __import__("PIL.Image").Image.open(tmp_path / "a" / "normal_00000.png") as im:
        assert im.mode.startswith("I") and im.size == (16, 16)


def test_dpmsolver_runs_and_unknown_scheduler_is_a_user_error(tmp_path, trained):
    assert SCHEDULERS == ("ddpm", "ddim", "dpmsolver++")
    sample_shard(trained, tmp_path / "dpm", seed=0, split=0, label="normal", start=2, count=3,
                 scheduler="dpmsolver++", steps=3, batch_size=2)
    found = read_index(tmp_path / "dpm")
    assert [int(r["index"]) for r in found] == [2, 3, 4]
    for r in found:
        pixels = read_png(tmp_path / "dpm" / r["image"])
        assert pixels.shape == (16, 16) and np.isfinite(pixels).all()

    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
    base = DDPMScheduler.from_pretrained(trained, subfolder="scheduler").config
    sched = make_scheduler(base, "dpmsolver++", 3)
    assert isinstance(sched, DPMSolverMultistepScheduler)
    assert sched.config.algorithm_type == "dpmsolver++"

    with pytest.raises(UserError, match="not one of"):
        make_scheduler(base, "euler", 3)
    with pytest.raises(UserError):
        sample_shard(trained, tmp_path / "bad", seed=0, split=0, label="normal", start=0,
                     count=1, scheduler="euler", steps=3, batch_size=1)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_more_sampling_steps_than_training_timesteps_is_a_user_error(tmp_path, trained, scheduler):
    """sampling.steps > ddpm.timesteps is a config mistake (both are config keys, and the schema's
    defaults are 1000 and 1000): it must end the job as a UserError, not a diffusers traceback."""
    with pytest.raises(UserError):
        sample_shard(trained, tmp_path / "s", seed=0, split=0, label="normal", start=0, count=1,
                     scheduler=scheduler, steps=51, batch_size=1)


def test_empty_shard(tmp_path, trained):
    sample_shard(trained, tmp_path / "empty", seed=0, split=0, label="normal", start=10, count=0,
                 scheduler="ddim", steps=2, batch_size=4)
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["index.csv"]
    assert read_shards([tmp_path / "empty"]) == []


def _fake_shard(folder: Path, indices: list[int]) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
        writer.writeheader()
        for i in indices:
            writer.writerow({"image": f"x_{i:05d}.png", "index": i, "seed": 1,
                             "scheduler": "ddpm", "steps": 5, "model_hash": "h"})
    return folder


def test_read_shards_sorts_and_checks(tmp_path):
    a = _fake_shard(tmp_path / "a", [4, 3, 5])
    b = _fake_shard(tmp_path / "b", [1, 0, 2])
    found = read_shards([a, b])
    assert [i for i, _ in found] == list(range(6))
    assert found[0] == (0, b / "x_00000.png") and found[5] == (5, a / "x_00005.png")
    assert read_shards([str(b)]) == [(0, b / "x_00000.png"), (1, b / "x_00001.png"),
                                     (2, b / "x_00002.png")]

    with pytest.raises(UserError, match="exactly once"):  # 0..2 missing
        read_shards([a])
    gap = _fake_shard(tmp_path / "gap", [0, 2])
    with pytest.raises(UserError):
        read_shards([gap])
    with pytest.raises(UserError):  # duplicated indices
        read_shards([b, b])
    dup = _fake_shard(tmp_path / "dup", [2, 3, 4, 5])
    with pytest.raises(UserError):
        read_shards([b, dup])


def test_saved_weights_are_the_ema_weights(tmp_path):
    """ema_decay 0 makes the EMA equal the raw weights; any other decay must change what is saved
    (training itself is the same: EMA does not feed back)."""
    paths = write_images(tmp_path / "img")
    train_ddpm(paths, tmp_path / "raw", ddpm_cfg(ema_decay=0.0), seed=1,
               checkpoint=tmp_path / "raw.pt")
    train_ddpm(paths, tmp_path / "ema", ddpm_cfg(ema_decay=0.9), seed=1,
               checkpoint=tmp_path / "ema.pt")
    raw, ema = weights(tmp_path / "raw"), weights(tmp_path / "ema")
    assert [r["loss"] for r in read_history(tmp_path / "raw")] == \
        [r["loss"] for r in read_history(tmp_path / "ema")]
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)


def test_gradient_accumulation_and_sample_grid(tmp_path):
    paths = write_images(tmp_path / "img")
    train_ddpm(paths, tmp_path / "m", ddpm_cfg(grad_accum=2, grid_images=5, grid_steps=3),
               seed=0, checkpoint=tmp_path / "m.pt")
    history = read_history(tmp_path / "m")
    assert [int(r["step"]) for r in history] == [2, 4, 6]
    grid = read_png(tmp_path / "m/samples.png")
    assert grid.shape == (2 * 16, 3 * 16)  # 5 images on a 3-column grid
    assert grid[:, :32].std() > 0 and np.all(grid[16:, 32:] == 0)  # the 6th cell stays empty
