"""Per-step time on a GPU: siamedge on the CUDA provider (the one-model If layout, and the split
layout replayed as a CUDA graph), siamedge on the CPU provider and the original PyTorch tracker on
the same GPU, fp32 and fp16, 1 and 4 targets, 480p / 1080p / 4K.

The frames are the tennis frames (854x480) resized (bilinear) to each size; the targets start on
the reference init box (scaled) and, for 4 targets, three boxes of its size elsewhere in the
frame (siamedge.check.start_boxes). siamedge steps all targets in ONE model call per frame
(Tracker + step_together); the original tracker (tools/test.py siamese_track with mask and
refine, the network in PyTorch, cuDNN autotuned, TF32 off) steps them one after another, as it
can only do. One table, median ms per frame after WARMUP_STEPS steps:
  step:   the whole per-frame step for all targets (crops, model, mask, state),
  run:    the session run alone (run_with_iobinding, inputs and outputs copied included),
  around: step - run (what siamedge does around the model), of which
  crop:   the targets' search crops, and
  finish: their mask, boxes and state (the rest: stacking the crops, the model's buffers),
  /tgt:   step per target; n/1: the step of n targets over the step of one.
The CUDA provider runs with siamedge's defaults (TF32 off, exhaustive cuDNN algorithm search);
--cuda-tf32 measures TF32 on, --cuda-option KEY=VALUE any other `model` setting of the CUDA
provider (cuda_prefer_nhwc=true, cuda_conv_algo_search=HEURISTIC). OpenCV runs with its own
thread count, as the daemon does (--cv-threads N sets it). The graph columns run the split
layout's track model with model.cuda_graph (inputs and outputs bound once at 1, 2 and 4
targets, one graph each: k targets replay the smallest that holds them).

Without a GPU (onnxruntime offers no CUDA provider and torch sees no CUDA device) it prints one
line and exits 0; --cpu-only measures the CPU columns anyway (and the original on the CPU),
which is how the script itself is tested on machines without one. torch (the export extra) is
needed only for the PyTorch columns, which say so where it is not installed, and to export the
models: with exports already in --models, siamedge's columns need none.

    python benchmarks/gpu.py [--frames-dir DIR] [--make-checkpoint PY] [--models DIR]
                             [--frames 30] [--cpu-frames 10] [--sizes 480p,1080p,4k]
                             [--targets 1,4] [--precisions fp32,fp16] [--skip-cpu]
                             [--skip-graph] [--skip-torch] [--cuda-tf32]
                             [--cuda-option KEY=VALUE ...] [--cv-threads N]

Paths: the tennis frames and make_checkpoint.py default to ../shared/reference; a machine
without it takes --frames-dir and --make-checkpoint (the script that builds the seed-0
checkpoint). The checkpoint and its exports (shared_reference.seed0_exports: fp32.onnx,
fp16.onnx, fp32-split.onnx, fp16-split.onnx) are written into --models and reused from there.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from benchmark_extras import EXPORT
from numpy.typing import NDArray
from shared_reference import (
    EXPORTS,
    REFERENCE,
    SPLIT,
    TENNIS_BOXES_XYWH,
    seed0_checkpoint,
    seed0_exports,
)
from timed_session import TimedSession, timed

from siamedge.check import start_boxes
from siamedge.config import ModelSettings, TrackerSettings
from siamedge.engine import Engine, import_onnxruntime
from siamedge.errors import SiamedgeError
from siamedge.providers import CUDA
from siamedge.tracking.crop import CropScratch
from siamedge.tracking.geometry import BoxXYWH
from siamedge.tracking.model_io import ModelStep
from siamedge.tracking.tracker import (
    SearchCrop,
    StepOutcome,
    Tracker,
    TrackerParams,
    step_together,
)

SIZES = {"480p": (854, 480), "1080p": (1920, 1080), "4k": (3840, 2160)}
SOURCE_WH = (854, 480)
PRECISIONS = ("fp32", "fp16")
WARMUP_STEPS = 3
"""Steps left out of the medians: cuDNN autotuning and lazy kernel loading of the first calls."""
MAX_TARGETS = 4
MS = 1000.0
P90 = 90
NOT_RUN = "-"
NO_TORCH = "torch not installed"


def _median_ms(samples: list[float] | None) -> float | None:
    """Median of seconds in ms; None where the column was not measured."""
    return None if samples is None else statistics.median(samples) * MS


@dataclass(frozen=True)
class Timing:
    """Per-frame seconds of one configuration (after the warm-up steps).

    run_s: the model call(s) alone; None where there is no session (the PyTorch original).
    """

    step_s: list[float]
    run_s: list[float] | None
    crop_s: list[float] | None = None
    """siamedge only: the targets' crops (Tracker.prepare) of each frame."""
    finish_s: list[float] | None = None
    """siamedge only: the targets' finishes (mask, boxes, state) of each frame."""

    def median_ms(self) -> float:
        return statistics.median(self.step_s) * MS

    def p90_ms(self) -> float:
        return float(np.percentile(self.step_s, P90)) * MS

    def run_ms(self) -> float | None:
        return _median_ms(self.run_s)

    def crop_ms(self) -> float | None:
        return _median_ms(self.crop_s)

    def finish_ms(self) -> float | None:
        return _median_ms(self.finish_s)

    def around_ms(self) -> float | None:
        if self.run_s is None:
            return None
        around = [step - run for step, run in zip(self.step_s, self.run_s, strict=True)]
        return statistics.median(around) * MS


