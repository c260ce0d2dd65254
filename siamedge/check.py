"""`siamedge check`: run the bundled synthetic clip on each execution provider that starts and
compare it with the CPU provider's run of the same model (time per step, differences).

Never changes a configuration; the only thing it leaves behind is what opening a session
writes (the TensorRT engine and timing caches).

The clip (1280x720, the demo's) starts from the same boxes on every provider: target 0 on the
clip's truth box, targets 1..K-1 on boxes of the same size elsewhere in the frame, all of them
stepped in one batched model call per frame. The CPU provider tracks it free, as the service
does; every other provider steps each frame from the CPU provider's state of the frame before
(teacher forcing), so the table shows what one step on that provider changes. A free run would
show where rounding sends it at a tie instead: a crop origin half a pixel away, or two anchor
cells scoring within float rounding (the random-weight seed-0 model has such ties on the clip's
background: on the CPU alone, the If and split layouts of the same export part 40 px after
one). A step whose best cell differs from the CPU provider's is counted and left out of the
differences; the check fails when more than a share of the steps do (--cell-flips; a provider that
is really wrong, like the public export's transposed cell, picks another cell on most steps).
`benchmarks/trace_drift.py` measures the free-run drift from the original tracker's trace.

Tolerances (defaults, chosen so that float32 differences between providers pass and real
errors do not): centre and size within DEFAULT_TOLERANCE_PX = 0.5 px in every coordinate, and
every mask with an IoU of at least DEFAULT_MASK_IOU = 0.9 with the CPU provider's, at most
DEFAULT_CELL_FLIPS = 5 % of the target steps with another best cell. On an H200 (the seed-0
export, 4 targets, 30 frames) a step on the CUDA provider differed from the CPU provider's by
at most 6e-5 px in float32, 0.055 / 0.075 px (centre / size, mask IoU 0.991) with TF32 on and
0.082 / 0.071 px (0.995) for the fp16 export: all pass. What TF32 and fp16 do to a free run
(0.64 / 3.35 px and 1.21 / 1.25 px from the original tracker over the 69 tennis frames, against
0.0003 / 0.0025 px in float32) is measured by benchmarks/trace_drift.py. Float32 rounding moves
mask probabilities by about 1e-6, flipping only the rare pixel that sits on the threshold (IoU
above 0.99); a mask taken at a wrong anchor cell (the public export's transposed-cell bug) has
a median IoU of 0.28 with the right one. With model.trt_fp16: true (--config; off by default)
the TensorRT provider builds fp16 kernels: expect fp16-sized differences from it then.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
from numpy.typing import NDArray

from siamedge import periodic, providers
from siamedge.arguments import fraction, non_negative, positive_int
from siamedge.config import (
    MAX_TRACKS,
    ModelSettings,
    SyntheticSettings,
    TrackerSettings,
    load_settings,
)
from siamedge.contract import ModelContract
from siamedge.engine import Engine, describe_layout, import_onnxruntime
from siamedge.errors import ModelError
from siamedge.models import resolve_model_path
from siamedge.sources.synthetic import SyntheticClip
from siamedge.tracking.crop import CropScratch
from siamedge.tracking.geometry import BoxXYWH, PointXY
from siamedge.tracking.model_io import BatchStep, StepModel
from siamedge.tracking.result import MaskWindow
from siamedge.tracking.tracker import StepOutcome, Tracker, TrackerParams, step_together

DEFAULT_FRAMES = 30
DEFAULT_TARGETS = 1
DEFAULT_TOLERANCE_PX = 0.5
DEFAULT_MASK_IOU = 0.9
DEFAULT_CELL_FLIPS = 0.05
CLIP = SyntheticSettings()
"""The demo's clip: 1280x720, 300 frames (played in a loop when more frames are asked for)."""
REFERENCE = providers.CPU
SHORT_NAMES = {name: short for short, name in providers.PROVIDER_BY_NAME.items()}
PROGRESS_INTERVAL_S = 10.0
"""How often a line says that opening a provider (a TensorRT engine build) is still going."""
TRT_ENGINE_SUFFIX = ".engine"
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
"""Spreads the other targets' centres over the frame (a low-discrepancy sequence)."""
SPREAD_MARGIN = 0.2
"""The other targets' centres stay this fraction of the frame away from its edges."""
P90 = 90
LAYOUT_WIDTH = 20
"""The table's layout column is at least this wide, and as wide as its longest entry."""
NOT_OFFERED = "not offered"
MS = 1000.0

