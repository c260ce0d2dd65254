"""The JSON protocol: track commands in (validated into frozen values), results/status/errors out.

Pure functions on bytes and values, shared by MQTT and HTTP; never imports paho or touches I/O.

Commands (payload: a UTF-8 JSON object of at most 64 KiB):
  start: {"box": [x, y, w, h], "track_id": "cam-1.a_2", "normalized": false, "request_id": "r1"}
  stop:  {"track_id": "cam-1.a_2"} or {"all": true}, each with an optional "request_id"
Both take an optional "sent_at" (unix seconds, when the sender sent it): the service rejects a
command older than its limit as stale. Optional fields may be omitted or null. A box partly
outside the frame is kept as sent: SiamMask pads its crops with the mean colour, and clipping
would move the centre of a target that is entering the view; a box with no pixel inside the
frame, or larger than the frame, is rejected.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from siamedge import __version__
from siamedge.config import MaskEncoding
from siamedge.errors import CommandError
from siamedge.messaging.masks import JsonObject, encode_mask
from siamedge.messaging.topics import CommandKind
from siamedge.tracking.geometry import box_problem
from siamedge.tracking.result import BoxXYWH, TrackResult

PROTOCOL_VERSION = 1
"""The `protocol` field of status and results messages: raised when a field is removed, renamed
or changes meaning; fields added within a version are compatible (readers ignore unknown ones)."""

MAX_COMMAND_BYTES = 64 * 1024
TRACK_ID_MAX_CHARS = 64
REQUEST_ID_MAX_CHARS = 128
EXCERPT_BYTES = 200
"""How much of a rejected payload an error message quotes."""

PIXEL_DECIMALS = 2
SCORE_DECIMALS = 4
TIMESTAMP_DECIMALS = 3
SECONDS_FIXED_BELOW = 1e12
LATENCY_DECIMALS = 1
RATE_DECIMALS = 3
"""A negotiated camera rate such as 29.97 (30000/1001) fps."""
MS_PER_S = 1000.0

START_FIELDS = ("box", "track_id", "normalized", "request_id", "sent_at")
STOP_FIELDS = ("track_id", "all", "request_id", "sent_at")
_MAX_NAMED_FIELDS = 5
_MAX_QUOTED_CHARS = 40

_TRACK_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{TRACK_ID_MAX_CHARS - 1}}}")
_TRACK_ID_RULE = (
    f"1..{TRACK_ID_MAX_CHARS} ASCII letters, digits, '-', '_' or '.', "
    "starting with a letter or digit"
)
_REQUEST_ID_IN_TEXT = re.compile(
    rf'"request_id"\s*:\s*"([^"\\\x00-\x1f]{{1,{REQUEST_ID_MAX_CHARS}}})"'
)

OFFLINE_SHUTDOWN = "shutdown"
OFFLINE_CONNECTION_LOST = "connection lost"


@dataclass(frozen=True)
class StartCommand:
    """Start (or restart) tracking the target in `box_xywh` (full-frame pixels).

    track_id: None lets the service choose one; request_id: echoed in the ack or error.
    """

    box_xywh: BoxXYWH
    track_id: str | None
    request_id: str | None
    sent_at: float | None = None
    """Unix seconds when the sender sent it, None when it did not say."""


@dataclass(frozen=True)
class StopCommand:
    """Stop one track, or every track when `track_id` is None."""

    track_id: str | None
    request_id: str | None
    sent_at: float | None = None
    """Unix seconds when the sender sent it, None when it did not say."""

    @property
    def stops_all(self) -> bool:
        """True for `{"all": true}`."""
        return self.track_id is None


class StaleCommandError(CommandError):
    """A command whose `sent_at` is too old, or too far in the future, to be carried out."""


class DuplicateCommandError(CommandError):
    """A command whose request_id was taken already (a QoS 1 redelivery): not run again."""


class DroppedCommandError(CommandError):
    """A command the service never got to: the queue overflowed, or its message expired."""

    def __init__(self, reason: str, request_id: str | None, *, expired: bool = False) -> None:
        super().__init__(reason, request_id)
        self.expired = expired


def expired_error(waited_s: float, waiting_for: str, request_id: str | None) -> DroppedCommandError:
    """A command whose MQTT 5 message expiry ran out while it waited `waited_s` for
    `waiting_for` (the service, a frame to start on)."""
    return DroppedCommandError(
        f"expired: its MQTT message expiry interval ran out while it waited {waited_s:.1f} s "
        f"for {waiting_for}",
        request_id,
        expired=True,
    )


def shutting_down_error(request_id: str | None) -> CommandError:
    """A command taken from the broker but not carried out when the service stops: the broker
    has its acknowledgement and will not deliver it again after the restart."""
    return CommandError(
        "shutting down: not carried out (the service stopped before it could); send it again "
        "once the service is back online",
        request_id,
    )


class _RejectedError(Exception):
    """Raised from inside json.loads hooks; carries the reason."""


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _quote(text: str) -> str:
    if len(text) > _MAX_QUOTED_CHARS:
        text = text[:_MAX_QUOTED_CHARS] + "..."
    return repr(text)


def _reject_constant(name: str) -> NoReturn:
    raise _RejectedError(f"{name} is not a valid JSON number; numbers must be finite")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RejectedError(f"field {_quote(key)} appears twice")
            seen.add(key)
    return result


def _encodable(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (a JSON string may hold lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _guess_request_id(text: str) -> str | None:
    """A request_id found in a payload that is not valid JSON, so even that error carries it."""
    match = _REQUEST_ID_IN_TEXT.search(text)
    return match.group(1) if match else None


def check_command_length(length: int) -> None:
    """CommandError when a payload of `length` bytes is over MAX_COMMAND_BYTES (HTTP checks the
    Content-Length with it before reading the body)."""
    if length > MAX_COMMAND_BYTES:
        raise CommandError(
            f"payload is {length} bytes; commands are limited to {MAX_COMMAND_BYTES} bytes"
        )


def check_command_size(payload: bytes) -> None:
    """CommandError when `payload` is over MAX_COMMAND_BYTES (checked before anything else)."""
    check_command_length(len(payload))


def _load_object(payload: bytes) -> dict[str, Any]:
    check_command_size(payload)
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"payload is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    if not text.strip():
        raise CommandError("payload is empty; a command is a JSON object")
    try:
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except _RejectedError as exc:
        raise CommandError(str(exc), _guess_request_id(text)) from None
    except RecursionError:
        raise CommandError("malformed JSON: nested too deeply", _guess_request_id(text)) from None
    except ValueError as exc:
        raise CommandError(f"malformed JSON: {exc}", _guess_request_id(text)) from None
    if not isinstance(data, dict):
        raise CommandError(f"a command must be a JSON object, got {_json_type(data)}")
    return data


def _request_id(data: dict[str, Any]) -> str | None:
    value = data.get("request_id")
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= REQUEST_ID_MAX_CHARS:
        got = f"{len(value)} characters" if isinstance(value, str) else _json_type(value)
        raise CommandError(
            f"field 'request_id' must be a string of 1..{REQUEST_ID_MAX_CHARS} characters, "
            f"got {got}"
        )
    if not _encodable(value):
        # JSON may escape a lone surrogate (\ud800) that no UTF-8 reply can carry back.
        raise CommandError(
            f"field 'request_id' must be Unicode text; got {_quote(value)}, which holds a lone "
            "surrogate (an unpaired \\uD800-\\uDFFF escape)"
        )
    return value


def _check_fields(
    data: dict[str, Any], allowed: tuple[str, ...], kind: str, request_id: str | None
) -> None:
    unknown = sorted(key for key in data if key not in allowed)
    if unknown:
        named = ", ".join(_quote(key) for key in unknown[:_MAX_NAMED_FIELDS])
        if len(unknown) > _MAX_NAMED_FIELDS:
            named += f" and {len(unknown) - _MAX_NAMED_FIELDS} more"
        raise CommandError(
            f"unknown field(s) {named} in a {kind} command; allowed: {', '.join(allowed)}",
            request_id,
        )


def _number(value: object, name: str, request_id: str | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"{name} must be a number, got {_json_type(value)}", request_id)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise CommandError(f"{name} must be a finite number, got {_quote(str(value))}", request_id)
    return number


def _optional_bool(data: dict[str, Any], name: str, request_id: str | None) -> bool:
    value = data.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise CommandError(
            f"field {name!r} must be a boolean (true/false), got {_json_type(value)}", request_id
        )
    return value


def _optional_track_id(data: dict[str, Any], request_id: str | None) -> str | None:
    value = data.get("track_id")
    if value is None:
        return None
    if not isinstance(value, str):
        raise CommandError(
            f"field 'track_id' must be a string, got {_json_type(value)}", request_id
        )
    if not _TRACK_ID.fullmatch(value):
        raise CommandError(
            f"field 'track_id' must be {_TRACK_ID_RULE}; got {_quote(value)}", request_id
        )
    return value


def _box(value: object, request_id: str | None) -> BoxXYWH:
    if not isinstance(value, list) or len(value) != 4:
        got = f"an array of {len(value)}" if isinstance(value, list) else _json_type(value)
        raise CommandError(
            f"field 'box' must be an array of 4 numbers [x, y, w, h], got {got}", request_id
        )
    x, y, w, h = (_number(item, f"box[{index}]", request_id) for index, item in enumerate(value))
    return x, y, w, h


def _pixel_box(
    box: BoxXYWH, normalized: bool, frame_wh: tuple[int, int] | None, request_id: str | None
) -> BoxXYWH:
    if normalized:
        for index, item in enumerate(box):
            if not 0.0 <= item <= 1.0:
                raise CommandError(
                    f"a normalized box has values in [0, 1]; got box[{index}]={item:g}",
                    request_id,
                )
        if frame_wh is None:
            raise CommandError(
                "a normalized box needs the frame size and no frame has arrived yet; "
                "send the box in pixels or retry once the camera delivers frames",
                request_id,
            )
        (x, y, w, h), (width, height) = box, frame_wh
        box = (x * width, y * height, w * width, h * height)
    problem = box_problem(box, frame_wh)
    if problem is None:
        return box
    if not normalized and all(0.0 <= value <= 1.0 for value in box):
        problem += '; a box in fractions of the frame needs "normalized": true'
    raise CommandError(problem, request_id)


def _optional_sent_at(data: dict[str, Any], request_id: str | None) -> float | None:
    value = data.get("sent_at")
    if value is None:
        return None
    sent_at = _number(value, "field 'sent_at' (unix seconds)", request_id)
    if sent_at <= 0:
        raise CommandError(
            f"field 'sent_at' must be unix seconds (positive), got {sent_at:g}", request_id
        )
    return sent_at


CLOCKS_DISAGREE_S = 3600.0
"""A command older than this (by sent_at) more likely shows two clocks that disagree than a
command that waited: the reason then names this daemon's clock too."""