def load_frames(folder: Path, size_wh: tuple[int, int], count: int) -> list[NDArray[np.uint8]]:
    """The first `count` frames of the folder (sorted .jpg names) resized to size_wh."""
    names = sorted(folder.glob("*.jpg"))[:count]
    if len(names) < count:
        raise SystemExit(f"{folder}: {count} .jpg frames needed, found {len(names)}")
    frames = []
    for name in names:
        frame = cv2.imread(str(name))
        if frame is None:
            raise SystemExit(f"{name}: not a readable image")
        if frame.shape[1::-1] != size_wh:
            frame = cv2.resize(frame, size_wh)
        frames.append(frame)
    return frames


def target_boxes(size_wh: tuple[int, int], count: int) -> list[BoxXYWH]:
    """The reference init box scaled to the frame size, then count - 1 boxes of its size."""
    factor = size_wh[0] / SOURCE_WH[0]
    x, y, w, h = (value * factor for value in TENNIS_BOXES_XYWH[0])
    return start_boxes((x, y, w, h), size_wh, count)


def timed_engine(model: Path, settings: ModelSettings) -> tuple[Engine, TimedSession]:
    """The model warmed up for 1 and MAX_TARGETS targets, its track session timed."""
    engine = Engine.load(str(model), settings, max_batch=MAX_TARGETS)
    return engine, timed(engine)


@dataclass
class PhaseClock:
    """Seconds the trackers of one frame spent in their crops and their finishes."""

    crop_s: float = 0.0
    finish_s: float = 0.0


class TimedTracker(Tracker):
    """A Tracker that adds the time of its crops and finishes to a shared clock (benchmark
    only: where the time around the model goes)."""

    def __init__(
        self, model: Engine, params: TrackerParams, scratch: CropScratch, clock: PhaseClock
    ) -> None:
        super().__init__(model, params, scratch)
        self._clock = clock

    def prepare(self, frame: NDArray[np.uint8]) -> SearchCrop:
        started = time.perf_counter()
        try:
            return super().prepare(frame)
        finally:
            self._clock.crop_s += time.perf_counter() - started

    def finish(self, search: SearchCrop, out: ModelStep) -> StepOutcome:
        started = time.perf_counter()
        try:
            return super().finish(search, out)
        finally:
            self._clock.finish_s += time.perf_counter() - started


