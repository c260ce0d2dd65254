"""A small typed client of a siamedge daemon for dashboards and scripts: start and stop tracks
(each waits for the daemon's ack or raises with its reason) and read results as dataclasses.

    from siamedge.client import Client
    from siamedge.config import MqttSettings

    with Client(MqttSettings(host="127.0.0.1")).connect() as client:
        track_id = client.start((100, 80, 60, 40))
        for frame in client.results():
            for track in frame.tracks:  # none once the last track ended
                print(frame.frame, track.track_id, track.center)

Speaks only the documented MQTT protocol, through siamedge.messaging (the one owner of paho);
never imports the daemon, and masks are decoded without pycocotools.
"""

from __future__ import annotations

import collections
import json
import math
import numbers
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeGuard

import numpy as np
from numpy.typing import NDArray

from siamedge.config import MqttSettings
from siamedge.errors import SiamedgeError
from siamedge.messaging.commander import Commander, Reply
from siamedge.messaging.masks import decode_mask
from siamedge.messaging.subscriber import QUEUE_SIZE
from siamedge.messaging.topics import CommandKind, Topics

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 10.0
"""Longer than the daemon's reply takes under load, short enough that a script notices."""
POLL_S = 0.1
MAX_TIMEOUT_S = 86_400.0
"""The longest wait any method takes (a day): more is a unit mistake, and past
threading.TIMEOUT_MAX it would overflow only after the command was sent."""
BOX_VALUES = 4

PointXY = tuple[float, float]


class ClientError(SiamedgeError):
    """The daemon refused a command (`reason` is its error reason) or the broker is unreachable."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


class ClientTimeoutError(ClientError):
    """No broker connection, or no reply from a daemon, within the time given."""


class ClientClosedError(ClientError):
    """The client was closed: it never reconnects (make a new Client)."""


@dataclass(frozen=True)
class Mask:
    """A track's mask as sent (`format`: rle, polygon or png); to_array() decodes it."""

    format: str
    encoded: Mapping[str, Any]
    frame_hw: tuple[int, int]

    def to_array(self) -> NDArray[np.bool_]:
        """The (H, W) bool full-frame mask. Raises ValueError for a malformed mask."""
        return decode_mask(dict(self.encoded), self.frame_hw)


@dataclass(frozen=True)
class Track:
    """One track of a results message, full-frame pixels; NaN where the daemon sent null."""

    track_id: str
    state: str
    center: PointXY
    size: PointXY
    bbox: tuple[float, float, float, float]
    rotated_box: tuple[PointXY, ...]
    score: float | None
    mask: Mask | None


@dataclass(frozen=True)
class Frame:
    """One `track/results` message: a processed frame and its tracks (none after the last stop)."""

    protocol: int
    frame: int
    timestamp: float
    latency_ms: float
    width: int
    height: int
    tracks: tuple[Track, ...]


@dataclass(frozen=True)
class Status:
    """One `track/status` report (retained): `online` and the report's JSON as sent."""

    online: bool
    report: Mapping[str, Any]

    @property
    def version(self) -> str | None:
        """The daemon's version."""
        value = self.report.get("version")
        return None if value is None else str(value)


@dataclass(frozen=True)
class TrackDropped:
    """A track the daemon ended by itself (on `track/errors`): the frame size changed, or the
    model failed. reason: the daemon's words (`track 't1' dropped: ...`)."""

    track_id: str
    reason: str


Event = Frame | Status | TrackDropped


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        if value is None:
            return math.nan
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _numbers(values: Any, count: int) -> tuple[float, ...]:
    if not isinstance(values, list) or len(values) != count:
        raise TypeError(f"expected {count} numbers, got {values!r}")
    return tuple(_number(value) for value in values)


def _pair(values: Any) -> PointXY:
    x, y = _numbers(values, 2)
    return (x, y)