def check_command_age(
    sent_at: float | None,
    request_id: str | None,
    *,
    now: float,
    max_age_s: float | None,
    clock_skew_s: float,
) -> None:
    """StaleCommandError naming the age when `sent_at` is more than `max_age_s` before `now`
    or more than `clock_skew_s` after it; nothing when either is None (no limit, not said)."""
    if sent_at is None or max_age_s is None:
        return
    age_s = now - sent_at
    # Either clock may be the wrong one: a board without a battery clock boots in the past
    # until NTP steps it, and then refuses every command that says when it was sent.
    clocks = f"check the sender's clock, and this daemon's: it says {_utc(now)}"
    if age_s > max_age_s:
        raise StaleCommandError(
            f"stale: sent {_seconds(age_s, 1)} s ago (sent_at {_seconds(sent_at, 3)}); commands "
            f"older than {max_age_s:g} s are not carried out"
            + (f" ({clocks})" if age_s > CLOCKS_DISAGREE_S else ""),
            request_id,
        )
    if -age_s > clock_skew_s:
        raise StaleCommandError(
            f"sent_at {_seconds(sent_at, 3)} is {_seconds(-age_s, 1)} s in the future (more "
            f"than the {clock_skew_s:g} s allowed for clock skew): {clocks}",
            request_id,
        )


