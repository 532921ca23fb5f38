"""Classifier stage benchmark: prints JSON. Not a timed test.

In one run, on the same timm model, the same images and the same batch size:
- training images/s of mammosynth's trainer (`train_classifier`: Adam via timm's
  `create_optimizer_v2`, one logit + BCE, per-epoch validation; bf16 autocast + channels_last on
  CUDA, fp32 on the CPU), taken from the `seconds` column of its history.csv over the epochs after
  the first (the first is warm-up), vs a plain PyTorch loop (`timm.create_model`,
  `torch.optim.Adam`, `BCEWithLogitsLoss` on one logit, fp32, `model.train()`, batches drawn from
  the same in-memory tensor), timed over the same number of steps after one warm-up epoch, once
  before and once after the trainer (the reported rate is their mean, so slow drifts in machine
  load hit both sides alike; `load_avg_1m` at start and end shows how busy the machine was). The
  trainer's epoch time includes its per-epoch validation (on `--val-images` images, default 2), so
  with few training images that weighs a little on `ours_over_plain`
  (`ours_over_plain_excluding_val_est` takes it out, estimating the validation time from the
  inference rate);
- inference images/s (eval mode, no_grad, same model object, images held on the CPU as in
  `evaluate`): mammosynth's `classify.train.predict` (bf16 autocast + channels_last input on CUDA)
  vs a plain fp32 `model(x_batch)` loop, after one warm-up batch each, two alternated passes;
- peak memory (process max RSS on CPU; torch.cuda.max_memory_allocated on CUDA, where the
  trainer's own peak and the plain loop's are also given).

The images are random 16-bit PNGs (written with mammosynth.imaging.png.write_png), read back with
the package's loader; labels alternate, so the task is binary (one logit). The default batch is
16 on CUDA and 2 on CPU (a tf_efficientnetv2_l step at 256 px takes ~2 s per 2 images on 2 cores).

    python bench/classifier.py                                   # tf_efficientnetv2_l, 256 px
    python bench/classifier.py --arch resnet18 --size 128 --batch 8 --images 32
    python bench/classifier.py --images 256 --epochs 3  # on CUDA: 8 images are one batch of 16
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mammosynth  # noqa: F401  (torchvision fix before timm)
import torch

from mammosynth import layout
from mammosynth.classify import model as models
from mammosynth.classify.data import load_tensor
from mammosynth.classify.train import predict, train_classifier
from mammosynth.imaging.png import write_png

LABELS = ["benign", "malignant"]  # two classes -> one logit, BCE


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_images(folder: Path, prefix: str, n: int, size: int, rng) -> pd.DataFrame:
    rows = []
    for i in range(n):
        path = folder / f"{prefix}-{i:04d}.png"
        write_png(path, rng.random((size, size), dtype=np.float32))
        y = i % 2
        rows.append({"image_id": f"{prefix}-{i:04d}", "path": str(path), "label": LABELS[y],
                     "y": y, "synthetic": False})
    return pd.DataFrame(rows)


def trainer_cfg(args) -> dict:
    """Every key train_classifier reads, set to match the plain loop (Adam, fp32, no extras)."""
    return dict(image_size=args.size, in_chans=args.in_chans, pretrained=None, optimizer="adam",
                optimizer_args={}, lr=1e-4, weight_decay=0.0, batch_size=args.batch,
                epochs=args.epochs, patience=0, monitor="val_loss", class_weights=None,
                freeze_backbone=False, augment=False)


def steps_per_epoch(n: int, batch: int) -> tuple[int, int]:
    """(steps, images) of one epoch as the trainer runs it (it drops a trailing batch of one)."""
    images = n - 1 if n % batch == 1 else n
    return math.ceil(images / batch), images


def normalizer(model, in_chans: int):
    """What any timm user does: replicate grey to in_chans, apply the model's mean/std."""
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg.get("mean", (0.5,) * 3), dtype=torch.float32)
    std = torch.tensor(cfg.get("std", (0.5,) * 3), dtype=torch.float32)
    if in_chans == 1:
        mean, std = mean.mean(keepdim=True, dim=0), std.mean(keepdim=True, dim=0)
    dev = next(model.parameters()).device
    mean, std = mean.view(1, -1, 1, 1).to(dev), std.view(1, -1, 1, 1).to(dev)
    return lambda x: (x.expand(-1, in_chans, -1, -1) - mean) / std


