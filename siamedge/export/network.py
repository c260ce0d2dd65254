"""SiamMask VOT in PyTorch: ResNet-50 trunk, depth-wise correlation RPN, mask correlation, refine.

Inference only, with the official SiamMask_VOT.pth state_dict names and shapes; never reads files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the usual PyTorch alias
from torch import nn

from siamedge.contract import EXEMPLAR_SIZE
from siamedge.export.spec import ANCHOR_COUNT, FEATURE_CHANNELS, MASK_SIDE, TEMPLATE_BORDER

BOTTLENECK_EXPANSION = 4
TRUNK_BLOCKS = (3, 4, 6)
"""ResNet-50's layer1..layer3; SiamMask stops after layer3 (1024 channels)."""
TRUNK_OUT_CHANNELS = 1024
MASK_LOGITS = 63 * 63
"""The mask head's per-cell 63x63 output: in the checkpoint, unused once the refine module runs."""

REFINE_WINDOWS = (61, 31, 15)
"""Sides of the windows the refine module cuts from the trunk's levels p0, p1, p2 at a cell."""
REFINE_STRIDES = (4, 2, 1)
"""Cells -> level pixels: p0 (125 px) moves 4 px per cell, p1 (63 px) 2, p2 (31 px) 1."""
REFINE_PADS = (16, 8, 4)
DECONV_SIDE = 15


class Bottleneck(nn.Module):
    """ResNet bottleneck as SiamMask builds it (no padding in the strided 3x3, dilation later)."""

    def __init__(
        self, inplanes: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None
    ) -> None:
        super().__init__()
        padding = dilation if dilation > 1 else 2 - stride
        out_planes = planes * BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=padding, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


