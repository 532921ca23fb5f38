"""Where models run, and crash-safe state files: shared by the DDPM and classifier trainers."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)


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


def fingerprint(settings: Mapping, files: Mapping[str, Sequence[str | Path]]) -> str:
    """sha256 hex of what determines a training result: `settings` (as JSON with sorted keys)
    and each named list of input files, in order, as (path, size in bytes) - a file that was
    replaced by another of a different size, or moved, changes the fingerprint."""
    inputs = {name: [[str(p), os.path.getsize(p)] for p in paths] for name, paths in files.items()}
    text = json.dumps({"settings": settings, "files": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def load_resume(path: Path, key: str, map_location=None,
                accept: Callable[[dict], bool] | None = None) -> dict | None:
    """The resume state at `path` if it was saved with fingerprint `key` (and `accept`s it);
    None if there is none. A state written for a different config or inputs (another or no
    fingerprint) is moved aside to `<name>.stale`, replacing an older one, with a warning: the
    caller trains from scratch."""
    path = Path(path)
    if not path.exists():
        return None
    state = torch.load(path, weights_only=True, map_location=map_location)
    if state.get("fingerprint") == key and (accept is None or accept(state)):
        return state
    stale = path.with_name(f"{path.name}.stale")
    os.replace(path, stale)
    log.warning("%s was written for a different config or inputs: training starts afresh "
                "(the old state is moved to %s)", path, stale.name)
    return None


def publish_folder(tmp: Path, out_dir: Path, rows: list[dict], columns: list[str]) -> None:
    """Finish a folder of images built in `tmp`: its index.csv (`rows`, `columns`) written
    last, then the folder moved to `out_dir` in one step (replacing an older one), so a folder
    with an index is always complete."""
    with open(Path(tmp) / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
