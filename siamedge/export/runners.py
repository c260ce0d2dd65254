"""Runs an exported model of any layout on onnxruntime's CPU provider, targets stacked as rows.

For the exporter's validation, its tests and benchmarks; the service runs models through
siamedge.engine. Never writes a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamedge import contract as c
from siamedge.engine import import_onnxruntime
from siamedge.errors import ModelError
from siamedge.providers import CPU

Outputs = dict[str, NDArray[Any]]
"""Model outputs by name, each with a leading row dimension (B, ...)."""


@dataclass(frozen=True)
class InitRows:
    """Init-step inputs of B targets: exemplars (B, 3, E, E) float32 BGR 0..255 crops, centers
    (B, 2) (cx, cy) and sizes (B, 2) (w, h) float32 of the start boxes."""

    exemplars: NDArray[np.float32]
    centers: NDArray[np.float32]
    sizes: NDArray[np.float32]

    def row(self, index: int) -> InitRows:
        """Row `index` alone, as a batch of one."""
        pick = slice(index, index + 1)
        return InitRows(self.exemplars[pick], self.centers[pick], self.sizes[pick])


@dataclass(frozen=True)
class TrackRows:
    """Track-step inputs of B targets: images (B, 3, S, S) float32 search crops, centers and
    sizes (B, 2) float32, scales (B,) float64 (scale_x), features (B, C, h, w) float32."""

    images: NDArray[np.float32]
    centers: NDArray[np.float32]
    sizes: NDArray[np.float32]
    scales: NDArray[np.float64]
    features: NDArray[np.float32]

    def row(self, index: int) -> TrackRows:
        """Row `index` alone, as a batch of one."""
        pick = slice(index, index + 1)
        return TrackRows(
            self.images[pick],
            self.centers[pick],
            self.sizes[pick],
            self.scales[pick],
            self.features[pick],
        )

    def __len__(self) -> int:
        return len(self.images)


def open_cpu_session(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session (threads: intra-op threads; None: onnxruntime's default)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    # Spinning workers only burn the cores of whatever else runs (as in the engine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=[CPU])


def _run(session: Any, feeds: dict[str, NDArray[Any]]) -> Outputs:
    names = [out.name for out in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _stack(outputs: list[Outputs]) -> Outputs:
    return {name: np.stack([out[name] for out in outputs]) for name in outputs[0]}


class LayoutRunner:
    """An exported model (a split track model with its init model) run on rows of targets.

    Single-target models run one call per row; batched models one call for all rows. Every
    result has a leading row dimension, whatever the layout.
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.path = path
        self.session = open_cpu_session(path, threads)
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.layout: str = metadata.get(c.META_LAYOUT, c.LAYOUT_IF)
        inputs = {arg.name: arg.shape for arg in self.session.get_inputs()}
        self.batched = len(inputs[c.IN_CENTER]) == 2
        self.instance_size = int(inputs[c.IN_IMAGE][-1])
        self.init_path: Path | None = None
        self.init_session: Any = None
        if self.layout == c.LAYOUT_SPLIT:
            init_model = metadata.get(c.META_INIT_MODEL)
            if not init_model:
                raise ModelError(f"{path}: a split-layout model names no {c.META_INIT_MODEL}")
            self.init_path = path.parent / init_model
            self.init_session = open_cpu_session(self.init_path, threads)

    def template(self, rows: InitRows) -> Outputs:
        """Init step: the If model's init-branch outputs, or the split init model's features."""
        if self.layout == c.LAYOUT_SPLIT:
            feeds = {c.IN_IMAGE: rows.exemplars, c.IN_CENTER: rows.centers, c.IN_SIZE: rows.sizes}
            return _run(self.init_session, feeds)
        count, channels, side = rows.exemplars.shape[:3]
        images = np.zeros((count, channels, self.instance_size, self.instance_size), np.float32)
        images[:, :, :side, :side] = rows.exemplars
        features = np.zeros(self._feature_shape(count), np.float32)
        track = TrackRows(images, rows.centers, rows.sizes, np.ones(count), features)
        return self._if_step(track, first_time=True)

    def track(self, rows: TrackRows) -> Outputs:
        """Track step of every row."""
        if self.layout == c.LAYOUT_SPLIT:
            return _run(self.session, self._feeds(rows))
        return self._if_step(rows, first_time=False)

    def _feature_shape(self, count: int) -> tuple[int, ...]:
        shape = next(arg.shape for arg in self.session.get_inputs() if arg.name == c.IN_FEATURES)
        return (count, *(int(dim) for dim in shape[1:]))

    def _feeds(self, rows: TrackRows) -> dict[str, NDArray[Any]]:
        return {
            c.IN_IMAGE: rows.images,
            c.IN_CENTER: rows.centers,
            c.IN_SIZE: rows.sizes,
            c.IN_SCALE: rows.scales,
            c.IN_FEATURES: rows.features,
        }

    def _if_step(self, rows: TrackRows, first_time: bool) -> Outputs:
        flag = {c.IN_FIRST_TIME: np.asarray(first_time)}
        if self.batched:
            return _run(self.session, {**self._feeds(rows), **flag})
        results = []
        for index in range(len(rows)):
            one = rows.row(index)
            feeds = self._feeds(one)
            # The single-target layout: vectors and scalars without the row dimension.
            for name in (c.IN_CENTER, c.IN_SIZE, c.IN_SCALE):
                feeds[name] = np.asarray(feeds[name][0])
            out = _run(self.session, {**feeds, **flag})
            out = {
                name: value[0] if name in c.ALREADY_BATCHED else value
                for name, value in out.items()
            }
            results.append(out)
        return _stack(results)
