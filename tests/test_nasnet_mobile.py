"""NASNet-A Mobile registered as the timm model 'nasnetamobile' (mammosynth.classify.nasnet)."""

from __future__ import annotations

import pytest
import timm
import torch

import mammosynth.classify  # noqa: F401  registers 'nasnetamobile'
from mammosynth.classify import model as models
from mammosynth.classify.nasnet import NASNetAMobile

# Measured: torch parameters with the 1000-class head. Keras NASNetMobile reports 5,326,716 params,
# of which 5,289,978 trainable (the rest are BatchNorm moving mean/var, buffers in torch);
# pretrainedmodels' NASNetAMobile(num_classes=1000) has the same 5,289,978 ("5.3 M").
N_PARAMS_1000 = 5_289_978


def _state_equal(a: dict, b: dict, skip_prefix: str | None = None):
    keys = [k for k in a if not (skip_prefix and k.startswith(skip_prefix))]
    assert keys, "nothing to compare"
    for k in keys:
        assert torch.equal(a[k], b[k]), k


def test_registered():
    assert timm.is_model("nasnetamobile")
    assert "nasnetamobile" in timm.list_models("nasnet*")
    assert "nasnetalarge" in timm.list_models("nasnet*")  # timm's own stays
    m = timm.create_model("nasnetamobile", num_classes=2)
    assert isinstance(m, NASNetAMobile)
    cfg = m.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224)
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    assert cfg["first_conv"] == "conv0.conv" and cfg["classifier"] == "last_linear"
    assert m.get_classifier() is m.last_linear
    assert m.num_features == 1056


def test_param_count():
    m = timm.create_model("nasnetamobile", num_classes=1000)
    n = sum(p.numel() for p in m.parameters())
    assert n == N_PARAMS_1000
    assert abs(n - 5.3e6) / 5.3e6 < 0.05


@pytest.mark.parametrize("in_chans,num_classes", [(1, 2), (3, 6)])
def test_forward_backward_64(in_chans, num_classes):
    torch.manual_seed(0)
    m = timm.create_model("nasnetamobile", num_classes=num_classes, in_chans=in_chans).train()
    x = torch.randn(2, in_chans, 64, 64)
    y = m(x)
    assert y.shape == (2, num_classes)
    y.square().mean().backward()
    assert m.conv0.conv.weight.grad is not None and m.conv0.conv.weight.grad.abs().sum() > 0
    assert m.last_linear.weight.grad is not None


@pytest.mark.parametrize("in_chans,num_classes", [(3, 2), (1, 6)])
def test_forward_224(in_chans, num_classes):
    m = timm.create_model("nasnetamobile", num_classes=num_classes, in_chans=in_chans).eval()
    with torch.no_grad():
        feats = m.forward_features(torch.randn(1, in_chans, 224, 224))
        assert feats.shape == (1, 1056, 7, 7)
        assert m.forward_head(feats).shape == (1, num_classes)


def test_pooled_features_and_reset_classifier():
    m = timm.create_model("nasnetamobile", num_classes=0).eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64)).shape == (2, 1056)
        m.reset_classifier(4)
        assert m(torch.randn(2, 3, 64, 64)).shape == (2, 4)


def test_features_only():
    m = timm.create_model("nasnetamobile", features_only=True).eval()
    assert m.feature_info.channels() == [32, 44, 264, 528, 1056]
    assert m.feature_info.reduction() == [2, 4, 8, 16, 32]
    with torch.no_grad():
        feats = m(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [32, 44, 264, 528, 1056]
    assert feats[-1].shape[-2:] == (2, 2)


def test_pretrained_local_file(tmp_path):
    """pretrained=True + pretrained_cfg_overlay=dict(file=...) loads a local state dict (no download)."""
    torch.manual_seed(1)
    src = timm.create_model("nasnetamobile", num_classes=6)
    for bn in (mod for mod in src.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
        bn.running_mean.normal_()  # buffers too, not only what the random init sets
    src_sd = src.state_dict()
    path = tmp_path / "nasnetamobile.pth"
    torch.save(src_sd, path)

    # same head: every tensor, the classifier included
    m = timm.create_model("nasnetamobile", num_classes=6, pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path), num_classes=6))
    _state_equal(src_sd, m.state_dict())

    # another head size: the backbone loads, the classifier is new
    m = timm.create_model("nasnetamobile", num_classes=2, pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path), num_classes=6))
    _state_equal(src_sd, m.state_dict(), skip_prefix="last_linear.")
    assert m.last_linear.weight.shape == (2, 1056)

    # one input channel: timm sums the RGB filters of the first conv
    m = timm.create_model("nasnetamobile", num_classes=6, in_chans=1, pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(path), num_classes=6))
    w = m.state_dict()["conv0.conv.weight"]
    assert w.shape == (32, 1, 3, 3)
    torch.testing.assert_close(w, src_sd["conv0.conv.weight"].sum(dim=1, keepdim=True))
    _state_equal(src_sd, m.state_dict(), skip_prefix="conv0.conv.")


def test_pipeline_create_with_imagenet_style_file(tmp_path):
    """The pipeline's models.create with a 1000-class file (like Cadene's nasnetamobile-7e03cead.pth)."""
    src_sd = timm.create_model("nasnetamobile", num_classes=1000).state_dict()
    path = tmp_path / "nasnetamobile-7e03cead.pth"
    torch.save(src_sd, path)
    m = models.create("nasnetamobile", n_classes=2, in_chans=3, pretrained_file=str(path))
    assert m.last_linear.out_features == 1  # binary task: one logit
    _state_equal(src_sd, m.state_dict(), skip_prefix="last_linear.")