OpenModel = Callable[[str], StepModel]
"""An onnxruntime provider name -> the model running on it (ModelError when it does not start)."""


@dataclass(frozen=True)
class TargetOutcome:
    """One target after one step: centre / size in full-frame pixels, its mask (None: none),
    the anchor cell the model picked (row, col)."""

    center_xy: PointXY
    size_wh: PointXY
    mask: MaskWindow | None
    best_cell_yx: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class ClipRun:
    """One provider's run over the clip.

    outcomes: [frame][target]. step_s: seconds per frame for all targets (prepare, the model
    call, finish); model_s: the model call alone, per frame.
    """

    outcomes: list[list[TargetOutcome]]
    step_s: list[float]
    model_s: list[float]


@dataclass(frozen=True)
class Differences:
    """The worst differences of a run from the reference run over the target steps that picked
    the same anchor cell.

    center_px / size_px: the largest absolute difference in any coordinate (px).
    mask_iou: the lowest IoU of a mask with the reference's (1.0 when both are empty).
    cells_off: target steps whose best cell differs from the reference's, of `steps` in all.
    """

    center_px: float
    size_px: float
    mask_iou: float
    cells_off: int = 0
    steps: int = 0


@dataclass(frozen=True)
class Tolerance:
    """How far a provider may differ from the CPU provider and still pass."""

    px: float = DEFAULT_TOLERANCE_PX
    mask_iou: float = DEFAULT_MASK_IOU
    cell_flips: float = DEFAULT_CELL_FLIPS

    def problems(self, found: Differences) -> list[str]:
        """What exceeds the tolerance, in words; empty when the differences pass."""
        problems = []
        if not found.center_px <= self.px:
            problems.append(f"centre {found.center_px:.3g} px > {self.px:g}")
        if not found.size_px <= self.px:
            problems.append(f"size {found.size_px:.3g} px > {self.px:g}")
        if not found.mask_iou >= self.mask_iou:
            problems.append(f"mask IoU {found.mask_iou:.3f} < {self.mask_iou:g}")
        if found.cells_off > self.cell_flips * found.steps:
            problems.append(
                f"best cell differs in {found.cells_off} of {found.steps} target steps "
                f"> {self.cell_flips:.0%}"
            )
        return problems


@dataclass(frozen=True)
class CheckRequest:
    """What to check.

    providers: onnxruntime provider names asked for explicitly; None checks every one that
    onnxruntime offers. frames: tracked frames after the start frame. targets: per batch.
    """

    providers: tuple[str, ...] | None
    frames: int = DEFAULT_FRAMES
    targets: int = DEFAULT_TARGETS
    tolerance: Tolerance = field(default_factory=Tolerance)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)


@dataclass(frozen=True)
class ProviderReport:
    """One table row: a provider and what happened to it.

    failure: why it did not run (NOT_OFFERED, the start error); None when it ran.
    started: the session started (a failure is then a run-time error, always a failing check).
    """

    provider: str
    asked: bool
    layout: str | None = None
    run: ClipRun | None = None
    differences: Differences | None = None
    failure: str | None = None
    started: bool = False


class TimedModel:
    """A StepModel that records how long its last track call took (the model call)."""

    def __init__(self, model: StepModel) -> None:
        self._model = model
        self.last_track_s = 0.0

    @property
    def contract(self) -> ModelContract:
        """The wrapped model's contract."""
        return self._model.contract

    def template(
        self,
        exemplars: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
    ) -> NDArray[np.float32]:
        """The wrapped model's init branch."""
        return self._model.template(exemplars, centers_xy, sizes_wh)

    def track(
        self,
        searches: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
        scales_x: NDArray[np.float64],
        features: Sequence[NDArray[np.float32]],
    ) -> BatchStep:
        """The wrapped model's track branch, timed."""
        started = time.perf_counter()
        step = self._model.track(searches, centers_xy, sizes_wh, scales_x, features)
        self.last_track_s = time.perf_counter() - started
        return step


