"""The synthetic clip and its source: determinism, exact truth, real motion, looping and ending."""

from __future__ import annotations

import math

import numpy as np
import pytest

from siamedge.config import SyntheticSettings
from siamedge.errors import SourceError
from siamedge.sources.synthetic import (
    ROTATION_MAX_DEG,
    SCALE_MAX,
    SCALE_MIN,
    SyntheticClip,
    SyntheticSource,
)

SMALL = SyntheticSettings(width=320, height=240, frames=40, seed=3)
SAMPLE_FRAMES = (0, 7, 13, 29, 39)


@pytest.fixture(scope="module")
def clip() -> SyntheticClip:
    return SyntheticClip(SyntheticSettings())


@pytest.fixture(scope="module")
def small_clip() -> SyntheticClip:
    return SyntheticClip(SMALL)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def test_default_clip_size_and_length(clip: SyntheticClip) -> None:
    assert len(clip) == 300
    assert clip.size_wh == (1280, 720)
    image = clip.frame(0)
    assert image.shape == (720, 1280, 3)
    assert image.dtype == np.uint8
    assert clip.truth(0).mask.shape == (720, 1280)


def test_same_seed_same_frames_and_truth(small_clip: SyntheticClip) -> None:
    again = SyntheticClip(SMALL)
    for index in SAMPLE_FRAMES:
        assert np.array_equal(small_clip.frame(index), again.frame(index))
        first, second = small_clip.truth(index), again.truth(index)
        assert first.box_xywh == second.box_xywh
        assert np.array_equal(first.mask, second.mask)


def test_other_seed_other_clip(small_clip: SyntheticClip) -> None:
    other = SyntheticClip(SMALL.model_copy(update={"seed": SMALL.seed + 1}))
    assert not np.array_equal(small_clip.background, other.background)
    assert small_clip.truth(5).box_xywh != other.truth(5).box_xywh


def test_truth_mask_is_exactly_the_painted_object(small_clip: SyntheticClip) -> None:
    for index in SAMPLE_FRAMES:
        changed = np.any(small_clip.frame(index) != small_clip.background, axis=2)
        truth = small_clip.truth(index)
        assert truth.mask.any()
        assert np.array_equal(changed, truth.mask)


def test_truth_mask_is_exact_on_the_full_size_clip(clip: SyntheticClip) -> None:
    for index in (0, 150, 299):
        changed = np.any(clip.frame(index) != clip.background, axis=2)
        assert np.array_equal(changed, clip.truth(index).mask)


def test_box_is_the_mask_bounding_box(small_clip: SyntheticClip) -> None:
    for index in SAMPLE_FRAMES:
        truth = small_clip.truth(index)
        assert truth.box_xywh == mask_box(truth.mask)


def test_scale_and_rotation_span_the_promised_range(clip: SyntheticClip) -> None:
    poses = [clip.pose(index) for index in range(len(clip))]
    scales = [pose.scale for pose in poses]
    angles = [math.degrees(pose.angle_rad) for pose in poses]
    assert min(scales) == pytest.approx(SCALE_MIN, rel=0.01)
    assert max(scales) == pytest.approx(SCALE_MAX, rel=0.01)
    assert min(angles) == pytest.approx(-ROTATION_MAX_DEG, abs=0.5)
    assert max(angles) == pytest.approx(ROTATION_MAX_DEG, abs=0.5)


def test_mask_area_follows_the_scale(clip: SyntheticClip) -> None:
    smallest = min(range(len(clip)), key=lambda index: clip.pose(index).scale)
    largest = max(range(len(clip)), key=lambda index: clip.pose(index).scale)
    area_ratio = clip.truth(largest).mask.sum() / clip.truth(smallest).mask.sum()
    assert area_ratio == pytest.approx((SCALE_MAX / SCALE_MIN) ** 2, rel=0.03)