def _utc(unix_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix_s))


def _seconds(value: float, decimals: int) -> str:
    """A time in seconds for a reason: fixed decimals, or in exponent form when it is absurdly
    large (a sent_at of 1e308 would otherwise print 309 digits)."""
    return f"{value:.{decimals}f}" if abs(value) < SECONDS_FIXED_BELOW else f"{value:.4g}"


def parse_start(payload: bytes, frame_wh: tuple[int, int] | None) -> StartCommand:
    """Validate a start command; frame_wh: the current frame size, None before the first frame.

    Raises CommandError(reason, request_id) naming the field and the problem.
    """
    data = _load_object(payload)
    request_id = _request_id(data)
    _check_fields(data, START_FIELDS, "start", request_id)
    if "box" not in data:
        raise CommandError("field 'box' is required: [x, y, w, h]", request_id)
    box = _box(data["box"], request_id)
    normalized = _optional_bool(data, "normalized", request_id)
    track_id = _optional_track_id(data, request_id)
    sent_at = _optional_sent_at(data, request_id)
    return StartCommand(
        _pixel_box(box, normalized, frame_wh, request_id), track_id, request_id, sent_at
    )


def parse_stop(payload: bytes) -> StopCommand:
    """Validate a stop command (`track_id` or `"all": true`); raises CommandError."""
    data = _load_object(payload)
    request_id = _request_id(data)
    _check_fields(data, STOP_FIELDS, "stop", request_id)
    track_id = _optional_track_id(data, request_id)
    stop_all = _optional_bool(data, "all", request_id)
    if track_id is None and not stop_all:
        raise CommandError('a stop command needs "track_id" or "all": true', request_id)
    if track_id is not None and stop_all:
        raise CommandError('a stop command takes "track_id" or "all": true, not both', request_id)
    return StopCommand(track_id, request_id, _optional_sent_at(data, request_id))


