"""Runs a contract model with onnxruntime for N targets per call, in any of its three layouts.

The only module that imports onnxruntime (providers.py picks and configures the providers).
Never holds frames: it sees crops, and keeps only reusable input buffers and bound features.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge import contract as c
from siamedge import engine_cache, ort_log, providers
from siamedge.config import ModelSettings
from siamedge.errors import ModelError
from siamedge.models import resolve_model_path
from siamedge.tracking.model_io import BatchStep

log = logging.getLogger(__name__)

ORT_DTYPES: Mapping[str, str] = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(bool)": "bool",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}

GRAPH_ID_KEY = "gpu_graph_id"
"""onnxruntime's run option that names the CUDA graph a call captures or replays."""

SEVERAL_GRAPHS_SINCE = (1, 18)
"""The first onnxruntime whose CUDA provider keeps one graph per GRAPH_ID_KEY; before it, a
session captures one graph and replays it whatever is bound."""

GRAPH_CAPTURE_CALLS = 3
"""Calls at one batch size until its graph is captured: onnxruntime's CUDA provider makes two
ordinary runs first (min_num_runs_before_cuda_graph_capture_), then captures on the third."""

INSTALL_HINT = (
    "onnxruntime is not installed: pip install 'siamedge[cpu]' (or 'siamedge[gpu]'; "
    "on Jetson install JetPack's onnxruntime-gpu wheel, see the README)"
)


def import_onnxruntime() -> ModuleType:
    """The onnxruntime module, or a ModelError naming the extra to install."""
    try:
        import onnxruntime  # noqa: PLC0415 - optional back-end, imported on first use
    except ImportError as exc:
        raise ModelError(INSTALL_HINT) from exc
    module: ModuleType = onnxruntime
    return module


def _tensor_specs(args: Sequence[Any]) -> list[c.TensorSpec]:
    return [
        c.TensorSpec(arg.name, ORT_DTYPES.get(arg.type, arg.type), tuple(arg.shape)) for arg in args
    ]


def _short_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class ModelInfo:
    """What `siamedge inspect` prints: the checked contract and the declared tensors."""

    path: Path
    contract: c.ModelContract
    inputs: list[c.TensorSpec]
    outputs: list[c.TensorSpec]
    producer: str
    opset_note: str


class _Opening(NamedTuple):
    """What Engine.load opens a model with, each time it opens it."""

    ort: ModuleType
    path: Path
    cache_dir: Path | None
    max_batch: int


