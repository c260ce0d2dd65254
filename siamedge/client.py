"""A small typed client of a siamedge daemon for dashboards and scripts: start and stop tracks
(each waits for the daemon's ack or raises with its reason) and read results as dataclasses.

    from siamedge.client import Client
    from siamedge.config import MqttSettings

    with Client(MqttSettings(host="127.0.0.1")).connect() as client:
        track_id = client.start((100, 80, 60, 40))
        for frame in client.results():
            print(frame.frame, frame.tracks[0].center)

Speaks only the documented MQTT protocol, through siamedge.messaging (the one owner of paho);
never imports the daemon, and masks are decoded without pycocotools.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamedge.config import MqttSettings
from siamedge.errors import SiamedgeError
from siamedge.messaging.commander import Commander, Reply
from siamedge.messaging.masks import decode_mask
from siamedge.messaging.topics import CommandKind, Topics

CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 10.0
"""Longer than the daemon's reply takes under load, short enough that a script notices."""
POLL_S = 0.1

PointXY = tuple[float, float]


class ClientError(SiamedgeError):
    """The daemon refused a command (`reason` is its error reason) or the broker is unreachable."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


class ClientTimeoutError(ClientError):
    """No broker connection, or no reply from a daemon, within the time given."""


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


Event = Frame | Status


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


def parse_track(data: Mapping[str, Any], frame_hw: tuple[int, int]) -> Track:
    """A results message's track entry. Raises KeyError/TypeError/ValueError when malformed."""
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
    """A `track/results` message. Raises KeyError/TypeError/ValueError when malformed."""
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

    Raises ConfigError at construction for bad password or TLS settings.
    """

    def __init__(self, settings: MqttSettings) -> None:
        self._settings = settings
        self._link = Commander(settings)
        self._opened = False
        self._status: Status | None = None
        self._ignored = 0

    @property
    def topics(self) -> Topics:
        """The daemon's topics."""
        return self._link.topics

    @property
    def state(self) -> str:
        """`connecting`, `subscribed`, or why the broker connection is down."""
        return self._link.state

    @property
    def ever_connected(self) -> bool:
        """True once subscribed, even if the connection dropped since."""
        return self._link.ever_subscribed

    @property
    def status(self) -> Status | None:
        """The last status report read by poll()/results()/wait_online()."""
        return self._status

    @property
    def ignored(self) -> int:
        """Messages skipped as malformed (not JSON, or missing fields)."""
        return self._ignored

    def connect(self, timeout_s: float | None = CONNECT_TIMEOUT_S) -> Client:
        """Connect and subscribe; waits up to timeout_s (None: returns at once and connects in
        the background). Raises ClientTimeoutError naming the broker and why."""
        if not self._opened:
            self._opened = True
            self._link.start()
        if timeout_s is not None and not self._link.wait_subscribed(timeout_s):
            raise ClientTimeoutError(
                f"no connection to the MQTT broker {self._settings.host}:{self._settings.port} "
                f"within {timeout_s:g} s: {self.state}"
            )
        return self

    def close(self) -> None:
        """Disconnect (tracks keep running: stop them first if they should not)."""
        if self._opened:
            self._opened = False
            self._link.close()

    def __enter__(self) -> Client:
        return self.connect() if not self._opened else self

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

        normalized: the box in 0..1 of the frame. Raises ClientError with the daemon's reason
        when it refuses, ClientTimeoutError when no daemon replies within timeout_s.
        """
        command: dict[str, Any] = {"box": [float(value) for value in box]}
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
        self.connect(timeout_s=None)
        request_id, reply = self._link.request(kind, command, timeout_s)
        if reply is None:
            topic = self.topics.start if kind == "start" else self.topics.stop
            raise ClientTimeoutError(
                f"no reply to {kind} from siamedge within {timeout_s:g} s on "
                f"{self._settings.host}:{self._settings.port} (topic {topic!r}: is "
                f"the daemon running with this topic_prefix?); broker: {self.state}",
                request_id,
            )
        if not reply.accepted:
            raise ClientError(str(reply.message.get("reason", "rejected")), request_id)
        return reply

    # ---- results and status ---------------------------------------------------------------

    def poll(self, timeout_s: float = POLL_S) -> Event | None:
        """The next results frame or status report, waiting up to timeout_s; None if none came.

        Malformed messages are skipped (and counted in `ignored`).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            received = self._link.get(max(0.0, deadline - time.monotonic()))
            if received is None:
                return None
            event = self._parse(received.kind, received.payload)
            if event is not None:
                return event
            if time.monotonic() >= deadline:
                return None

    def _parse(self, kind: str, payload: bytes) -> Event | None:
        try:
            data = json.loads(payload)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            if kind == "status":
                self._status = Status(online=data.get("online") is True, report=data)
                return self._status
            return parse_results(data)
        except (KeyError, TypeError, ValueError):
            self._ignored += 1
            return None

    def results(self, idle_timeout_s: float | None = None) -> Iterator[Frame]:
        """Results frames as they arrive; ends when none came for idle_timeout_s (None: never)."""
        last = time.monotonic()
        while True:
            event = self.poll(POLL_S)
            if isinstance(event, Frame):
                last = time.monotonic()
                yield event
            elif idle_timeout_s is not None and time.monotonic() - last >= idle_timeout_s:
                return

    def wait_online(self, timeout_s: float, *, with_frames: bool = True) -> Status:
        """The first full online status report (that has processed a frame, with_frames).

        Raises ClientTimeoutError when none came within timeout_s.
        """
        self.connect(timeout_s=None)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            event = self.poll(min(POLL_S, max(0.0, deadline - time.monotonic())))
            if (
                isinstance(event, Status)
                and event.online
                and "model" in event.report  # the connection's first `online` has no report yet
                and (not with_frames or event.report.get("frame") is not None)
            ):
                return event
        raise ClientTimeoutError(
            f"siamedge did not come online within {timeout_s:g} s on "
            f"{self._settings.host}:{self._settings.port} (topic {self.topics.status!r}); "
            f"broker: {self.state}"
        )