def test_the_object_moves_smoothly_and_loops(clip: SyntheticClip) -> None:
    centres = np.array([clip.pose(index).center_xy for index in range(len(clip))])
    steps = np.linalg.norm(np.diff(np.vstack([centres, centres[:1]]), axis=0), axis=1)
    span = centres.max(axis=0) - centres.min(axis=0)
    assert span[0] > 0.5 * 1280 and span[1] > 0.3 * 720
    # Smooth: no jump larger than a small part of the object, including last -> first frame.
    assert steps.max() < 0.2 * clip.truth(0).box_xywh[2]


def test_object_stays_inside_the_frame(clip: SyntheticClip) -> None:
    width, height = clip.size_wh
    for index in range(0, len(clip), 10):
        x, y, w, h = clip.truth(index).box_xywh
        assert x > 0 and y > 0 and x + w < width and y + h < height


def test_background_is_textured_and_object_colours_differ(clip: SyntheticClip) -> None:
    background = clip.background.astype(np.float64)
    assert background.std(axis=(0, 1)).min() > 10.0
    truth = clip.truth(0)
    object_mean = clip.frame(0)[truth.mask].mean(axis=0)
    background_mean = background.reshape(-1, 3).mean(axis=0)
    assert np.abs(object_mean - background_mean).max() > 60.0


def test_frames_are_new_arrays(small_clip: SyntheticClip) -> None:
    first = small_clip.frame(2)
    first[:] = 0
    assert small_clip.frame(2).any()
    assert not small_clip.background.flags.writeable


def test_index_out_of_range(small_clip: SyntheticClip) -> None:
    with pytest.raises(IndexError, match="out of range"):
        small_clip.frame(len(small_clip))
    with pytest.raises(IndexError):
        small_clip.truth(-1)


def test_source_ends_without_loop() -> None:
    settings = SyntheticSettings(width=96, height=64, frames=3, seed=1)
    source = SyntheticSource(settings, loop=False)
    assert source.description == "synthetic 96x64 x3"
    source.open()
    frames = [source.read() for _ in range(3)]
    assert source.read() is None
    assert [frame.index for frame in frames if frame is not None] == [0, 1, 2]
    clip = SyntheticClip(settings)
    for index, frame in enumerate(frames):
        assert frame is not None
        assert frame.size_wh == (96, 64)
        assert np.array_equal(frame.image, clip.frame(index))
    source.close()
    source.close()


def test_source_loops_back_to_the_first_frame() -> None:
    settings = SyntheticSettings(width=96, height=64, frames=2, seed=1)
    source = SyntheticSource(settings, loop=True)
    source.open()
    frames = [source.read() for _ in range(5)]
    assert all(frame is not None for frame in frames)
    images = [frame.image for frame in frames if frame is not None]
    assert [frame.index for frame in frames if frame is not None] == [0, 1, 2, 3, 4]
    assert np.array_equal(images[2], images[0])
    assert np.array_equal(images[3], images[1])
    assert not np.array_equal(images[0], images[1])
    source.close()


def test_source_rewinds_on_open() -> None:
    source = SyntheticSource(SyntheticSettings(width=96, height=64, frames=4), loop=False)
    source.open()
    source.read()
    source.read()
    source.open()
    frame = source.read()
    assert frame is not None and frame.index == 0


def test_source_read_needs_open() -> None:
    source = SyntheticSource(SyntheticSettings(width=96, height=64), loop=True)
    with pytest.raises(SourceError, match=r"synthetic 96x64 x300: read\(\) before open\(\)"):
        source.read()
    source.open()
    source.close()
    with pytest.raises(SourceError, match="after close"):
        source.read()


@pytest.mark.parametrize("seed", [0, 2**64, 10**30])
def test_every_seed_the_settings_take_plays(seed: int) -> None:
    """The settings refuse what numpy's generators refuse (a negative seed) and nothing else:
    a seed that loads must not fail at the open instead."""
    source = SyntheticSource(SyntheticSettings(width=96, height=64, frames=2, seed=seed), True)
    source.open()
    frame = source.read()
    assert frame is not None and frame.size_wh == (96, 64)
    source.close()