def start_boxes(truth_xywh: BoxXYWH, frame_wh: tuple[int, int], count: int) -> list[BoxXYWH]:
    """count start boxes: the truth box first, then boxes of its size spread over the frame
    (centres on a golden-ratio sequence inside SPREAD_MARGIN, boxes kept inside the frame)."""
    _, _, w, h = truth_xywh
    width, height = frame_wh
    span = 1.0 - 2 * SPREAD_MARGIN
    boxes = [truth_xywh]
    for index in range(1, count):
        cx = (SPREAD_MARGIN + span * ((index * GOLDEN) % 1.0)) * width
        cy = (SPREAD_MARGIN + span * ((index * GOLDEN * GOLDEN) % 1.0)) * height
        x = min(max(cx - w / 2, 0.0), width - w)
        y = min(max(cy - h / 2, 0.0), height - h)
        boxes.append((x, y, w, h))
    return boxes


def run_clip(
    model: StepModel,
    clip: SyntheticClip,
    frames: int,
    boxes: Sequence[BoxXYWH],
    params: TrackerParams,
    *,
    reference: Sequence[Sequence[TargetOutcome]] | None = None,
) -> ClipRun:
    """Start one tracker per box on clip frame 0, then step them all together through the next
    `frames` frames (the clip loops), one model call per frame.

    reference: a run of the same clip and boxes; every step then starts from its states of the
    frame before (teacher forcing) instead of the trackers' own."""
    timed = TimedModel(model)
    first = clip.frame(0)
    scratch = CropScratch()  # shared, as the daemon's trackers share one
    trackers = [Tracker(timed, params, scratch) for _ in boxes]
    for tracker, box in zip(trackers, boxes, strict=True):
        tracker.start(first, box)
    outcomes: list[list[TargetOutcome]] = []
    step_s: list[float] = []
    model_s: list[float] = []
    for index in range(1, frames + 1):
        frame = clip.frame(index % len(clip))
        started = time.perf_counter()
        stepped = step_together(trackers, frame)
        step_s.append(time.perf_counter() - started)
        model_s.append(timed.last_track_s)
        outcomes.append([_outcome(entry) for entry in stepped])
        if reference is not None:
            _reseed(trackers, reference[index - 1])
    return ClipRun(outcomes=outcomes, step_s=step_s, model_s=model_s)


def _outcome(entry: StepOutcome | ValueError) -> TargetOutcome:
    if isinstance(entry, ValueError):
        raise entry  # every clip frame has the same size: a bug, not a provider difference
    result = entry.result
    row, col = entry.model.best_cell_yx
    return TargetOutcome(result.center_xy, result.size_wh, result.mask, (int(row), int(col)))


def _reseed(trackers: Sequence[Tracker], states: Sequence[TargetOutcome]) -> None:
    """Put every tracker on the reference's state of its target (the template stays)."""
    for tracker, state in zip(trackers, states, strict=True):
        tracker.set_target(state.center_xy, state.size_wh)


def mask_iou(a: MaskWindow | None, b: MaskWindow | None) -> float:
    """IoU of two masks of the same frame, computed over the union of their windows; 1.0 when
    both are empty (None counts as empty)."""
    if a is None or b is None or a.area == 0 or b.area == 0:
        return 1.0 if _area(a) == _area(b) == 0 else 0.0
    x0 = min(a.origin_xy[0], b.origin_xy[0])
    y0 = min(a.origin_xy[1], b.origin_xy[1])
    x1 = max(a.origin_xy[0] + a.bits.shape[1], b.origin_xy[0] + b.bits.shape[1])
    y1 = max(a.origin_xy[1] + a.bits.shape[0], b.origin_xy[1] + b.bits.shape[0])
    canvases = []
    for mask in (a, b):
        canvas = np.zeros((y1 - y0, x1 - x0), np.bool_)
        left, top = mask.origin_xy[0] - x0, mask.origin_xy[1] - y0
        rows, cols = mask.bits.shape
        canvas[top : top + rows, left : left + cols] = mask.bits
        canvases.append(canvas)
    union = int(np.count_nonzero(canvases[0] | canvases[1]))
    return int(np.count_nonzero(canvases[0] & canvases[1])) / union