def parse_command(
    kind: CommandKind, payload: bytes, frame_wh: tuple[int, int] | None
) -> StartCommand | StopCommand:
    """parse_start or parse_stop by command kind."""
    return parse_start(payload, frame_wh) if kind == "start" else parse_stop(payload)


def request_id_of(payload: bytes) -> str | None:
    """Best-effort request_id of any payload, valid command or not (for errors about it)."""
    try:
        return _request_id(_load_object(payload))
    except CommandError as exc:
        return exc.request_id


# ---- outgoing messages ---------------------------------------------------------------------


def dumps(message: JsonObject) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are a bug here, so they raise ValueError."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def _px(value: float) -> float | None:
    number = float(value)
    return round(number, PIXEL_DECIMALS) if math.isfinite(number) else None


def track_message(track_id: str, result: TrackResult, mask_encoding: MaskEncoding) -> JsonObject:
    """One entry of `tracks` in a results message (non-finite numbers become null)."""
    cx, cy = result.center_xy
    w, h = result.size_wh
    score = None if result.score is None else float(result.score)
    return {
        "track_id": track_id,
        "state": result.state.value,
        "center": [_px(cx), _px(cy)],
        "size": [_px(w), _px(h)],
        "bbox": [_px(value) for value in result.bbox_xywh],
        "rotated_box": [[_px(x), _px(y)] for x, y in result.rotated_box],
        "score": round(score, SCORE_DECIMALS)
        if score is not None and math.isfinite(score)
        else None,
        "mask": encode_mask(result.mask, mask_encoding),
    }


def results_message(
    frame_index: int,
    capture_time: float,
    frame_wh: tuple[int, int],
    tracks: Iterable[tuple[str, TrackResult]],
    *,
    mask_encoding: MaskEncoding = "rle",
    publish_time: float | None = None,
    captured_mono: float | None = None,
) -> JsonObject:
    """The per-frame message of `track/results`.

    capture_time: unix seconds of the frame; latency_ms runs from it to `publish_time`
    (default: now, taken after the masks are encoded, right before the message goes out), or,
    given captured_mono (the frame's time.monotonic()), from that to time.monotonic() now: a
    wall clock stepped between the two would make it years long, or negative.
    """
    entries = [track_message(track_id, result, mask_encoding) for track_id, result in tracks]
    if captured_mono is not None:
        latency_s = time.monotonic() - captured_mono
    else:
        latency_s = (time.time() if publish_time is None else publish_time) - capture_time
    width, height = frame_wh
    return {
        "protocol": PROTOCOL_VERSION,
        "frame": int(frame_index),
        "timestamp": round(float(capture_time), TIMESTAMP_DECIMALS),
        "latency_ms": round(latency_s * MS_PER_S, LATENCY_DECIMALS),
        "width": int(width),
        "height": int(height),
        "tracks": entries,
    }