def _is_real(value: object) -> TypeGuard[numbers.Real]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_timeout(name: str, value: object, *, zero_ok: bool = False) -> float:
    """`value` as seconds: a number > 0 (>= 0 with zero_ok) and at most MAX_TIMEOUT_S.

    Raises ValueError naming `name` otherwise (NaN and infinity included).
    """
    seconds = float(value) if _is_real(value) else math.nan
    above = seconds >= 0.0 if zero_ok else seconds > 0.0
    if not (above and seconds <= MAX_TIMEOUT_S):  # NaN fails both
        low = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{name} must be seconds {low} and <= {MAX_TIMEOUT_S:g}, got {value!r}")
    return seconds


def check_box(box: object, *, normalized: bool = False) -> list[float]:
    """The (x, y, w, h) box as 4 finite floats (each in [0, 1] when normalized).

    Raises ValueError naming `box` and what was given otherwise.
    """
    items = _box_items(box)
    values = [float(value) for value in items if _is_real(value)]
    if len(items) != BOX_VALUES or len(values) != BOX_VALUES:
        raise ValueError(f"box must be 4 numbers (x, y, w, h), got {box!r}")
    if not all(math.isfinite(value) for value in values):
        raise ValueError(f"box must be finite numbers, got {box!r}")
    if normalized and not all(0.0 <= value <= 1.0 for value in values):
        raise ValueError(f"a normalized box must have values in [0, 1], got {box!r}")
    return values


def _box_items(box: object) -> list[object]:
    """The box's items; none for a string, a mapping or something not iterable."""
    if isinstance(box, str | bytes | Mapping) or not isinstance(box, Iterable):
        return []
    return list(box)


def parse_track(data: Mapping[str, Any], frame_hw: tuple[int, int]) -> Track:
    """A results message's track entry. Raises KeyError/TypeError/ValueError when malformed."""
    if not isinstance(data, Mapping):
        raise TypeError(f"a track must be an object, got {data!r}")
    mask = data.get("mask")
    if mask is not None and not isinstance(mask, dict):
        raise TypeError(f"mask must be an object, got {mask!r}")
    x, y, w, h = _numbers(data["bbox"], 4)
    score = data.get("score")
    return Track(
        track_id=str(data["track_id"]),
        state=str(data["state"]),
        center=_pair(data["center"]),
        size=_pair(data["size"]),
        bbox=(x, y, w, h),
        rotated_box=tuple(_pair(point) for point in data["rotated_box"]),
        score=None if score is None else _number(score),
        mask=None if mask is None else Mask(str(mask.get("format")), mask, frame_hw),
    )


def parse_results(data: Mapping[str, Any]) -> Frame:
    """A `track/results` message. Raises KeyError/TypeError/ValueError (OverflowError for an
    infinite frame number or size) when malformed."""
    width, height = int(data["width"]), int(data["height"])
    return Frame(
        protocol=int(data["protocol"]),
        frame=int(data["frame"]),
        timestamp=_number(data["timestamp"]),
        latency_ms=_number(data["latency_ms"]),
        width=width,
        height=height,
        tracks=tuple(parse_track(track, (height, width)) for track in data["tracks"]),
    )


