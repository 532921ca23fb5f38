"""DDPM training (resume state, determinism) and sharded sampling (shard/batch invariance).

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

from conftest import assert_set_aside_as_unreadable

from mammosynth import runtime
from mammosynth.ddpm import sample as ddpm_sample
from mammosynth.ddpm.sample import (MODEL_INFO, SAMPLER_SETTINGS, SCHEDULERS, generate,
                                    make_scheduler, model_hash, model_info, n_shards,
                                    postprocess, read_shards, sample_shard, shard_range)
from mammosynth.ddpm.train import build_scheduler, load_images, loss_weights, train_ddpm
from mammosynth.errors import UserError
from mammosynth.imaging.breast import mask_like_real
from mammosynth.imaging.png import read_png, write_png
from mammosynth.layout import image_seed

WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
INDEX_COLUMNS = ["image", "index", "seed", "scheduler", "steps", "guidance_scale", "model_hash",
                 "postprocess"]
SAMPLING = {"scheduler": "ddim", "steps": 3, "guidance_scale": 1.0}


def ddpm_cfg(**overrides) -> dict:
    """Every key train_ddpm needs, tiny values (the optional recipe keys - conditioning,
    prediction_type, zero_terminal_snr, snr_gamma, ... - keep train_ddpm's plain-epsilon
    defaults unless a test sets them)."""
    cfg = dict(image_size=16, block_out_channels=[8, 16], attention_levels=[False, True],
               layers_per_block=1, dropout=0.0, timesteps=50, beta_schedule="linear", steps=6,
               batch_size=2, lr=1e-3, weight_decay=0.0, warmup_steps=1, ema_decay=0.9,
               grad_clip=1.0, log_every=2, resume_every=3)
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
    train_ddpm(images, out, ddpm_cfg(), seed=0, resume=root / "model.resume.pt")
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

    # the resume state (written at step 3) is gone, and no temporary output is left behind
    assert not (trained.parent / "model.resume.pt").exists()
    assert sorted(p.name for p in trained.parent.iterdir()) == ["model"]


def test_same_seed_gives_bitwise_identical_weights(tmp_path, images, trained):
    train_ddpm(images, tmp_path / "again", ddpm_cfg(), seed=0, resume=tmp_path / "again.resume.pt")
    assert_bitwise_equal(weights(trained), weights(tmp_path / "again"))
    assert [r["loss"] for r in read_history(trained)] == \
        [r["loss"] for r in read_history(tmp_path / "again")]

    train_ddpm(images, tmp_path / "other", ddpm_cfg(), seed=1, resume=tmp_path / "other.resume.pt")
    a, b = weights(trained), weights(tmp_path / "other")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_rerun_replaces_the_output(tmp_path, images):
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")
    train_ddpm(images, out, ddpm_cfg(steps=2), seed=0, resume=tmp_path / "resume.pt")
    assert not (out / "stale.txt").exists()
    assert (out / WEIGHTS).is_file()


class _Interrupted(Exception):
    pass


def _interrupt_after_first_save(monkeypatch):
    """Make train_ddpm stop right after it has written its first resume state (a crash there)."""
    original = runtime.save_atomic
    calls = []

    def save_then_crash(obj, path):
        original(obj, path)
        calls.append(obj["step"])
        raise _Interrupted

    monkeypatch.setattr(runtime, "save_atomic", save_then_crash)
    return calls


def test_resume_after_interruption_is_bitwise_identical(tmp_path, images, trained, monkeypatch):
    resume = tmp_path / "b.resume.pt"
    calls = _interrupt_after_first_save(monkeypatch)
    with pytest.raises(_Interrupted):
        train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, resume=resume)
    monkeypatch.undo()
    assert calls == [3] and resume.is_file() and not (tmp_path / "b").exists()

    torch.manual_seed(12345)  # the resumed run must not depend on the process' RNG state
    train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, resume=resume)
    assert not resume.exists()
    assert_bitwise_equal(weights(trained), weights(tmp_path / "b"))
    assert [int(r["step"]) for r in read_history(tmp_path / "b")] == [2, 4, 6]


def test_resume_keeps_the_logged_losses(tmp_path, images, trained, monkeypatch):
    """history.csv after a resume equals the uninterrupted one (loss column).

    The resume state at step 3 falls inside the logging interval 3..4: the uninterrupted run logs
    the mean loss of steps 3 and 4 at step 4, so a resumed run must too.
    """
    resume = tmp_path / "b.resume.pt"
    _interrupt_after_first_save(monkeypatch)
    with pytest.raises(_Interrupted):
        train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, resume=resume)
    monkeypatch.undo()
    train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, resume=resume)
    expected = [(r["step"], float(r["loss"])) for r in read_history(trained)]
    resumed = [(r["step"], float(r["loss"])) for r in read_history(tmp_path / "b")]
    assert resumed == expected


def test_resume_state_of_another_config_is_set_aside(tmp_path, images, monkeypatch, caplog):
    """A resume state written with another lr is not resumed: it is moved to <name>.stale, with a
    warning, and the run equals a fresh one with the new lr (resumed, it would not)."""
    resume = tmp_path / "b.resume.pt"
    _interrupt_after_first_save(monkeypatch)
    with pytest.raises(_Interrupted):
        train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, resume=resume)
    monkeypatch.undo()
    assert resume.is_file()

    cfg = ddpm_cfg(lr=2e-3)
    train_ddpm(images, tmp_path / "b", cfg, seed=0, resume=resume)
    assert "was written for a different config or inputs: training starts afresh" in caplog.text
    stale = tmp_path / "b.resume.pt.stale"
    assert stale.is_file() and torch.load(stale, weights_only=True)["step"] == 3
    assert not resume.exists()
    train_ddpm(images, tmp_path / "fresh", cfg, seed=0, resume=tmp_path / "fresh.resume.pt")
    assert_bitwise_equal(weights(tmp_path / "fresh"), weights(tmp_path / "b"))
    assert [(r["step"], r["loss"]) for r in read_history(tmp_path / "b")] == \
        [(r["step"], r["loss"]) for r in read_history(tmp_path / "fresh")]


def damage(path: Path, how: str) -> bytes:
    """Cut the file at `path` to half its bytes ("truncated") or replace it with as many random
    bytes ("garbage"); return what it holds now."""
    data = path.read_bytes()
    damaged = data[:len(data) // 2] if how == "truncated" else \
        np.random.default_rng(0).bytes(len(data))
    path.write_bytes(damaged)
    return damaged


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_unreadable_resume_state_is_set_aside(tmp_path, images, trained, monkeypatch, caplog,
                                              how):
    """A resume state damaged on disk cannot be read: it is moved to <name>.unreadable with one
    warning line naming it, and training starts afresh (the weights of a fresh run) instead of
    failing on every retry."""
    resume = tmp_path / "b.resume.pt"
    _interrupt_after_first_save(monkeypatch)
    with pytest.raises(_Interrupted):
        train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, resume=resume)
    monkeypatch.undo()
    damaged = damage(resume, how)

    caplog.clear()
    train_ddpm(images, tmp_path / "b", ddpm_cfg(), seed=0, resume=resume)
    assert_set_aside_as_unreadable(caplog, resume, damaged)
    assert_bitwise_equal(weights(trained), weights(tmp_path / "b"))
    assert [(r["step"], r["loss"]) for r in read_history(tmp_path / "b")] == \
        [(r["step"], r["loss"]) for r in read_history(trained)]


CHILD = """
import json, sys
import torch
import mammosynth
from mammosynth.ddpm.train import train_ddpm
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"])
train_ddpm(a["paths"], a["out"], a["cfg"], seed=a["seed"], resume=a["resume"])
"""


def test_resume_after_sigkill_is_bitwise_identical(tmp_path, images):
    """Kill -9 a training process as soon as its first resume state exists, then finish in-process."""
    cfg = ddpm_cfg(steps=40, resume_every=5, log_every=5)
    train_ddpm(images, tmp_path / "a", cfg, seed=3, resume=tmp_path / "a.resume.pt")

    resume, out = tmp_path / "b.resume.pt", tmp_path / "b"
    args = dict(paths=images, out=str(out), cfg=cfg, seed=3, resume=str(resume),
                threads=torch.get_num_threads())
    env = dict(os.environ, OMP_NUM_THREADS=str(args["threads"]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=tmp_path,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while child.poll() is None and not resume.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        if resume.exists():
            child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None and not resume.exists():
            child.kill()
        _, stderr = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, (
        f"the child was not killed mid-training (rc {child.returncode}); "
        f"stderr tail: {stderr.decode(errors='replace')[-2000:]}")
    assert resume.is_file() and not out.exists()
    step = torch.load(resume, weights_only=True)["step"]
    assert step in range(5, 40, 5)

    train_ddpm(images, out, cfg, seed=3, resume=resume)
    assert not resume.exists()
    assert_bitwise_equal(weights(tmp_path / "a"), weights(out))
    assert [int(r["step"]) for r in read_history(out)] == list(range(5, 41, 5))


def test_no_images_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no training images"):
        train_ddpm([], tmp_path / "m", ddpm_cfg(), seed=0, resume=tmp_path / "c")
    assert not (tmp_path / "m").exists()


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
    assert {r["guidance_scale"] for r in rows} == {""}  # an unconditional model has no guidance
    assert all(r["postprocess"] in ("masked", "flipped")
               or r["postprocess"].startswith("kept as sampled: ") for r in rows)
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


def test_dpmsolver_runs(tmp_path, trained):
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
                             "scheduler": "ddpm", "steps": 5, "guidance_scale": "",
                             "model_hash": "h", "postprocess": "masked"})
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
               resume=tmp_path / "raw.pt")
    train_ddpm(paths, tmp_path / "ema", ddpm_cfg(ema_decay=0.9), seed=1,
               resume=tmp_path / "ema.pt")
    raw, ema = weights(tmp_path / "raw"), weights(tmp_path / "ema")
    assert [r["loss"] for r in read_history(tmp_path / "raw")] == \
        [r["loss"] for r in read_history(tmp_path / "ema")]
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)


def test_gradient_accumulation_and_sample_grid(tmp_path):
    paths = write_images(tmp_path / "img")
    train_ddpm(paths, tmp_path / "m", ddpm_cfg(grad_accum=2, grid_images=5), seed=0,
               resume=tmp_path / "m.pt", sampling=SAMPLING)
    history = read_history(tmp_path / "m")
    assert [int(r["step"]) for r in history] == [2, 4, 6]
    grid = read_png(tmp_path / "m/samples.png")
    assert grid.shape == (2 * 16, 3 * 16)  # 5 images on a 3-column grid
    assert grid[:, :32].std() > 0 and np.all(grid[16:, 32:] == 0)  # the 6th cell stays empty


def test_sample_grid_is_postprocessed_and_needs_sampling_settings(tmp_path):
    paths = write_images(tmp_path / "img")
    # no sampling settings: no grid, whatever grid_images says
    train_ddpm(paths, tmp_path / "none", ddpm_cfg(steps=2, grid_images=4), seed=0,
               resume=tmp_path / "none.pt")
    assert not (tmp_path / "none/samples.png").exists()
    train_ddpm(paths, tmp_path / "zero", ddpm_cfg(steps=2, grid_images=0), seed=0,
               resume=tmp_path / "zero.pt", sampling=SAMPLING)
    assert not (tmp_path / "zero/samples.png").exists()

    # the grid shows exactly what sample_shard would write: the same seeds, post-processed
    train_ddpm(paths, tmp_path / "m", ddpm_cfg(steps=2, grid_images=4), seed=7,
               resume=tmp_path / "m.pt", sampling=SAMPLING)
    grid = np.round(read_png(tmp_path / "m/samples.png").astype(np.float64) * 65535)
    from diffusers import DDPMScheduler, UNet2DModel
    unet = UNet2DModel.from_pretrained(tmp_path / "m", subfolder="unet").eval()
    base = DDPMScheduler.from_pretrained(tmp_path / "m", subfolder="scheduler").config
    sched = make_scheduler(base, SAMPLING["scheduler"], SAMPLING["steps"])
    raw = generate(unet, sched, [7 + i for i in range(4)], SAMPLING["steps"])
    for k, image in enumerate(raw):
        r, c = divmod(k, 2)
        expected = postprocess(image, 16)[0].astype(np.float64)
        cell = grid[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16]
        # the grid goes through [0, 1] floats and back: at most one 16-bit level of round-off
        assert np.abs(cell - expected).max() <= 1, k


def test_label_dict_is_the_same_as_a_plain_list(tmp_path, images, trained):
    """{label: paths} with per-label conditioning trains exactly the plain list's model, and
    mammosynth.json names the label."""
    out = tmp_path / "normal"
    train_ddpm({"normal": images}, out, ddpm_cfg(conditioning="per_label"), seed=0,
               resume=tmp_path / "normal.resume.pt")
    assert_bitwise_equal(weights(trained), weights(out))
    assert json.loads((out / MODEL_INFO).read_text()) == {
        "conditioning": "per_label", "labels": ["normal"], "null_class": None}
    assert model_info(out)["conditioning"] == "per_label"
    assert model_info(trained) == {"conditioning": "per_label", "labels": [""],
                                   "null_class": None}
    # a folder without mammosynth.json (an older pipeline) reads as per-label
    assert model_info(tmp_path) == {"conditioning": "per_label", "labels": [],
                                    "null_class": None}
    with pytest.raises(UserError, match="abnormal has no training images"):
        train_ddpm({"normal": images, "abnormal": []}, tmp_path / "m",
                   ddpm_cfg(conditioning="class"), seed=0, resume=tmp_path / "m.resume.pt")


# --------------------------------------------------------------------------- class conditioning

LABELS = ["normal", "abnormal"]


@pytest.fixture(scope="module")
def conditional(tmp_path_factory, images) -> Path:
    """One tiny class-conditional model on two labels (3 images each)."""
    root = tmp_path_factory.mktemp("ddpm_class")
    out = root / "model"
    train_ddpm({"normal": images[:3], "abnormal": images[3:]}, out,
               ddpm_cfg(conditioning="class", label_dropout=0.5, grid_images=2), seed=0,
               resume=root / "model.resume.pt", sampling=SAMPLING)
    return out


def test_class_conditional_model_round_trips(conditional):
    from diffusers import DDPMPipeline, UNet2DModel

    pipeline = DDPMPipeline.from_pretrained(conditional)
    assert pipeline.unet.config.num_class_embeds == 3  # two labels + "no label"
    assert json.loads((conditional / MODEL_INFO).read_text()) == {
        "conditioning": "class", "labels": LABELS, "null_class": 2}
    assert model_info(conditional)["labels"] == LABELS

    unet = UNet2DModel.from_pretrained(conditional, subfolder="unet").eval()
    pipeline.unet.eval()
    x = torch.randn((2, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 40])
    with torch.no_grad():
        for label in (0, 1, 2):
            labels = torch.full((2,), label)
            a = pipeline.unet(x, t, class_labels=labels).sample
            b = unet(x, t, class_labels=labels).sample
            assert torch.equal(a, b), label
        # the label matters: the class embedding reaches the output
        assert not torch.equal(unet(x, t, class_labels=torch.zeros(2, dtype=torch.long)).sample,
                               unet(x, t, class_labels=torch.ones(2, dtype=torch.long)).sample)

    # the grid: one row of grid_images per label
    grid = read_png(conditional / "samples.png")
    assert grid.shape == (2 * 16, 2 * 16)
    assert grid[:16].std() > 0 and grid[16:].std() > 0


def test_class_conditional_sampling(tmp_path, conditional):
    kw = dict(seed=0, split=0, start=0, count=2, scheduler="ddim", steps=3, batch_size=2)
    for label in LABELS:
        sample_shard(conditional, tmp_path / label, label=label, **kw)
        rows = read_index(tmp_path / label)
        assert list(rows[0]) == INDEX_COLUMNS
        assert [r["image"] for r in rows] == [f"{label}_{i:05d}.png" for i in range(2)]
        assert {float(r["guidance_scale"]) for r in rows} == {1.0}
    # the two labels' images differ (their seeds differ, and so does the class)
    assert _pixels(tmp_path / "normal/normal_00000.png").tobytes() != \
        _pixels(tmp_path / "abnormal/abnormal_00000.png").tobytes()

    with pytest.raises(UserError, match="benign"):
        sample_shard(conditional, tmp_path / "benign", label="benign", **kw)
    assert not (tmp_path / "benign").exists()

    sample_shard(conditional, tmp_path / "guided", label="normal", guidance_scale=2.0, **kw)
    rows = read_index(tmp_path / "guided")
    assert {float(r["guidance_scale"]) for r in rows} == {2.0}
    for i in range(2):
        name = f"normal_{i:05d}.png"
        assert _pixels(tmp_path / "guided" / name).tobytes() != \
            _pixels(tmp_path / "normal" / name).tobytes(), name

    # each PNG is the guided draw of the label's class from its own seed, post-processed
    from diffusers import DDPMScheduler, UNet2DModel
    unet = UNet2DModel.from_pretrained(conditional, subfolder="unet").eval()
    base = DDPMScheduler.from_pretrained(conditional, subfolder="scheduler").config
    raw = generate(unet, make_scheduler(base, "ddim", 3),
                   [image_seed(0, 0, "normal", i) for i in range(2)], 3,
                   class_label=LABELS.index("normal"), null_class=2, guidance_scale=2.0)
    for i, (image, row) in enumerate(zip(raw, rows)):
        pixels, done = postprocess(image, 16)
        assert np.array_equal(_pixels(tmp_path / "guided" / row["image"]), pixels), i
        assert row["postprocess"] == done


def test_guidance_formula(conditional):
    """generate() with guidance: uncond + scale * (cond - uncond), uncond = the null class."""
    from diffusers import DDPMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(conditional, subfolder="unet").eval()
    base = DDPMScheduler.from_pretrained(conditional, subfolder="scheduler").config
    seeds = [11, 12]
    sched = make_scheduler(base, "ddim", 2)
    # scale 1 is the conditional model alone; scale 0 the unconditional (null class) alone
    one = generate(unet, sched, seeds, 2, class_label=1, null_class=2, guidance_scale=1.0)
    plain = generate(unet, sched, seeds, 2, class_label=1)
    np.testing.assert_array_equal(one, plain)
    zero = generate(unet, sched, seeds, 2, class_label=1, null_class=2, guidance_scale=0.0)
    null = generate(unet, sched, seeds, 2, class_label=2)
    np.testing.assert_allclose(zero, null, atol=1e-5)


# --------------------------------------------------------------------------- training recipe

def _schema_recipe() -> dict:
    """The shipped training recipe: the schema's defaults for the recipe keys."""
    from mammosynth.config import validate

    schema = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"
    ddpm = validate({}, schema)["ddpm"]
    return {k: ddpm[k] for k in ("prediction_type", "zero_terminal_snr", "snr_gamma",
                                 "ema_power")}


