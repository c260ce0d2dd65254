"""The exporter's layouts side by side: file sizes and session.run times of the If model and the
split models, for one target and for a batch of four.

Exports the seed-0 checkpoint (../shared/reference/make_checkpoint.py) in the single-target If
layout, the batched If layout and the split layout (no validation), then times session.run of
the init and the track step on tennis crops, 1 and 4 targets (the single-target model makes one
call per target). The cases take turns run by run, so a busy machine slows them alike. Prints
the median and 90th percentile ms per step and the median per target.

    python benchmarks/export_layouts.py [--runs 10] [--threads 1] [--provider cpu|openvino]
        [--models DIR]

--models reuses (or writes) the exports in DIR; --provider openvino runs onnxruntime's OpenVINO
execution provider (device CPU) when the installed onnxruntime has it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from benchmark_extras import EXPORT, needs
from shared_reference import REFERENCE, TENNIS_BOXES_XYWH, seed0_exports

from siamedge import contract as c
from siamedge.export.spec import TEMPLATE_FEATURE_SHAPE, init_model_path
from siamedge.tracking.crop import mean_color
from siamedge.tracking.geometry import CropGeometry

with needs(EXPORT):
    from siamedge.export.validate import init_rows, track_rows

MS = 1000.0
MEGABYTE = 1e6
BATCHES = (1, 4)
WARMUP_RUNS = 2
PROVIDERS = {"cpu": "CPUExecutionProvider", "openvino": "OpenVINOExecutionProvider"}
PROVIDER_OPTIONS: dict[str, dict[str, str]] = {"openvino": {"device_type": "CPU"}}
LAYOUTS: dict[str, dict[str, Any]] = {
    "single": {"batch": 1},
    "if": {"batch": None},
    "split": {"batch": None, "layout": "split"},
}
"""ExportOptions keyword arguments of each layout (shared_reference.seed0_exports)."""
GEOMETRY = CropGeometry(
    c.EXEMPLAR_SIZE, c.INSTANCE_SIZE, c.TOTAL_STRIDE, c.BASE_SIZE, c.CONTEXT_AMOUNT
)
Feeds = dict[str, Any]
Call = Callable[[], None]


@dataclass(frozen=True)
class Case:
    """One timed step: which model, which step, how many targets, and the call that runs it."""

    layout: str
    step: str
    targets: int
    call: Call


def open_session(path: Path, provider: str, threads: int) -> Any:
    """An onnxruntime session on one provider; threads 0 is onnxruntime's default."""
    name = PROVIDERS[provider]
    if name not in ort.get_available_providers():
        raise SystemExit(f"this onnxruntime has no {name}: {ort.get_available_providers()}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [(name, PROVIDER_OPTIONS.get(provider, {}))]
    return ort.InferenceSession(str(path), options, providers=providers)


def batched_feeds(targets: int) -> tuple[Feeds, Feeds]:
    """(init, track) feeds without first_time and template features for the first `targets`
    boxes: exemplars from frame 0, search crops of frame 1 around the same boxes."""
    first = cv2.imread(str(REFERENCE / "tennis" / "00000.jpg"))
    second = cv2.imread(str(REFERENCE / "tennis" / "00001.jpg"))
    boxes = TENNIS_BOXES_XYWH[:targets]
    init = init_rows(first, boxes, GEOMETRY)
    states = [((x + w / 2, y + h / 2), (w, h)) for x, y, w, h in boxes]
    # Template features come from each model's own init step (cases()).
    no_features = np.zeros((targets, *TEMPLATE_FEATURE_SHAPE[1:]), np.float32)
    track = track_rows(second, states, no_features, GEOMETRY, mean_color(first))
    init_feeds = {c.IN_IMAGE: init.exemplars, c.IN_CENTER: init.centers, c.IN_SIZE: init.sizes}
    track_feeds = {
        c.IN_IMAGE: track.images,
        c.IN_CENTER: track.centers,
        c.IN_SIZE: track.sizes,
        c.IN_SCALE: track.scales,
    }
    return init_feeds, track_feeds


def if_init_feeds(init: Feeds) -> Feeds:
    """The If model's init step: the exemplar in the top-left corner of a search-sized image."""
    exemplars = init[c.IN_IMAGE]
    targets, channels, side = exemplars.shape[:3]
    image = np.zeros((targets, channels, c.INSTANCE_SIZE, c.INSTANCE_SIZE), np.float32)
    image[:, :, :side, :side] = exemplars
    return {
        **init,
        c.IN_IMAGE: image,
        c.IN_SCALE: np.ones(targets),
        c.IN_FEATURES: np.zeros((targets, *TEMPLATE_FEATURE_SHAPE[1:]), np.float32),
        c.IN_FIRST_TIME: np.asarray(True),
    }


def single_rows(feeds: Feeds) -> list[Feeds]:
    """Batched feeds as one single-target-layout feed per target."""
    targets = len(feeds[c.IN_IMAGE])
    rows = []
    for row in range(targets):
        one = {name: value[row : row + 1] for name, value in feeds.items() if np.ndim(value)}
        for name in (c.IN_CENTER, c.IN_SIZE, c.IN_SCALE):
            if name in one:
                one[name] = np.asarray(one[name][0])
        rows.append({**one, c.IN_FIRST_TIME: feeds[c.IN_FIRST_TIME]})
    return rows


def _runs(session: Any, feeds_list: list[Feeds]) -> Call:
    def call() -> None:
        for feeds in feeds_list:
            session.run(None, feeds)

    return call


def cases(paths: dict[str, Path], provider: str, threads: int) -> list[Case]:
    """Every (layout, step, targets) with real template features from its own init step."""
    single = open_session(paths["single"], provider, threads)
    if_model = open_session(paths["if"], provider, threads)
    split_track = open_session(paths["split"], provider, threads)
    split_init = open_session(init_model_path(paths["split"]), provider, threads)
    found = []
    for targets in BATCHES:
        init, track = batched_feeds(targets)
        if_init = if_init_feeds(init)
        names = [out.name for out in if_model.get_outputs()]
        features = dict(zip(names, if_model.run(None, if_init), strict=True))[c.OUT_FEATURES]
        if_track = {**track, c.IN_FEATURES: features, c.IN_FIRST_TIME: np.asarray(False)}
        split_track_feeds = {**track, c.IN_FEATURES: features}
        found += [
            Case("single", "init", targets, _runs(single, single_rows(if_init))),
            Case("single", "track", targets, _runs(single, single_rows(if_track))),
            Case("if", "init", targets, _runs(if_model, [if_init])),
            Case("if", "track", targets, _runs(if_model, [if_track])),
            Case("split", "init", targets, _runs(split_init, [init])),
            Case("split", "track", targets, _runs(split_track, [split_track_feeds])),
        ]
    return found


def timed(call: Call) -> float:
    """Seconds of one call."""
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(found: list[Case], runs: int) -> dict[int, list[float]]:
    """Seconds per run of each case (by index); the cases take turns, rotating each run."""
    for case in found:
        for _ in range(WARMUP_RUNS):
            case.call()
    times: dict[int, list[float]] = {index: [] for index in range(len(found))}
    for run in range(runs):
        shift = run % len(found)
        for index in [*range(shift, len(found)), *range(shift)]:
            times[index].append(timed(found[index].call))
    return times


def print_sizes(paths: dict[str, Path]) -> None:
    """The model files' sizes."""
    print("model files                         MB")
    files = [*paths.items(), ("split init", init_model_path(paths["split"]))]
    for name, path in files:
        print(f"  {name:12s} {path.name:20s} {path.stat().st_size / MEGABYTE:6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: default)")
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="cpu")
    parser.add_argument("--models", type=Path, default=None, help="folder of the exports")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder: Path = args.models or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        paths = seed0_exports(folder, LAYOUTS)
        print_sizes(paths)
        found = cases(paths, args.provider, args.threads)
        times = measure(found, args.runs)
    threads = args.threads or "default"
    print(
        f"\nsession.run on {PROVIDERS[args.provider]}, {threads} thread(s), {args.runs} runs"
        "\n  layout  step   targets  median ms    p90  per target"
    )
    for index, case in enumerate(found):
        samples = times[index]
        median = statistics.median(samples) * MS
        p90 = float(np.percentile(samples, 90)) * MS
        per_target = median / case.targets
        print(
            f"  {case.layout:7s} {case.step:6s} {case.targets:7d} {median:10.1f} {p90:6.1f}"
            f" {per_target:11.1f}"
        )


if __name__ == "__main__":
    main()
