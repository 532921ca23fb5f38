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
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from mammosynth import layout
from mammosynth.ddpm import n_shards, shard_range  # noqa: F401  (re-exported)
from mammosynth.errors import UserError
from mammosynth.imaging.png import write_png
from mammosynth.runtime import device, publish_folder

SCHEDULERS = ("ddpm", "ddim", "dpmsolver++")

MODEL_INFO = "mammosynth.json"  # in a pipeline folder: conditioning, labels, null class
# Each sampler's settings beyond the training schedule (README "Samplers" has the measurements):
# "trailing" spacing starts every few-step sampler at the last trained timestep (with a zero-SNR
# schedule: from pure noise, as in training); DPM-Solver++ ends with a first-order step to
# sigma 0.
SAMPLER_SETTINGS = {
    "ddpm": {"timestep_spacing": "trailing"},
    "ddim": {"timestep_spacing": "trailing", "set_alpha_to_one": True},
    "dpmsolver++": {"algorithm_type": "dpmsolver++", "timestep_spacing": "trailing",
                    "final_sigmas_type": "zero", "lower_order_final": True},
}


def model_hash(pipeline_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((pipeline_dir / "unet").glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def make_scheduler(base_config, name: str, steps: int):
    """A sampling scheduler from the training scheduler's config (config.check has checked the
    name and the step count)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    classes = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler,
               "dpmsolver++": DPMSolverMultistepScheduler}
    return classes[name].from_config(base_config, **SAMPLER_SETTINGS[name])


def model_info(pipeline_dir: str | Path) -> dict:
    """The pipeline's conditioning and labels (mammosynth.json; per_label when absent)."""
    path = Path(pipeline_dir) / MODEL_INFO
    if not path.exists():
        return {"conditioning": "per_label", "labels": [], "null_class": None}
    return json.loads(path.read_text())


@torch.no_grad()
def generate(unet, scheduler, seeds: list[int], steps: int, *, class_label: int | None = None,
             null_class: int | None = None, guidance_scale: float = 1.0):
    """Denoise one batch, image k from noise seeded by seeds[k]; -> (N, size, size) in [0, 1].

    class_label: for a class-conditional U-Net, the class to draw; with guidance_scale != 1,
    classifier-free guidance: out = uncond + scale * (cond - uncond), uncond = `null_class`.
    """
    dev = next(unet.parameters()).device
    size = unet.config.sample_size
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    x = torch.stack([torch.randn((1, size, size), generator=g) for g in generators]).to(dev)
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    n = len(seeds)
    labels = None if class_label is None else torch.full((n,), class_label, device=dev)
    guided = labels is not None and guidance_scale != 1.0
    if guided:
        labels = torch.cat([labels, torch.full((n,), null_class, device=dev)])
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            if guided:
                cond, uncond = unet(torch.cat([x_in, x_in]), t,
                                    class_labels=labels).sample.float().chunk(2)
                out = uncond + guidance_scale * (cond - uncond)
            else:
                out = unet(x_in, t, class_labels=labels).sample.float()
            x = scheduler.step(out, t, x, generator=generators).prev_sample
    return ((x.clamp(-1, 1) + 1) / 2)[:, 0].float().cpu().numpy()


def postprocess(image: np.ndarray, size: int) -> tuple[np.ndarray, str]:
    """A sampled image in [0, 1] -> (16-bit size x size image, what was done), by the real
    images' background rule (`imaging.breast.mask_like_real`): upsampled (bilinear) to the
    real images' size (preprocess.size) if smaller, background outside the breast mask set to
    exactly 0, chest wall to the left. An image with no breast is kept as sampled and says so."""
    from mammosynth.errors import ImageError
    from mammosynth.imaging.breast import mask_like_real, resize

    image = np.clip(image.astype(np.float32), 0.0, 1.0)
    if image.shape != (size, size):
        image = np.clip(resize(image, size, size), 0.0, 1.0)
    try:
        image, flipped = mask_like_real(image)
    except ImageError as e:
        return np.round(image * 65535.0).astype(np.uint16), f"kept as sampled: {e}"
    return np.round(image * 65535.0).astype(np.uint16), "flipped" if flipped else "masked"


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


INDEX_COLUMNS = ["image", "index", "seed", "scheduler", "steps", "guidance_scale", "model_hash",
                 "postprocess"]


def sample_shard(pipeline_dir: str | Path, out_dir: str | Path, *, seed: int, split: int | str,
                 label: str, start: int, count: int, scheduler: str, steps: int,
                 batch_size: int, guidance_scale: float = 1.0, size: int | None = None) -> None:
    """Write images start..start+count-1 of `label` as 16-bit PNGs plus index.csv into out_dir,
    each post-processed like a real image to size x size (`postprocess`; default: the DDPM's
    own size). A class-conditional pipeline draws
    `label`'s class (its mammosynth.json lists the labels)."""
    from diffusers import DDPMScheduler

    pipeline_dir, out_dir = Path(pipeline_dir), Path(out_dir)
    base = DDPMScheduler.from_pretrained(pipeline_dir, subfolder="scheduler").config
    sched = make_scheduler(base, scheduler, steps)
    info = model_info(pipeline_dir)
    conditional = info["conditioning"] == "class"
    if conditional and label not in info["labels"]:
        raise UserError(f"{pipeline_dir}: this class-conditional DDPM knows the labels "
                        f"{', '.join(info['labels'])}, not {label!r}; delete it and re-run")
    condition = dict(class_label=info["labels"].index(label), null_class=info["null_class"],
                     guidance_scale=guidance_scale) if conditional else {}
    unet = load_unet(pipeline_dir)
    size = size or unet.config.sample_size
    digest = model_hash(pipeline_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    rows = []
    for batch in aligned_batches(start, start + count, batch_size):
        seeds = [layout.image_seed(seed, split, label, i) for i in batch]
        for i, s, image in zip(batch, seeds, generate(unet, sched, seeds, steps, **condition)):
            name = f"{label}_{i:05d}.png"
            pixels, done = postprocess(image, size)
            write_png(tmp / name, pixels)
            rows.append({"image": name, "index": i, "seed": s, "scheduler": scheduler,
                         "steps": steps, "guidance_scale": guidance_scale if conditional else "",
                         "model_hash": digest, "postprocess": done})
    publish_folder(tmp, out_dir, rows, INDEX_COLUMNS)


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