def _area(mask: MaskWindow | None) -> int:
    return 0 if mask is None else mask.area


def compare_runs(
    reference: Sequence[Sequence[TargetOutcome]], other: Sequence[Sequence[TargetOutcome]]
) -> Differences:
    """The worst differences of `other` from `reference`, both [frame][target] of the same
    clip and start boxes (ValueError when their frame or target counts differ); target steps
    at another best cell are counted, not compared."""
    if len(reference) != len(other):
        raise ValueError(f"runs differ in frames: {len(reference)} vs {len(other)}")
    center = size = 0.0
    iou = 1.0
    cells_off = steps = 0
    for frame, (ours, theirs) in enumerate(zip(reference, other, strict=True)):
        if len(ours) != len(theirs):
            raise ValueError(f"frame {frame}: {len(ours)} vs {len(theirs)} targets")
        for a, b in zip(ours, theirs, strict=True):
            steps += 1
            if a.best_cell_yx != b.best_cell_yx:
                cells_off += 1
                continue
            center = max(center, _largest_gap(a.center_xy, b.center_xy))
            size = max(size, _largest_gap(a.size_wh, b.size_wh))
            iou = min(iou, mask_iou(a.mask, b.mask))
    return Differences(center, size, iou, cells_off, steps)


def _largest_gap(a: PointXY, b: PointXY) -> float:
    # NaN propagates (max() would drop it), so a provider returning NaN fails the tolerance.
    return float(np.max(np.abs(np.subtract(a, b))))


def check_providers(
    request: CheckRequest, open_model: OpenModel, offered: Sequence[str]
) -> list[ProviderReport]:
    """Run the clip on the CPU provider (the reference) and on every provider asked for
    (None: every offered one among TensorRT, CUDA, CPU); one report per provider, in the
    order TensorRT, CUDA, CPU. The CPU provider failing raises its ModelError."""
    asked = set(request.providers or ())
    wanted = asked | {REFERENCE} if request.providers is not None else set(providers.AUTO_ORDER)
    clip = SyntheticClip(CLIP)
    x, y, w, h = clip.truth(0).box_xywh
    boxes = start_boxes((x, y, w, h), clip.size_wh, request.targets)
    reference_model = open_model(REFERENCE)
    params = TrackerParams.from_settings(request.tracker, reference_model.contract)
    reference = run_clip(reference_model, clip, request.frames, boxes, params)
    reports = {
        REFERENCE: ProviderReport(
            REFERENCE, REFERENCE in asked, describe_layout(reference_model.contract), reference
        )
    }
    del reference_model  # one session at a time
    for name in providers.AUTO_ORDER:
        if name not in wanted or name == REFERENCE:
            continue
        if name not in offered:
            reports[name] = ProviderReport(name, name in asked, failure=NOT_OFFERED)
            continue
        try:
            model = open_model(name)
        except ModelError as exc:
            reports[name] = ProviderReport(name, name in asked, failure=f"did not start: {exc}")
            continue
        try:
            run = run_clip(model, clip, request.frames, boxes, params, reference=reference.outcomes)
        except ModelError as exc:  # a provider can start and still fail on some node
            reports[name] = ProviderReport(
                name, name in asked, started=True, failure=f"failed while running: {exc}"
            )
            continue
        reports[name] = ProviderReport(
            name,
            name in asked,
            describe_layout(model.contract),
            run,
            compare_runs(reference.outcomes, run.outcomes),
        )
        del model
    return [reports[name] for name in providers.AUTO_ORDER if name in reports]


def verdicts(reports: Sequence[ProviderReport], tolerance: Tolerance) -> list[str]:
    """One line per failing provider: a difference over the tolerance, a provider asked for
    that is not offered or did not start, a provider that failed while running. Empty when
    the check passes."""
    lines = []
    for report in reports:
        short = SHORT_NAMES[report.provider]
        if report.failure is not None and (report.asked or report.started):
            reason = (
                f"this onnxruntime does not offer {report.provider} "
                "(install the onnxruntime build that has it)"
                if report.failure == NOT_OFFERED
                else f"it {report.failure}"
            )
            lines.append(f"FAIL {short}: {'asked for, but ' if report.asked else ''}{reason}")
        if report.differences is not None:
            problems = tolerance.problems(report.differences)
            if problems:
                lines.append(f"FAIL {short}: differs from cpu: {', '.join(problems)}")
    return lines


