"""Train a DDPM on a split's training images; save a diffusers DDPMPipeline.

`conditioning: per_label` trains one unconditional model per label (paper 000's design);
`conditioning: class` trains one class-conditional model per split on every label's images
(`UNet2DModel(num_class_embeds=labels + 1)`; the extra class is the "no label" of
classifier-free guidance, used for a `label_dropout` fraction of the training images).

The recipe (every part a config key, each measured in README "The DDPM stage"):
- the scheduler owns the noise algebra (diffusers' `add_noise` / `get_velocity`): the model
  predicts `prediction_type` (epsilon, or v = sqrt(a)*eps - sqrt(1-a)*x0, which keeps x0's
  estimate well-conditioned at high noise, where epsilon's is amplified 1/sqrt(a) ~ 150x);
- `zero_terminal_snr` rescales the betas so the last timestep is pure noise (Lin et al. 2024),
  so sampling starts from the distribution the model was trained on;
- min-SNR-gamma loss weighting (`snr_gamma`, Hang et al. 2023; `diffusers.training_utils.
  compute_snr`);
- AdamW with linear warm-up and cosine decay, gradient clipping, gradient accumulation
  (`grad_accum` micro-batches of `batch_size`), EMA weights (saved and sampled) with
  diffusers' warm-up (`ema_power`; train_unconditional uses 3/4).
On CUDA: bf16 autocast, channels_last, fused AdamW; on the CPU plain fp32.

Every model gets the same number of optimisation steps (`steps`), whatever its image count.
Batches are drawn uniformly over the model's images (class conditioning: over all labels).

The resume state (runtime.TrainerState: model, EMA, optimizer, LR schedule, the batch generator,
the global RNG states, step, pending log) is written atomically to `resume` every `resume_every`
steps; a re-run resumes from it and, on the CPU, ends with weights bitwise identical to an
uninterrupted run. All noise and batch indices come from one CPU generator, so the sequence of
batches does not depend on the device. The resume state carries a fingerprint
(runtime.fingerprint) of what determines the weights: the `ddpm` config section as given, less
log_every, resume_every and grid_images; the labels (in order), the seed, and each label's image
paths (in order, each with its file's size). A resume state with another (or no) fingerprint is
moved aside to `<resume>.stale`, one that cannot be read (truncated, corrupted) to
`<resume>.unreadable`, and training starts afresh. It is deleted when the model is written.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mammosynth.ddpm.sample import MODEL_INFO, generate, make_scheduler, postprocess
from mammosynth.errors import UserError
from mammosynth.imaging.png import read_pngs, write_png
from mammosynth.runtime import TrainerState, device, fingerprint

log = logging.getLogger(__name__)
HISTORY = ["step", "loss", "lr", "images_per_s"]
# ddpm keys outside the resume fingerprint: they change the log and the grid, not the weights
NOT_FINGERPRINTED = {"log_every", "resume_every", "grid_images"}


def load_images(paths: list[str], size: int) -> torch.Tensor:
    """PNG files -> (N, 1, size, size) float tensor in [-1, 1]."""
    return torch.from_numpy(read_pngs(paths, size) * 2.0 - 1.0)


def build_unet(cfg: dict, n_classes: int = 0):
    """The U-Net of `cfg` (checked: attention_levels has one entry per block_out_channels
    entry, or is empty); n_classes > 0: class-conditional with n_classes + 1 embeddings (the
    last one is "no label")."""
    from diffusers import UNet2DModel

    attention = cfg.get("attention_levels") or [False] * len(cfg["block_out_channels"])
    return UNet2DModel(
        sample_size=cfg["image_size"], in_channels=1, out_channels=1,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        norm_num_groups=min(32, min(cfg["block_out_channels"])),
        dropout=cfg.get("dropout", 0.0),
        num_class_embeds=n_classes + 1 if n_classes else None,
    )


def build_scheduler(cfg: dict):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg["timesteps"], beta_schedule=cfg["beta_schedule"],
                         prediction_type=cfg.get("prediction_type", "epsilon"),
                         rescale_betas_zero_snr=cfg.get("zero_terminal_snr", False),
                         clip_sample=True)


def loss_weights(scheduler, t: torch.Tensor, gamma: float | None) -> torch.Tensor | None:
    """min-SNR-gamma weights of the per-image MSE (None: uniform): min(SNR, gamma) / SNR for an
    epsilon target, min(SNR, gamma) / (SNR + 1) for a v target (Hang et al. 2023, eq. 9)."""
    if not gamma:
        return None
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, t)
    clipped = snr.clamp(max=gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr.clamp(min=1e-8)


def sample_grid(blocks: list[np.ndarray], path: Path) -> None:
    """Image sets (each (N, size, size) in [0, 1]; one per label) as one PNG: each set on a
    square-ish grid of its own rows, the sets one below the other."""
    n, size = max(len(b) for b in blocks), blocks[0].shape[-1]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((len(blocks) * rows * size, cols * size), dtype=np.float32)
    for b, images in enumerate(blocks):
        for k, image in enumerate(images):
            r, c = divmod(k, cols)
            top = (b * rows + r) * size
            grid[top:top + size, c * size:(c + 1) * size] = image
    write_png(path, grid)


def train_ddpm(images: list[str] | dict[str, list[str]], out_dir: str | Path, cfg: dict, *,
               seed: int, resume: str | Path, sampling: dict | None = None,
               size: int | None = None) -> None:
    """Train on `images` ({label: paths}; a plain list is one unnamed label); write the pipeline
    (EMA weights), mammosynth.json, history.csv and samples.png (a grid drawn with `sampling`,
    post-processed like the synthetic images to `size`, the real images' size; per label for a
    class-conditional model) to `out_dir`. `resume`: the resume state's file (see the module
    docstring).

    cfg["conditioning"] == "class": one model conditioned on the label (its index in `images`).
    """
    from diffusers import DDPMPipeline
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    if not isinstance(images, dict):
        images = {"": list(images)}
    labels = list(images)
    conditional = cfg.get("conditioning") == "class"
    empty = [label or "this label" for label in labels if not images[label]]
    if empty:
        raise UserError(f"train_ddpm: {', '.join(empty)} has no training images in this split")
    dev = device()
    cuda = dev.type == "cuda"
    torch.manual_seed(seed)
    data = load_images([p for label in labels for p in images[label]], cfg["image_size"])
    classes = torch.tensor([k for k, label in enumerate(labels) for _ in images[label]])
    null_class = len(labels)
    unet = build_unet(cfg, len(labels) if conditional else 0)
    scheduler = build_scheduler(cfg)
    unet = unet.to(dev, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    ema = EMAModel(unet.parameters(), decay=cfg["ema_decay"], use_ema_warmup=True,
                   power=cfg.get("ema_power", 2 / 3), foreach=True,
                   model_cls=type(unet), model_config=unet.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                                  fused=cuda, foreach=None if cuda else True)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, cfg["warmup_steps"], cfg["steps"])
    generator = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    step, losses = 0, []
    key = fingerprint({"ddpm": {k: v for k, v in cfg.items() if k not in NOT_FINGERPRINTED},
                       "labels": labels, "seed": seed}, images)
    state = TrainerState(resume, key, unet=unet, ema=ema, optimizer=optimizer,
                         lr_schedule=lr_schedule, generator=generator)
    saved = state.restore()
    if saved is not None:
        step, history, losses = saved["step"], saved["history"], saved["pending_losses"]
        log.info("resumed from %s at step %d", resume, step)
    ema.to(dev)

    accum, batch = cfg.get("grad_accum", 1), cfg["batch_size"]
    dropout = cfg.get("label_dropout", 0.0) if conditional else 0.0
    gamma = cfg.get("snr_gamma")
    v_target = scheduler.config.prediction_type == "v_prediction"
    log.info("%s: %d images%s, %d steps of %d x %d, %.2f M parameters, %s, min-SNR %s", dev,
             len(data), f" over {len(labels)} classes" if conditional else "", cfg["steps"],
             accum, batch, sum(p.numel() for p in unet.parameters()) / 1e6,
             scheduler.config.prediction_type, gamma)
    unet.train()
    tick, timed = time.perf_counter(), 0
    progress = tqdm(total=cfg["steps"], initial=step, desc="train_ddpm", mininterval=30)
    while step < cfg["steps"]:
        total = torch.zeros((), device=dev)
        for _ in range(accum):
            index = torch.randint(0, len(data), (batch,), generator=generator)
            clean = data[index]
            noise = torch.randn(clean.shape, generator=generator)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,),
                              generator=generator)
            class_labels = None
            if conditional:
                drop = torch.rand(batch, generator=generator) < dropout
                class_labels = torch.where(drop, null_class, classes[index]).to(dev)
            noisy = scheduler.add_noise(clean, noise, t).to(dev, non_blocking=True)
            target = scheduler.get_velocity(clean, noise, t) if v_target else noise
            if cuda:
                noisy = noisy.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                pred = unet(noisy, t.to(dev), class_labels=class_labels).sample
            per_image = F.mse_loss(pred.float(), target.to(dev), reduction="none").mean((1, 2, 3))
            weights = loss_weights(scheduler, t, gamma)
            if weights is not None:
                per_image = per_image * weights.to(dev)
            loss = per_image.mean() / accum
            loss.backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg["grad_clip"], foreach=True)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        step += 1
        timed += 1
        losses.append(float(total))
        progress.update()
        if step % cfg["log_every"] == 0 or step == cfg["steps"]:
            seconds = time.perf_counter() - tick
            history.append({"step": step, "loss": float(np.mean(losses)),
                            "lr": lr_schedule.get_last_lr()[0],
                            "images_per_s": timed * accum * batch / seconds})
            log.info("step %d/%d loss %.4f %.1f img/s", step, cfg["steps"], history[-1]["loss"],
                     history[-1]["images_per_s"])
            losses, tick, timed = [], time.perf_counter(), 0
        if step % cfg["resume_every"] == 0 and step < cfg["steps"]:
            state.save(step=step, history=history, pending_losses=losses)
    progress.close()

    ema.copy_to(unet.parameters())
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=unet.to(memory_format=torch.contiguous_format),
                 scheduler=scheduler).save_pretrained(tmp)
    with open(tmp / MODEL_INFO, "w") as f:
        json.dump({"conditioning": "class" if conditional else "per_label",
                   "labels": labels if conditional else labels[:1],
                   "null_class": null_class if conditional else None}, f, indent=2)
    with open(tmp / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY)
        writer.writeheader()
        writer.writerows(history)
    if cfg.get("grid_images") and sampling:
        n = cfg["grid_images"]
        sched = make_scheduler(scheduler.config, sampling["scheduler"], sampling["steps"])
        blocks = []
        for k in range(len(labels) if conditional else 1):
            raw = generate(unet.eval(), sched, [seed + i for i in range(n)], sampling["steps"],
                           class_label=k if conditional else None, null_class=null_class,
                           guidance_scale=sampling.get("guidance_scale", 1.0))
            blocks.append(np.stack([postprocess(image, size or cfg["image_size"])[0]
                                    for image in raw]).astype(np.float32) / 65535.0)
        sample_grid(blocks, tmp / "samples.png")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    state.discard()
