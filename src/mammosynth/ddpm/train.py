"""Train one label's DDPM on a split's training images; save a diffusers DDPMPipeline.

Every label's model gets the same number of optimisation steps (`steps`), whatever its image
count, so a small class (INbreast has 67 normal images) is not under-trained. AdamW with linear
warm-up and cosine decay, gradient clipping, gradient accumulation (`grad_accum` micro-batches of
`batch_size` per step), EMA weights (the ones saved and sampled). On CUDA: bf16 autocast,
channels_last, fused AdamW; on the CPU plain fp32.

A checkpoint (model, EMA, optimizer, LR schedule, RNG states, step, pending log) is written
atomically every `checkpoint_every` steps beside the output; a re-run resumes from it and, on the
CPU, ends with weights bitwise identical to an uninterrupted run. All noise and batch indices
come from one CPU generator, so the sequence of batches does not depend on the device.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mammosynth.ddpm.sample import generate, make_scheduler
from mammosynth.errors import UserError
from mammosynth.imaging.png import read_pngs, write_png
from mammosynth.runtime import device, save_atomic

log = logging.getLogger(__name__)
HISTORY = ["step", "loss", "lr", "images_per_s"]


def load_images(paths: list[str], size: int) -> torch.Tensor:
    """PNG files -> (N, 1, size, size) float tensor in [-1, 1]."""
    return torch.from_numpy(read_pngs(paths, size) * 2.0 - 1.0)


def build_unet(cfg: dict):
    from diffusers import UNet2DModel

    levels = len(cfg["block_out_channels"])
    attention = cfg.get("attention_levels") or [False] * levels
    if len(attention) != levels:
        raise UserError("config ddpm.attention_levels: needs one true/false per "
                        f"ddpm.block_out_channels entry ({levels})")
    return UNet2DModel(
        sample_size=cfg["image_size"], in_channels=1, out_channels=1,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        norm_num_groups=min(32, min(cfg["block_out_channels"])),
        dropout=cfg.get("dropout", 0.0),
    )


def build_scheduler(cfg: dict):
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=cfg["timesteps"], beta_schedule=cfg["beta_schedule"],
                         clip_sample=True)


def sample_grid(unet, scheduler_config, path: Path, n: int, steps: int, seed: int) -> None:
    """An n-image grid from the (EMA) model with DDIM, for a look at what training produced."""
    images = generate(unet.eval(), make_scheduler(scheduler_config, "ddim", steps),
                      [seed + i for i in range(n)], steps)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    size = images.shape[-1]
    grid = np.zeros((rows * size, cols * size), dtype=np.float32)
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        grid[r * size:(r + 1) * size, c * size:(c + 1) * size] = image
    write_png(path, grid)


def train_ddpm(image_paths: list[str], out_dir: str | Path, cfg: dict, *, seed: int,
               checkpoint: str | Path) -> None:
    """Train on `image_paths`; write the pipeline (EMA weights), history.csv and samples.png."""
    from diffusers import DDPMPipeline
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    if not image_paths:
        raise UserError("train_ddpm: this label has no training images in this split")
    dev = device()
    cuda = dev.type == "cuda"
    torch.manual_seed(seed)
    data = load_images(image_paths, cfg["image_size"])
    unet, scheduler = build_unet(cfg), build_scheduler(cfg)
    unet = unet.to(dev, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    ema = EMAModel(unet.parameters(), decay=cfg["ema_decay"], use_ema_warmup=True,
                   model_cls=type(unet), model_config=unet.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                                  fused=cuda)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, cfg["warmup_steps"], cfg["steps"])
    generator = torch.Generator().manual_seed(seed)
    alphas = scheduler.alphas_cumprod
    history: list[dict] = []
    step, losses = 0, []
    checkpoint = Path(checkpoint)
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True, map_location=dev)
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if cuda and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        step, history, losses = state["step"], state["history"], state["pending_losses"]
        log.info("resumed from %s at step %d", checkpoint, step)
    ema.to(dev)

    accum, batch = cfg.get("grad_accum", 1), cfg["batch_size"]
    log.info("%s: %d images, %d steps of %d x %d, %.2f M parameters", dev, len(data),
             cfg["steps"], accum, batch, sum(p.numel() for p in unet.parameters()) / 1e6)
    unet.train()
    tick, timed = time.perf_counter(), 0
    progress = tqdm(total=cfg["steps"], initial=step, desc="train_ddpm", mininterval=30)
    while step < cfg["steps"]:
        total = 0.0
        for _ in range(accum):
            index = torch.randint(0, len(data), (batch,), generator=generator)
            clean = data[index]
            noise = torch.randn(clean.shape, generator=generator)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,),
                              generator=generator)
            a = alphas[t].view(-1, 1, 1, 1)
            noisy = (a.sqrt() * clean + (1 - a).sqrt() * noise).to(dev, non_blocking=True)
            if cuda:
                noisy = noisy.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                pred = unet(noisy, t.to(dev)).sample
            loss = F.mse_loss(pred.float(), noise.to(dev)) / accum
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg["grad_clip"])
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        step += 1
        timed += 1
        losses.append(total)
        progress.update()
        if step % cfg["log_every"] == 0 or step == cfg["steps"]:
            seconds = time.perf_counter() - tick
            history.append({"step": step, "loss": float(np.mean(losses)),
                            "lr": lr_schedule.get_last_lr()[0],
                            "images_per_s": timed * accum * batch / seconds})
            log.info("step %d/%d loss %.4f %.1f img/s", step, cfg["steps"], history[-1]["loss"],
                     history[-1]["images_per_s"])
            losses, tick, timed = [], time.perf_counter(), 0
        if step % cfg["checkpoint_every"] == 0 and step < cfg["steps"]:
            save_atomic({"unet": unet.state_dict(), "ema": ema.state_dict(),
                          "optimizer": optimizer.state_dict(),
                          "lr_schedule": lr_schedule.state_dict(),
                          "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                          "cuda_rng": torch.cuda.get_rng_state_all() if cuda else None,
                          "step": step, "history": history, "pending_losses": losses},
                         checkpoint)
    progress.close()

    ema.copy_to(unet.parameters())
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    DDPMPipeline(unet=unet.to(memory_format=torch.contiguous_format),
                 scheduler=scheduler).save_pretrained(tmp)
    with open(tmp / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY)
        writer.writeheader()
        writer.writerows(history)
    if cfg.get("grid_images"):
        sample_grid(unet, scheduler.config, tmp / "samples.png", cfg["grid_images"],
                    min(cfg["grid_steps"], cfg["timesteps"]), seed)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    checkpoint.unlink(missing_ok=True)
