"""`siamedge check`: the table and verdict on the CPU, providers perturbed by test doubles, and
the comparison of two runs on hand-made numbers."""

from __future__ import annotations

import io
import math
from collections.abc import Container, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fixtures.export_models import ExportedModels
from numpy.typing import NDArray

from siamedge import providers
from siamedge.check import (
    CheckRequest,
    ClipRun,
    Differences,
    ProviderReport,
    TargetOutcome,
    Tolerance,
    compare_runs,
    mask_iou,
    run_check,
    start_boxes,
    table,
)
from siamedge.cli import main
from siamedge.config import ModelSettings
from siamedge.contract import ModelContract
from siamedge.engine import Engine
from siamedge.errors import ModelError
from siamedge.tracking.model_io import BatchStep, StepModel
from siamedge.tracking.result import MaskWindow

CPU_ONE_THREAD = ModelSettings(providers=["cpu"], intra_op_threads=1)
GPU_OFFERS = [providers.TENSORRT, providers.CUDA, providers.CPU]
SHIFT_PX = 2.0
FLIP_JUMP_PX = 12.0
FRAMES = 4
NO_CONTOUR = np.zeros((0, 2), np.int32)
FRAME_WH = (100, 80)


class Perturbed:
    """Stands in for a GPU session: a real CPU Engine whose track outputs come out changed.

    flip_calls: the track calls (0-based) in which target 0 takes the next anchor cell and
    lands FLIP_JUMP_PX away, as a tie between two cells broken the other way would.
    """

    def __init__(
        self,
        shift_px: float = 0.0,
        invert_masks: bool = False,
        flip_calls: Container[int] = (),
    ) -> None:
        self._engine = Engine.load("builtin", CPU_ONE_THREAD)
        self._shift_px = shift_px
        self._invert_masks = invert_masks
        self._flip_calls = flip_calls
        self._calls = 0

    @property
    def contract(self) -> ModelContract:
        return self._engine.contract

    def template(
        self,
        exemplars: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
    ) -> NDArray[np.float32]:
        return self._engine.template(exemplars, centers_xy, sizes_wh)

    def track(
        self,
        searches: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
        scales_x: NDArray[np.float64],
        features: Sequence[NDArray[np.float32]],
    ) -> BatchStep:
        step = self._engine.track(searches, centers_xy, sizes_wh, scales_x, features)
        probs = 1.0 - step.mask_probs if self._invert_masks else step.mask_probs
        center, cell = step.center_xy + np.float32(self._shift_px), step.best_cell_yx.copy()
        if self._calls in self._flip_calls:
            cell[0, 1] += 1
            center[0, 0] += FLIP_JUMP_PX
        self._calls += 1
        return replace(
            step, center_xy=center, best_cell_yx=cell, mask_probs=probs.astype(np.float32)
        )


def check_with(
    gpu: StepModel | None,
    asked: tuple[str, ...] | None = (providers.CUDA,),
    offered: Sequence[str] = tuple(GPU_OFFERS),
    targets: int = 1,
    frames: int = FRAMES,
) -> tuple[int, str]:
    """run_check with a factory that hands out a real CPU engine for the CPU provider and
    `gpu` for the others (None: they fail to start); exit status and printed report."""

    def open_model(provider: str) -> StepModel:
        if provider == providers.CPU:
            return Engine.load("builtin", CPU_ONE_THREAD)
        if gpu is None:
            raise ModelError("libcudnn.so.9: cannot open shared object file")
        return gpu

    out = io.StringIO()
    request = CheckRequest(providers=asked, frames=frames, targets=targets)
    return run_check(request, open_model, offered, out), out.getvalue()


def test_builtin_passes_and_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--model", "builtin", "--frames", "5", "--targets", "2"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out
    assert "CPUExecutionProvider" in out
    assert "5 frames, 2 target(s) stepped together" in out
    header = next(line for line in out.splitlines() if line.startswith("provider"))
    for column in ("layout", "step ms", "p90", "model ms", "around", "centre px", "mask IoU"):
        assert column in header
    cpu = next(line for line in out.splitlines() if line.startswith("cpu "))
    assert "batch of any size" in cpu
    assert cpu.rstrip().endswith("reference")
    assert out.rstrip().endswith("check passed")


