"""The set of active targets: start / restart / stop commands, and one batched step of them all.

Owns the per-target Trackers (all sharing one model); never does I/O or touches MQTT.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from siamedge.errors import BoxError, CommandError, ModelCallError, ModelError
from siamedge.sources.base import Frame
from siamedge.tracking.crop import CropScratch
from siamedge.tracking.geometry import BoxXYWH
from siamedge.tracking.model_io import StepModel
from siamedge.tracking.result import TrackResult
from siamedge.tracking.tracker import StepOutcome, Tracker, TrackerParams, step_together

log = logging.getLogger(__name__)

TRACK_ID_PREFIX = "t"


@dataclass
class ActiveTrack:
    """One target being followed. slot: a small stable number (overlay colours)."""

    track_id: str
    tracker: Tracker
    slot: int
    started_frame: int


@dataclass(frozen=True)
class Dropped:
    """A track that stopped by itself (the source changed resolution, the model failed) and
    why."""

    track_id: str
    reason: str


class TrackManager:
    """Starts, steps and stops up to max_tracks targets on frames of one source."""

    def __init__(self, model: StepModel, params: TrackerParams, max_tracks: int) -> None:
        self._model = model
        self._params = params
        self._max_tracks = max_tracks
        self._scratch = CropScratch()  # one for all: the crops of a step are made in turn
        self._tracks: dict[str, ActiveTrack] = {}
        self._ids = (f"{TRACK_ID_PREFIX}{n}" for n in itertools.count(1))
        self._failed_calls = 0
        self._last_failure: str | None = None

    @property
    def track_ids(self) -> list[str]:
        """Active track ids, oldest first."""
        return list(self._tracks)

    def __len__(self) -> int:
        return len(self._tracks)

    def slot_of(self, track_id: str) -> int:
        """The overlay slot of an active track."""
        return self._tracks[track_id].slot

    def start(
        self, frame: Frame, box_xywh: BoxXYWH, track_id: str | None, request_id: str | None
    ) -> tuple[str, TrackResult]:
        """Start (or restart, for a known track_id) a target on this frame.

        Raises CommandError for a box that cannot be tracked, when max_tracks are running, or
        when the model fails on it.
        """
        restart = track_id is not None and track_id in self._tracks
        if not restart and len(self._tracks) >= self._max_tracks:
            raise CommandError(
                f"too many tracks: {len(self._tracks)} of {self._max_tracks} are running "
                f"({', '.join(self._tracks)}); stop one first",
                request_id,
            )
        tracker = Tracker(self._model, self._params, self._scratch)
        try:
            result = tracker.start(frame.image, box_xywh)
        except BoxError as exc:
            raise CommandError(str(exc), request_id) from None
        except ModelError as exc:
            self._model_failed(exc)
            raise ModelCallError(f"not started: {exc}", request_id) from None
        if track_id is None:
            track_id = self._new_id()
        slot = self._tracks[track_id].slot if restart else self._free_slot()
        self._tracks[track_id] = ActiveTrack(track_id, tracker, slot, frame.index)
        log.info(
            "%s track %s at box %s (frame %d)",
            "restarted" if restart else "started",
            track_id,
            [round(v, 1) for v in box_xywh],
            frame.index,
        )
        return track_id, result

    def stop(self, track_id: str | None, request_id: str | None) -> list[str]:
        """Stop one track (track_id) or all (None); returns the ids stopped.

        Raises CommandError for an unknown track_id.
        """
        if track_id is None:
            stopped = list(self._tracks)
            self._tracks.clear()
        elif track_id in self._tracks:
            del self._tracks[track_id]
            stopped = [track_id]
        else:
            active = ", ".join(self._tracks) or "none"
            raise CommandError(f"no track {track_id!r} (active: {active})", request_id)
        if stopped:
            log.info("stopped track(s) %s", ", ".join(stopped))
        self._release_scratch_when_idle()
        return stopped

    def step(self, frame: Frame) -> tuple[list[tuple[str, TrackResult]], list[Dropped]]:
        """Track every target into this frame in one batched model call (targets started on
        this frame are skipped).

        Returns the results, and the tracks that had to be dropped: the frame size changed, or
        the model failed on them. When the batched call fails, each target is tried alone, so
        that only those the model fails on are dropped.
        """
        tracks = [t for t in self._tracks.values() if t.started_frame != frame.index]
        results: list[tuple[str, TrackResult]] = []
        dropped: list[Dropped] = []
        for track, outcome in self._outcomes(tracks, frame):
            if isinstance(outcome, ModelError):
                dropped.extend(self._drop([track], f"the model step failed: {outcome}"))
            elif isinstance(outcome, ValueError):
                dropped.extend(self._drop([track], str(outcome), logging.WARNING))
            else:
                results.append((track.track_id, outcome.result))
        return results, dropped

    def _outcomes(
        self, tracks: list[ActiveTrack], frame: Frame
    ) -> list[tuple[ActiveTrack, StepOutcome | ValueError | ModelError]]:
        """Each target's outcome of one batched call or, when that fails, of a call of its own;
        counts the model's failures (see failed_calls_in_a_row)."""
        outcomes: list[StepOutcome | ValueError | ModelError]
        try:
            outcomes = list(step_together([track.tracker for track in tracks], frame.image))
        except ModelError as exc:
            outcomes = [exc] if len(tracks) == 1 else [self._alone(t, frame) for t in tracks]
        failures = [outcome for outcome in outcomes if isinstance(outcome, ModelError)]
        if any(isinstance(outcome, StepOutcome) for outcome in outcomes):
            self._failed_calls = 0
        elif failures:
            self._model_failed(failures[-1])
        return list(zip(tracks, outcomes, strict=True))

    @staticmethod
    def _alone(track: ActiveTrack, frame: Frame) -> StepOutcome | ValueError | ModelError:
        """One target's outcome of a model call of its own."""
        try:
            (outcome,) = step_together([track.tracker], frame.image)
        except ModelError as exc:
            return exc
        return outcome

    @property
    def failed_calls_in_a_row(self) -> int:
        """Model calls (starts and steps) that failed since the last track step that worked
        (a start that works does not count: a model may start targets and fail every step)."""
        return self._failed_calls

    @property
    def last_failure(self) -> str | None:
        """Why the latest failed model call failed."""
        return self._last_failure

    def _model_failed(self, error: ModelError) -> None:
        self._failed_calls += 1
        self._last_failure = str(error)

    def _drop(
        self, tracks: list[ActiveTrack], reason: str, level: int = logging.ERROR
    ) -> list[Dropped]:
        """End tracks that cannot go on, all for one reason (logged once)."""
        for track in tracks:
            del self._tracks[track.track_id]
        log.log(level, "track(s) %s dropped: %s", ", ".join(t.track_id for t in tracks), reason)
        self._release_scratch_when_idle()
        return [Dropped(track.track_id, reason) for track in tracks]

    def _release_scratch_when_idle(self) -> None:
        """With no target left, let the crop scratch go (a large target's: up to 64 MiB)."""
        if not self._tracks:
            self._scratch = CropScratch()

    def _new_id(self) -> str:
        while True:
            candidate = next(self._ids)
            if candidate not in self._tracks:
                return candidate

    def _free_slot(self) -> int:
        used = {track.slot for track in self._tracks.values()}
        return next(slot for slot in itertools.count() if slot not in used)