V_RECIPE = _schema_recipe()


def test_v_prediction_zero_terminal_snr_scheduler(tmp_path, images):
    from diffusers import DDPMPipeline

    assert V_RECIPE["prediction_type"] == "v_prediction" and V_RECIPE["zero_terminal_snr"]
    assert V_RECIPE["snr_gamma"]

    out = tmp_path / "v"
    train_ddpm(images, out, ddpm_cfg(**V_RECIPE), seed=0, resume=tmp_path / "v.resume.pt")
    config = json.loads((out / "scheduler/scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction"
    assert config["rescale_betas_zero_snr"] is True
    scheduler = DDPMPipeline.from_pretrained(out).scheduler
    assert float(scheduler.alphas_cumprod[-1]) < 1e-6  # the last timestep is pure noise
    assert float(scheduler.alphas_cumprod[0]) > 0.9
    assert all(np.isfinite(float(r["loss"])) for r in read_history(out))
    # every sampler starts from pure noise and gives finite images
    for name in SCHEDULERS:
        sample_shard(out, tmp_path / name, seed=0, split=0, label="normal", start=0, count=2,
                     scheduler=name, steps=3, batch_size=2)
        sched = make_scheduler(scheduler.config, name, 3)
        assert sched.config.prediction_type == "v_prediction"
        assert int(sched.timesteps[0]) == 49, name  # trailing spacing: from the last timestep
        for r in read_index(tmp_path / name):
            pixels = read_png(tmp_path / name / r["image"])
            assert pixels.shape == (16, 16) and np.isfinite(pixels).all()


def test_v_prediction_resume_is_bitwise_identical(tmp_path, images, monkeypatch):
    cfg = ddpm_cfg(**V_RECIPE)
    train_ddpm(images, tmp_path / "a", cfg, seed=0, resume=tmp_path / "a.resume.pt")

    resume = tmp_path / "b.resume.pt"
    calls = _interrupt_after_first_save(monkeypatch)
    with pytest.raises(_Interrupted):
        train_ddpm(images, tmp_path / "b", cfg, seed=0, resume=resume)
    monkeypatch.undo()
    assert calls == [3] and resume.is_file()
    torch.manual_seed(999)
    train_ddpm(images, tmp_path / "b", cfg, seed=0, resume=resume)
    assert_bitwise_equal(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert read_history(tmp_path / "a") == [
        {**r, "images_per_s": a["images_per_s"]}
        for r, a in zip(read_history(tmp_path / "b"), read_history(tmp_path / "a"))]

    # the recipe changes training: not the epsilon model's weights
    train_ddpm(images, tmp_path / "eps", ddpm_cfg(), seed=0, resume=tmp_path / "eps.resume.pt")
    a, b = weights(tmp_path / "a"), weights(tmp_path / "eps")
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_loss_weights_are_min_snr_gamma(prediction_type):
    scheduler = build_scheduler(ddpm_cfg(prediction_type=prediction_type))
    assert scheduler.config.prediction_type == prediction_type
    t = torch.tensor([0, 5, 20, 35, 49])
    a = scheduler.alphas_cumprod.double()[t]
    snr = a / (1 - a)
    gamma = 5.0
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    expected = clipped / snr if prediction_type == "epsilon" else clipped / (snr + 1)
    got = loss_weights(scheduler, t, gamma)
    assert got.shape == (5,)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-7)
    # at low noise (SNR above gamma) the weight is gamma / SNR (eps) or gamma / (SNR + 1) (v);
    # at high noise min-SNR leaves epsilon's weight at 1
    assert snr[0] > gamma and snr[-1] < gamma
    if prediction_type == "epsilon":
        assert float(got[-1]) == pytest.approx(1.0)
    assert loss_weights(scheduler, t, None) is None


def test_loss_weights_zero_terminal_snr_is_finite():
    scheduler = build_scheduler(ddpm_cfg(**V_RECIPE))
    t = torch.arange(50)
    w = loss_weights(scheduler, t, 5.0)
    assert torch.isfinite(w).all() and (w >= 0).all() and (w <= 1).all()
    assert float(w[-1]) == pytest.approx(0.0, abs=1e-6)  # SNR 0: v's weight 0 / (0 + 1)


def test_sampler_settings():
    assert set(SAMPLER_SETTINGS) == set(SCHEDULERS)
    assert ddpm_sample.INDEX_COLUMNS == INDEX_COLUMNS
    base = build_scheduler(ddpm_cfg()).config
    for name in SCHEDULERS:
        sched = make_scheduler(base, name, 4)
        for key, value in SAMPLER_SETTINGS[name].items():
            assert sched.config[key] == value, (name, key)
        assert sched.config.num_train_timesteps == 50


# --------------------------------------------------------------------------- post-processing


def synthetic_looking(size: int = 32, seed: int = 0) -> np.ndarray:
    """A sampled-looking image in [0, 1]: a bright half-ellipse against the RIGHT edge on a grey
    (0.1) noisy background, as an untrained-on-black DDPM would draw it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r = ((x - (size - 1)) / (0.6 * size)) ** 2 + ((y - size / 2) / (0.4 * size)) ** 2
    image = np.where(r <= 1.0, 0.6 + 0.3 * (1.0 - np.sqrt(np.clip(r, 0, 1))), 0.1)
    return np.clip(image + rng.normal(0.0, 0.02, image.shape), 0.0, 1.0)


def test_postprocess_masks_and_flips_like_real_images():
    image = synthetic_looking()
    out, done = postprocess(image, 32)
    assert done == "flipped"
    assert out.dtype == np.uint16 and out.shape == (32, 32)
    # the rule is the real images' background rule, exactly
    expected, flipped = mask_like_real(image.astype(np.float32))
    assert flipped is True
    np.testing.assert_array_equal(out, np.round(expected * 65535).astype(np.uint16))
    # the grey background is now exactly 0, the breast is on the left, nothing else moved
    x = out.astype(np.float64) / 65535
    assert x[0, -1] == x[-1, -1] == x[0, 0] == x[-1, 0] == 0.0
    assert ((x > 0) & (x < 0.3)).mean() < 0.05  # no grey left
    assert x[:, :8].mean() > x[:, -8:].mean() + 0.2
    assert (x[:, -4:] == 0).mean() > 0.5
    inside = x[:, ::-1] > 0
    np.testing.assert_allclose(x[:, ::-1][inside], image.astype(np.float32)[inside], atol=1e-4)

    # already on the left: masked, not flipped
    out_left, done_left = postprocess(image[:, ::-1].copy(), 32)
    assert done_left == "masked"
    # the same image either way round, up to a mask pixel at the edge (interpolation round-off)
    assert (out_left != out).mean() < 0.02 and ((out_left == 0) != (out == 0)).sum() <= 4

    # smaller than the real images: upsampled to their size first (the same PNG contract)
    big, _ = postprocess(image, 64)
    assert big.shape == (64, 64) and big[0, -1] == 0


def test_postprocess_leaves_real_images_as_they_are():
    """Real preprocessed images already have a black background on the left: the rule changes
    (almost) nothing, so it cannot itself mark an image as synthetic."""
    from mammosynth.imaging.breast import preprocess_array

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:320, 0:256].astype(np.float64)
    r = (x / 200.0) ** 2 + ((y - 160) / 140.0) ** 2
    full = np.where(r <= 1.0, 0.5 + 0.1 * rng.standard_normal((320, 256)), 0.0).clip(0, 1)
    real, _ = preprocess_array(full.astype(np.float32), "L", 32)
    again, done = postprocess(real.astype(np.float32) / 65535, 32)
    assert done == "masked"
    changed = again != real
    assert changed.mean() < 0.02 and (again[changed] == 0).all()


def test_postprocess_keeps_an_image_with_no_breast():
    black = np.zeros((16, 16), dtype=np.float32)
    out, done = postprocess(black, 16)
    assert done.startswith("kept as sampled: ") and "no breast" in done
    assert out.dtype == np.uint16 and out.shape == (16, 16) and not out.any()


# --------------------------------------------------------------------------- sampler parity


@pytest.fixture(scope="module")
def half_bright(tmp_path_factory) -> Path:
    """A tiny model of the schema's recipe (v-prediction, zero-terminal SNR, min-SNR, T = 1000)
    trained on near-identical images: the left 10 columns at 0.7, the rest black."""
    from mammosynth.config import validate

    folder = tmp_path_factory.mktemp("half")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        image = np.zeros((16, 16))
        image[:, :10] = np.clip(0.7 + rng.normal(0, 0.02, (16, 10)), 0, 1)
        write_png(folder / f"{i}.png", image)
        paths.append(str(folder / f"{i}.png"))
    recipe = validate({}, Path(__file__).resolve().parents[1]
                      / "workflow/schemas/config.schema.yaml")["ddpm"]
    cfg = ddpm_cfg(**{k: recipe[k] for k in ("prediction_type", "zero_terminal_snr", "snr_gamma",
                                             "ema_power")},
                   timesteps=1000, steps=300, batch_size=16, lr=3e-3, warmup_steps=10,
                   ema_decay=0.95, log_every=100, resume_every=10**6)
    train_ddpm(paths, folder / "model", cfg, seed=0, resume=folder / "model.pt")
    return folder / "model"


def test_fast_samplers_draw_what_ancestral_sampling_draws(tmp_path, half_bright):
    """Parity: with their settings (SAMPLER_SETTINGS), DDIM-50 and DPM-Solver++-25 draw the image
    the model learned - its brightness and its black background - as 1000 ancestral steps do. The
    failures seen with the old recipe were black, white or grey frames
    (shared/notes/ddpm-realism.md). Subtler differences (e.g. "leading" instead of "trailing"
    spacing, which this image does not reveal) are measured by bench/ddpm.py on the demo data."""
    means = {}
    for name, steps in (("ddpm", 1000), ("ddim", 50), ("dpmsolver++", 25)):
        sample_shard(half_bright, tmp_path / name, seed=0, split=0, label="x", start=0, count=8,
                     scheduler=name, steps=steps, batch_size=8)
        x = np.stack([read_png(p) for _, p in read_shards([tmp_path / name])])
        means[name] = (float(x[:, 2:-2, 1:9].mean()), float(x[:, :, 12:].mean()))
    for name, (left, right) in means.items():
        assert abs(left - 0.7) < 0.1 and right < 0.05, (name, means)
        assert abs(left - means["ddpm"][0]) < 0.05, (name, means)
