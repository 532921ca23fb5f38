"""The torchvision import fix (mammosynth._torchvision_fix) and mammosynth's import-time settings.

Most checks run in fresh interpreters: what matters is what a new process can import, and this
test process has already imported mammosynth (conftest) and maybe torchvision.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from mammosynth import _torchvision_fix


def run_python(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -c code` in a fresh interpreter of this venv (not -I: the package is editable)."""
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env["PYTHONNOUSERSITE"] = "1"
    full_env["OMP_NUM_THREADS"] = "1"  # the forward passes are tiny; keep `pytest -n 2` unclogged
    full_env.update(env or {})
    for key in [k for k, v in full_env.items() if v is None]:
        del full_env[key]
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def test_timm_and_diffusers_work_after_importing_mammosynth(tmp_path):
    code = """
import json, sys
import mammosynth
from mammosynth import _torchvision_fix as fix
hook_installed = fix._hook in sys.meta_path
import timm
hook_removed = fix._hook not in sys.meta_path  # one-shot: gone once torchvision is imported
fix.install()  # a no-op now that torchvision is imported
import torch
from diffusers import UNet2DModel
model = timm.create_model("resnet10t", num_classes=2, in_chans=1).eval()
unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                   layers_per_block=1, norm_num_groups=8,
                   down_block_types=("DownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "UpBlock2D")).eval()
with torch.no_grad():
    logits = model(torch.rand(2, 1, 32, 32))
    noise = unet(torch.randn(1, 1, 8, 8), 3).sample
import torchvision
print(json.dumps({"logits": list(logits.shape), "noise": list(noise.shape),
                  "finite": bool(torch.isfinite(logits).all() and torch.isfinite(noise).all()),
                  "hook": [hook_installed, hook_removed, fix._hook in sys.meta_path]}))
"""
    out = last_json(run_python(code, tmp_path))
    assert out["logits"] == [2, 2]
    assert out["noise"] == [1, 1, 8, 8]
    assert out["finite"]
    assert out["hook"] == [True, True, False]


def test_bare_import_works_with_the_start_up_hook_or_a_loadable_extension(tmp_path):
    """Without mammosynth imported first, what works depends on the venv's start-up hook."""
    pth = site_packages() / "mammosynth_torchvision_fix.pth"
    if pth.exists():
        # `make install` put the hook into every interpreter of the venv: a bare import works
        assert "mammosynth._torchvision_fix" in pth.read_text()
        code = ("import json, timm, torch\n"
                "m = timm.create_model('resnet10t', num_classes=2, in_chans=1).eval()\n"
                "print(json.dumps({'shape': list(m(torch.rand(1, 1, 32, 32)).shape)}))")
        assert last_json(run_python(code, tmp_path)) == {"shape": [1, 2]}
    else:
        # No start-up hook: a bare `import torchvision` works exactly when its C extension
        # loads on this torch; otherwise it dies on the missing torchvision::nms schema, which
        # is what the hook supplies (the import with mammosynth first is checked above).
        code = """
import importlib.util, json, sys
from pathlib import Path
import torch
spec = importlib.util.find_spec("torchvision")
so = next(Path(spec.submodule_search_locations[0]).glob("_C.*"), None)
try:
    torch.ops.load_library(str(so))
    loads = True
except (OSError, TypeError):
    loads = False
try:
    import torchvision
    error = None
except Exception as e:
    error = f"{type(e).__name__}: {e}"
print(json.dumps({"extension_loads": loads, "error": error,
                  "mammosynth": "mammosynth" in sys.modules}))
"""
        out = last_json(run_python(code, tmp_path))
        assert out["mammosynth"] is False  # nothing imported mammosynth behind our back
        if out["extension_loads"]:
            assert out["error"] is None
        else:
            assert out["error"] is not None, "torchvision imported though its extension cannot load"
            assert "torchvision::nms" in out["error"]


def test_register_missing_ops_is_idempotent_in_process():
    first = _torchvision_fix.register_missing_ops()
    second = _torchvision_fix.register_missing_ops()
    assert set(first) <= set(_torchvision_fix.SCHEMAS)
    assert second == []
    torch._C._dispatch_find_schema_or_throw("torchvision::nms", "")
    torch._C._dispatch_find_schema_or_throw("torchvision::qnms", "")
    import torchvision  # noqa: F401  importable after it, whatever the test order
    assert _torchvision_fix._has_op("nms")


REGISTER = """
import json, sys
from mammosynth import _torchvision_fix as fix
import torch
UNINSTALL = {uninstall}
if UNINSTALL:
    fix.uninstall()
hook_before = fix._hook in sys.meta_path
before = {{name: fix._has_op(name) for name in fix.SCHEMAS}}
first = fix.register_missing_ops()
second = fix.register_missing_ops()
after = {{name: fix._has_op(name) for name in fix.SCHEMAS}}
print(json.dumps({{"hook_before": hook_before, "before": before, "first": first,
                   "second": second, "after": after,
                   "hook_after": fix._hook in sys.meta_path}}))
"""


def test_register_missing_ops_defines_what_was_missing_once_in_a_fresh_process(tmp_path):
    out = last_json(run_python(REGISTER.format(uninstall=True), tmp_path))
    assert out["hook_before"] is False
    assert out["after"] == {"nms": True, "qnms": True}
    # whatever was missing before is what the first call defined; the second defines nothing
    assert out["first"] == [name for name, present in out["before"].items() if not present]
    assert out["second"] == []


def test_register_missing_ops_reports_what_it_defined_with_the_hook_installed(tmp_path):
    """Docstring: "return those defined". With mammosynth's hook still on sys.meta_path (the state
    right after `import mammosynth`), a direct call must report the schemas it defined too."""
    out = last_json(run_python(REGISTER.format(uninstall=False), tmp_path))
    assert out["hook_before"] is True
    assert out["after"] == {"nms": True, "qnms": True}
    assert out["second"] == []
    assert out["first"] == [name for name, present in out["before"].items() if not present]


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_importing_mammosynth_sets_hf_hub_offline_unless_already_set(tmp_path, preset, expected):
    code = ("import json, os\n"
            "before = os.environ.get('HF_HUB_OFFLINE')\n"
            "import mammosynth\n"
            "print(json.dumps([before, os.environ.get('HF_HUB_OFFLINE')]))")
    out = last_json(run_python(code, tmp_path, env={"HF_HUB_OFFLINE": preset}))
    # `make install`'s start-up .pth imports mammosynth before any user code runs
    started_with_mammosynth = (site_packages() / "mammosynth_torchvision_fix.pth").exists()
    before = "1" if preset is None and started_with_mammosynth else preset
    assert out == [before, expected]