def table(reports: Sequence[ProviderReport]) -> list[str]:
    """The providers side by side: layout, ms per step (median, p90), the model call and the
    time around it (medians), the worst differences from the CPU provider and its target steps
    at another best cell."""
    width = max([LAYOUT_WIDTH, *(len(report.layout or "") for report in reports)])
    header = (
        f"{'provider':<9} {'layout':<{width}} {'step ms':>8} {'p90':>7} {'model ms':>8} "
        f"{'around':>7} | {'centre px':>9} {'size px':>9} {'mask IoU':>8} {'cells off':>9}"
    )
    lines = [header, "-" * len(header)]
    for report in reports:
        short = SHORT_NAMES[report.provider]
        if report.run is None:
            lines.append(f"{short:<9} {report.failure}")
            continue
        run = report.run
        around = [step - model for step, model in zip(run.step_s, run.model_s, strict=True)]
        timing = (
            f"{statistics.median(run.step_s) * MS:8.2f} "
            f"{float(np.percentile(run.step_s, P90)) * MS:7.2f} "
            f"{statistics.median(run.model_s) * MS:8.2f} {statistics.median(around) * MS:7.2f}"
        )
        found = report.differences
        compared = (
            f"{'reference':>9}"
            if found is None
            else f"{found.center_px:9.2g} {found.size_px:9.2g} {found.mask_iou:8.4f} "
            f"{f'{found.cells_off}/{found.steps}':>9}"
        )
        lines.append(f"{short:<9} {report.layout or '':<{width}} {timing} | {compared}")
    return lines


def run_check(
    request: CheckRequest, open_model: OpenModel, offered: Sequence[str], out: TextIO
) -> int:
    """Check, print the table and the verdict to `out`; exit status 0 (pass) or 1."""
    reports = check_providers(request, open_model, offered)
    tolerance = request.tolerance
    print(
        f"synthetic clip {CLIP.width}x{CLIP.height}, {request.frames} frames, "
        f"{request.targets} target(s) stepped together, each step from cpu's states; "
        f"tolerance {tolerance.px:g} px, mask IoU {tolerance.mask_iou:g}, "
        f"cells off {tolerance.cell_flips:.0%}",
        file=out,
    )
    print("\n".join(table(reports)), file=out)
    failures = verdicts(reports, request.tolerance)
    print("\n".join(failures) if failures else "check passed", file=out, flush=True)
    return 1 if failures else 0


def trt_cache_dir(settings: ModelSettings) -> Path:
    """Where the TensorRT provider keeps its engines for these settings."""
    return Path(settings.cache_dir) if settings.cache_dir else providers.default_cache_dir()


def _engine_files(folder: Path) -> set[Path]:
    return set(folder.glob(f"*{TRT_ENGINE_SUFFIX}")) if folder.is_dir() else set()


def _progress(
    label: str, out: TextIO, interval_s: float
) -> contextlib.AbstractContextManager[None]:
    """Print `label: ... N s` every interval_s while the block runs."""
    started = time.monotonic()

    def tick() -> None:
        print(f"{label}: ... {time.monotonic() - started:.0f} s", file=out, flush=True)

    return periodic.every(interval_s, tick, "check-progress")


