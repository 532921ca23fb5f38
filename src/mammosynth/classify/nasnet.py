"""NASNet-A Mobile (4 @ 1056) as a timm model: ``timm.create_model('nasnetamobile', ...)``.

timm (1.0.31) ships NASNet-A *Large* only. This module builds the Mobile variant from timm's own
NASNet-A cells (``timm.models.nasnet``: CellStem0/1, FirstCell, NormalCell, ReductionCell0/1) and
registers it with timm's registry, so it goes through ``build_model_with_cfg`` like any timm model
(``in_chans``, ``num_classes`` incl. 0, ``global_pool``, ``drop_rate``, ``pretrained`` with
``pretrained_cfg_overlay=dict(file=...)``, ``features_only``, ``forward_intermediates``).

Architecture (Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image
Recognition", https://arxiv.org/abs/1707.07012; TF-slim ``mobile_imagenet_config`` / Keras
``NASNetMobile``): stem 32 filters, penultimate filters 1056 (44 per cell branch), 4 normal cells
per stage, filter multiplier 2, and -- unlike the Large model -- ``skip_reduction_layer_input=False``:
the first cell after a reduction cell takes the reduction cell's *input* as its previous layer.

Module and parameter names follow Cadene's ``pretrainedmodels`` ``NASNetAMobile`` (BSD-3; cells
``cell_0..3``, ``reduction_cell_0``, ``cell_6..9``, ``reduction_cell_1``, ``cell_12..15``, head
``last_linear``), so its converted TF weights ``nasnetamobile-7e03cead.pth`` load unchanged
(key/shape-identical state dicts; same outputs at 224x224 as Cadene's model). Differences from that
implementation: TF 'SAME' padding is computed from the actual input size (Cadene hard-codes the
padding/cropping for 224x224 inputs), the fixed 7x7 average pool is timm's adaptive global pool (any
input size works), and the head has no dropout unless ``drop_rate`` is given (timm's convention;
Cadene and TF-slim train with dropout 0.5).
"""

from __future__ import annotations

from functools import partial
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from timm.layers import ConvNormAct, create_classifier, pad_same
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.nasnet import (
    CellStem0,
    CellStem1,
    FirstCell,
    NormalCell,
    ReductionCell0,
    ReductionCell1,
)

__all__ = ["NASNetAMobile"]