def _layer(inplanes: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    """One ResNet stage; the first block's shortcut is a 3x3 conv when it strides or dilates."""
    out_planes = planes * BOTTLENECK_EXPANSION
    first_dilation = dilation
    if stride == 1 and dilation == 1:
        shortcut_conv = nn.Conv2d(inplanes, out_planes, 1, stride=stride, bias=False)
    else:
        first_dilation = dilation // 2 if dilation > 1 else 1
        shortcut_conv = nn.Conv2d(
            inplanes,
            out_planes,
            3,
            stride=stride,
            padding=first_dilation if dilation > 1 else 0,
            dilation=first_dilation,
            bias=False,
        )
    shortcut = nn.Sequential(shortcut_conv, nn.BatchNorm2d(out_planes))
    layers = [Bottleneck(inplanes, planes, stride, first_dilation, shortcut)]
    layers += [Bottleneck(out_planes, planes, 1, dilation, None) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class TrunkLevels:
    """The trunk's outputs on one crop: p0 (conv1), p1 (layer1), p2 (layer2), p3 (layer3)."""

    p0: torch.Tensor
    p1: torch.Tensor
    p2: torch.Tensor
    p3: torch.Tensor


class ResNetTrunk(nn.Module):
    """ResNet-50 up to layer3: unpadded stem, strided layer2, dilated layer3 (stride 8 overall)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _layer(64, 64, TRUNK_BLOCKS[0], stride=1, dilation=1)
        self.layer2 = _layer(256, 128, TRUNK_BLOCKS[1], stride=2, dilation=1)
        self.layer3 = _layer(512, 256, TRUNK_BLOCKS[2], stride=1, dilation=2)

    def forward(self, x: torch.Tensor) -> TrunkLevels:
        p0 = F.relu(self.bn1(self.conv1(x)))
        p1 = self.layer1(self.maxpool(p0))
        p2 = self.layer2(p1)
        return TrunkLevels(p0, p1, p2, self.layer3(p2))


class Adjust(nn.Module):
    """1x1 conv + BN from the trunk's 1024 channels to the 256 the heads correlate."""

    def __init__(self) -> None:
        super().__init__()
        self.downsample = nn.Sequential(
            nn.Conv2d(TRUNK_OUT_CHANNELS, FEATURE_CHANNELS, 1, bias=False),
            nn.BatchNorm2d(FEATURE_CHANNELS),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.downsample(x)
        return out


class Backbone(nn.Module):
    """Trunk + adjust layer (checkpoint prefix `features.`)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = ResNetTrunk()
        self.downsample = Adjust()


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def depthwise_correlation(search: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Each channel of search (1, C, H, W) correlated with the same channel of kernel (1, C, k, k).

    A grouped convolution whose weights are the kernel features.
    """
    channels = kernel.shape[1]
    weight = kernel.reshape(channels, 1, kernel.shape[2], kernel.shape[3])
    return F.conv2d(search, weight, groups=channels)


class DepthCorr(nn.Module):
    """Adjusts template and search features, correlates them channel-wise, then a 1x1 head."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.conv_kernel = _conv_bn_relu(FEATURE_CHANNELS, FEATURE_CHANNELS, 3)
        self.conv_search = _conv_bn_relu(FEATURE_CHANNELS, FEATURE_CHANNELS, 3)
        self.head = nn.Sequential(
            nn.Conv2d(FEATURE_CHANNELS, FEATURE_CHANNELS, 1, bias=False),
            nn.BatchNorm2d(FEATURE_CHANNELS),
            nn.ReLU(),
            nn.Conv2d(FEATURE_CHANNELS, out_channels, 1),
        )

    def correlate(self, template: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        """(1, 256, 25, 25) correlation feature of (1, 256, 7, 7) and (1, 256, 31, 31)."""
        return depthwise_correlation(self.conv_search(search), self.conv_kernel(template))

    def forward(self, template: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.correlate(template, search))
        return out


class RPN(nn.Module):
    """Classification (2 per anchor) and box regression (4 per anchor) heads."""

    def __init__(self) -> None:
        super().__init__()
        self.cls = DepthCorr(2 * ANCHOR_COUNT)
        self.loc = DepthCorr(4 * ANCHOR_COUNT)


class MaskCorr(nn.Module):
    """The mask branch's correlation (its head only matters without the refine module)."""

    def __init__(self) -> None:
        super().__init__()
        self.mask = DepthCorr(MASK_LOGITS)


def _conv_relu_pair(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(mid_channels, out_channels, 3, padding=1),
        nn.ReLU(),
    )


def cell_window(level: torch.Tensor, index: int, row: int, col: int) -> torch.Tensor:
    """The refine window of trunk level `index` (0..2) at grid cell (row, col), zero-padded."""
    pad, stride, side = REFINE_PADS[index], REFINE_STRIDES[index], REFINE_WINDOWS[index]
    padded = F.pad(level, [pad, pad, pad, pad])
    top, left = stride * row, stride * col
    return padded[:, :, top : top + side, left : left + side]


class Refine(nn.Module):
    """Paints the 127x127 mask of one cell from its correlation vector and trunk windows."""

    def __init__(self) -> None:
        super().__init__()
        self.v0 = _conv_relu_pair(64, 16, 4)
        self.v1 = _conv_relu_pair(256, 64, 16)
        self.v2 = _conv_relu_pair(512, 128, 32)
        self.h2 = _conv_relu_pair(32, 32, 32)
        self.h1 = _conv_relu_pair(16, 16, 16)
        self.h0 = _conv_relu_pair(4, 4, 4)
        self.deconv = nn.ConvTranspose2d(FEATURE_CHANNELS, 32, DECONV_SIDE, DECONV_SIDE)
        self.post0 = nn.Conv2d(32, 16, 3, padding=1)
        self.post1 = nn.Conv2d(16, 4, 3, padding=1)
        self.post2 = nn.Conv2d(4, 1, 3, padding=1)

    def forward(
        self, levels: TrunkLevels, correlation: torch.Tensor, row: int, col: int
    ) -> torch.Tensor:
        """(MASK_SIDE, MASK_SIDE) mask logits at cell (row, col)."""
        p0 = cell_window(levels.p0, 0, row, col)
        p1 = cell_window(levels.p1, 1, row, col)
        p2 = cell_window(levels.p2, 2, row, col)
        p3 = correlation[:, :, row, col].reshape(1, FEATURE_CHANNELS, 1, 1)
        out: torch.Tensor = self.deconv(p3)
        # Nearest upsampling, as the original's F.upsample default.
        out = self.post0(F.interpolate(self.h2(out) + self.v2(p2), size=REFINE_WINDOWS[1]))
        out = self.post1(F.interpolate(self.h1(out) + self.v1(p1), size=REFINE_WINDOWS[0]))
        out = self.post2(F.interpolate(self.h0(out) + self.v0(p0), size=MASK_SIDE))
        return out.reshape(MASK_SIDE, MASK_SIDE)


@dataclass(frozen=True)
class SearchOutputs:
    """The network's outputs on one search crop, before any tracker arithmetic.

    cls: (1, 2A, S, S) logits, background for anchors 0..A-1 then foreground.
    loc: (1, 4A, S, S) box deltas, component-major (dx for all anchors, then dy, dw, dh).
    correlation: (1, 256, S, S) the mask branch's correlation feature (refine input).
    levels: the trunk's levels on the search crop (refine input).
    """

    cls: torch.Tensor
    loc: torch.Tensor
    correlation: torch.Tensor
    levels: TrunkLevels


class SiamMaskVOT(nn.Module):
    """The SiamMask VOT network (checkpoint key prefixes: features, rpn_model, mask_model,
    refine_model). Call .eval() before use: BatchNorm runs on the stored statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.features = Backbone()
        self.rpn_model = RPN()
        self.mask_model = MaskCorr()
        self.refine_model = Refine()

    def template(self, exemplar: torch.Tensor) -> torch.Tensor:
        """(1, 256, 7, 7) template features of a (1, 3, 127, 127) BGR 0..255 exemplar crop."""
        if exemplar.shape[-1] != EXEMPLAR_SIZE:
            raise ValueError(f"exemplar must be {EXEMPLAR_SIZE} px wide, got {exemplar.shape}")
        levels = self.features.features(exemplar)
        adjusted: torch.Tensor = self.features.downsample(levels.p3)
        inner = slice(TEMPLATE_BORDER, -TEMPLATE_BORDER)
        return adjusted[:, :, inner, inner]

    def search(self, crop: torch.Tensor, template: torch.Tensor) -> SearchOutputs:
        """Heads of a (1, 3, 255, 255) BGR 0..255 search crop against template features."""
        levels = self.features.features(crop)
        features = self.features.downsample(levels.p3)
        return SearchOutputs(
            cls=self.rpn_model.cls(template, features),
            loc=self.rpn_model.loc(template, features),
            correlation=self.mask_model.mask.correlate(template, features),
            levels=levels,
        )

    def refine(self, outputs: SearchOutputs, row: int, col: int) -> torch.Tensor:
        """(127, 127) mask logits at grid cell (row, col) of a search."""
        mask: torch.Tensor = self.refine_model(outputs.levels, outputs.correlation, row, col)
        return mask