def encode_results(
    frame_index: int,
    capture_time: float,
    frame_wh: tuple[int, int],
    tracks: Iterable[tuple[str, TrackResult]],
    *,
    mask_encoding: MaskEncoding = "rle",
    publish_time: float | None = None,
    captured_mono: float | None = None,
) -> bytes:
    """results_message as a JSON payload."""
    return dumps(
        results_message(
            frame_index,
            capture_time,
            frame_wh,
            tracks,
            mask_encoding=mask_encoding,
            publish_time=publish_time,
            captured_mono=captured_mono,
        )
    )


@dataclass(frozen=True)
class SourceMode:
    """What a camera delivers after negotiating with its driver, which may differ from what the
    configuration asked: size, rate, and FOURCC (`MJPG`, `YUYV`; empty when none is reported)."""

    width: int
    height: int
    fps: float
    fourcc: str


@dataclass(frozen=True)
class SourceStatus:
    """The frame source as the status message shows it.

    description: `camera /dev/video0`; open: frames are arriving; error: the last failure while
    it is being reopened, or the stall; frame_wh: the size of the last frame, None before the
    first; state: the capture state (`starting`, `streaming`, `stalled`, `retrying`, `stopped`);
    mode: what a camera delivers (negotiated at its last opening), None for other sources.
    """

    description: str
    open: bool
    error: str | None = None
    frame_wh: tuple[int, int] | None = None
    state: str | None = None
    mode: SourceMode | None = None


@dataclass(frozen=True)
class StatusReport:
    """What the service reports on the retained status topic (see `status_message`).

    model: model name or path; provider: the onnxruntime execution provider in use;
    fps: frames processed per second lately; dropped_frames: frames the capture thread
    replaced before the tracker took them, since start; track_ids: active tracks.
    """

    model: str
    provider: str
    source: SourceStatus
    fps: float
    dropped_frames: int
    track_ids: tuple[str, ...]
    max_tracks: int
    mask_encoding: MaskEncoding
    uptime_s: float
    version: str = __version__
    frame: int | None = None
    """Number of the last processed frame (None before the first)."""
    frame_timestamp: float | None = None
    """Its capture time, unix seconds."""
    tracks_dropped: int = 0
    """Tracks the service ended by itself since start (the model failed on them, the frame
    size changed); each was said on the errors topic."""


def status_message(
    report: StatusReport,
    commands_dropped: int = 0,
    now: float | None = None,
    commands: Mapping[str, int] | None = None,
    results_dropped: int = 0,
) -> JsonObject:
    """The retained `online` status.

    `{"online": true, "protocol", "version", "model", "provider", "source": {"description", "open",
    "error", "state", "width", "height", "mode": {"width", "height", "fps", "fourcc"} | null},
    "fps", "dropped_frames", "active_tracks": n, "track_ids",
    "max_tracks", "mask_encoding", "commands_dropped", "results_dropped", "tracks_dropped",
    "uptime_s", "frame",
    "frame_timestamp", "timestamp"}`, plus `"commands": {outcome: count}` when `commands` is
    given. results_dropped: results never sent since start (the broker was unreachable or did not
    take them; dropped oldest first).
    """
    width, height = report.source.frame_wh if report.source.frame_wh else (None, None)
    return {
        "online": True,
        "protocol": PROTOCOL_VERSION,
        "version": report.version,
        "model": report.model,
        "provider": report.provider,
        "source": {
            "description": report.source.description,
            "open": report.source.open,
            "error": report.source.error,
            "state": report.source.state,
            "width": width,
            "height": height,
            "mode": _mode_message(report.source.mode),
        },
        "fps": round(float(report.fps), PIXEL_DECIMALS),
        "dropped_frames": int(report.dropped_frames),
        "active_tracks": len(report.track_ids),
        "track_ids": list(report.track_ids),
        "max_tracks": int(report.max_tracks),
        "mask_encoding": report.mask_encoding,
        "commands_dropped": int(commands_dropped),
        "results_dropped": int(results_dropped),
        "tracks_dropped": int(report.tracks_dropped),
        "uptime_s": round(float(report.uptime_s), LATENCY_DECIMALS),
        "frame": report.frame,
        "frame_timestamp": None
        if report.frame_timestamp is None
        else round(report.frame_timestamp, TIMESTAMP_DECIMALS),
        "timestamp": round(time.time() if now is None else now, TIMESTAMP_DECIMALS),
    } | ({} if commands is None else {"commands": {k: int(v) for k, v in commands.items()}})


