"""Train one timm classifier on a scenario's training set; keep `last` and `best` weights.

Mirrors timm's train.py: the `last` weights every epoch, the `best` weights at the lowest
`monitor` (`val_loss`, or `train_loss` as paper 002 words it), early stopping after `patience`
epochs without improvement, a per-epoch `history` CSV (`step`: the optimizer updates made by the
end of the epoch); the caller names every file (the workflow: mammosynth.layout). Binary tasks
use one logit and BCE, multi-class tasks cross-entropy; `class_weights: balanced` weights each
sample by n_samples / (n_classes * n_class) (scikit-learn's "balanced"), in the training loss
and, with `monitor_weighting: balanced` (the default), in the monitored validation loss too, so
that "best" is the lowest value of the objective that training minimises, under either monitor.
`freeze_backbone` trains the new head only (paper 002's frozen-base transfer learning; the frozen
base also keeps its BatchNorm statistics). `augment` adds vertical flips, rotations of up to
10 degrees and a contrast/brightness jitter (never horizontal flips: the chest wall stays left).
On CUDA: bf16 autocast and channels_last; on the CPU plain fp32.

The training budget (`classifier.budget`). `epochs` (also whenever `updates_per_epoch` is None):
an epoch is one pass over a fresh seeded permutation of the model's own training set, in batches
of `batch_size`, the last one partial (a last batch of one image is dropped: BatchNorm cannot
train on it) - so an arm with more training images also makes more optimizer updates, and "more
data" is mixed up with "more training". `steps` (`updates_per_epoch` = U, which the workflow sets
to `batches_per_epoch` of the split's scenario 0): every epoch (a round) is exactly U updates,
whatever the training set's size. Batches are taken in order from the current permutation, drawn
from the same seeded generator; when fewer than two of its images are left, a new one is drawn
(the leftover image dropped, as above), and a round that ends inside a permutation leaves the rest
of it to the next round. Validation, `last`/`best`, patience and the history row come after each
round, so every arm of a split makes epochs x U updates and is validated at the same update
counts: arms differ in their data only. On a training set of scenario 0's size, steps and epochs
are the same run, bit for bit. The weights' metadata record `budget`, `updates_per_epoch` (under
`epochs` the model's own batches per epoch), `epoch` and `step`.

After every epoch the resume state (runtime.TrainerState: weights, best weights, optimizer, the
batch generator, the global RNG states, the current permutation and the position in it, history)
is written atomically to `resume`; a killed job re-run continues from the next epoch with the
same result, mid-permutation too. It is deleted when training ends.
The state carries a fingerprint (runtime.fingerprint) of what determines the result: the
`classifier` config section as given, less the keys that do not change the training (bootstrap,
checkpoints; archs - `arch` stands for it; pretrained - the resolved weights file and its size
stand for it; epochs, see below), the budget in effect and its updates per epoch, arch, labels,
seed, and the training and validation images' paths (in order, each with its file's size) and y.
A state with another (or no) fingerprint is moved aside to `<resume>.stale`, one that cannot be
read (truncated, corrupted) to `<resume>.unreadable`, and training starts afresh. `epochs` is
left out because the lr is constant, so epoch k (k x U updates) is the same whatever the total:
a state is resumed under more epochs, and is stale only when it is past the new total.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from mammosynth.classify import model as models
from mammosynth.classify.data import load_tensor
from mammosynth.errors import UserError
from mammosynth.runtime import TrainerState, device, fingerprint

log = logging.getLogger(__name__)
HISTORY = ["epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds",
           "best"]
# classifier keys outside the resume fingerprint (see the module docstring)
NOT_FINGERPRINTED = {"bootstrap", "checkpoints", "archs", "pretrained", "epochs"}


def batches_per_epoch(n_train: int, batch: int) -> int:
    """The optimizer updates of one epoch over n_train images under budget `epochs`: batches of
    `batch`, the last one partial, a last batch of one image dropped."""
    used = n_train - 1 if n_train % batch == 1 else n_train
    return -(-used // batch)


def loss_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.float(), reduction="none")
    return F.cross_entropy(logits, y, reduction="none")


def monitored_loss(logits: torch.Tensor, y: torch.Tensor, class_weights: torch.Tensor,
                   weighting: str) -> float:
    """The validation loss "best" is picked by: the mean per-sample loss, each sample weighted by
    its class's training weight under `weighting` "balanced" (so it is the objective training
    minimises), unweighted under "none"."""
    per_sample = loss_per_sample(logits, y)
    if weighting == "balanced":
        per_sample = per_sample * class_weights.to(per_sample.device)[y]
    return per_sample.mean().item()


def _forward(model, normalize, x: torch.Tensor) -> torch.Tensor:
    dev = next(model.parameters()).device
    x = normalize(x.to(dev, non_blocking=True))
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        return model(x).float()


def predict(model, normalize, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for x (on the CPU), in eval mode, batch by batch."""
    model.eval()
    with torch.no_grad():
        return torch.cat([_forward(model, normalize, x[i:i + batch_size]).cpu()
                          for i in range(0, len(x), batch_size)])


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Vertical flip (p=0.5), rotation up to +-10 degrees, contrast x[0.9, 1.1] and brightness
    +-0.05, per image, drawn from `generator` (so a resumed run draws the same)."""
    n = len(x)
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(2), x)
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(10)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1),
                         torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    contrast = 0.9 + 0.2 * torch.rand(n, 1, 1, 1, generator=generator)
    brightness = 0.1 * torch.rand(n, 1, 1, 1, generator=generator) - 0.05
    return (x * contrast + brightness).clamp(0, 1)


def _frozen_backbone(model) -> list[torch.nn.Parameter]:
    """Freeze everything but the classifier head; return the head's parameters."""
    head = list(model.get_classifier().parameters())
    ids = {id(p) for p in head}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return head


