"""Files from outside (pretrained weights, FID weights, resume checkpoints) are never unpickled
with code execution: torch.load(weights_only=True) or safetensors only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mammosynth.errors import UserError

MARKER = "mammosynth-pickle-ran"


class Payload:
    """Unpickling this runs code: it would create a file next to the marker path."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def evil_file(tmp_path: Path) -> tuple[Path, Path]:
    ran = tmp_path / MARKER
    path = tmp_path / "weights.pth"
    with open(path, "wb") as f:
        torch.save({"conv.weight": torch.zeros(1), "x": Payload(ran)}, f, pickle_protocol=2)
    assert not ran.exists()
    return path, ran


def test_pretrained_classifier_weights_are_not_unpickled(tmp_path):
    from mammosynth.classify.model import create

    path, ran = evil_file(tmp_path)
    with pytest.raises(Exception):
        create("resnet10t", 2, 1, str(path))
    assert not ran.exists()


def test_fid_weights_are_refused_without_unpickling(tmp_path):
    from mammosynth.quality import _inception

    path, ran = evil_file(tmp_path)
    with pytest.raises(UserError, match="refused without unpickling"):
        _inception(path)
    assert not ran.exists()


def test_resume_states_load_with_weights_only():
    """Every torch.load in the package (the trainers' resume states go through
    runtime.TrainerState) refuses pickled code."""
    package = Path(__file__).resolve().parents[1] / "src/mammosynth"
    calls = {f"{path.relative_to(package)}: {line.strip()}"
             for path in package.rglob("*.py") for line in path.read_text().splitlines()
             if "torch.load(" in line}
    assert any(c.startswith("runtime.py") for c in calls)
    assert all("weights_only=True" in c for c in calls), calls


def test_evil_file_really_runs_code_when_unpickled(tmp_path):
    """The test payload is real: a plain unpickle runs it."""
    path, ran = evil_file(tmp_path)
    torch.load(path, weights_only=False)
    assert ran.exists()