def plain_train(x: torch.Tensor, y: torch.Tensor, args, dev: torch.device) -> float:
    """Plain loop, one warm-up epoch then `epochs - 1` timed epochs of the trainer's size."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(args.arch, pretrained=False, num_classes=1,
                              in_chans=args.in_chans).to(dev)
    normalize = normalizer(model, args.in_chans)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = torch.nn.BCEWithLogitsLoss()
    _, per_epoch = steps_per_epoch(len(x), args.batch)
    model.train()
    for epoch in range(max(2, args.epochs)):
        if epoch == 1:
            sync(dev)
            start = time.perf_counter()
        order = torch.randperm(len(x))[:per_epoch]
        for i in range(0, per_epoch, args.batch):
            idx = order[i:i + args.batch]
            xb, yb = x[idx].to(dev, non_blocking=True), y[idx].to(dev, non_blocking=True)
            loss = criterion(model(normalize(xb))[:, 0], yb.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    sync(dev)
    return (max(2, args.epochs) - 1) * per_epoch / (time.perf_counter() - start)


def inference(x: torch.Tensor, args, dev: torch.device, reps: int = 2) -> tuple[float, float]:
    """(ours, plain) images/s on one eval-mode model; alternated reps after a warm-up batch."""
    model = models.create(args.arch, len(LABELS), args.in_chans).to(dev).eval()
    ours_normalize = models.Normalize(model, args.in_chans).to(dev)
    plain_normalize = normalizer(model, args.in_chans)
    b = args.batch  # x stays on the CPU (as in evaluate()); each side moves its batches

    def ours():
        predict(model, ours_normalize, x, b)

    def plain():
        model.eval()
        with torch.no_grad():
            for i in range(0, len(x), b):
                model(plain_normalize(x[i:i + b].to(dev)))

    predict(model, ours_normalize, x[:b], b)
    with torch.no_grad():
        model(plain_normalize(x[:b].to(dev)))
    seconds = {ours: 0.0, plain: 0.0}
    for _ in range(reps):
        for fn in (ours, plain):
            sync(dev)
            start = time.perf_counter()
            fn()
            sync(dev)
            seconds[fn] += time.perf_counter() - start
    return reps * len(x) / seconds[ours], reps * len(x) / seconds[plain]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="tf_efficientnetv2_l", help="a timm model name")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default: 16 on CUDA, 2 on CPU)")
    parser.add_argument("--images", type=int, default=8, help="training images")
    parser.add_argument("--val-images", type=int, default=2,
                        help="validation images (the trainer validates every epoch)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="trainer epochs; the first is warm-up (>= 2)")
    parser.add_argument("--in-chans", type=int, default=1, choices=(1, 3),
                        help="model input channels (config/config.yaml: 1)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is warm-up)")
    dev = device()
    if args.batch is None:
        args.batch = 16 if dev.type == "cuda" else 2
    steps, per_epoch = steps_per_epoch(args.images, args.batch)
    model = models.create(args.arch, len(LABELS), args.in_chans)
    result = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "arch": args.arch,
              "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
              "size": args.size, "batch": args.batch, "in_chans": args.in_chans,
              "train_images": args.images, "val_images": args.val_images,
              "epochs": args.epochs, "steps_per_epoch": steps}
    del model
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        subsets = {"train": write_images(tmp, "train", args.images, args.size, rng),
                   "val": write_images(tmp, "val", args.val_images, args.size, rng)}
        subsets["test"] = subsets["val"]
        x = load_tensor(subsets["train"]["path"], args.size)
        y = torch.tensor(subsets["train"]["y"].to_numpy())
        plain_before = plain_train(x, y, args, dev)

        peaks = {}
        if dev.type == "cuda":
            peaks["plain_train"] = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        out = tmp / "model"
        train_classifier(subsets, last=out / layout.weights_file("last"),
                         best=out / layout.weights_file("best"), history=out / layout.HISTORY,
                         resume=out / layout.CLASSIFIER_RESUME, arch=args.arch, labels=LABELS,
                         cfg=trainer_cfg(args), seed=0)
        if dev.type == "cuda":  # the trainer picks its own device: say which one it used
            peaks["ours_train"] = torch.cuda.max_memory_allocated() / 2**20
            result["train_device_ours"] = "cuda" if peaks["ours_train"] else "cpu"
        with open(out / "history.csv", newline="") as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
        result["train_epoch_seconds_ours"] = [round(s, 3) for s in seconds]
        warm = seconds[1:]
        ours = len(warm) * per_epoch / sum(warm)

        plain_after = plain_train(x, y, args, dev)
        plain = (plain_before + plain_after) / 2
        result.update(train_images_per_s_ours=round(ours, 3),
                      train_images_per_s_plain=round(plain, 3),
                      ours_over_plain=round(ours / plain, 3),
                      train_images_per_s_plain_before_after=[round(plain_before, 3),
                                                             round(plain_after, 3)])

        infer_ours, infer_plain = inference(x, args, dev)
        result.update(infer_images_per_s_ours=round(infer_ours, 3),
                      infer_images_per_s_plain=round(infer_plain, 3),
                      infer_ours_over_plain=round(infer_ours / infer_plain, 3))
        # The trainer's epoch also validates; estimate that from the inference rate.
        val_seconds = args.val_images / infer_ours
        ours_no_val = len(warm) * per_epoch / (sum(warm) - len(warm) * val_seconds)
        result["ours_over_plain_excluding_val_est"] = round(ours_no_val / plain, 3)
    if dev.type == "cuda":
        result["peak_memory_mb"] = round(max(peak_memory_mb(dev), *peaks.values()), 1)
        result["peak_memory_mb_train"] = {k: round(v, 1) for k, v in peaks.items()}
    else:
        result["peak_memory_mb"] = round(peak_memory_mb(dev), 1)
    result["load_avg_1m"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
