"""How a pipeline step runs, where models run, and crash-safe state files: shared by the steps.

Light to import: no torch at module level (the steps without torch - ingest, split - run `job`
from here); the functions that need torch import it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import random
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mammosynth.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@contextlib.contextmanager
def job(log_path: str | None = None, threads: int | None = None):
    """Run one pipeline step: stderr (logging, progress bars, warnings, tracebacks) goes to
    `log_path`; torch gets `threads`; a UserError ends the step with one line naming the problem
    (in the log and on the console, exit code 1); any other exception is a bug and keeps its
    traceback (in the log).
    """
    if log_path:
        sys.stderr = open(log_path, "w", buffering=1)
    logging.basicConfig(level=logging.INFO, handlers=[logging.StreamHandler(sys.stderr)],
                        force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if threads:  # the steps that take `threads` run torch
        import torch

        torch.set_num_threads(threads)
    try:
        yield logging.getLogger("mammosynth")
    except UserError as e:
        logging.getLogger("mammosynth").error("%s", e)
        if sys.stderr is not sys.__stderr__:
            print(f"ERROR: {e}", file=sys.__stderr__)
        sys.exit(1)


def device() -> torch.device:
    """CUDA when a GPU is there, the CPU otherwise."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temp file beside `path`, then rename: a kill never leaves half a file."""
    import torch

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


class TrainerState:
    """A trainer's resume state: one file, written atomically, read back only under the same
    fingerprint (timm's CheckpointSaver, for resuming). Both trainers use it.

    `objects` are what the trainer restores in place, by name: anything with state_dict /
    load_state_dict (modules, optimizers, LR schedules, diffusers' EMAModel) and torch.Generators
    (get_state / set_state). `save(**values)` writes their states, the `values` given (step,
    history, ...), the global RNG states (torch's CPU generator, every CUDA device's, numpy's
    and Python's `random`) and the fingerprint `key`, as one flat dict: {name: state, value
    name: value, "rng": ..., "fingerprint": key}. Only tensors, numbers, strings, lists, tuples
    and dicts go in, so it loads with torch.load(weights_only=True), which runs no pickled code.

    `restore()` gives the saved values back after restoring the objects and the RNG states, or
    None - start afresh - when there is no file, or the file is set aside with one warning:
    - to `<name>.stale` when it was written for another config or inputs (another or no
      fingerprint, or refused by `accept`), or lacks a part (another version's layout);
    - to `<name>.unreadable` when it cannot be read at all (truncated or corrupted on disk, not a
      dict): left in place it would fail every retry of the job.
    Either replaces an older file of that name.
    """

    RESERVED = ("rng", "fingerprint")

    def __init__(self, path: str | Path, key: str, **objects):
        clash = set(objects) & set(self.RESERVED)
        if clash:
            raise ValueError(f"TrainerState: {', '.join(sorted(clash))} is a reserved name")
        self.path, self.key, self.objects = Path(path), key, objects

    def save(self, **values) -> None:
        """Write the objects' states, `values`, the RNG states and the fingerprint (atomic)."""
        clash = set(values) & (set(self.objects) | set(self.RESERVED))
        if clash:
            raise ValueError(f"TrainerState.save: {', '.join(sorted(clash))} is an object's or "
                             "a reserved name")
        state = {name: _get_state(obj) for name, obj in self.objects.items()}
        state.update(values, rng=_rng_states(), fingerprint=self.key)
        save_atomic(state, self.path)

    def restore(self, accept: Callable[[dict], bool] | None = None) -> dict | None:
        """The values saved with this fingerprint (and that `accept`, given them, accepts),
        after loading the objects' states and the RNG states; None when training starts afresh
        (see the class)."""
        import torch

        if not self.path.exists():
            return None
        try:  # on the CPU: load_state_dict moves each state to its object's device
            state = torch.load(self.path, weights_only=True, map_location="cpu")
            if not isinstance(state, dict):
                raise TypeError(f"holds a {type(state).__name__}, not a dict")
        except Exception as e:  # noqa: BLE001 - whatever the damage, the file is of no use
            self._set_aside("unreadable", f"cannot be read, truncated or corrupted "
                                          f"({_one_line(e)})")
            return None
        values = {k: v for k, v in state.items()
                  if k not in self.objects and k not in self.RESERVED}
        missing = [k for k in (*self.objects, *self.RESERVED) if k not in state]
        if state.get("fingerprint") != self.key or (
                not missing and accept is not None and not accept(values)):
            self._set_aside("stale", "was written for a different config or inputs")
            return None
        if missing:
            self._set_aside("stale", f"lacks {', '.join(missing)} (written by another version)")
            return None
        for name, obj in self.objects.items():
            _set_state(obj, state[name])
        _set_rng_states(state["rng"])
        return values

    def discard(self) -> None:
        """Delete the file: training has ended and its outputs are written."""
        self.path.unlink(missing_ok=True)

    def _set_aside(self, suffix: str, why: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.{suffix}")
        os.replace(self.path, aside)
        log.warning("%s %s: training starts afresh (the old state is moved to %s)", self.path,
                    why, aside.name)


def _one_line(error: Exception) -> str:
    """An exception as `Type: first line of its message` (at most 200 characters; of torch's
    weights-only refusal, the line that says what it refused)."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text[text.index(marker) + len(marker):]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    text = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _get_state(obj):
    import torch

    return obj.get_state() if isinstance(obj, torch.Generator) else obj.state_dict()


def _set_state(obj, state) -> None:
    import torch

    if isinstance(obj, torch.Generator):
        obj.set_state(state.cpu())
    else:
        obj.load_state_dict(state)


def _rng_states() -> dict:
    """torch (CPU, and every CUDA device when there is one), numpy and Python RNG states, as
    tensors and plain values (weights_only loads them)."""
    import numpy as np
    import torch

    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
            "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                       "gauss_next": gauss_next}}


def _set_rng_states(rng: dict) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") is not None and torch.cuda.is_available() \
            and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
    n = rng["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = rng["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss_next"]))


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