class Engine:
    """onnxruntime session(s) of a contract model; implements tracking.model_io.StepModel.

    Runs N targets per call: in chunks of the model's batch (one call per target for the
    single-target layout; a fixed batch is padded). Template features stay on the session's
    device between calls while the same arrays come back in the same order (I/O binding).
    """

    def __init__(
        self,
        ort: ModuleType,
        session: Any,
        contract: c.ModelContract,
        path: Path,
        *,
        init_session: Any = None,
        bound_batches: Sequence[int] = (),
    ) -> None:
        """bound_batches: bind the track model's inputs and outputs once at each of these
        batch sizes and update them in place (what CUDA graphs need; split layout only); k
        targets run in the smallest that holds them, each size with its own graph id."""
        self._ort = ort
        self._session = session
        self._init_session = init_session
        self._contract = contract
        self.path = path
        self._device = _binding_device(session)
        self._outputs = [c.OUT_MASK, c.OUT_CENTER, c.OUT_SIZE, c.OUT_BEST_CELL]
        if contract.has_score:
            self._outputs.append(c.OUT_SCORE)
        self._true = np.array(True)
        self._false = np.array(False)
        self._images = np.zeros((0, 3, contract.instance_size, contract.instance_size), np.float32)
        self._features_on_device: dict[tuple[int, ...], _DeviceFeatures] = {}
        several = len(bound_batches) > 1
        self._fixed = {
            batch: _FixedBuffers(
                ort,
                session,
                contract,
                batch=batch,
                device=self._device,
                outputs=self._outputs,
                graph_id=index + 1 if several else None,
            )
            for index, batch in enumerate(sorted(bound_batches))
        }
        self._run_capture = ort_log.RunCapture()
        self._quiet_run = run_options(ort, quiet=True)
        self.calls = 0
        """Model calls made so far (session runs, both branches)."""

    @classmethod
    def load(
        cls,
        model: str,
        settings: ModelSettings,
        cache_dir: Path | None = None,
        max_batch: int = 1,
    ) -> Engine:
        """Open a model (`builtin` or a path) on the best available provider and warm it up.

        max_batch: the most targets one call will carry (TensorRT profiles, warm-up).
        """
        ort = import_onnxruntime()
        providers.require_available(ort, settings.providers)
        path = resolve_model_path(model)
        opening = _Opening(ort, path, cache_dir, max_batch)
        engine = cls._open(opening, settings)
        if settings.warmup:
            engine = cls._warmed_up(engine, opening, settings)
        return engine

    @classmethod
    def _open(cls, opening: _Opening, settings: ModelSettings) -> Engine:
        """The model's sessions (and its init model's, for the split layout), not warmed up."""
        ort, path, cache_dir, max_batch = opening
        track_settings = _graph_settings(ort, path, settings)
        session = providers.open_session(
            ort, path, track_settings, cache_dir=cache_dir, max_batch=max_batch
        )
        contract = check_session(session, str(path))
        graphs = track_settings.cuda_graph or track_settings.trt_cuda_graph
        init_session = None
        init_path = init_model_path(path, contract)
        if init_path is not None:
            init_session = providers.open_session(
                ort, init_path, _without_graphs(settings), cache_dir=cache_dir, max_batch=max_batch
            )
            check_init_session(init_session, init_path, contract)
        batches: tuple[int, ...] = ()
        if graphs:
            several = not contract.max_batch and several_graphs(ort, session)
            batches = graph_batches(contract.max_batch or max_batch, several=several)
        engine = cls(ort, session, contract, path, init_session=init_session, bound_batches=batches)
        log.info(
            "model %s (%s, %s) runs on %s",
            path,
            contract.model_name or "unnamed",
            describe_layout(contract),
            engine.provider,
        )
        if batches:
            log.info(
                "track model bound at batch %s for CUDA graphs (%s)",
                ", ".join(map(str, batches)),
                "one graph each" if len(batches) > 1 else "one graph",
            )
        return engine

    @classmethod
    def _warmed_up(cls, engine: Engine, opening: _Opening, settings: ModelSettings) -> Engine:
        """engine warmed up. TensorRT builds or loads the engine of a model with dynamic shapes
        at the first run, not when the session opens: when that run fails, its engine folders
        are emptied and the model opened again, once (an engine of another TensorRT), and then
        without TensorRT (one warning each); ModelError when no other provider is asked for."""
        path = opening.path
        emptied = False
        while True:
            try:
                engine.warm_up(opening.max_batch)
                return engine
            except ModelError as exc:
                if engine.provider != providers.TENSORRT:
                    raise
                cause = exc.__cause__
                failure = ort_log.short_ort_error(str(cause)) if cause else str(exc)
            folders = engine.trt_engine_folders()
            del engine  # its sessions hold GPU memory that the next build may need
            if folders and not emptied:
                emptied = True
                log.warning(
                    "%s: TensorRT failed at its first run (%s): removing its engines in %s and "
                    "building them again",
                    path,
                    failure,
                    ", ".join(map(str, folders)),
                )
                for folder in folders:
                    engine_cache.empty(folder)
                engine = cls._open(opening, settings)
                continue
            rest = providers.without_tensorrt(opening.ort, settings)
            if rest is None:
                raise ModelError(f"{path}: TensorRT failed at its first run: {failure}") from None
            engine = cls._open(opening, rest)
            log.warning(
                "%s did not start (failed at its first run: %s); %s runs instead",
                providers.TENSORRT,
                failure,
                engine.provider,
            )

    @property
    def contract(self) -> c.ModelContract:
        """The model's checked contract."""
        return self._contract

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (the session's first)."""
        names: list[str] = self._session.get_providers()
        return names[0]

    def trt_engine_folders(self) -> list[Path]:
        """Where TensorRT keeps the engines of this model's sessions (none off TensorRT)."""
        folders = []
        for session in (self._session, self._init_session):
            if session is None or session.get_providers()[0] != providers.TENSORRT:
                continue
            options = session.get_provider_options().get(providers.TENSORRT, {})
            if folder := options.get("trt_engine_cache_path"):
                folders.append(Path(folder))
        return folders

    @property
    def session(self) -> Any:
        """The onnxruntime session of the track step (benchmarks time session.run alone)."""
        return self._session

    def template(
        self,
        exemplars: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
    ) -> NDArray[np.float32]:
        """Init branch: (N, E, E, 3) uint8 BGR exemplar crops -> (N, C, h, w) features.

        centers_xy / sizes_wh: (N, 2) start boxes; SiamMask ignores them, other models may not.
        """
        size = self._contract.exemplar_size
        if exemplars.ndim != 4 or exemplars.shape[1:] != (size, size, 3):
            raise ValueError(
                f"exemplar crops must be (N, {size}, {size}, 3), got {exemplars.shape}"
            )
        parts = []
        for rows in self._chunks(len(exemplars)):
            if self._init_session is not None:
                feeds = {
                    c.IN_IMAGE: _chw(exemplars[rows]),
                    c.IN_CENTER: centers_xy[rows].astype(np.float32),
                    c.IN_SIZE: sizes_wh[rows].astype(np.float32),
                }
                outputs = self._run(self._init_session, [c.OUT_FEATURES], feeds)
            else:
                images = self._image_buffer(rows.stop - rows.start)
                images.fill(0.0)
                write_planar(exemplars[rows], images)
                feeds = self._step_feeds(images, centers_xy[rows], sizes_wh[rows], None)
                feeds[c.IN_FEATURES] = np.zeros(
                    (len(images), *self._contract.feature_shape[1:]), np.float32
                )
                feeds[c.IN_FIRST_TIME] = self._true
                shaped = self._shaped(feeds, self._contract.max_batch)
                outputs = self._run(self._session, [c.OUT_FEATURES], shaped)
            parts.append(np.asarray(outputs[0], np.float32)[: rows.stop - rows.start])
        return np.concatenate(parts)

    def track(
        self,
        searches: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
        scales_x: NDArray[np.float64],
        features: Sequence[NDArray[np.float32]],
    ) -> BatchStep:
        """Track branch on (N, S, S, 3) uint8 BGR search crops (see StepModel.track)."""
        size = self._contract.instance_size
        if searches.ndim != 4 or searches.shape[1:] != (size, size, 3):
            raise ValueError(f"search crops must be (N, {size}, {size}, 3), got {searches.shape}")
        steps = []
        kept: dict[tuple[int, ...], _DeviceFeatures] = {}
        for rows in self._chunks(len(searches)):
            count = rows.stop - rows.start
            images = self._image_buffer(count)
            write_planar(searches[rows], images)
            buffers = self._buffers_for(count)
            feeds = self._shaped(
                self._step_feeds(images, centers_xy[rows], sizes_wh[rows], scales_x[rows]),
                self._contract.max_batch if buffers is None else buffers.batch,
            )
            if self._init_session is None:
                feeds[c.IN_FIRST_TIME] = self._false
            if buffers is not None:
                run = functools.partial(buffers.run, self._session, feeds, features[rows])
                outputs = self._counted(self._session, buffers.batch, run)
                steps.append(self._batch_step(outputs, count))
                continue
            on_device = self._device_features(features[rows])
            kept[on_device.key] = on_device
            outputs = self._run(self._session, self._outputs, feeds, on_device.value)
            steps.append(self._batch_step(outputs, rows.stop - rows.start))
        self._features_on_device = kept
        return steps[0] if len(steps) == 1 else BatchStep.concatenate(steps)

    def warm_up(self, max_batch: int = 1) -> float:
        """Run both branches for one target and for max_batch targets (TensorRT builds or loads
        its engine, cuDNN picks its algorithms); seconds taken."""
        started = time.monotonic()
        with ort_log.captured():
            self._warm_up(max_batch)
        elapsed = time.monotonic() - started
        log.info("warm-up of both branches took %.2f s", elapsed)
        return elapsed

    def _warm_up(self, max_batch: int) -> None:
        # Every graph's batch size, often enough to capture it before the first frame.
        calls = GRAPH_CAPTURE_CALLS if self._fixed else 1
        for count in sorted({1, max_batch, *self._fixed}):
            center = np.full((count, 2), self._contract.instance_size / 2)
            size = np.full((count, 2), 64.0)
            exemplar_side = self._contract.exemplar_size
            features = self.template(
                np.zeros((count, exemplar_side, exemplar_side, 3), np.uint8), center, size
            )
            side = self._contract.instance_size
            searches = np.zeros((count, side, side, 3), np.uint8)
            rows = [features[i : i + 1] for i in range(count)]
            for _ in range(calls):
                self.track(searches, center, size, np.ones(count), rows)

    def _chunks(self, count: int) -> list[slice]:
        """Row ranges of the model calls for `count` targets."""
        largest = max(self._fixed, default=None)
        step = self._contract.max_batch or largest or max(count, 1)
        return [slice(start, min(start + step, count)) for start in range(0, count, step)]

    def _image_buffer(self, count: int) -> NDArray[np.float32]:
        """(count, 3, S, S) float32 rows of the reused image buffer."""
        if len(self._images) < count:
            self._images = np.zeros((count, *self._images.shape[1:]), np.float32)
        return self._images[:count]

    def _step_feeds(
        self,
        images: NDArray[np.float32],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
        scales_x: NDArray[np.float64] | None,
    ) -> dict[str, NDArray[Any]]:
        feeds: dict[str, NDArray[Any]] = {
            c.IN_IMAGE: images,
            c.IN_CENTER: centers_xy.astype(np.float32),
            c.IN_SIZE: sizes_wh.astype(np.float32),
        }
        count = len(images)
        feeds[c.IN_SCALE] = (
            np.ones(count, np.float64) if scales_x is None else scales_x.astype(np.float64)
        )
        return feeds

    def _shaped(self, feeds: dict[str, NDArray[Any]], batch: int | None) -> dict[str, NDArray[Any]]:
        """Feeds in the model's layout: padded to `batch` rows (a fixed batch) with copies of
        the last row; the single-target layout without the batch dimension where it has none."""
        if not self._contract.batched:
            keep = (*c.ALREADY_BATCHED, *c.UNBATCHED_INPUTS)
            return {name: value if name in keep else value[0] for name, value in feeds.items()}
        return {name: _padded(value, batch) for name, value in feeds.items()}

    def _buffers_for(self, count: int) -> _FixedBuffers | None:
        """The smallest bound batch that holds `count` targets; None without bound batches."""
        batch = min((size for size in self._fixed if size >= count), default=None)
        return None if batch is None else self._fixed[batch]

    def _device_features(self, rows: Sequence[NDArray[np.float32]]) -> _DeviceFeatures:
        """The rows' template features as one (k, C, h, w) value on the session's device,
        reused while the same arrays come back in the same order."""
        key = tuple(id(row) for row in rows)
        cached = self._features_on_device.get(key)
        if cached is not None:
            return cached
        stacked = np.concatenate(rows).astype(np.float32, copy=False)
        if self._contract.batched:
            stacked = _padded(stacked, self._contract.max_batch)
        value = self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(stacked), *self._device)
        return _DeviceFeatures(key, list(rows), value)

    def _batch_step(self, outputs: list[Any], count: int) -> BatchStep:
        """The first `count` rows of a call's outputs (a fixed batch may carry padding)."""
        mask, center, size, cell = (np.asarray(value) for value in outputs[:4])
        score = np.asarray(outputs[4], np.float32) if self._contract.has_score else None
        if self._contract.batched:
            mask, center, size, cell = mask[:count], center[:count], size[:count], cell[:count]
            score = None if score is None else score[:count]
        else:
            mask, center, size, cell = mask[None], center[None], size[None], cell[None]
            score = None if score is None else score.reshape(1)
        return BatchStep(
            mask_probs=mask.astype(np.float32, copy=False),
            center_xy=center.astype(np.float32, copy=False),
            size_wh=size.astype(np.float32, copy=False),
            best_cell_yx=cell.astype(np.int64, copy=False),
            score=score,
        )

    def _run(
        self,
        session: Any,
        names: list[str],
        feeds: Mapping[str, NDArray[Any]],
        features: Any = None,
    ) -> list[Any]:
        """One model call through I/O binding; features: an OrtValue bound as z_features0."""
        binding = session.io_binding()  # 0-d inputs stay 0-d: ascontiguousarray makes them [1]
        for name, value in feeds.items():
            binding.bind_cpu_input(name, np.asarray(value, order="C"))
        if features is not None:
            binding.bind_ortvalue_input(c.IN_FEATURES, features)
        for name in names:
            binding.bind_output(name)

        def run(captured: bool) -> list[Any]:
            session.run_with_iobinding(binding, None if captured else self._quiet_run)
            outputs: list[Any] = binding.copy_outputs_to_cpu()
            return outputs

        return self._counted(session, len(feeds[c.IN_IMAGE]), run)

    def _counted(self, session: Any, rows: int, run: Callable[[bool], list[Any]]) -> list[Any]:
        """Count a model call and name its failure; the first calls of each batch size go
        through onnxruntime's log capture (cuDNN picks its algorithms then, and may say so;
        see ort_log.RunCapture), the others run quiet (run(False))."""
        self.calls += 1
        try:
            return self._run_capture.run((id(session), rows), run)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{self.path}: inference failed: {_short_error(exc)}") from exc


