"""Train one timm classifier on a scenario's training set; keep `last` and `best` weights.

Mirrors timm's train.py: `last.safetensors` every epoch, `best.safetensors` at the lowest
`monitor` (`val_loss`, or `train_loss` as paper 002 words it), early stopping after `patience`
epochs without improvement, a per-epoch `history.csv`. Binary tasks use one logit and BCE,
multi-class tasks cross-entropy; `class_weights: balanced` weights each sample by
n_samples / (n_classes * n_class) (scikit-learn's "balanced"), in the training loss only.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from mammosynth.classify import model as models
from mammosynth.classify.data import load_tensor

log = logging.getLogger(__name__)
HISTORY = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "best"]


def loss_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.float(), reduction="none")
    return F.cross_entropy(logits, y, reduction="none")


def predict(model, normalize, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return torch.cat([model(normalize(x[i:i + batch_size]))
                          for i in range(0, len(x), batch_size)])


def train_classifier(subsets: dict[str, pd.DataFrame], out_dir: str | Path, *, arch: str,
                     labels: list[str], cfg: dict, seed: int) -> None:
    from timm.optim import create_optimizer_v2

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    size, in_chans, batch = cfg["image_size"], cfg["in_chans"], cfg["batch_size"]
    train, val = subsets["train"], subsets["val"]
    x_train, y_train = load_tensor(train["path"], size), torch.tensor(train["y"].to_numpy())
    x_val, y_val = load_tensor(val["path"], size), torch.tensor(val["y"].to_numpy())
    log.info("%s: %d training images (%d synthetic), %d validation images", arch, len(train),
             int(train["synthetic"].sum()), len(val))

    model = models.create(arch, len(labels), in_chans, cfg.get("pretrained"))
    normalize = models.Normalize(model, in_chans)
    optimizer = create_optimizer_v2(model, opt=cfg["optimizer"], lr=cfg["lr"],
                                    weight_decay=cfg["weight_decay"],
                                    **cfg.get("optimizer_args", {}))
    weights = torch.ones(len(labels))
    if cfg["class_weights"] == "balanced":
        present = np.unique(y_train.numpy())
        weights[present] = torch.tensor(compute_class_weight(
            "balanced", classes=present, y=y_train.numpy()), dtype=torch.float32)
    meta = {"arch": arch, "labels": labels, "in_chans": in_chans, "image_size": size,
            "num_classes": models.n_outputs(len(labels))}

    best_value, best_epoch, rows = float("inf"), 0, []
    for epoch in range(1, cfg["epochs"] + 1):
        tick = time.perf_counter()
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        if len(order) % batch == 1:  # BatchNorm cannot train on a batch of one
            order = order[:-1]
        total, correct, count = 0.0, 0, 0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            logits = model(normalize(x_train[idx]))
            loss = (loss_per_sample(logits, y_train[idx]) * weights[y_train[idx]]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            correct += (models.probabilities(logits).argmax(1) == y_train[idx]).sum().item()
            count += len(idx)
        val_logits = predict(model, normalize, x_val, batch)
        row = {"epoch": epoch, "train_loss": total / count, "train_acc": correct / count,
               "val_loss": loss_per_sample(val_logits, y_val).mean().item(),
               "val_acc": (models.probabilities(val_logits).argmax(1) == y_val).float().mean().item(),
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - tick}
        value = row[cfg["monitor"]]
        row["best"] = value < best_value
        models.save_weights(model, out_dir / "last.safetensors", {**meta, "epoch": epoch})
        if row["best"]:
            best_value, best_epoch = value, epoch
            models.save_weights(model, out_dir / "best.safetensors", {**meta, "epoch": epoch})
        rows.append(row)
        log.info("epoch %d: train loss %.4f acc %.3f, val loss %.4f acc %.3f%s", epoch,
                 row["train_loss"], row["train_acc"], row["val_loss"], row["val_acc"],
                 " (best)" if row["best"] else "")
        if cfg.get("patience") and epoch - best_epoch >= cfg["patience"]:
            log.info("early stop: no better %s for %d epochs", cfg["monitor"], cfg["patience"])
            break
    with open(out_dir / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY)
        writer.writeheader()
        writer.writerows(rows)