def train_classifier(subsets: dict[str, pd.DataFrame], *, last: str | Path, best: str | Path,
                     history: str | Path, resume: str | Path, arch: str, labels: list[str],
                     cfg: dict, seed: int, updates_per_epoch: int | None = None) -> None:
    """Train `arch` on subsets["train"], validate on subsets["val"] after every epoch; write the
    `last` and `best` weights (safetensors), the `history` CSV and, after every epoch, the
    `resume` state (deleted at the end). `cfg`: the checked `classifier` config section.
    updates_per_epoch: budget steps' U (see the module docstring); None - budget epochs."""
    from timm.optim import create_optimizer_v2

    last, best, history, resume = Path(last), Path(best), Path(history), Path(resume)
    for path in (last, best, history):
        path.parent.mkdir(parents=True, exist_ok=True)
    dev = device()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    size, in_chans, batch = cfg["image_size"], cfg["in_chans"], cfg["batch_size"]
    train, val = subsets["train"], subsets["val"]
    if cfg["monitor"] == "val_loss" and not len(val):  # too few images for val_fraction
        raise UserError(f"{arch}: this split has no validation images, so no val_loss to pick "
                        "the best weights by (too few images for a validation set?)")
    if len(train) < 2:
        raise UserError(f"{arch}: {len(train)} training image(s); training needs at least 2 "
                        "(BatchNorm cannot train on a batch of one)")
    if updates_per_epoch is None:
        if cfg.get("budget", "epochs") == "steps":
            log.warning("classifier.budget steps without updates_per_epoch: budget epochs")
        budget, per_epoch = "epochs", batches_per_epoch(len(train), batch)
    elif updates_per_epoch < 1:
        raise ValueError(f"updates_per_epoch must be positive, not {updates_per_epoch}")
    else:
        budget, per_epoch = cfg.get("budget", "steps"), int(updates_per_epoch)
        if budget == "epochs":
            per_epoch = batches_per_epoch(len(train), batch)
    x_train, y_train = load_tensor(train["path"], size), torch.tensor(train["y"].to_numpy())
    x_val, y_val = load_tensor(val["path"], size), torch.tensor(val["y"].to_numpy())
    log.info("%s on %s: %d training images (%d synthetic), %d validation images", arch, dev,
             len(train), int(train["synthetic"].sum()), len(val))

    pretrained = models.pretrained_file(cfg.get("pretrained"), arch)
    key = fingerprint(
        {"classifier": {k: v for k, v in cfg.items() if k not in NOT_FINGERPRINTED},
         "budget": budget, "updates_per_epoch": per_epoch,
         "arch": arch, "labels": labels, "seed": seed,
         "y": {"train": [int(y) for y in train["y"]], "val": [int(y) for y in val["y"]]}},
        {"train": list(train["path"]), "val": list(val["path"]),
         "pretrained": [pretrained] if pretrained else []})
    model = models.create(arch, len(labels), in_chans, pretrained)
    frozen = bool(cfg.get("freeze_backbone"))  # common.smk refuses it without `pretrained`
    trainable = _frozen_backbone(model) if frozen else model
    model = model.to(dev, memory_format=torch.channels_last if dev.type == "cuda"
                     else torch.contiguous_format)
    normalize = models.Normalize(model, in_chans).to(dev)
    optimizer = create_optimizer_v2(trainable, opt=cfg["optimizer"], lr=cfg["lr"],
                                    weight_decay=cfg["weight_decay"],
                                    **cfg.get("optimizer_args", {}))
    weights = torch.ones(len(labels))
    if cfg["class_weights"] == "balanced":
        present = np.unique(y_train.numpy())
        weights[present] = torch.tensor(compute_class_weight(
            "balanced", classes=present, y=y_train.numpy()), dtype=torch.float32)
    weights = weights.to(dev)
    monitor_weighting = cfg.get("monitor_weighting", "balanced")
    meta = {"arch": arch, "labels": labels, "in_chans": in_chans, "image_size": size,
            "num_classes": models.n_outputs(len(labels)), "monitor": cfg["monitor"],
            "monitor_weighting": monitor_weighting, "class_weights": cfg["class_weights"],
            "budget": budget, "updates_per_epoch": per_epoch}

    best_value, best_epoch, rows, start, best_state = float("inf"), 0, [], 1, None
    # the permutation being walked through and the position in it (none yet: drawn at once)
    order, pos, step = torch.empty(0, dtype=torch.long), 0, 0
    state = TrainerState(resume, key, model=model, optimizer=optimizer, generator=generator)
    saved = state.restore(accept=lambda s: s["epoch"] <= cfg["epochs"])
    if saved is not None:
        best_value, best_epoch, rows = saved["best_value"], saved["best_epoch"], saved["history"]
        best_state, start = saved["best_model"], saved["epoch"] + 1
        order, pos, step = saved["order"].cpu(), saved["pos"], saved["step"]
        log.info("resumed from %s after epoch %d", resume, saved["epoch"])

    for epoch in range(start, cfg["epochs"] + 1):
        if cfg.get("patience") and epoch - 1 - best_epoch >= cfg["patience"]:
            break  # resumed after the stopping epoch
        tick = time.perf_counter()
        model.eval() if frozen else model.train()  # a frozen base keeps its BatchNorm statistics
        total, correct, count = 0.0, 0, 0
        for _ in range(per_epoch):
            if len(order) - pos < 2:  # BatchNorm cannot train on a batch of one: drop it
                order, pos = torch.randperm(len(x_train), generator=generator), 0
            idx = order[pos:pos + batch]
            pos += len(idx)
            x = augment(x_train[idx], generator) if cfg.get("augment") else x_train[idx]
            y = y_train[idx].to(dev)
            logits = _forward(model, normalize, x)
            loss = (loss_per_sample(logits, y) * weights[y]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            correct += (models.probabilities(logits).argmax(1) == y).sum().item()
            count += len(idx)
            step += 1
        row = {"epoch": epoch, "step": step, "train_loss": total / count,
               "train_acc": correct / count, "val_loss": float("nan"), "val_acc": float("nan"),
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - tick}
        if len(val):
            val_logits = predict(model, normalize, x_val, batch)
            # weighted like the training loss (monitor_weighting: balanced), so "lowest loss"
            # means the same objective whichever loss is monitored
            row["val_loss"] = monitored_loss(val_logits, y_val, weights.cpu(), monitor_weighting)
            row["val_acc"] = (models.probabilities(val_logits).argmax(1) == y_val).float() \
                .mean().item()
        row["best"] = row[cfg["monitor"]] < best_value
        models.save_weights(model, last, {**meta, "epoch": epoch, "step": step})
        if row["best"]:
            best_value, best_epoch = row[cfg["monitor"]], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            models.save_weights(model, best, {**meta, "epoch": epoch, "step": step})
        rows.append(row)
        log.info("epoch %d (step %d): train loss %.4f acc %.3f, val loss %.4f acc %.3f%s",
                 epoch, step, row["train_loss"], row["train_acc"], row["val_loss"],
                 row["val_acc"], " (best)" if row["best"] else "")
        state.save(best_model=best_state, epoch=epoch, step=step, order=order, pos=pos,
                   best_value=best_value, best_epoch=best_epoch, history=rows)
        if cfg.get("patience") and epoch - best_epoch >= cfg["patience"]:
            log.info("early stop: no better %s for %d epochs", cfg["monitor"], cfg["patience"])
            break
    # Resumed after Snakemake removed the incomplete job's outputs: restore them from the state.
    if rows and not last.exists():
        models.save_weights(model, last,
                            {**meta, "epoch": rows[-1]["epoch"], "step": rows[-1]["step"]})
    if best_state is not None and not best.exists():
        model.load_state_dict(best_state)
        models.save_weights(model, best,
                            {**meta, "epoch": best_epoch, "step": best_epoch * per_epoch})
    with open(history, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY)
        writer.writeheader()
        writer.writerows(rows)
    state.discard()
