"""Where models run, and crash-safe state files: shared by the DDPM and classifier trainers."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def device() -> torch.device:
    """CUDA when a GPU is there, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temp file beside `path`, then rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
