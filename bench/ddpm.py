"""DDPM stage benchmark: prints JSON. Not a timed test.

In one run, on the same model config and data:
- training images/s of mammosynth's trainer (`train_ddpm`: EMA, clipping, cosine schedule; bf16 +
  channels_last + fused AdamW on CUDA) vs a plain loop in the style of diffusers'
  `train_unconditional.py` defaults (fp32, no channels_last, unfused AdamW, EMA);
- model FLOPs of one training step (torch.utils.flop_counter) and the achieved fraction of this
  machine's measured matmul peak (MFU);
- sampling images/s per scheduler (ddpm 1000 steps, ddim 50, dpmsolver++ 25);
- peak memory (process max RSS on CPU; max allocated on CUDA).

    python bench/ddpm.py                  # the demo's model (config/config.yaml): CPU-sized
    python bench/ddpm.py --model paper    # the 256 px, 114 M-parameter DDPM U-Net (GPU work)
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

import mammosynth  # noqa: F401  (torchvision fix before diffusers)
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from mammosynth.ddpm.sample import generate, make_scheduler
from mammosynth.ddpm.train import build_scheduler, build_unet, train_ddpm
from mammosynth.imaging.png import write_png
from mammosynth.runtime import device

MODELS = {
    "demo": dict(image_size=32, block_out_channels=[16, 32, 64], layers_per_block=1,
                 attention_levels=[False, False, True], batch_size=16),  # config/config.yaml
    "paper": dict(image_size=256, block_out_channels=[128, 128, 256, 256, 512, 512],
                  layers_per_block=2, attention_levels=[False, False, False, False, True, False],
                  batch_size=16),
}
SAMPLERS = {"ddpm": 1000, "ddim": 50, "dpmsolver++": 25}


def config(model: str, steps: int) -> dict:
    return dict(MODELS[model], timesteps=1000, beta_schedule="linear", steps=steps, grad_accum=1,
                lr=1e-4, weight_decay=0.0, warmup_steps=0, ema_decay=0.9999, grad_clip=1.0,
                log_every=steps // 2, checkpoint_every=10**9, dropout=0.0, grid_images=0)


def matmul_peak(dev: torch.device) -> float:
    """Measured FLOP/s of a large square matmul (fp32 on CPU, bf16 on CUDA)."""
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


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def step_flops(cfg: dict, dev: torch.device) -> int:
    unet = build_unet(cfg).to(dev)
    x = torch.randn(cfg["batch_size"], 1, cfg["image_size"], cfg["image_size"], device=dev)
    t = torch.randint(0, 1000, (cfg["batch_size"],), device=dev)
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(unet(x, t).sample, x).backward()
    return counter.get_total_flops()


def plain_loop(data: torch.Tensor, cfg: dict, steps: int, dev: torch.device) -> float:
    """train_unconditional.py-style loop: fp32, no channels_last, unfused AdamW, EMA."""
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    unet, scheduler = build_unet(cfg).to(dev), build_scheduler(cfg)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True)
    ema.to(dev)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, 0, steps)
    timed = max(1, steps // 2)
    for step in range(steps):
        if step == steps - timed:
            sync(dev)
            start = time.perf_counter()
        clean = data[torch.randint(0, len(data), (cfg["batch_size"],))].to(dev)
        noise = torch.randn_like(clean)
        t = torch.randint(0, 1000, (len(clean),), device=dev)
        loss = F.mse_loss(unet(scheduler.add_noise(clean, noise, t), t).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad()
        ema.step(unet.parameters())
    sync(dev)
    return timed * cfg["batch_size"] / (time.perf_counter() - start)


def peak_memory_mb(dev) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODELS, default="demo")
    parser.add_argument("--steps", type=int, default=40, help="training steps per trainer")
    parser.add_argument("--sample-batch", type=int, default=4)
    args = parser.parse_args()
    dev = device()
    cfg = config(args.model, args.steps)
    result = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "model": args.model,
              "image_size": cfg["image_size"], "batch_size": cfg["batch_size"],
              "parameters_m": round(sum(p.numel() for p in build_unet(cfg).parameters()) / 1e6,
                                    2)}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(32):
            path = Path(tmp) / f"{i}.png"
            write_png(path, rng.random((cfg["image_size"], cfg["image_size"]), dtype=np.float32))
            paths.append(str(path))
        out = Path(tmp) / "model"
        train_ddpm(paths, out, cfg, seed=0, checkpoint=Path(tmp) / "resume.pt")
        history = (out / "history.csv").read_text().strip().splitlines()
        ours = float(history[-1].split(",")[-1])  # the second half of the steps
        from mammosynth.ddpm.train import load_images

        plain = plain_loop(load_images(paths, cfg["image_size"]), cfg, args.steps, dev)
        result.update(train_images_per_s_ours=round(ours, 2),
                      train_images_per_s_plain=round(plain, 2),
                      ours_over_plain=round(ours / plain, 3))

        flops = step_flops(cfg, dev)
        peak = matmul_peak(dev)
        achieved = flops * ours / cfg["batch_size"]
        result.update(step_gflops=round(flops / 1e9, 2), matmul_peak_gflops=round(peak / 1e9, 1),
                      achieved_gflops=round(achieved / 1e9, 2), mfu=round(achieved / peak, 4))

        from diffusers import UNet2DModel

        unet = UNet2DModel.from_pretrained(out, subfolder="unet").eval().to(dev)
        base = build_scheduler(cfg).config
        seeds = list(range(args.sample_batch))
        sampling = {}
        for name, steps in SAMPLERS.items():
            start = time.perf_counter()
            generate(unet, make_scheduler(base, name, steps), seeds, steps)
            sync(dev)
            seconds = time.perf_counter() - start
            sampling[name] = {"steps": steps, "images_per_s": round(len(seeds) / seconds, 4)}
        for name in ("ddim", "dpmsolver++"):
            sampling[name]["speedup_vs_ddpm"] = round(
                sampling[name]["images_per_s"] / sampling["ddpm"]["images_per_s"], 1)
        result["sampling"] = sampling
    result["peak_memory_mb"] = round(peak_memory_mb(dev), 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