@pytest.fixture(scope="module")
def public_layout_model(
    exported_models: ExportedModels, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The seed-0 checkpoint as `siamedge export --seed-layout --batch 1` writes it."""
    from siamedge.export.builder import ExportOptions
    from siamedge.export.exporter import export_checkpoint

    options = ExportOptions(with_score=False, batch=1)
    out = tmp_path_factory.mktemp("public_layout") / "siammask.onnx"
    return export_checkpoint(exported_models.checkpoint, out, options, validate=False).path


@pytest.mark.torch
def test_table_columns_stay_aligned_under_a_long_layout_name() -> None:
    run = ClipRun(outcomes=[], step_s=[0.010, 0.012], model_s=[0.008, 0.009])
    reports = [
        ProviderReport(
            providers.CUDA,
            True,
            "batch of any size, two models (split)",
            run,
            Differences(0.001, 0.002, 0.999),
        ),
        ProviderReport(providers.CPU, False, "batch of any size", run),
    ]
    header, _, cuda, cpu = table(reports)
    assert len({line.index("|") for line in (header, cuda, cpu)}) == 1
    step_column_end = header.index("step ms") + len("step ms")
    assert [line.index("11.00") + len("11.00") for line in (cuda, cpu)] == [step_column_end] * 2


@pytest.mark.torch
def test_an_exported_model_passes(
    exported_models: ExportedModels, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["check", "--model", str(exported_models.full.path), "--frames", "3"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.rstrip().endswith("check passed")


@pytest.mark.torch
def test_a_public_layout_model_passes(
    public_layout_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["check", "--model", str(public_layout_model), "--frames", "3"])
    out = capsys.readouterr().out
    assert status == 0, out
    cpu = next(line for line in out.splitlines() if line.startswith("cpu "))
    assert "single target" in cpu
    assert out.rstrip().endswith("check passed")


def test_shifted_centres_fail() -> None:
    status, out = check_with(Perturbed(shift_px=SHIFT_PX))
    assert status == 1
    cuda = next(line for line in out.splitlines() if line.startswith("cuda "))
    centre = float(cuda.split("|")[1].split()[0])
    assert centre >= SHIFT_PX
    assert "FAIL cuda: differs from cpu: centre" in out


def test_inverted_masks_fail() -> None:
    status, out = check_with(Perturbed(invert_masks=True), targets=2)
    assert status == 1
    assert "FAIL cuda: differs from cpu: mask IoU" in out


def test_float32_sized_differences_pass() -> None:
    status, out = check_with(Perturbed(shift_px=1e-4))
    assert status == 0, out
    assert out.rstrip().endswith("check passed")


def _cuda_row(out: str) -> list[str]:
    """The CUDA row's comparison columns: centre, size, mask IoU, cells off."""
    return next(line for line in out.splitlines() if line.startswith("cuda ")).split("|")[1].split()


def test_a_tie_broken_the_other_way_once_is_counted_and_does_not_carry_on() -> None:
    status, out = check_with(Perturbed(flip_calls={5}), frames=30)
    assert status == 0, out
    centre, size, iou, cells_off = _cuda_row(out)
    assert cells_off == "1/30"
    # Every step starts from the CPU provider's state: the 12 px jump stays in its own step.
    assert float(centre) < 1e-3
    assert float(size) < 1e-3
    assert float(iou) > 0.999


def test_another_cell_on_many_steps_fails() -> None:
    status, out = check_with(Perturbed(flip_calls=range(0, 30, 3)), frames=30, targets=2)
    assert status == 1
    assert _cuda_row(out)[3] == "10/60"
    assert "FAIL cuda: differs from cpu: best cell differs in 10 of 60 target steps > 5%" in out


def test_a_provider_asked_for_that_is_not_offered_fails() -> None:
    status, out = check_with(Perturbed(), asked=(providers.TENSORRT,), offered=[providers.CPU])
    assert status == 1
    assert "tensorrt  not offered" in out
    assert (
        "FAIL tensorrt: asked for, but this onnxruntime does not offer TensorrtExecutionProvider"
        in out
    )


def test_not_offered_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    missing = [name for name in (providers.TENSORRT, providers.CUDA) if name not in _offered()]
    if not missing:
        pytest.skip("this onnxruntime offers every provider")
    short = {value: key for key, value in providers.PROVIDER_BY_NAME.items()}[missing[0]]
    assert main(["check", "--providers", short, "--frames", "2"]) == 1
    assert (
        f"FAIL {short}: asked for, but this onnxruntime does not offer" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--tolerance-px", "-1", "must be a number of at least 0, got -1"),
        ("--tolerance-px", "nan", "must be a number of at least 0, got nan"),
        ("--mask-iou", "2", "must be between 0 and 1, got 2"),
        ("--cell-flips", "-0.5", "must be a number of at least 0, got -0.5"),
        ("--targets", "100000", "must be at most 64 (the largest tracker.max_tracks), got 100000"),
    ],
)
def test_tolerances_that_mean_nothing_are_usage_errors(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--model", "builtin", option, value])
    assert exit_info.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err


def test_a_provider_that_does_not_start_fails_only_when_asked_for() -> None:
    status, out = check_with(None)
    assert status == 1
    assert "FAIL cuda: asked for, but it did not start: libcudnn.so.9" in out
    status, out = check_with(None, asked=None)
    assert status == 0, out
    assert "cuda      did not start: libcudnn.so.9" in out


class FailsWhileRunning(Perturbed):
    """A provider that starts and then fails on a node, as a CUDA kernel can."""

    def track(
        self,
        searches: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
        scales_x: NDArray[np.float64],
        features: Sequence[NDArray[np.float32]],
    ) -> BatchStep:
        raise ModelError("inference failed: CUDA error cudaErrorNoKernelImageForDevice")


def test_a_provider_that_fails_while_running_fails_even_when_not_asked_for() -> None:
    status, out = check_with(FailsWhileRunning(), asked=None)
    assert status == 1
    assert "FAIL cuda: it failed while running: inference failed: CUDA error" in out


def test_providers_not_asked_for_are_not_run() -> None:
    status, out = check_with(Perturbed(shift_px=SHIFT_PX), asked=(providers.CPU,))
    assert status == 0
    assert [line.split()[0] for line in out.splitlines()[3:-1]] == ["cpu"]


def _offered() -> list[str]:
    from siamedge.engine import import_onnxruntime

    return list(import_onnxruntime().get_available_providers())


def _window(x: int, y: int, bits: list[list[int]]) -> MaskWindow:
    return MaskWindow(np.array(bits, np.bool_), (x, y), FRAME_WH, NO_CONTOUR)


def test_mask_iou_over_windows_at_different_places() -> None:
    a = _window(10, 10, [[1, 1], [1, 1]])  # (10..11, 10..11)
    b = _window(11, 10, [[1, 1, 0], [1, 1, 0]])  # (11..12, 10..11)
    assert mask_iou(a, b) == pytest.approx(2 / 6)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, _window(50, 50, [[1]])) == 0.0
    empty = _window(0, 0, [[0]])
    assert mask_iou(None, empty) == 1.0
    assert mask_iou(None, a) == 0.0