class Client:
    """One daemon (the settings' broker and topic_prefix). Not thread-safe: one thread uses it.

    Every method that talks to the broker connects in the background on first use (connect()
    also waits for it); after close() they raise ClientClosedError. A timeout outside
    (0, MAX_TIMEOUT_S] (poll: [0, MAX_TIMEOUT_S]) raises ValueError before anything is sent.
    Raises ConfigError at construction for bad password or TLS settings.
    """

    def __init__(self, settings: MqttSettings) -> None:
        self._settings = settings
        self._link = Commander(settings)
        self._opened = False
        self._closed = False
        self._status: Status | None = None
        self._ignored = 0
        # Events read early (for the latest status) and not yet handed out by poll().
        self._backlog: collections.deque[Event] = collections.deque(maxlen=QUEUE_SIZE)

    @property
    def topics(self) -> Topics:
        """The daemon's topics."""
        return self._link.topics

    @property
    def state(self) -> str:
        """`connecting`, `subscribed`, why the broker connection is down, or `closed`."""
        return self._link.state

    @property
    def ever_connected(self) -> bool:
        """True once subscribed, even if the connection dropped since."""
        return self._link.ever_subscribed

    @property
    def status(self) -> Status | None:
        """The latest status report the client has read from the broker."""
        return self._status

    @property
    def ignored(self) -> int:
        """Messages skipped as malformed (not JSON, or missing fields)."""
        return self._ignored

    def connect(self, timeout_s: float | None = CONNECT_TIMEOUT_S) -> Client:
        """Connect and subscribe; waits up to timeout_s (None: returns at once and connects in
        the background). Raises ClientTimeoutError naming the broker and why; when this call
        started the connection, the client is closed first (`Client(...).connect()` leaves the
        caller nothing to close)."""
        if timeout_s is not None:
            check_timeout("timeout_s", timeout_s)
        started_here = not self._opened
        self._open()
        if timeout_s is not None and not self._link.wait_subscribed(timeout_s):
            state = self.state  # before close(), which makes it `closed`
            if started_here:
                self.close()
            raise ClientTimeoutError(
                f"no connection to the MQTT broker {self._broker} within {timeout_s:g} s: {state}"
            )
        return self

    def close(self) -> None:
        """Disconnect for good (tracks keep running: stop them first if they should not)."""
        if self._opened and not self._closed:
            self._link.close()
        self._closed = True

    def _open(self) -> None:
        """Start the background connection on first use; raises ClientClosedError after close()."""
        if self._closed:
            raise ClientClosedError(f"the client of {self._broker} is closed; make a new Client")
        if not self._opened:
            self._opened = True
            self._link.start()

    @property
    def _broker(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    def __enter__(self) -> Client:
        return self if self._opened and not self._closed else self.connect()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- commands -------------------------------------------------------------------------

    def start(
        self,
        box: Sequence[float],
        track_id: str | None = None,
        *,
        normalized: bool = False,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> str:
        """Start (or with a known track_id restart) tracking the (x, y, w, h) box; the track id.

        normalized: the box in 0..1 of the frame. Raises ValueError for a box that is not 4
        finite numbers or a bad timeout_s (nothing sent), ClientError with the daemon's reason
        when it refuses (or the broker's: MQTT 5 says when its ACL refuses the command),
        ClientTimeoutError when no daemon replies within timeout_s.
        """
        command: dict[str, Any] = {"box": check_box(box, normalized=normalized)}
        if track_id is not None:
            command["track_id"] = track_id
        if normalized:
            command["normalized"] = True
        reply = self._request("start", command, timeout_s)
        return str(reply.message["track_id"])

    def stop(self, track_id: str | None = None, *, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        """Stop one track, or all of them (track_id None); raises as start() does."""
        command: dict[str, Any] = {"all": True} if track_id is None else {"track_id": track_id}
        self._request("stop", command, timeout_s)

    def _request(self, kind: CommandKind, command: dict[str, Any], timeout_s: float) -> Reply:
        check_timeout("timeout_s", timeout_s)
        self._open()
        deadline = time.monotonic() + timeout_s
        # Published without a connection, the command would wait in paho's queue and go out
        # when the broker is back, however long after this call gave up (its MQTT 5 expiry
        # only starts at the broker): it is sent only once the connection is up.
        connected = self._link.wait_subscribed(timeout_s)
        left = deadline - time.monotonic()
        if not connected or left <= 0:
            raise ClientTimeoutError(
                f"no connection to the MQTT broker {self._broker} within {timeout_s:g} s: "
                f"{self.state}; the {kind} was not sent"
            )
        request_id, reply = self._link.request(kind, command, left)
        if reply is None:
            raise ClientTimeoutError(
                f"no reply to {kind} from siamedge within {timeout_s:g} s on {self._broker} "
                f"({self._no_reply_hint(kind)}); broker: {self.state}",
                request_id,
            )
        if not reply.accepted:
            raise ClientError(str(reply.message.get("reason", "rejected")), request_id)
        return reply

    def _no_reply_hint(self, kind: CommandKind) -> str:
        """Why a command may have gone unanswered, from the latest status report."""
        self._read_queued()
        status = self._status
        source = status.report.get("source") if status is not None and status.online else None
        if kind == "start" and isinstance(source, Mapping) and not _streaming(source):
            state = source.get("state") or "not open"
            error = source.get("error")
            return (
                f"the daemon is online but its source is {state}"
                + (f": {error}" if error else "")
                + "; the start waits for a frame"
            )
        if status is not None and not status.online:
            reason = status.report.get("reason")
            return "its latest status says it is offline" + (f" ({reason})" if reason else "")
        topic = self.topics.start if kind == "start" else self.topics.stop
        return f"topic {topic!r}: is the daemon running with this topic_prefix?"

    # ---- results and status ---------------------------------------------------------------

    def poll(self, timeout_s: float = POLL_S) -> Event | None:
        """The next results frame, status report or dropped track, waiting up to timeout_s;
        None if none came.

        Malformed messages are skipped (and counted in `ignored`).
        """
        check_timeout("timeout_s", timeout_s, zero_ok=True)
        self._open()
        if self._backlog:
            return self._backlog.popleft()
        deadline = time.monotonic() + timeout_s
        late = 0  # messages skipped after the deadline: what had come by then, at most a queue
        while late < QUEUE_SIZE:
            received = self._link.get(max(0.0, deadline - time.monotonic()))
            if received is None:
                return None
            event = self._parse(received.kind, received.payload)
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                late += 1
        return None

    def _read_queued(self) -> None:
        """Parse what the broker has delivered so far (updating `status`), for poll() to hand
        out later."""
        for _ in range(QUEUE_SIZE):
            received = self._link.get(0.0)
            if received is None:
                return
            event = self._parse(received.kind, received.payload)
            if event is not None:
                self._backlog.append(event)

    def _parse(self, kind: str, payload: bytes) -> Event | None:
        try:
            data = json.loads(payload)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if kind == "status":
                self._status = Status(online=data.get("online") is True, report=data)
                return self._status
            if kind == "errors":
                return _dropped_track(data)
            return parse_results(data)
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError):
            # RecursionError: JSON nested deeper than the parser's recursion limit.
            self._ignored += 1
            return None

    def results(self, idle_timeout_s: float | None = None) -> Iterator[Frame]:
        """Results frames as they arrive; ends when none came for idle_timeout_s (None: never)."""
        if idle_timeout_s is not None:
            check_timeout("idle_timeout_s", idle_timeout_s)
        self._open()
        return self._frames(idle_timeout_s)

    def _frames(self, idle_timeout_s: float | None) -> Iterator[Frame]:
        last = time.monotonic()
        while True:
            event = self.poll(POLL_S)
            if isinstance(event, Frame):
                last = time.monotonic()
                yield event
            elif idle_timeout_s is not None and time.monotonic() - last >= idle_timeout_s:
                return

    def wait_online(self, timeout_s: float, *, with_frames: bool = True) -> Status:
        """The latest status report once it is a full online one (that has processed a frame,
        with_frames); returns at once when it already is. Frames and dropped tracks that come
        while it waits are not handed out later.

        Raises ClientTimeoutError when none came within timeout_s.
        """
        check_timeout("timeout_s", timeout_s)
        self._open()
        deadline = time.monotonic() + timeout_s
        while True:
            self._read_queued()
            if self._status is not None and _is_up(self._status, with_frames):
                return self._status
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.poll(min(POLL_S, left))  # events that come meanwhile are dropped
        raise ClientTimeoutError(
            f"siamedge did not come online within {timeout_s:g} s on {self._broker} "
            f"(topic {self.topics.status!r}); broker: {self.state}"
        )


def _dropped_track(data: Mapping[str, Any]) -> TrackDropped | None:
    """The dropped track an errors message tells of; None for another client's command error."""
    track_id, reason = data.get("track_id"), data.get("reason")
    if isinstance(track_id, str) and isinstance(reason, str) and data.get("topic") is None:
        return TrackDropped(track_id, reason)
    return None


def _is_up(status: Status, with_frames: bool) -> bool:
    """A full online report (the connection's first `online` has no report yet)."""
    report = status.report
    return (
        status.online and "model" in report and (not with_frames or report.get("frame") is not None)
    )


def _streaming(source: Mapping[str, Any]) -> bool:
    """The status report's source delivers frames."""
    return source.get("open") is True and source.get("state") in (None, "streaming")
