"""The JSON documents of the HTTP API: status, current tracks, acks and errors.

Pure functions of values (reports, settings); never reads a socket or touches the service.
"""

from __future__ import annotations

import time
from typing import get_args

from siamedge.config import MaskEncoding
from siamedge.errors import CommandError
from siamedge.frontend import FrameReport, StatusSnapshot
from siamedge.messaging.masks import JsonObject
from siamedge.messaging.protocol import (
    TIMESTAMP_DECIMALS,
    ack_message,
    dumps,
    error_message,
    results_message,
    status_message,
)
from siamedge.messaging.topics import CommandKind
from siamedge.overlay import track_color
from siamedge.web.preview import ViewStats

HTTP_TOPIC = "http"
"""The `topic` of an error about a command that came over HTTP."""
MASK_ENCODINGS: tuple[str, ...] = get_args(MaskEncoding)
_AGE_DECIMALS = 2


def css_color(bgr: tuple[int, int, int]) -> str:
    """`#rrggbb` of an overlay colour (BGR), so the page's swatch matches the drawing."""
    blue, green, red = bgr
    return f"#{red:02x}{green:02x}{blue:02x}"


def status_document(snapshot: StatusSnapshot, view: ViewStats) -> JsonObject:
    """The status topic's fields with the counters as of now (`commands`, `results_dropped`;
    not `commands_dropped`, kept on MQTT for older readers), plus `broker` {connected, reason,
    since}, `latency_ms` of the last published frame and `view` {fps, frame, frame_age_s,
    viewers} measured live (the status report is periodic)."""
    report, broker, counters = snapshot.status, snapshot.broker, snapshot.counters
    document: JsonObject = {"online": True, "starting": True} if report is None else {}
    if report is not None:
        document = status_message(
            report, commands=counters.commands, results_dropped=counters.results_dropped
        )
        document.pop("commands_dropped", None)
    document["broker"] = {
        "connected": broker.connected,
        "reason": broker.reason,
        "since": round(broker.since, TIMESTAMP_DECIMALS),
    }
    document["latency_ms"] = None if view.latency_ms is None else round(view.latency_ms, 1)
    document["view"] = {
        "fps": view.fps,
        "frame": view.frame_index,
        "frame_age_s": None if view.frame_age_s is None else round(view.frame_age_s, _AGE_DECIMALS),
        "viewers": view.viewers,
    }
    return document


def tracks_document(report: FrameReport | None, mask_encoding: MaskEncoding) -> JsonObject:
    """The last processed frame's tracks in the results message's format, each with its
    overlay `slot` and `color`; `{"frame": null, "tracks": []}` before the first frame."""
    if report is None:
        return {"frame": None, "timestamp": None, "width": None, "height": None, "tracks": []}
    frame = report.frame
    document = results_message(
        frame.index,
        frame.timestamp,
        frame.size_wh,
        ((track_id, result) for track_id, result, _ in report.tracks),
        mask_encoding=mask_encoding,
        publish_time=time.time(),
    )
    # The results message's latency is capture -> now here; the published one is more useful.
    document["latency_ms"] = None if report.latency_ms is None else round(report.latency_ms, 1)
    for entry, (_, result, slot) in zip(document["tracks"], report.tracks, strict=True):
        entry["slot"] = slot
        entry["color"] = css_color(track_color(slot, result.state))
    return document


def parse_mask_encoding(value: str | None) -> MaskEncoding:
    """The `?mask=` query value (default `none`); CommandError naming the allowed values."""
    if value is None:
        return "none"
    for encoding in get_args(MaskEncoding):
        if value == encoding:
            typed: MaskEncoding = encoding
            return typed
    raise CommandError(f"mask must be one of {', '.join(MASK_ENCODINGS)}; got {value!r}")


def ack_document(kind: CommandKind, track_id: str | None, request_id: str | None) -> JsonObject:
    """`{"ack", "track_id", "request_id"}`, as on the status topic."""
    return ack_message(kind, track_id, request_id)


def error_document(error: CommandError, payload: bytes = b"") -> JsonObject:
    """`{"reason", "request_id", "topic": "http", "payload_excerpt"}`, as on the errors topic."""
    return error_message(error, HTTP_TOPIC, payload)


def reason_document(reason: str) -> JsonObject:
    """`{"reason": ...}` for HTTP-level errors that are not about a command."""
    return {"reason": reason}


def to_bytes(document: JsonObject) -> bytes:
    """Compact UTF-8 JSON."""
    return dumps(document)
