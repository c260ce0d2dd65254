"""The daemon: wires the capture thread -> trackers -> MQTT results, and owns shutdown.

The main loop is the only thread that touches trackers; signal handlers only set the stop event.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import FrameType

from siamedge import __version__
from siamedge.config import Settings
from siamedge.engine import Engine
from siamedge.errors import CommandError, ConfigError, ModelError, SourceError
from siamedge.filestamp import FileStamp, file_stamp
from siamedge.fps import FpsMeter
from siamedge.frontend import (
    CommandDrain,
    FrameListener,
    FrameReport,
    FrontEnd,
    FrontEndFactory,
    Request,
    Responder,
    ServiceCounters,
    StatusSnapshot,
)
from siamedge.leaks import leak_problem, process_usage
from siamedge.messaging.client import ConnectionState, IncomingCommand, MqttClient
from siamedge.messaging.ledger import RecentRequestIds
from siamedge.messaging.protocol import (
    DuplicateCommandError,
    SourceMode,
    SourceStatus,
    StaleCommandError,
    StartCommand,
    StatusReport,
    check_command_age,
    expired_error,
    parse_command,
    shutting_down_error,
)
from siamedge.models import resolve_model_path
from siamedge.providers import ProvidersUnavailableError
from siamedge.sources.base import Frame, FrameSource
from siamedge.sources.camera import CameraMode
from siamedge.sources.capture import CaptureThread, SourceState
from siamedge.sources.capture import SourceStatus as CaptureStatus
from siamedge.sources.factory import create_capture
from siamedge.systemd import Notifier, Watchdog, extended_timeout
from siamedge.tracking.result import TrackResult
from siamedge.tracking.tracker import TrackerParams, replaced_model_thresholds
from siamedge.tracks import TrackManager

log = logging.getLogger(__name__)

EARLIEST_PLAUSIBLE_TIME = 1_767_225_600.0
"""2026-01-01 UTC, before this release: a system clock earlier than that was never set (a board
without a battery clock, before NTP)."""
EX_SOFTWARE = 70
"""sysexits.h: the exit status when the service stops itself for a restart (a leak, a model
that keeps failing)."""
MODEL_FAILURES_BEFORE_RESTART = 5
"""Model calls failing in a row (no track step working in between) after which the service exits
with EX_SOFTWARE for systemd to restart it: a GPU left in a bad state is reset with the process."""
LOOP_WAIT_S = 0.25
"""Longest wait for a frame before the loop looks at commands, status and the watchdog."""
READY_WAIT_S = 5.0
"""How long start-up waits for the first source attempt and the first broker connection."""
MODEL_LOAD_WINDOW_S = 90.0
"""EXTEND_TIMEOUT_USEC step while the model loads (TensorRT may build engines for minutes)."""
MAX_PENDING_STARTS = 16


@dataclass(frozen=True)
class _MqttResponder:
    client: MqttClient
    command: IncomingCommand

    def accepted(self, track_id: str | None, request_id: str | None) -> None:
        self.client.acknowledge(self.command, track_id, request_id)

    def rejected(self, error: CommandError) -> None:
        self.client.reject(self.command, error)


@dataclass(frozen=True)
class _PendingStart:
    """A start command waiting for the next frame.

    age_at_receipt_s: how old it was when taken (by its `sent_at`, else 0); received_mono:
    time.monotonic() then. The wait is counted on the monotonic clock: a wall clock that NTP
    steps (by years, on a board without a battery clock) must not expire it, or keep it.
    """

    command: StartCommand
    responder: Responder
    age_at_receipt_s: float
    received_mono: float
    expires_mono: float | None = None

    @classmethod
    def taken_now(cls, command: StartCommand, request: Request) -> _PendingStart:
        sent_at = command.sent_at
        age_s = 0.0 if sent_at is None else time.time() - sent_at
        return cls(command, request.responder, age_s, time.monotonic(), request.expires_mono)

    def age_s(self, now_mono: float) -> float:
        """How old the command is at time.monotonic() `now_mono`."""
        return self.age_at_receipt_s + now_mono - self.received_mono


def delivered_mode(source: FrameSource) -> SourceMode | None:
    """What a camera delivers (the `mode` it negotiated at its last opening) for the status;
    None for sources without a negotiated mode, and before the first opening."""
    mode = getattr(source, "mode", None)
    if not isinstance(mode, CameraMode):
        return None
    return SourceMode(mode.width, mode.height, mode.fps, mode.fourcc)


class ModelSlot:
    """The loaded model, or why it is not loaded; retries when the file changes."""

    def __init__(
        self, settings: Settings, notifier: Notifier, stop: threading.Event | None = None
    ) -> None:
        self._settings = settings
        self._notifier = notifier
        self._stop = stop
        self.engine: Engine | None = None
        self.manager: TrackManager | None = None
        self.error: str | None = None
        self._file_stamp: FileStamp | None = None
        self._next_check = 0.0

    def load(self) -> None:
        """Load and warm up the model; on failure keep the reason (the service goes on).

        ConfigError when model.providers names none that this onnxruntime offers."""
        model = self._settings.model
        self._file_stamp = self._stamp()
        try:
            with extended_timeout(
                self._notifier, MODEL_LOAD_WINDOW_S, status="loading model", stop=self._stop
            ):
                engine = Engine.load(model.path, model, max_batch=self._settings.tracker.max_tracks)
        except ProvidersUnavailableError as exc:
            raise ConfigError(f"model.providers: {exc}") from None
        except ModelError as exc:
            self.error = str(exc)
            log.error("model not loaded: %s (retrying when the file changes)", exc)
            return
        params = TrackerParams.from_settings(self._settings.tracker, engine.contract)
        for line in replaced_model_thresholds(self._settings.tracker, engine.contract):
            log.info("%s", line)
        self.engine = engine
        self.manager = TrackManager(engine, params, self._settings.tracker.max_tracks)
        self.error = None

    def retry_if_changed(self, now: float) -> bool:
        """Reload a failed model whose file changed; True when the model is now loaded."""
        if self.engine is not None or now < self._next_check:
            return False
        self._next_check = now + self._settings.service.model_retry_s
        if self._stamp() == self._file_stamp:
            return False
        log.info("model file changed: loading it again")
        self.load()
        return self.engine is not None

    def _stamp(self) -> FileStamp | None:
        try:
            path = resolve_model_path(self._settings.model.path)
        except ModelError:
            return None
        return file_stamp(path)


def unset_clock_warning(now: float) -> str | None:
    """What to tell when the system clock (unix seconds `now`) was evidently never set."""
    if now >= EARLIEST_PLAUSIBLE_TIME:
        return None
    says = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    return (
        f"the system clock says {says}, before this release of siamedge: not set yet (no "
        "battery clock, no NTP sync)? Commands with sent_at are refused until it is, and "
        "results carry its timestamps"
    )


class Service:
    """The long-running tracker service. run() blocks until stop() or SIGTERM/SIGINT/SIGHUP.

    Implements siamedge.frontend.ServicePort. front_ends: one factory per front end to run
    (the composition root, siamedge/run.py, picks them from the settings); each is built on this
    service and started in run(), and closed at shutdown.
    """

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier | None = None,
        *,
        front_ends: Sequence[FrontEndFactory] = (),
    ) -> None:
        self._settings = settings
        self._notifier = notifier or Notifier()
        self._front_end_factories = tuple(front_ends)
        self._stop = threading.Event()
        self._status_due = threading.Event()
        self._started = time.monotonic()
        self._fps = FpsMeter()
        self._frame_wh: tuple[int, int] | None = None
        self._last_frame: tuple[int, float] | None = None
        self._pending: deque[_PendingStart] = deque()
        self._recent_requests = RecentRequestIds()
        self._inboxes: list[CommandDrain] = []
        self._frame_listeners: list[FrameListener] = []
        self._published_tracks = False
        self._snapshot_lock = threading.Lock()
        self._snapshot = StatusSnapshot(
            None, ConnectionState(False, "not connected yet", time.time())
        )
        # Read by snapshot() on any thread; set once in run().
        self._running: tuple[CaptureThread, MqttClient] | None = None
        self._broker_connections = 0
        self._exit_status = 0
        self._source_reopenings = 0
        self._tracks_dropped = 0

    @property
    def stop_event(self) -> threading.Event:
        """Set to end run()."""
        return self._stop

    def stop(self) -> None:
        """Ask run() to finish (thread- and signal-safe)."""
        self._stop.set()

    def add_inbox(self, drain: CommandDrain) -> None:
        """Another command channel (e.g. HTTP): drain() returns its queued requests."""
        self._inboxes.append(drain)

    def add_frame_listener(self, listener: FrameListener) -> None:
        """Called on the main loop after every processed frame; it must return at once."""
        self._frame_listeners.append(listener)

    def snapshot(self) -> StatusSnapshot:
        """The latest status report (None before start-up finished), broker state and the
        running totals as of now; any thread."""
        with self._snapshot_lock:
            snapshot = self._snapshot
        running = self._running
        if running is None:
            return snapshot
        capture, mqtt = running
        stats = capture.stats()
        counters = ServiceCounters(
            frames_captured=stats.captured,
            frames_dropped=stats.dropped,
            commands=mqtt.command_counts,
            broker_reconnects=max(0, self._broker_connections - 1),
            source_reopenings=self._source_reopenings,
            source_state=capture.status.state.value,
            results_dropped=mqtt.dropped_results,
            tracks_dropped=self._tracks_dropped,
        )
        return replace(snapshot, counters=counters)

    def install_signal_handlers(self) -> None:
        """SIGTERM, SIGINT and SIGHUP set the stop event; nothing else happens in the handler.

        SIGHUP too, so that a closed terminal (or `systemctl kill -s HUP`) shuts down cleanly,
        with the `offline`/`shutdown` status, instead of killing the process mid-frame; the
        configuration is read at start, so a restart is how it is reloaded."""

        def handle(signum: int, _frame: FrameType | None) -> None:
            self._stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, handle)

    def run(self) -> int:
        """Start everything, serve until stopped, shut down cleanly; returns the exit status."""
        settings = self._settings
        if (warning := unset_clock_warning(time.time())) is not None:
            log.warning("%s", warning)
        mqtt = MqttClient(settings.mqtt, on_state_change=self._on_broker_state)
        try:
            capture = create_capture(
                settings.source, stop_event=self._stop, on_state=self._on_source_state
            )
        except SourceError as exc:
            # Nothing to retry: the configured uri names no kind of source.
            raise ConfigError(f"source.uri: {exc}") from None
        self._running = (capture, mqtt)
        model = ModelSlot(settings, self._notifier, self._stop)
        model.load()
        if self._stop.is_set():  # asked to stop while the model loaded: no READY
            self._notifier.stopping("stopped while starting")
            log.info("stopped while starting")
            return 0
        front_ends: list[FrontEnd] = []
        try:  # whatever fails from here on, the threads started so far are stopped
            # Front ends first: a second daemon started by hand whose port is taken must fail
            # before it takes the camera, or the broker session of the same client id.
            self._start_front_ends(front_ends)
            capture.start()
            mqtt.start()
            self._wait_for_first_attempts(capture, mqtt)
            if self._stop.is_set():
                return 0
            self._publish_status(model, capture, mqtt)
            self._notifier.ready(self._status_line(model, capture, mqtt))
            watchdog = Watchdog.from_environment(
                self._notifier, stall_s=settings.service.watchdog_stall_s
            )
            log.info("siamedge %s running", __version__)
            self._loop(model, capture, mqtt, watchdog)
        finally:
            self._notifier.stopping("shutting down")
            log.info("shutting down")
            self._refuse_pending()
            for front_end in reversed(front_ends):
                front_end.close()
            capture.stop()
            self._publish_tracks_ended(mqtt)
            mqtt.close()
        return self._exit_status

    def _refuse_pending(self) -> None:
        """Answer the starts still waiting for a frame: the broker acknowledged them already and
        will not deliver them again after a restart."""
        while self._pending:
            pending = self._pending.popleft()
            pending.responder.rejected(shutting_down_error(pending.command.request_id))

    def _publish_tracks_ended(self, mqtt: MqttClient) -> None:
        """The empty results message that follows the last track, also when a shutdown ends
        the tracks: a dashboard clears them before the status turns offline."""
        if self._published_tracks and self._last_frame is not None and self._frame_wh is not None:
            index, timestamp = self._last_frame
            mqtt.publish_results(index, timestamp, self._frame_wh, ())
            self._published_tracks = False

    def _start_front_ends(self, started: list[FrontEnd]) -> None:
        """Build and start each front end, appending it to `started` once it runs (so that
        shutdown closes it); ConfigError when one cannot start (e.g. a taken port)."""
        for factory in self._front_end_factories:
            front_end = factory(self)
            front_end.start()
            started.append(front_end)

    def _wait_for_first_attempts(self, capture: CaptureThread, mqtt: MqttClient) -> None:
        deadline = time.monotonic() + READY_WAIT_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            if capture.status.state is not SourceState.STARTING:
                break
            self._stop.wait(0.05)
        while not self._stop.is_set() and time.monotonic() < deadline:
            if mqtt.wait_connected(min(0.05, max(0.0, deadline - time.monotonic()))):
                break

    def _loop(
        self, model: ModelSlot, capture: CaptureThread, mqtt: MqttClient, watchdog: Watchdog
    ) -> None:
        interval = self._settings.mqtt.status_interval_s
        next_status = time.monotonic() + interval
        while not self._stop.is_set():
            due = watchdog.seconds_until_due()
            frame = capture.get(timeout=LOOP_WAIT_S if due is None else min(LOOP_WAIT_S, due))
            now = time.monotonic()
            if model.retry_if_changed(now):
                self._status_due.set()
            self._handle_requests(model, self._collect_requests(mqtt))
            self._expire_pending(capture.status)
            mqtt.flush_errors()
            mqtt.flush_results()
            if frame is not None:
                self._process(model, frame, mqtt)
                watchdog.frame_processed()
            elif capture.status.state is SourceState.RETRYING and capture.opening_for_s() is None:
                # A lost camera waits for its next reopen on purpose: report it, do not
                # restart. A source stuck opening (a reopen too) or reading stops the pings.
                watchdog.waiting_for_source()
            watchdog.tick()
            if self._status_due.is_set() or now >= next_status:
                self._status_due.clear()
                next_status = now + interval
                self._publish_status(model, capture, mqtt)
                self._stop_if_leaking()

    def _stop_if_leaking(self) -> None:
        """Stop with EX_SOFTWARE when descriptors or threads run out (see siamedge.leaks), so
        that systemd restarts a clean process before EMFILE breaks the broker link."""
        usage = process_usage()
        problem = leak_problem(usage) if usage is not None else None
        if problem is None:
            return
        log.error(
            "%s: something leaks them (OpenCV's GStreamer backend does on each failed open "
            "of a source); exiting with status %d so that systemd restarts the service",
            problem,
            EX_SOFTWARE,
        )
        self._exit_status = EX_SOFTWARE
        self._stop.set()

    def _stop_if_model_keeps_failing(self, manager: TrackManager) -> None:
        """Stop with EX_SOFTWARE once MODEL_FAILURES_BEFORE_RESTART model calls failed in a row."""
        failed = manager.failed_calls_in_a_row
        if failed < MODEL_FAILURES_BEFORE_RESTART or self._stop.is_set():
            return
        log.error(
            "the model failed %d calls in a row (the last: %s); exiting with status %d so that "
            "systemd restarts the service, which resets the GPU's state",
            failed,
            manager.last_failure,
            EX_SOFTWARE,
        )
        self._exit_status = EX_SOFTWARE
        self._stop.set()

    def _collect_requests(self, mqtt: MqttClient) -> list[Request]:
        requests = [
            Request(
                command.kind, command.payload, _MqttResponder(mqtt, command), command.expires_at
            )
            for command in mqtt.drain_commands()
        ]
        for drain in self._inboxes:
            requests.extend(drain())
        return requests

    def _handle_requests(self, model: ModelSlot, requests: list[Request]) -> None:
        for request in requests:
            try:
                command = parse_command(request.kind, request.payload, self._frame_wh)
                check_command_age(
                    command.sent_at,
                    command.request_id,
                    now=time.time(),
                    max_age_s=self._settings.mqtt.command_max_age_s,
                    clock_skew_s=self._settings.mqtt.command_clock_skew_s,
                )
                # A QoS 1 redelivery after a reconnect carries the same request_id: run it once.
                if command.request_id is not None and not self._recent_requests.take(
                    command.request_id
                ):
                    raise DuplicateCommandError(
                        f"duplicate: request_id {command.request_id!r} was received already "
                        "and gets one reply; not carried out again (a new request_id tries again)",
                        command.request_id,
                    )
                if model.manager is None:
                    raise CommandError(f"no model loaded: {model.error}", command.request_id)
                if isinstance(command, StartCommand):
                    if len(self._pending) >= MAX_PENDING_STARTS:
                        raise CommandError(
                            "too many start commands are waiting for a frame", command.request_id
                        )
                    self._pending.append(_PendingStart.taken_now(command, request))
                    continue
                # A stop comes after the starts still waiting for a frame: it cancels theirs.
                cancelled = self._cancel_pending(command.track_id)
                try:
                    model.manager.stop(command.track_id, command.request_id)
                except CommandError:
                    if not cancelled:
                        raise
                request.responder.accepted(command.track_id, command.request_id)
                self._status_due.set()
            except CommandError as exc:
                request.responder.rejected(exc)

    def _process(self, model: ModelSlot, frame: Frame, mqtt: MqttClient) -> None:
        self._frame_wh = frame.size_wh
        self._last_frame = (frame.index, frame.timestamp)
        self._fps.tick(time.monotonic())
        manager = model.manager
        if manager is None:  # no model: the live view still shows the camera
            self._report(FrameReport(frame, (), None))
            return
        started = self._start_pending(manager, frame)
        step_started = time.perf_counter()
        stepped, dropped = manager.step(frame)
        step_ms = (time.perf_counter() - step_started) * 1000.0 if stepped else None
        self._tracks_dropped += len(dropped)
        for track in dropped:
            mqtt.publish_track_dropped(track.track_id, track.reason)
        self._stop_if_model_keeps_failing(manager)
        if dropped:
            self._status_due.set()
        tracks = stepped + started
        latency_ms: float | None = None
        publish = bool(tracks) or self._published_tracks
        if publish and mqtt.publish_results(
            frame.index, frame.timestamp, frame.size_wh, tracks, frame.monotonic
        ):
            latency_ms = (time.monotonic() - frame.monotonic) * 1000.0
        self._published_tracks = bool(tracks)
        slotted = tuple(
            (track_id, result, manager.slot_of(track_id)) for track_id, result in tracks
        )
        self._report(FrameReport(frame, slotted, latency_ms, step_ms))

    def _cancel_pending(self, track_id: str | None) -> bool:
        """Answer the waiting starts of track_id (None: all) as cancelled; True when any was."""
        cancelled = [p for p in self._pending if track_id is None or p.command.track_id == track_id]
        for pending in cancelled:
            self._pending.remove(pending)
            named = pending.command.track_id
            name = "" if named is None else f" of track {named!r}"
            pending.responder.rejected(
                CommandError(
                    f"start{name} cancelled by a stop that came before its first frame",
                    pending.command.request_id,
                )
            )
        return bool(cancelled)

    def _expire_pending(self, source: CaptureStatus) -> None:
        """Answer as stale the starts that waited for a frame past mqtt.command_max_age_s, and
        as expired those whose MQTT message expiry ran out meanwhile (a client that gave up)."""
        if not self._pending:
            return
        max_age_s = self._settings.mqtt.command_max_age_s
        now = time.monotonic()
        why = f"source {source.state.value}" + (f": {source.error}" if source.error else "")
        for pending in list(self._pending):
            age_s = pending.age_s(now)
            error: CommandError
            if pending.expires_mono is not None and now > pending.expires_mono:
                error = expired_error(
                    now - pending.received_mono,
                    f"a frame to start on ({why})",
                    pending.command.request_id,
                )
            elif max_age_s is not None and age_s > max_age_s:
                error = StaleCommandError(
                    f"stale: {age_s:.1f} s old and still no frame to start on ({why}); "
                    f"commands older than {max_age_s:g} s are not carried out",
                    pending.command.request_id,
                )
            else:
                continue
            self._pending.remove(pending)
            pending.responder.rejected(error)

    def _start_pending(self, manager: TrackManager, frame: Frame) -> list[tuple[str, TrackResult]]:
        """Apply the start commands waiting for this frame; their init results."""
        started: list[tuple[str, TrackResult]] = []
        while self._pending:
            pending = self._pending.popleft()
            command = pending.command
            try:
                track_id, result = manager.start(
                    frame, command.box_xywh, command.track_id, command.request_id
                )
            except CommandError as exc:
                pending.responder.rejected(exc)
                continue
            started = [entry for entry in started if entry[0] != track_id]
            started.append((track_id, result))
            pending.responder.accepted(track_id, command.request_id)
            self._status_due.set()
        return started

    def _report(self, report: FrameReport) -> None:
        for listener in self._frame_listeners:
            listener(report)

    def _on_source_state(self, status: CaptureStatus) -> None:
        if status.state is SourceState.RETRYING:  # the capture thread logs why
            self._source_reopenings += 1
        self._status_due.set()

    def _on_broker_state(self, state: ConnectionState) -> None:
        with self._snapshot_lock:
            if state.connected and not self._snapshot.broker.connected:
                self._broker_connections += 1
            self._snapshot = replace(self._snapshot, broker=state)
        self._status_due.set()

    def _publish_status(self, model: ModelSlot, capture: CaptureThread, mqtt: MqttClient) -> None:
        report = self.status_report(model, capture)
        with self._snapshot_lock:
            self._snapshot = replace(self._snapshot, status=report)
        mqtt.publish_status(report)
        self._notifier.status(self._status_line(model, capture, mqtt))

    def status_report(self, model: ModelSlot, capture: CaptureThread) -> StatusReport:
        """What the retained status topic says now."""
        source = capture.status
        engine = model.engine
        track_ids = tuple(model.manager.track_ids) if model.manager else ()
        return StatusReport(
            model=str(engine.path) if engine else f"not loaded: {model.error}",
            provider=engine.provider if engine else "none",
            source=SourceStatus(
                description=source.source,
                open=source.state is SourceState.STREAMING,
                error=source.error,
                frame_wh=self._frame_wh,
                state=source.state.value,
                mode=delivered_mode(capture.source),
            ),
            fps=round(self._fps.fps(time.monotonic()), 1),
            dropped_frames=capture.stats().dropped,
            track_ids=track_ids,
            max_tracks=self._settings.tracker.max_tracks,
            mask_encoding=self._settings.mqtt.mask_encoding,
            uptime_s=round(time.monotonic() - self._started, 1),
            frame=self._last_frame[0] if self._last_frame else None,
            frame_timestamp=self._last_frame[1] if self._last_frame else None,
            tracks_dropped=self._tracks_dropped,
        )

    def _status_line(self, model: ModelSlot, capture: CaptureThread, mqtt: MqttClient) -> str:
        tracks = len(model.manager) if model.manager else 0
        broker = "connected" if mqtt.connection.connected else "disconnected"
        model_state = model.engine.provider if model.engine else "model not loaded"
        return (
            f"{self._fps.fps(time.monotonic()):.1f} fps, {tracks} track(s), "
            f"source {capture.status.state.value}, broker {broker}, {model_state}"
        )