def _mode_message(mode: SourceMode | None) -> JsonObject | None:
    if mode is None:
        return None
    return {
        "width": int(mode.width),
        "height": int(mode.height),
        "fps": round(float(mode.fps), RATE_DECIMALS),
        "fourcc": mode.fourcc,
    }


def encode_status(
    report: StatusReport,
    commands_dropped: int = 0,
    now: float | None = None,
    commands: Mapping[str, int] | None = None,
    results_dropped: int = 0,
) -> bytes:
    """status_message as a JSON payload."""
    return dumps(status_message(report, commands_dropped, now, commands, results_dropped))


def encode_online(version: str = __version__) -> bytes:
    """The minimal `online` status sent on connect before the service's first report."""
    return dumps({"online": True, "version": version})


def encode_offline(reason: str, version: str = __version__) -> bytes:
    """`{"online": false, "version", "reason"}`: the last will (`connection lost`) and the
    message of a clean shutdown (`shutdown`)."""
    return dumps({"online": False, "version": version, "reason": reason})


def _excerpt(payload: bytes) -> str:
    text = payload[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    return text + "..." if len(payload) > EXCERPT_BYTES else text


def error_message(error: CommandError, topic: str, payload: bytes) -> JsonObject:
    """`{"reason", "request_id", "topic", "payload_excerpt"}` for a rejected command.

    topic: where the command came from (`http` or the MQTT topic); the excerpt is the first
    200 bytes, undecodable bytes replaced.
    """
    return {
        "reason": error.reason,
        "request_id": error.request_id,
        "topic": topic,
        "payload_excerpt": _excerpt(payload),
    }


def encode_error(error: CommandError, topic: str, payload: bytes) -> bytes:
    """error_message as a JSON payload."""
    return dumps(error_message(error, topic, payload))


def error_summary_message(count: int, replies_per_s: float) -> JsonObject:
    """The error message standing for `count` commands whose own error replies were held back
    by the rate limit: `{"reason": "K more commands dropped ...", "request_id": null,
    "topic": null, "payload_excerpt": null, "count": K}`."""
    return {
        "reason": (
            f"{count} more commands dropped or rejected without a reply of their own "
            f"(error replies are limited to {replies_per_s:g} per second; the counts by "
            "reason are in the status)"
        ),
        "request_id": None,
        "topic": None,
        "payload_excerpt": None,
        "count": int(count),
    }


def encode_error_summary(count: int, replies_per_s: float) -> bytes:
    """error_summary_message as a JSON payload."""
    return dumps(error_summary_message(count, replies_per_s))


def track_dropped_message(track_id: str, reason: str) -> JsonObject:
    """A track the service ended by itself (the frame size changed, the model failed), on the
    errors topic: `{"reason", "track_id", "request_id": null, "topic": null,
    "payload_excerpt": null}` (the command error's fields, so one reader serves both)."""
    return {
        "reason": f"track {track_id!r} dropped: {reason}",
        "track_id": track_id,
        "request_id": None,
        "topic": None,
        "payload_excerpt": None,
    }


def encode_track_dropped(track_id: str, reason: str) -> bytes:
    """track_dropped_message as a JSON payload."""
    return dumps(track_dropped_message(track_id, reason))


def ack_message(kind: CommandKind, track_id: str | None, request_id: str | None) -> JsonObject:
    """`{"ack": "start"|"stop", "track_id", "request_id"}`; track_id null: stop of all tracks."""
    return {"ack": kind, "track_id": track_id, "request_id": request_id}


def encode_ack(kind: CommandKind, track_id: str | None, request_id: str | None) -> bytes:
    """ack_message as a JSON payload."""
    return dumps(ack_message(kind, track_id, request_id))
