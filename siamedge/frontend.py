"""The one narrow interface between the service and its front ends (the web view, any later one).

Front ends import this module, never `siamedge.service`; the service implements `ServicePort`
and never imports a front end. The composition root (`siamedge/run.py`) hands the service one
`FrontEndFactory` per enabled front end; the service calls it with itself, starts what it gets
after the source and the broker client, and closes it at shutdown.

What a front end gets, and nothing more:
- a status snapshot: `ServicePort.snapshot()` -> `StatusSnapshot` (any thread), with the running
  totals of `ServiceCounters` read at the time of the call (for metrics);
- a frame listener: `ServicePort.add_frame_listener(listener)`, called with a `FrameReport`
  (the latest frame and its track results) on the main loop after every processed frame;
- a command inbox: `ServicePort.add_inbox(drain)`; the main loop calls `drain()` and validates
  and applies each `Request` exactly like an MQTT command, then answers it through the
  request's `Responder` (accepted: the ack; rejected: the CommandError of the errors topic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from siamedge.errors import CommandError
from siamedge.messaging.client import ConnectionState
from siamedge.messaging.ledger import OUTCOMES
from siamedge.messaging.protocol import StatusReport
from siamedge.messaging.topics import CommandKind
from siamedge.sources.base import Frame
from siamedge.tracking.result import TrackResult


@dataclass(frozen=True)
class ServiceCounters:
    """Running totals since start, read when the snapshot is taken (all zero before run()).

    frames_captured / frames_dropped: frames the capture thread read / replaced before the
    tracker took them. commands: `{outcome: count}` of MQTT commands, every outcome of
    siamedge.messaging.ledger.OUTCOMES. broker_reconnects: connections after the first one.
    source_reopenings: times the source failed or ended and was scheduled to reopen.
    source_state: the capture thread's state (`starting`, `streaming`, `stalled`,
    `retrying`, `stopped`). results_dropped: results never sent (broker unreachable or slow).
    tracks_dropped: tracks the service ended by itself (the model failed, the frame size
    changed).
    """

    frames_captured: int = 0
    frames_dropped: int = 0
    commands: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    broker_reconnects: int = 0
    source_reopenings: int = 0
    source_state: str = "starting"
    results_dropped: int = 0
    tracks_dropped: int = 0


@dataclass(frozen=True)
class StatusSnapshot:
    """What the service last published about itself.

    status: the latest status report, as on the retained status topic (None before start-up
    finished). broker: the broker connection as last reported. counters: running totals.
    """

    status: StatusReport | None
    broker: ConnectionState
    counters: ServiceCounters = field(default_factory=ServiceCounters)


@dataclass(frozen=True)
class FrameReport:
    """One processed frame and its tracks, for listeners (e.g. a live view).

    tracks: (track_id, result, slot) with slot a small stable number per track (colours).
    latency_ms: capture -> results published (None when nothing was published).
    step_ms: the model step for this frame, all tracks in one batch (None when no track was
    stepped).
    """

    frame: Frame
    tracks: tuple[tuple[str, TrackResult, int], ...]
    latency_ms: float | None
    step_ms: float | None = None


FrameListener = Callable[[FrameReport], None]
"""Called on the main loop after every processed frame; it must return at once."""


class Responder(Protocol):
    """Answers the sender of one command (MQTT ack/error topics, or an HTTP reply)."""

    def accepted(self, track_id: str | None, request_id: str | None) -> None: ...

    def rejected(self, error: CommandError) -> None: ...


@dataclass(frozen=True)
class Request:
    """A command from any channel, not validated yet."""

    kind: CommandKind
    payload: bytes
    responder: Responder
    expires_mono: float | None = None
    """When the channel's own expiry runs out (MQTT 5's message expiry interval), on
    time.monotonic(); a start still waiting for a frame then is answered expired. None: never."""


CommandDrain = Callable[[], list[Request]]
"""A command channel's queue: returns the requests queued since the last call, oldest first."""


class ServicePort(Protocol):
    """The service as a front end sees it."""

    def snapshot(self) -> StatusSnapshot:
        """The latest status and broker state; any thread."""
        ...

    def add_frame_listener(self, listener: FrameListener) -> None:
        """Call `listener` after every processed frame (before run(); main loop)."""
        ...

    def add_inbox(self, drain: CommandDrain) -> None:
        """Another command channel: the main loop applies what `drain()` returns (before run())."""
        ...


class FrontEnd(Protocol):
    """A started front end's life cycle, driven by the service."""

    def start(self) -> None:
        """Begin serving; ConfigError when its settings cannot be had (e.g. a taken port)."""
        ...

    def close(self) -> None:
        """Stop serving and join its threads (at shutdown)."""
        ...


FrontEndFactory = Callable[[ServicePort], FrontEnd]
"""Builds one front end on the service (registering its listeners and inboxes there)."""