def test_compare_runs_finds_the_worst_differences() -> None:
    a = _window(10, 10, [[1, 1], [1, 1]])
    half = _window(10, 10, [[1, 1], [0, 0]])
    reference = [
        [TargetOutcome((10.0, 20.0), (30.0, 40.0), a), TargetOutcome((50.0, 50.0), (8.0, 8.0), a)],
        [TargetOutcome((11.0, 21.0), (30.0, 40.0), a), TargetOutcome((51.0, 50.0), (8.0, 8.0), a)],
    ]
    other = [
        [TargetOutcome((10.1, 20.0), (30.0, 40.0), a), TargetOutcome((50.0, 49.7), (8.0, 8.0), a)],
        [TargetOutcome((11.0, 21.0), (30.0, 41.5), half), TargetOutcome((51.0, 50.0), (8, 8), a)],
    ]
    found = compare_runs(reference, other)
    assert found.center_px == pytest.approx(0.3)
    assert found.size_px == pytest.approx(1.5)
    assert found.mask_iou == pytest.approx(0.5)
    assert (found.cells_off, found.steps) == (0, 4)
    assert compare_runs(reference, reference) == Differences(0.0, 0.0, 1.0, 0, 4)
    # A step at another anchor cell is counted, not compared.
    elsewhere = TargetOutcome((90.0, 90.0), (3.0, 3.0), half, best_cell_yx=(12, 13))
    found = compare_runs(reference, [other[0], [elsewhere, other[1][1]]])
    assert found == Differences(pytest.approx(0.3), 0.0, 1.0, 1, 4)
    with pytest.raises(ValueError, match="frames"):
        compare_runs(reference, other[:1])
    with pytest.raises(ValueError, match="targets"):
        compare_runs(reference, [other[0], other[1][:1]])


def test_tolerance_names_what_exceeds_it() -> None:
    tolerance = Tolerance(px=0.5, mask_iou=0.9)
    assert tolerance.problems(Differences(0.5, 0.49, 0.9)) == []
    assert tolerance.problems(Differences(0.6, 2.0, 0.8)) == [
        "centre 0.6 px > 0.5",
        "size 2 px > 0.5",
        "mask IoU 0.800 < 0.9",
    ]
    assert len(tolerance.problems(Differences(math.nan, 0.0, math.nan))) == 2
    assert tolerance.problems(Differences(0.0, 0.0, 1.0, cells_off=1, steps=20)) == []
    assert tolerance.problems(Differences(0.0, 0.0, 1.0, cells_off=2, steps=20)) == [
        "best cell differs in 2 of 20 target steps > 5%"
    ]


def test_start_boxes_keep_the_truth_box_first_and_stay_inside_the_frame() -> None:
    truth = (1000.0, 600.0, 200.0, 100.0)
    boxes = start_boxes(truth, (1280, 720), 6)
    assert boxes[0] == truth
    assert len(set(boxes)) == 6
    for x, y, w, h in boxes:
        assert (w, h) == (200.0, 100.0)
        assert 0 <= x <= 1280 - w
        assert 0 <= y <= 720 - h