class AvgPool2dSameExcludePad(nn.Module):
    """3x3 stride-2 average pool with TF 'SAME' padding that leaves the padding out of the average,
    as TF (and Cadene's ``AvgPoolPad``) do. timm's ``AvgPool2dSame`` counts its zero padding as
    values, which changes the border outputs of the pretrained network."""

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size = (kernel_size, kernel_size)
        self.stride = (stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = F.avg_pool2d(pad_same(x, self.kernel_size, self.stride), self.kernel_size, self.stride)
        ones = torch.ones_like(x[:1, :1])
        count = F.avg_pool2d(pad_same(ones, self.kernel_size, self.stride), self.kernel_size, self.stride)
        return total / count


class NASNetAMobile(nn.Module):
    """NASNet-A Mobile (4 @ 1056)."""

    def __init__(
            self,
            num_classes: int = 1000,
            in_chans: int = 3,
            stem_size: int = 32,
            channel_multiplier: int = 2,
            num_features: int = 1056,
            output_stride: int = 32,
            drop_rate: float = 0.,
            global_pool: str = 'avg',
            pad_type: str = 'same',
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.stem_size = stem_size
        self.num_features = num_features
        self.channel_multiplier = channel_multiplier
        assert output_stride == 32

        channels = self.num_features // 24  # 44; 24 = 6 branches x 4 (filter multiplier 2, twice)

        self.conv0 = ConvNormAct(
            in_channels=in_chans,
            out_channels=self.stem_size,
            kernel_size=3,
            padding=0,
            stride=2,
            norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.1),
            apply_act=False,
            **dd,
        )

        self.cell_stem_0 = CellStem0(
            self.stem_size, num_channels=channels // (channel_multiplier ** 2), pad_type=pad_type, **dd)
        self.cell_stem_1 = CellStem1(
            self.stem_size, num_channels=channels // channel_multiplier, pad_type=pad_type, **dd)

        # stage 1: 28x28 at 224, 6 * channels out
        self.cell_0 = FirstCell(
            in_chs_left=channels, out_chs_left=channels // 2,
            in_chs_right=2 * channels, out_chs_right=channels, pad_type=pad_type, **dd)
        self.cell_1 = NormalCell(
            in_chs_left=2 * channels, out_chs_left=channels,
            in_chs_right=6 * channels, out_chs_right=channels, pad_type=pad_type, **dd)
        self.cell_2 = NormalCell(
            in_chs_left=6 * channels, out_chs_left=channels,
            in_chs_right=6 * channels, out_chs_right=channels, pad_type=pad_type, **dd)
        self.cell_3 = NormalCell(
            in_chs_left=6 * channels, out_chs_left=channels,
            in_chs_right=6 * channels, out_chs_right=channels, pad_type=pad_type, **dd)

        # stage 2: 14x14, 12 * channels out
        self.reduction_cell_0 = ReductionCell0(
            in_chs_left=6 * channels, out_chs_left=2 * channels,
            in_chs_right=6 * channels, out_chs_right=2 * channels, pad_type=pad_type, **dd)
        self.cell_6 = FirstCell(
            in_chs_left=6 * channels, out_chs_left=channels,
            in_chs_right=8 * channels, out_chs_right=2 * channels, pad_type=pad_type, **dd)
        self.cell_7 = NormalCell(
            in_chs_left=8 * channels, out_chs_left=2 * channels,
            in_chs_right=12 * channels, out_chs_right=2 * channels, pad_type=pad_type, **dd)
        self.cell_8 = NormalCell(
            in_chs_left=12 * channels, out_chs_left=2 * channels,
            in_chs_right=12 * channels, out_chs_right=2 * channels, pad_type=pad_type, **dd)
        self.cell_9 = NormalCell(
            in_chs_left=12 * channels, out_chs_left=2 * channels,
            in_chs_right=12 * channels, out_chs_right=2 * channels, pad_type=pad_type, **dd)

        # stage 3: 7x7, 24 * channels = num_features out
        self.reduction_cell_1 = ReductionCell1(
            in_chs_left=12 * channels, out_chs_left=4 * channels,
            in_chs_right=12 * channels, out_chs_right=4 * channels, pad_type=pad_type, **dd)
        self.cell_12 = FirstCell(
            in_chs_left=12 * channels, out_chs_left=2 * channels,
            in_chs_right=16 * channels, out_chs_right=4 * channels, pad_type=pad_type, **dd)
        self.cell_13 = NormalCell(
            in_chs_left=16 * channels, out_chs_left=4 * channels,
            in_chs_right=24 * channels, out_chs_right=4 * channels, pad_type=pad_type, **dd)
        self.cell_14 = NormalCell(
            in_chs_left=24 * channels, out_chs_left=4 * channels,
            in_chs_right=24 * channels, out_chs_right=4 * channels, pad_type=pad_type, **dd)
        self.cell_15 = NormalCell(
            in_chs_left=24 * channels, out_chs_left=4 * channels,
            in_chs_right=24 * channels, out_chs_right=4 * channels, pad_type=pad_type, **dd)
        self.act = nn.ReLU(inplace=True)

        if pad_type == 'same':
            # the stride-2 average pools (parameter-free) exclude the padding like TF does
            for cell in (self.cell_stem_0, self.cell_stem_1, self.reduction_cell_0, self.reduction_cell_1):
                cell.comb_iter_2_left = AvgPool2dSameExcludePad(3, 2)

        self.feature_info = [
            dict(num_chs=stem_size, reduction=2, module='conv0'),
            dict(num_chs=4 * channels // channel_multiplier ** 2, reduction=4, module='cell_stem_1.conv_1x1.act'),
            dict(num_chs=6 * channels, reduction=8, module='reduction_cell_0.conv_1x1.act'),
            dict(num_chs=12 * channels, reduction=16, module='reduction_cell_1.conv_1x1.act'),
            dict(num_chs=self.num_features, reduction=32, module='act'),
        ]
        # stem / cells in forward order, and the layer index of the cell output used for each feature_info tap
        self.layer_names = (
            ['conv0', 'cell_stem_0', 'cell_stem_1']
            + [f'cell_{i}' for i in range(4)] + ['reduction_cell_0']
            + [f'cell_{i}' for i in range(6, 10)] + ['reduction_cell_1']
            + [f'cell_{i}' for i in range(12, 16)]
        )
        tap_layers = ('conv0', 'cell_stem_0', 'cell_3', 'cell_9', 'cell_15')
        self.feature_ends = [self.layer_names.index(n) for n in tap_layers]

        self.global_pool, self.head_drop, self.last_linear = create_classifier(
            self.num_features,
            self.num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            **dd,
        )
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()

    @torch.jit.ignore
    def group_matcher(self, coarse=False):
        return dict(
            stem=r'^conv0|cell_stem_[01]',
            blocks=[
                (r'^cell_(\d+)', None),
                (r'^reduction_cell_0', (4,)),
                (r'^reduction_cell_1', (10,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable=True):
        assert not enable, 'gradient checkpointing not supported'

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.last_linear

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None):
        weight = self.conv0.conv.weight
        dd = {'device': weight.device, 'dtype': weight.dtype}
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.last_linear = create_classifier(
            self.num_features, self.num_classes, pool_type=global_pool, **dd)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.global_pool.train(self.training)
        self.last_linear.train(self.training)

    def _run_layers(self, x: torch.Tensor, take_indices=(), stop: Optional[int] = None):
        """Run the stem and cells (``layer_names[:stop]``); each cell takes the outputs of the previous
        two layers -- NASNet-A Mobile does not skip the reduction cell's input (TF-slim
        ``skip_reduction_layer_input=False``), so the same update holds across reduction cells.
        Returns the features (activated like the tap / final ReLU) and the intermediates taken."""
        intermediates = []
        layer_names = self.layer_names if stop is None else self.layer_names[:stop]
        last_idx = len(self.feature_ends) - 1
        x_prev = x
        feat_idx = 0
        for i, n in enumerate(layer_names):
            layer = getattr(self, n)
            if i < 2:
                x_prev, x = x, layer(x)  # conv0 and cell_stem_0 take a single input
            elif i == 2:
                x_prev, x = x, layer(x_prev, x)  # cell_stem_1 takes (x_conv0, x_stem_0)
            else:
                x_prev, x = x, layer(x, x_prev)
            if feat_idx <= last_idx and i == self.feature_ends[feat_idx]:
                if feat_idx == last_idx:
                    x = self.act(x)
                if feat_idx in take_indices:
                    if 0 < feat_idx < last_idx:
                        # match the feature_info hook on the next cell's conv_1x1.act
                        intermediates.append(F.relu(x))
                    else:
                        intermediates.append(x)
                feat_idx += 1
        if 0 < feat_idx - 1 < last_idx and len(layer_names) - 1 == self.feature_ends[feat_idx - 1]:
            # stopped at a cell tap (stop_early or pruned), the features end at its activation like the tap
            x = F.relu(x)
        return x, intermediates

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward features that returns intermediates.

        Index 0 is the conv0 stem output, indices 1-3 the ReLU activated outputs of cell_stem_0,
        cell_3 and cell_9 (as consumed by the next cell), index 4 the final activated cell_15 output.
        """
        assert output_fmt in ('NCHW',), 'Output shape must be NCHW.'
        take_indices, max_index = feature_take_indices(len(self.feature_ends), indices)
        stop = self.feature_ends[max_index] + 1 if stop_early else None
        x, intermediates = self._run_layers(x, take_indices, stop)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Prune layers not required for specified intermediates."""
        take_indices, max_index = feature_take_indices(len(self.feature_ends), indices)
        num_layers = self.feature_ends[max_index] + 1
        prune_end = num_layers < len(self.layer_names)
        for n in self.layer_names[num_layers:]:
            setattr(self, n, None)  # cells take two inputs, can't be run through Identity
        self.layer_names = self.layer_names[:num_layers]
        if prune_end:
            # features now end at the last kept tap, the head is sized for the final features so it goes too
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_layers(x)[0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        x = self.head_drop(x)
        return x if pre_logits else self.last_linear(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = self.forward_head(x)
        return x


def _create_nasnet_mobile(variant, pretrained=False, **kwargs):
    return build_model_with_cfg(
        NASNetAMobile,
        variant,
        pretrained,
        feature_cfg=dict(feature_cls='hook', no_rewrite=True),  # cells take two inputs, no re-write
        **kwargs,
    )


default_cfgs = generate_default_cfgs({
    # TF-slim NASNet-A Mobile ImageNet weights as converted by Cadene's pretrainedmodels; a local copy
    # loads with pretrained_cfg_overlay=dict(file=...) or from the torch hub cache under this file name.
    'nasnetamobile.tf_in1k': {
        'url': 'http://data.lip6.fr/cadene/pretrainedmodels/nasnetamobile-7e03cead.pth',
        'input_size': (3, 224, 224),
        'pool_size': (7, 7),
        'crop_pct': 0.875,  # TF-slim / Cadene eval: resize 256, centre crop 224
        'interpolation': 'bilinear',
        'mean': (0.5, 0.5, 0.5),  # TF "inception" preprocessing: x / 127.5 - 1
        'std': (0.5, 0.5, 0.5),
        'num_classes': 1000,
        'first_conv': 'conv0.conv',
        'classifier': 'last_linear',
        'license': 'apache-2.0',
    },
})


@register_model
def nasnetamobile(pretrained=False, **kwargs) -> NASNetAMobile:
    """NASNet-A Mobile (4 @ 1056), 224x224."""
    model_kwargs = dict(pad_type='same', **kwargs)
    return _create_nasnet_mobile('nasnetamobile', pretrained, **model_kwargs)