class _FixedBuffers:
    """The track model's inputs and outputs bound once, at a fixed batch, on its device.

    CUDA graphs replay the launches they captured on the same memory: every call updates the
    inputs in place (rows past the targets repeat the last one) and reads the outputs; the
    template features are written only when the targets change.
    """

    def __init__(
        self,
        ort: ModuleType,
        session: Any,
        contract: c.ModelContract,
        *,
        batch: int,
        device: tuple[str, int],
        outputs: Sequence[str],
        graph_id: int | None,
    ) -> None:
        """graph_id: the CUDA graph these buffers' calls capture and replay (GRAPH_ID_KEY);
        None: onnxruntime's one default graph."""
        self.batch = batch
        self.run_options = run_options(ort, graph_id=graph_id)
        self.quiet_run_options = run_options(ort, graph_id=graph_id, quiet=True)
        side, window = contract.instance_size, contract.exemplar_size
        inputs = {
            c.IN_IMAGE: ((batch, 3, side, side), np.float32),
            c.IN_CENTER: ((batch, 2), np.float32),
            c.IN_SIZE: ((batch, 2), np.float32),
            c.IN_SCALE: ((batch,), np.float64),
            c.IN_FEATURES: ((batch, *contract.feature_shape[1:]), np.float32),
        }
        declared = {
            c.OUT_MASK: ((batch, window, window), np.float32),
            c.OUT_CENTER: ((batch, 2), np.float32),
            c.OUT_SIZE: ((batch, 2), np.float32),
            c.OUT_BEST_CELL: ((batch, 2), np.int64),
            c.OUT_SCORE: ((batch,), np.float32),
        }
        make = ort.OrtValue.ortvalue_from_shape_and_type
        self._inputs = {
            name: make(shape, dtype, *device) for name, (shape, dtype) in inputs.items()
        }
        self._outputs = [make(*declared[name], *device) for name in outputs]
        self._binding = session.io_binding()
        for name, value in self._inputs.items():
            self._binding.bind_ortvalue_input(name, value)
        for name, value in zip(outputs, self._outputs, strict=True):
            self._binding.bind_ortvalue_output(name, value)
        self._features: list[NDArray[np.float32]] = []

    def run(
        self,
        session: Any,
        feeds: Mapping[str, NDArray[Any]],
        features: Sequence[NDArray[np.float32]],
        captured: bool,
    ) -> list[Any]:
        """One call on up to `batch` targets: feeds already padded to the batch; quiet unless
        its output is captured (ort_log.RunCapture)."""
        for name, value in feeds.items():
            if name in self._inputs:
                self._inputs[name].update_inplace(np.asarray(value, order="C"))
        if [id(row) for row in features] != [id(row) for row in self._features]:
            stacked = _padded(np.concatenate(features).astype(np.float32), self.batch)
            self._inputs[c.IN_FEATURES].update_inplace(np.ascontiguousarray(stacked))
            self._features = list(features)
        options = self.run_options if captured else self.quiet_run_options
        session.run_with_iobinding(self._binding, options)
        # On the CPU numpy() is a view of the bound buffer, which the next call overwrites.
        return [np.array(value.numpy()) for value in self._outputs]


