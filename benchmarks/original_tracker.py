"""The ORIGINAL SiamMask tracker (tools/test.py siamese_init / siamese_track, mask and refine)
around the PyTorch network, on any torch device: what the benchmarks compare siamedge with.

Benchmark-only; copies the whole frame to pad crops, as the original does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from benchmark_extras import EXPORT, needs
from numpy.typing import NDArray

from siamedge.contract import BASE_SIZE, CONTEXT_AMOUNT, EXEMPLAR_SIZE, INSTANCE_SIZE, TOTAL_STRIDE
from siamedge.export.spec import HyperParameters

with needs(EXPORT):
    import torch

    from siamedge.export.network import SiamMaskVOT
    from siamedge.export.reference_step import decide

MIN_CONTOUR_AREA = 100.0
MIN_SIDE = 10.0


def subwindow(
    image: NDArray[np.uint8], center: NDArray[np.float64], out: int, side: int, mean: Any
) -> torch.Tensor:
    """tools/test.py get_subwindow_tracking: pads a copy of the whole frame when needed."""
    c = (side + 1) / 2
    x_min, y_min = round(center[0] - c), round(center[1] - c)
    x_max, y_max = x_min + side - 1, y_min + side - 1
    height, width = image.shape[:2]
    left, top = int(max(0.0, -x_min)), int(max(0.0, -y_min))
    right, bottom = int(max(0.0, x_max - width + 1)), int(max(0.0, y_max - height + 1))
    x_min, x_max, y_min, y_max = x_min + left, x_max + left, y_min + top, y_max + top
    if any((top, bottom, left, right)):
        padded = np.zeros((height + top + bottom, width + left + right, 3), np.uint8)
        padded[top : top + height, left : left + width] = image
        padded[:top, left : left + width] = mean
        padded[height + top :, left : left + width] = mean
        padded[:, :left] = mean
        padded[:, width + left :] = mean
        patch = padded[y_min : y_max + 1, x_min : x_max + 1]
    else:
        patch = image[y_min : y_max + 1, x_min : x_max + 1]
    if side != out:
        patch = cv2.resize(patch, (out, out))
    return torch.from_numpy(np.transpose(patch, (2, 0, 1)).copy()).float()[None]


class OriginalTracker:
    """tools/test.py siamese_init / siamese_track with mask and refine, the network on a torch
    device: crops go to the device, the heads and the mask come back (.cpu()) for the numpy
    decoding, as the original does. network_s: the network's share of the last step."""

    def __init__(
        self,
        net: SiamMaskVOT,
        hp: HyperParameters,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.net = net
        self.hp = hp
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        self.network_s = 0.0

    def _to_device(self, crop: torch.Tensor) -> torch.Tensor:
        return crop.to(self.device, self.dtype)

    def start(self, frame: NDArray[np.uint8], box: Sequence[float]) -> None:
        x, y, w, h = box
        self.size_hw = frame.shape[:2]
        self.pos = np.array([x + w / 2, y + h / 2])
        self.sz = np.array([w, h])
        self.mean = np.mean(frame, axis=(0, 1))
        context = CONTEXT_AMOUNT * sum(self.sz)
        s_z = round(np.sqrt((self.sz[0] + context) * (self.sz[1] + context)))
        exemplar = subwindow(frame, self.pos, EXEMPLAR_SIZE, s_z, self.mean)
        with torch.inference_mode():
            self.template = self.net.template(self._to_device(exemplar))

    def step(self, frame: NDArray[np.uint8]) -> None:
        context = CONTEXT_AMOUNT * sum(self.sz)
        s_x = np.sqrt((self.sz[1] + context) * (self.sz[0] + context))
        scale_x = EXEMPLAR_SIZE / s_x
        s_x = s_x + 2 * ((INSTANCE_SIZE - EXEMPLAR_SIZE) / 2) / scale_x
        crop_box = [self.pos[0] - round(s_x) / 2, self.pos[1] - round(s_x) / 2, round(s_x)]
        crop = subwindow(frame, self.pos, INSTANCE_SIZE, round(s_x), self.mean)
        started = time.perf_counter()
        with torch.inference_mode():
            out = self.net.search(self._to_device(crop), self.template)
            self.net.mask_model.mask.head(out.correlation)  # the original computes it too
            decision = decide(
                cls=out.cls.float().cpu().numpy(),
                loc=out.loc.float().cpu().numpy(),
                center_xy=(float(self.pos[0]), float(self.pos[1])),
                size_wh=(float(self.sz[0]), float(self.sz[1])),
                scale_x=float(scale_x),
                hp=self.hp,
            )
            row, col = decision.cell_yx
            mask = torch.sigmoid(self.net.refine(out, row, col)).float().cpu().numpy()
        self.network_s = time.perf_counter() - started
        height, width = self.size_hw
        s = crop_box[2] / INSTANCE_SIZE
        sub = [
            crop_box[0] + (col - BASE_SIZE / 2) * TOTAL_STRIDE * s,
            crop_box[1] + (row - BASE_SIZE / 2) * TOTAL_STRIDE * s,
            s * EXEMPLAR_SIZE,
        ]
        s = EXEMPLAR_SIZE / sub[2]
        a, b = (width - 1) / (width * s), (height - 1) / (height * s)
        matrix = np.array([[a, 0, a * sub[0] * s], [0, b, b * sub[1] * s]])
        full = cv2.warpAffine(mask, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=-1)
        bits = (full > self.hp.seg_thr).astype(np.uint8)
        contours, _ = cv2.findContours(bits, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        areas = [cv2.contourArea(contour) for contour in contours]
        if contours and max(areas) > MIN_CONTOUR_AREA:
            cv2.boxPoints(cv2.minAreaRect(contours[int(np.argmax(areas))].reshape(-1, 2)))
        self.pos = np.clip(np.array(decision.center_xy), 0, [width, height])
        self.sz = np.clip(np.array(decision.size_wh), MIN_SIDE, [width, height])
