"""Sample synthetic images from a trained DDPM pipeline directory, one shard at a time.

Image i of (split, label) starts from noise seeded by (seed, split, label, i) only, and every
stochastic step draws from that image's own generator, so the same images come out whatever the
shard size or batch size, and scenario n's images are the first n of every larger scenario.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path

import torch

from mammosynth.errors import UserError
from mammosynth.imaging.png import write_png

SCHEDULERS = ("ddpm", "ddim", "dpmsolver++")


def image_seed(seed: int, split: int, label: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{split}/{label}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def model_hash(pipeline_dir: Path) -> str:
    weights = sorted((pipeline_dir / "unet").glob("*.safetensors"))
    digest = hashlib.sha256()
    for path in weights:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_scheduler(pipeline_dir: Path, name: str):
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    base = DDPMScheduler.from_pretrained(pipeline_dir, subfolder="scheduler")
    if name == "ddpm":
        return base
    if name == "ddim":
        return DDIMScheduler.from_config(base.config)
    if name == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(base.config, algorithm_type="dpmsolver++")
    raise UserError(f"config sampling.scheduler: {name!r} is not one of {', '.join(SCHEDULERS)}")


@torch.no_grad()
def sample_shard(pipeline_dir: str | Path, out_dir: str | Path, *, seed: int, split: int,
                 label: str, start: int, count: int, scheduler: str, steps: int,
                 batch_size: int) -> None:
    """Write images start..start+count-1 as 16-bit PNGs plus index.csv into out_dir."""
    from diffusers import UNet2DModel

    pipeline_dir, out_dir = Path(pipeline_dir), Path(out_dir)
    unet = UNet2DModel.from_pretrained(pipeline_dir, subfolder="unet").eval()
    sched = load_scheduler(pipeline_dir, scheduler)
    trained = sched.config.num_train_timesteps
    if not 1 <= steps <= trained:
        raise UserError(f"config sampling.steps: {steps} is more than the {trained} timesteps the "
                        f"DDPM was trained with (ddpm.timesteps); use at most {trained}")
    size = unet.config.sample_size
    digest = model_hash(pipeline_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = []
    for first in range(start, start + count, batch_size):
        indices = list(range(first, min(first + batch_size, start + count)))
        seeds = [image_seed(seed, split, label, i) for i in indices]
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        x = torch.stack([torch.randn((1, size, size), generator=g) for g in generators])
        sched.set_timesteps(steps)
        x = x * sched.init_noise_sigma
        for t in sched.timesteps:
            model_input = sched.scale_model_input(x, t)
            x = sched.step(unet(model_input, t).sample, t, x, generator=generators).prev_sample
        images = ((x.clamp(-1, 1) + 1) / 2).numpy()
        for i, s, image in zip(indices, seeds, images):
            name = f"{label}_{i:05d}.png"
            write_png(tmp / name, image[0])
            rows.append({"image": name, "index": i, "seed": s, "scheduler": scheduler,
                         "steps": steps, "model_hash": digest})
    with open(tmp / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["image", "index"])
        writer.writeheader()
        writer.writerows(rows)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def read_shards(shard_dirs: list[str | Path]) -> list[tuple[int, Path]]:
    """(index, png path) of every image in the given shard directories, sorted by index."""
    out = []
    for shard in map(Path, shard_dirs):
        with open(shard / "index.csv") as f:
            out += [(int(r["index"]), shard / r["image"]) for r in csv.DictReader(f)]
    indices = [i for i, _ in sorted(out)]
    if indices != list(range(len(indices))):
        raise UserError(f"synthetic shards {', '.join(map(str, shard_dirs))} do not hold images "
                        "0..n-1 exactly once; delete them and re-run")
    return sorted(out)


def n_shards(total: int, shard_size: int) -> int:
    return -(-total // shard_size) if total > 0 else 0


def shard_range(shard: int, total: int, shard_size: int) -> tuple[int, int]:
    start = shard * shard_size
    return start, max(0, min(shard_size, total - start))