def run_options(ort: ModuleType, *, graph_id: int | None = None, quiet: bool = False) -> Any:
    """onnxruntime RunOptions: graph_id names the CUDA graph a call captures or replays
    (GRAPH_ID_KEY); quiet: log fatal errors only (ort_log.QUIET_RUN_SEVERITY)."""
    options = ort.RunOptions()
    if graph_id is not None:
        options.add_run_config_entry(GRAPH_ID_KEY, str(graph_id))
    if quiet:
        options.log_severity_level = ort_log.QUIET_RUN_SEVERITY
    return options


def graph_batches(largest: int, *, several: bool) -> tuple[int, ...]:
    """Batch sizes whose inputs and outputs are bound for CUDA graphs, up to `largest` targets.

    several: one graph per batch size can be kept (see several_graphs); then the powers of two
    below `largest` and `largest` itself (1, 2, 4), so that one target replays a graph of one
    row rather than `largest` rows; otherwise `largest` alone.
    """
    if not several:
        return (largest,)
    powers = [1 << shift for shift in range(largest.bit_length()) if 1 << shift < largest]
    return (*powers, largest)


def several_graphs(ort: ModuleType, session: Any) -> bool:
    """Whether the session keeps one CUDA graph per GRAPH_ID_KEY: onnxruntime's CUDA provider
    since SEVERAL_GRAPHS_SINCE (TensorRT's provider captures a single graph), or the CPU
    provider (no graph at all: how the tests run the bound batches)."""
    provider = session.get_providers()[0]
    if provider == providers.TENSORRT:
        return False
    return provider != providers.CUDA or providers.ort_version(ort) >= SEVERAL_GRAPHS_SINCE


