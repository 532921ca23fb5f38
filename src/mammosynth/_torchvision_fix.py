"""Make `import torchvision` work when its C++ extension does not match the installed torch.

The package registry ships torchvision 0.28.0 as a CUDA build only. On the CPU torch its `_C.so`
fails to load, and `torchvision/_meta_registrations.py` then dies at import time with
"operator torchvision::nms does not exist", which breaks `import timm` and diffusers' UNet2DModel.

`install()` puts a one-shot import hook in front of `sys.meta_path`. When torchvision is first
imported, the hook tries torchvision's own extension; only if that cannot load does it define the
schemas `_meta_registrations` needs (`torchvision::nms`, `torchvision::qnms`). Nothing else changes:
where the extension loads (a matching CUDA or CPU build) the hook does nothing, and the detection
ops (which need the C++ kernels) still raise if called without it; mammosynth never calls them.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the torch.library.Library (and so the definitions) alive


def _has_op(name: str) -> bool:
    import torch

    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False


def register_missing_ops() -> list[str]:
    """Load torchvision's extension, or define the op schemas it would have; return those defined."""
    global _library
    uninstall()  # find_spec below would otherwise run the hook, and so this, from inside itself
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return []
    import torch

    extension = next(Path(spec.submodule_search_locations[0]).glob("_C.*"), None)
    if extension is not None:
        try:
            torch.ops.load_library(str(extension))
            return []
        except OSError:
            pass  # a CUDA build on a CPU torch, or another ABI mismatch
    missing = [name for name in SCHEMAS if not _has_op(name)]
    if missing:
        _library = _library or torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            _library.define(SCHEMAS[name])
    return missing


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            register_missing_ops()
        return None  # let the normal finders import it


_hook = _Hook()


def install() -> None:
    if "torchvision" in sys.modules:
        return
    if _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


def uninstall() -> None:
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)
