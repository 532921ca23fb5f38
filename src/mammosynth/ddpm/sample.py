"""Sample synthetic images from a trained DDPM pipeline directory, one shard at a time.

Image i of (split, label) starts from noise seeded by (seed, split, label, i) only, and every
stochastic step draws from that image's own generator (on the CPU, so a GPU gives the same
draws), so scenario n's images are the first n of every larger scenario. Batches are aligned to
multiples of `batch_size` in the whole sequence, so with a `shard_size` that is a multiple of
`batch_size` every image is computed in the same batch, and comes out bit-identical, whatever the
shard size; otherwise batched arithmetic can move a pixel by one 16-bit level.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path

import torch

from mammosynth.ddpm import n_shards, shard_range  # noqa: F401  (re-exported)
from mammosynth.errors import UserError
from mammosynth.imaging.png import write_png
from mammosynth.runtime import device

SCHEDULERS = ("ddpm", "ddim", "dpmsolver++")


def image_seed(seed: int, split: int | str, label: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{split}/{label}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def model_hash(pipeline_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((pipeline_dir / "unet").glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def make_scheduler(base_config, name: str, steps: int):
    """A sampling scheduler from the training scheduler's config; checks the step count."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    classes = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler,
               "dpmsolver++": DPMSolverMultistepScheduler}
    if name not in classes:
        raise UserError(f"config sampling.scheduler: {name!r} is not one of "
                        f"{', '.join(SCHEDULERS)}")
    trained = base_config.num_train_timesteps
    if not 1 <= steps <= trained:
        raise UserError(f"config sampling.steps: {steps} is more than the {trained} timesteps the "
                        f"DDPM was trained with (ddpm.timesteps); use at most {trained}")
    extra = {"algorithm_type": "dpmsolver++"} if name == "dpmsolver++" else {}
    return classes[name].from_config(base_config, **extra)


@torch.no_grad()
def generate(unet, scheduler, seeds: list[int], steps: int):
    """Denoise one batch, image k from noise seeded by seeds[k]; -> (N, size, size) in [0, 1]."""
    dev = next(unet.parameters()).device
    size = unet.config.sample_size
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    x = torch.stack([torch.randn((1, size, size), generator=g) for g in generators]).to(dev)
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        for t in scheduler.timesteps:
            eps = unet(scheduler.scale_model_input(x, t), t).sample.float()
            x = scheduler.step(eps, t, x, generator=generators).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2)[:, 0].float().cpu().numpy()


def aligned_batches(start: int, stop: int, batch_size: int):
    """[start, stop) cut at multiples of batch_size: the same batches for any sharding."""
    i = start
    while i < stop:
        j = min(stop, (i // batch_size + 1) * batch_size)
        yield range(i, j)
        i = j


def load_unet(pipeline_dir: Path):
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(pipeline_dir, subfolder="unet").eval().to(device())
    if device().type == "cuda":
        unet = unet.to(memory_format=torch.channels_last)
    return unet


def sample_shard(pipeline_dir: str | Path, out_dir: str | Path, *, seed: int, split: int | str,
                 label: str, start: int, count: int, scheduler: str, steps: int,
                 batch_size: int) -> None:
    """Write images start..start+count-1 as 16-bit PNGs plus index.csv into out_dir."""
    from diffusers import DDPMScheduler

    pipeline_dir, out_dir = Path(pipeline_dir), Path(out_dir)
    base = DDPMScheduler.from_pretrained(pipeline_dir, subfolder="scheduler").config
    sched = make_scheduler(base, scheduler, steps)
    unet = load_unet(pipeline_dir)
    digest = model_hash(pipeline_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = []
    for batch in aligned_batches(start, start + count, batch_size):
        seeds = [image_seed(seed, split, label, i) for i in batch]
        for i, s, image in zip(batch, seeds, generate(unet, sched, seeds, steps)):
            name = f"{label}_{i:05d}.png"
            write_png(tmp / name, image)
            rows.append({"image": name, "index": i, "seed": s, "scheduler": scheduler,
                         "steps": steps, "model_hash": digest})
    with open(tmp / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "index", "seed", "scheduler", "steps",
                                               "model_hash"])
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