def _graph_settings(ort: ModuleType, path: Path, settings: ModelSettings) -> ModelSettings:
    """settings, with CUDA graphs turned off (one warning) for a model that has control flow."""
    if not (settings.cuda_graph or settings.trt_cuda_graph):
        return settings
    metadata = providers.read_declaration(ort, path).metadata
    if metadata.get(c.META_LAYOUT, c.LAYOUT_IF) == c.LAYOUT_SPLIT:
        return settings
    log.warning(
        "%s has an If (control flow), which CUDA graphs cannot capture: running it without "
        "(model.cuda_graph / trt_cuda_graph need `siamedge export --layout split`)",
        path,
    )
    return _without_graphs(settings)


def _without_graphs(settings: ModelSettings) -> ModelSettings:
    return settings.model_copy(update={"cuda_graph": False, "trt_cuda_graph": False})


@dataclass(frozen=True)
class _DeviceFeatures:
    """Template features bound on the device; `arrays` keeps the keyed ids alive."""

    key: tuple[int, ...]
    arrays: list[NDArray[np.float32]]
    value: Any


def _binding_device(session: Any) -> tuple[str, int]:
    """Where the session's inputs live: ("cuda", id) for TensorRT / CUDA, else ("cpu", 0)."""
    names: list[str] = session.get_providers()
    if names and names[0] in {providers.TENSORRT, providers.CUDA}:
        options: dict[str, dict[str, str]] = session.get_provider_options()
        return "cuda", int(options.get(names[0], {}).get("device_id", 0))
    return "cpu", 0