def measure_siamedge(
    engine: Engine,
    timed: TimedSession,
    frames: Sequence[NDArray[np.uint8]],
    boxes: Sequence[BoxXYWH],
) -> Timing:
    """Start one tracker per box on frames[0] (sharing one crop scratch, as the daemon's do),
    then step them together through the rest."""
    params = TrackerParams.from_settings(TrackerSettings(), engine.contract)
    clock = PhaseClock()
    scratch = CropScratch()
    trackers = [TimedTracker(engine, params, scratch, clock) for _ in boxes]
    for tracker, box in zip(trackers, boxes, strict=True):
        tracker.start(frames[0], box)
    step_s, run_s, crop_s, finish_s = [], [], [], []
    for frame in frames[1:]:
        timed.reset()
        clock.crop_s = clock.finish_s = 0.0
        started = time.perf_counter()
        for outcome in step_together(trackers, frame):
            if isinstance(outcome, ValueError):
                raise outcome
        step_s.append(time.perf_counter() - started)
        run_s.append(timed.elapsed_s)
        crop_s.append(clock.crop_s)
        finish_s.append(clock.finish_s)
    kept = slice(WARMUP_STEPS, None)
    return Timing(step_s[kept], run_s[kept], crop_s[kept], finish_s[kept])


def measure_original(
    net: Any,
    device: Any,
    precision: str,
    frames: Sequence[NDArray[np.uint8]],
    boxes: Sequence[BoxXYWH],
) -> Timing:
    """One original tracker per box, stepped one after another on every frame."""
    import torch
    from original_tracker import OriginalTracker

    from siamedge.export.spec import HyperParameters

    dtype = torch.float16 if precision == "fp16" else torch.float32
    trackers = [OriginalTracker(net, HyperParameters(), device, dtype) for _ in boxes]
    for tracker, box in zip(trackers, boxes, strict=True):
        tracker.start(frames[0], box)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step_s = []
    for frame in frames[1:]:
        synchronize()
        started = time.perf_counter()
        for tracker in trackers:
            tracker.step(frame)
        synchronize()
        step_s.append(time.perf_counter() - started)
    return Timing(step_s[WARMUP_STEPS:], None)


@dataclass(frozen=True)
class Row:
    """One table row: frame size, precision, targets and each runner's timing (None: not run,
    or a string saying why)."""

    size_wh: tuple[int, int]
    precision: str
    targets: int
    cuda: Timing | str | None
    cuda_graph: Timing | str | None
    cpu: Timing | str | None
    torch: Timing | str | None


@dataclass(frozen=True)
class Group:
    """A runner's columns in the table: its title, column names and widths."""

    title: str
    columns: tuple[str, ...]
    widths: tuple[int, ...]
    pick: Callable[[Row], Timing | str | None]

    @property
    def width(self) -> int:
        return sum(self.widths) + len(self.widths) - 1

    def header(self) -> str:
        return " ".join(f"{name:>{w}}" for name, w in zip(self.columns, self.widths, strict=True))

    def cells(self, row: Row, rows: Sequence[Row]) -> str:
        """The row's values, or the reason the runner did not run, across the group."""
        timing = self.pick(row)
        if not isinstance(timing, Timing):
            return f"{(timing or NOT_RUN)[: self.width]:>{self.width}}"
        values = {
            "step": timing.median_ms(),
            "p90": timing.p90_ms(),
            "run": timing.run_ms(),
            "around": timing.around_ms(),
            "crop": timing.crop_ms(),
            "finish": timing.finish_ms(),
            "/tgt": timing.median_ms() / row.targets,
            "n/1": _ratio(row, rows, self.pick),
        }
        return " ".join(
            f"{NOT_RUN:>{w}}" if values[name] is None else f"{values[name]:{w}.2f}"
            for name, w in zip(self.columns, self.widths, strict=True)
        )


def _ratio(
    row: Row, rows: Sequence[Row], pick: Callable[[Row], Timing | str | None]
) -> float | None:
    """This row's step over the 1-target row's of the same size and precision."""
    mine = pick(row)
    single = next(
        (
            pick(other)
            for other in rows
            if (other.size_wh, other.precision, other.targets) == (row.size_wh, row.precision, 1)
        ),
        None,
    )
    if row.targets == 1 or not isinstance(mine, Timing) or not isinstance(single, Timing):
        return None
    return mine.median_ms() / single.median_ms()