def engine_opener(model: str, settings: ModelSettings, max_batch: int, out: TextIO) -> OpenModel:
    """open_model for real sessions: the model on one provider with the given settings, warmed
    up for max_batch targets (TensorRT builds or loads its engine there), with progress lines.
    ModelError when the provider does not start or onnxruntime runs another one instead."""

    def open_model(provider: str) -> StepModel:
        short = SHORT_NAMES[provider]
        chosen = settings.model_copy(update={"providers": [short], "warmup": True})
        cache = trt_cache_dir(settings)
        before = _engine_files(cache) if provider == providers.TENSORRT else set()
        if provider == providers.TENSORRT:
            print(f"{short}: building/loading TensorRT engine (cache {cache})...", file=out)
        else:
            print(f"{short}: opening the model...", file=out)
        out.flush()
        started = time.monotonic()
        with _progress(short, out, PROGRESS_INTERVAL_S):
            engine = Engine.load(model, chosen, max_batch=max_batch)
        elapsed = time.monotonic() - started
        if engine.provider != provider:
            raise ModelError(f"onnxruntime runs {engine.provider} instead")
        if provider == providers.TENSORRT:
            built = len(_engine_files(cache) - before)
            how = f"built ({built} new engine file(s))" if built else "loaded from the cache"
            print(f"{short}: TensorRT engine {how} in {elapsed:.1f} s", file=out, flush=True)
        else:
            print(f"{short}: ready in {elapsed:.1f} s", file=out, flush=True)
        return engine

    return open_model


def parse_providers(text: str) -> tuple[str, ...]:
    """`tensorrt,cuda,cpu` -> onnxruntime provider names (ArgumentTypeError on unknown ones)."""
    try:
        names = providers.short_provider_names(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return tuple(providers.PROVIDER_BY_NAME[short] for short in names)


def target_count(text: str) -> int:
    """--targets: 1 to MAX_TRACKS, the most a service's tracker.max_tracks allows (argparse type;
    a count beyond it would only allocate gigabytes of crops before failing)."""
    value = positive_int(text)
    if value > MAX_TRACKS:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_TRACKS} (the largest tracker.max_tracks), got {value}"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge check`."""
    parser.epilog = " ".join(
        paragraph.replace("\n", " ")
        for paragraph in (__doc__ or "").split("\n\n")
        if paragraph.startswith(("The clip", "Tolerances"))
    )
    parser.add_argument("--model", help="ONNX model file or `builtin` (default: model.path)")
    parser.add_argument(
        "--config",
        type=Path,
        help="service YAML whose model section (provider options) to check (default: built-in)",
    )
    parser.add_argument(
        "--providers",
        type=parse_providers,
        help="comma list of tensorrt,cuda,cpu to check; each must start "
        "(default: every one onnxruntime offers; cpu always runs as the reference)",
    )
    parser.add_argument(
        "--frames", type=positive_int, default=DEFAULT_FRAMES, help="tracked frames (%(default)s)"
    )
    parser.add_argument(
        "--targets",
        type=target_count,
        default=DEFAULT_TARGETS,
        help="targets in one batched model call (%(default)s)",
    )
    parser.add_argument(
        "--tolerance-px",
        type=non_negative,
        default=DEFAULT_TOLERANCE_PX,
        help="largest centre / size difference from cpu in one step, px (%(default)s; on an "
        "H200 float32 differed by 6e-5 px, TF32 and fp16 by under 0.1 px)",
    )
    parser.add_argument(
        "--mask-iou",
        type=fraction,
        default=DEFAULT_MASK_IOU,
        help="lowest IoU of a mask with cpu's (%(default)s: float32 differences flip only "
        "boundary pixels; a mask from a wrong cell scores about 0.3)",
    )
    parser.add_argument(
        "--cell-flips",
        type=fraction,
        default=DEFAULT_CELL_FLIPS,
        help="largest share of target steps whose best anchor cell may differ from cpu's "
        "(%(default)s: ties between cells flip on float rounding)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the providers offered, the table and the verdict; 1 when the check fails."""
    out = sys.stdout  # kept: opening a session redirects sys.stdout for a while
    settings = load_settings(args.config)
    model = args.model or settings.model.path
    ort = import_onnxruntime()
    offered = list(ort.get_available_providers())
    print(f"model: {model} ({resolve_model_path(model)})", file=out)
    print(f"onnxruntime {ort.__version__} offers: {', '.join(offered)}", file=out, flush=True)
    request = CheckRequest(
        providers=args.providers,
        frames=args.frames,
        targets=args.targets,
        tolerance=Tolerance(
            px=args.tolerance_px, mask_iou=args.mask_iou, cell_flips=args.cell_flips
        ),
        tracker=settings.tracker,
    )
    return run_check(request, engine_opener(model, settings.model, args.targets, out), offered, out)
