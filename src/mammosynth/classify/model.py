"""timm models by name, local pretrained weights, input normalisation, safetensors weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mammosynth.config import pretrained_file  # noqa: F401  (models.pretrained_file)


def n_outputs(n_classes: int) -> int:
    """One logit for a binary task (BCE), one per class otherwise (cross-entropy)."""
    return 1 if n_classes == 2 else n_classes


def create(arch: str, n_classes: int, in_chans: int, pretrained_file: str | None = None):
    """timm model `arch` (a checked config's: a timm model name) with a new head for
    `n_classes`, initialised from `pretrained_file` (a checked config's: an existing file) if
    given, randomly (from torch's global RNG) otherwise."""
    import timm

    kwargs = dict(num_classes=n_outputs(n_classes), in_chans=in_chans)
    if pretrained_file:
        return timm.create_model(arch, pretrained=True, **kwargs,
                                 pretrained_cfg_overlay=dict(file=str(pretrained_file)))
    return timm.create_model(arch, pretrained=False, **kwargs)


class Normalize(torch.nn.Module):
    """[0, 1] grayscale (N, 1, H, W) -> the model's input: channels replicated, mean/std applied."""

    def __init__(self, model, in_chans: int):
        super().__init__()
        cfg = model.pretrained_cfg
        mean = torch.tensor(cfg.get("mean", (0.5,) * 3), dtype=torch.float32)
        std = torch.tensor(cfg.get("std", (0.5,) * 3), dtype=torch.float32)
        if in_chans == 1:
            mean, std = mean.mean(keepdim=True, dim=0), std.mean(keepdim=True, dim=0)
        self.in_chans = in_chans
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        if self.in_chans != 1:
            x = x.expand(-1, self.in_chans, -1, -1)
        return (x - self.mean) / self.std


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def save_weights(model, path: Path, meta: dict) -> None:
    """The model's state dict as safetensors (atomic), with `meta` as JSON metadata."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, tmp, metadata={"mammosynth": json.dumps(meta)})
    os.replace(tmp, path)


def load_weights(path: str | Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["mammosynth"])
    return load_file(str(path)), meta