def print_table(rows: Sequence[Row], torch_device: str | None) -> None:
    """Everything side by side, one row per frame size, precision and target count."""
    groups = (
        Group(
            "siamedge, CUDA provider",
            ("step", "p90", "run", "around", "crop", "finish", "/tgt", "n/1"),
            (8, 7, 7, 7, 6, 6, 7, 5),
            lambda row: row.cuda,
        ),
        Group(
            "split layout, CUDA graph",
            ("step", "run", "around", "n/1"),
            (8, 7, 7, 5),
            lambda row: row.cuda_graph,
        ),
        Group(
            "siamedge, CPU provider",
            ("step", "run", "around", "crop", "finish", "/tgt", "n/1"),
            (8, 8, 7, 6, 6, 8, 5),
            lambda row: row.cpu,
        ),
        Group(
            f"PyTorch original ({torch_device})" if torch_device else "PyTorch original",
            ("step", "/tgt", "n/1"),
            (9, 9, 5),
            lambda row: row.torch,
        ),
    )
    lead = f"{'frame':>10} {'prec':>4} {'tgt':>3}"
    print(" | ".join([" " * len(lead), *(f"{g.title:^{g.width}}" for g in groups)]))
    header = " | ".join([lead, *(g.header() for g in groups)])
    print(header)
    print("-" * len(header))
    for row in rows:
        width, height = row.size_wh
        first = f"{f'{width}x{height}':>10} {row.precision:>4} {row.targets:>3}"
        print(" | ".join([first, *(g.cells(row, rows) for g in groups)]))
    print(
        "median ms per frame for all targets; run: the session run alone; around: step - run, "
        "of which crop: the crops, finish: mask, boxes and state (the rest: stacking the crops, "
        "filling and reading the model's buffers); /tgt: per target; n/1: the step of n "
        "targets over the step of one"
    )