def _chw(crops: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32."""
    planes = np.empty((crops.shape[0], 3, *crops.shape[1:3]), np.float32)
    write_planar(crops, planes)
    return planes


def write_planar(crops: NDArray[np.uint8], planes: NDArray[np.float32]) -> None:
    """Write (N, H, W, 3) uint8 crops into the top-left of (N, 3, >=H, >=W) float32 planes.

    cv2.split per crop, then a contiguous cast: 0.05 ms a 255 px crop on this 2-core machine,
    against 0.14 ms for numpy's strided cast of the transposed crop.
    """
    height, width = crops.shape[1:3]
    for crop, crop_planes in zip(crops, planes, strict=True):
        for channel, plane in enumerate(cv2.split(crop)):
            crop_planes[channel, :height, :width] = plane


def _padded(value: NDArray[Any], batch: int | None) -> NDArray[Any]:
    """value with its first dimension padded to `batch` rows by repeating its last row."""
    if batch is None or value.ndim == 0 or len(value) >= batch:
        return value
    return np.concatenate([value, np.repeat(value[-1:], batch - len(value), axis=0)])


def describe_layout(contract: c.ModelContract) -> str:
    """The layout in words: `single target`, `batch of any size`, `batch of 4`, `split ...`."""
    if not contract.batched:
        batch = "single target"
    elif contract.max_batch is None:
        batch = "batch of any size"
    else:
        batch = f"batch of {contract.max_batch}"
    return f"{batch}, two models (split)" if contract.layout == c.LAYOUT_SPLIT else batch


def check_session(session: Any, where: str) -> c.ModelContract:
    """The contract of an open session's model (ModelError naming what is wrong)."""
    metadata = session.get_modelmeta().custom_metadata_map
    return c.check_contract(
        _tensor_specs(session.get_inputs()), _tensor_specs(session.get_outputs()), metadata, where
    )


def init_model_path(path: Path, contract: c.ModelContract) -> Path | None:
    """The init model a split-layout track model names, beside it (None for one-model
    layouts); ModelError when it is not there."""
    if contract.layout != c.LAYOUT_SPLIT or contract.init_model is None:
        return None
    init_path = path.parent / contract.init_model
    if not init_path.is_file():
        missing = "is not a file" if init_path.exists() else "does not exist"
        raise ModelError(
            f"{path}: its init model {init_path} (metadata {c.META_INIT_MODEL}) {missing}"
        )
    return init_path


def check_init_session(session: Any, init_path: Path, contract: c.ModelContract) -> None:
    """ModelError when the init model's tensors do not match its track model's contract."""
    c.check_init_contract(
        _tensor_specs(session.get_inputs()),
        _tensor_specs(session.get_outputs()),
        contract,
        str(init_path),
    )


def _cpu_session(ort: ModuleType, path: Path) -> Any:
    """A plain CPU session of a model file (ModelError naming it when it cannot load)."""
    try:
        # Captured as when the service opens it: onnxruntime's load-time warnings (such as an
        # initializer no node reads) become log lines instead of raw coloured stderr.
        with ort_log.captured():
            return ort.InferenceSession(str(path), providers=[providers.CPU])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: cannot load the model: {_short_error(exc)}") from exc


def inspect_model(model: str) -> ModelInfo:
    """Open a model on the CPU and describe it (for `siamedge inspect`); a split layout's init
    model is opened and checked too."""
    ort = import_onnxruntime()
    path = resolve_model_path(model)
    session = _cpu_session(ort, path)
    contract = check_session(session, str(path))
    init_path = init_model_path(path, contract)
    if init_path is not None:
        check_init_session(_cpu_session(ort, init_path), init_path, contract)
    meta = session.get_modelmeta()
    return ModelInfo(
        path=path,
        contract=contract,
        inputs=_tensor_specs(session.get_inputs()),
        outputs=_tensor_specs(session.get_outputs()),
        producer=meta.producer_name,
        opset_note=meta.graph_name,
    )