def import_torch() -> Any | None:
    """torch, or None where it is not installed (the PyTorch columns then say so)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def gpu_presence() -> tuple[bool, bool, str]:
    """(onnxruntime offers CUDA, torch sees a CUDA device, a line saying what is here)."""
    try:
        offered = list(import_onnxruntime().get_available_providers())
    except SiamedgeError:
        offered = []
    torch = import_torch()
    torch_cuda = torch is not None and bool(torch.cuda.is_available())
    if torch is None:
        device_name = NO_TORCH
    else:
        device_name = torch.cuda.get_device_name(0) if torch_cuda else "no CUDA device for torch"
    ort_cuda = CUDA in offered
    line = f"onnxruntime offers {', '.join(offered) or 'nothing'}; torch: {device_name}"
    return ort_cuda, torch_cuda, line


def parse_list(text: str, allowed: Sequence[str]) -> list[str]:
    items = [item.strip().lower() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; use {', '.join(allowed)}")
    return items


def cuda_option(text: str) -> tuple[str, str]:
    """KEY=VALUE of a `model` setting that applies to the CUDA provider."""
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("cuda_") or key not in ModelSettings.model_fields:
        cuda_keys = sorted(name for name in ModelSettings.model_fields if name.startswith("cuda_"))
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE, KEY one of {cuda_keys}")
    return key, value


def cuda_settings_of(args: argparse.Namespace) -> ModelSettings:
    """The CUDA columns' settings: siamedge's defaults, TF32 and --cuda-option applied."""
    return ModelSettings.model_validate(
        {"providers": ["cuda"], "cuda_tf32": args.cuda_tf32, **dict(args.cuda_option)}
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames-dir", type=Path, help="tennis frames (default: ../shared)")
    parser.add_argument(
        "--make-checkpoint",
        type=Path,
        help="make_checkpoint.py that builds the seed-0 checkpoint (default: ../shared)",
    )
    parser.add_argument(
        "--models", type=Path, help="folder of the checkpoint and exports (default: a temporary)"
    )
    parser.add_argument("--frames", type=int, default=30, help="frames per configuration")
    parser.add_argument("--cpu-frames", type=int, default=10, help="frames for the CPU provider")
    parser.add_argument(
        "--sizes", type=lambda t: parse_list(t, list(SIZES)), default=list(SIZES), help="480p,..."
    )
    parser.add_argument(
        "--targets",
        type=lambda t: [int(v) for v in parse_list(t, [str(n) for n in range(1, MAX_TARGETS + 1)])],
        default=[1, MAX_TARGETS],
        help=f"target counts, at most {MAX_TARGETS} (the engines are warmed up for that many)",
    )
    parser.add_argument(
        "--precisions",
        type=lambda t: parse_list(t, PRECISIONS),
        default=list(PRECISIONS),
        help="fp32,fp16",
    )
    parser.add_argument("--skip-cpu", action="store_true", help="leave out the CPU provider")
    parser.add_argument("--skip-graph", action="store_true", help="leave out the CUDA graph")
    parser.add_argument("--skip-torch", action="store_true", help="leave out the original")
    parser.add_argument("--cuda-tf32", action="store_true", help="CUDA provider with TF32 on")
    parser.add_argument(
        "--cuda-option",
        type=cuda_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model setting for the CUDA columns, e.g. cuda_prefer_nhwc=true (repeatable)",
    )
    parser.add_argument(
        "--cv-threads", type=int, help="OpenCV threads (default: OpenCV's own, as the daemon)"
    )
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="measure the CPU columns even without a GPU (tests the script itself)",
    )
    args = parser.parse_args()
    if min(args.frames, args.cpu_frames) <= WARMUP_STEPS:
        parser.error(f"--frames and --cpu-frames must exceed {WARMUP_STEPS} (the warm-up steps)")
    try:
        cuda_settings_of(args)
    except ValueError as exc:
        parser.error(f"--cuda-option: {exc}")
    return args


def open_engines(
    models: dict[str, Path], precisions: Sequence[str], provider: str, settings: ModelSettings
) -> dict[str, tuple[Engine, TimedSession] | str]:
    """One timed engine per precision on `provider`, or the reason it did not start."""
    engines: dict[str, tuple[Engine, TimedSession] | str] = {}
    for precision in precisions:
        try:
            engines[precision] = timed_engine(models[precision], settings)
        except SiamedgeError as exc:
            engines[precision] = f"did not start: {exc}"
            print(f"{provider} {precision}: {engines[precision]}", file=sys.stderr)
    return engines


def torch_networks(
    checkpoint: Path, precisions: Sequence[str], device: Any
) -> dict[str, Any | str]:
    """The original network per precision on the device (fp16: .half(), on a GPU only: the
    CPU's half convolutions are too slow to finish)."""
    from siamedge.export.checkpoint import load_network

    base = load_network(checkpoint)
    nets: dict[str, Any | str] = {}
    for precision in precisions:
        if precision == "fp16" and device.type != "cuda":
            nets[precision] = "fp16: GPU only"
            continue
        net = copy.deepcopy(base).to(device)
        nets[precision] = (net.half() if precision == "fp16" else net).eval()
    return nets


@dataclass(frozen=True)
class Runners:
    """What runs each column, per precision: a timed engine or network, or why there is none."""

    cuda: dict[str, tuple[Engine, TimedSession] | str]
    cuda_graph: dict[str, tuple[Engine, TimedSession] | str]
    cpu: dict[str, tuple[Engine, TimedSession] | str]
    torch: dict[str, Any | str]
    device: Any | None
    """The torch device of the PyTorch columns; None where torch is not installed."""


def open_runners(
    args: argparse.Namespace, ort_cuda: bool, torch_cuda: bool, folder: Path, torch: Any | None
) -> Runners:
    """The seed-0 checkpoint and its exports (built or reused in folder), their sessions on the
    CUDA and CPU providers and the original network (torch: None where it is not installed)."""
    wanted = {
        name: options
        for name, options in EXPORTS.items()
        if name.removesuffix(SPLIT) in args.precisions
    }
    if args.skip_graph or not ort_cuda:
        wanted = {name: options for name, options in wanted.items() if SPLIT not in name}
    models = seed0_exports(folder, wanted, args.make_checkpoint)
    split_models = {
        name.removesuffix(SPLIT): path for name, path in models.items() if SPLIT in name
    }
    cuda_settings = cuda_settings_of(args)
    graph_settings = cuda_settings.model_copy(update={"cuda_graph": True})
    device = None if torch is None else torch.device("cuda" if torch_cuda else "cpu")
    no_cuda = dict.fromkeys(args.precisions, "no CUDA provider")
    return Runners(
        cuda=open_engines(models, args.precisions, "cuda", cuda_settings) if ort_cuda else no_cuda,
        cuda_graph=dict.fromkeys(args.precisions, "skipped")
        if args.skip_graph
        else open_engines(split_models, args.precisions, "cuda graph", graph_settings)
        if ort_cuda
        else no_cuda,
        cpu=dict.fromkeys(args.precisions, "skipped")
        if args.skip_cpu
        else open_engines(models, args.precisions, "cpu", ModelSettings(providers=["cpu"])),
        torch=dict.fromkeys(args.precisions, "skipped")
        if args.skip_torch
        else dict.fromkeys(args.precisions, NO_TORCH)
        if device is None
        else torch_networks(
            seed0_checkpoint(folder, args.make_checkpoint), args.precisions, device
        ),
        device=device,
    )


def measure_rows(args: argparse.Namespace, runners: Runners) -> list[Row]:
    """Every size x precision x target count, each runner over the same frames and boxes."""
    frames_dir = args.frames_dir or REFERENCE / "tennis"
    rows = []
    for size in args.sizes:
        size_wh = SIZES[size]
        frames = load_frames(frames_dir, size_wh, max(args.frames, args.cpu_frames) + 1)
        gpu_frames, cpu_frames = frames[: args.frames + 1], frames[: args.cpu_frames + 1]
        for precision in args.precisions:
            for targets in args.targets:
                boxes = target_boxes(size_wh, targets)
                net = runners.torch[precision]
                original = (
                    net
                    if isinstance(net, str)
                    else measure_original(net, runners.device, precision, gpu_frames, boxes)
                )
                rows.append(
                    Row(
                        size_wh,
                        precision,
                        targets,
                        _run(runners.cuda[precision], gpu_frames, boxes),
                        _run(runners.cuda_graph[precision], gpu_frames, boxes),
                        _run(runners.cpu[precision], cpu_frames, boxes),
                        original,
                    )
                )
                print(f"measured {size} {precision} {targets} target(s)", file=sys.stderr)
    return rows


def main() -> None:
    args = parse_args()
    ort_cuda, torch_cuda, presence = gpu_presence()
    if not (ort_cuda or torch_cuda or args.cpu_only):
        print(f"no GPU here ({presence}): nothing to measure")
        return
    torch = import_torch()
    if torch is not None:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if args.cv_threads is not None:
        cv2.setNumThreads(args.cv_threads)
    with tempfile.TemporaryDirectory() as scratch:
        folder: Path = args.models or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        runners = open_runners(args, ort_cuda, torch_cuda, folder, torch)
        rows = measure_rows(args, runners)
    versions = f"onnxruntime {import_onnxruntime().__version__}"
    if torch is None:
        print(f"{NO_TORCH}: no PyTorch columns (the {EXPORT.name} extra: {EXPORT.install})")
    else:
        gpu_name = torch.cuda.get_device_name(0) if torch_cuda else "no GPU for torch"
        versions = f"{gpu_name}; {versions}, torch {torch.__version__}"
    print(
        f"{versions}; CUDA provider TF32 {'on' if args.cuda_tf32 else 'off'}"
        + "".join(f", {key}={value}" for key, value in args.cuda_option)
        + f"; OpenCV {cv2.getNumThreads()} threads; {args.frames} frames per "
        f"configuration ({args.cpu_frames} on the CPU provider), first {WARMUP_STEPS} steps "
        "left out"
    )
    print_table(rows, None if runners.device is None else runners.device.type)


def _run(
    engine: tuple[Engine, TimedSession] | str,
    frames: Sequence[NDArray[np.uint8]],
    boxes: Sequence[BoxXYWH],
) -> Timing | str:
    """The engine's timing over the frames, or why there is none (not started, or failed)."""
    if isinstance(engine, str):
        return engine
    try:
        return measure_siamedge(*engine, frames, boxes)
    except SiamedgeError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return f"failed: {exc}"


if __name__ == "__main__":
    main()
