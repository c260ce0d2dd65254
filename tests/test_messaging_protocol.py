"""The JSON protocol: each malformed command gets its reason; messages have the documented shape."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from siamedge import __version__
from siamedge.errors import CommandError
from siamedge.messaging.protocol import (
    MAX_COMMAND_BYTES,
    PROTOCOL_VERSION,
    SourceMode,
    SourceStatus,
    StartCommand,
    StatusReport,
    StopCommand,
    ack_message,
    encode_ack,
    encode_error,
    encode_offline,
    encode_results,
    error_message,
    parse_command,
    parse_start,
    parse_stop,
    request_id_of,
    results_message,
    status_message,
)
from siamedge.tracking.result import MaskWindow, TrackResult, TrackState

FRAME_WH = (640, 480)


def start(payload: object, frame_wh: tuple[int, int] | None = FRAME_WH) -> StartCommand:
    return parse_start(json.dumps(payload).encode(), frame_wh)


def test_pixel_start_command() -> None:
    command = start({"box": [10, 20.5, 30, 40], "track_id": "cam-1.a_2", "request_id": "r1"})
    assert command == StartCommand((10.0, 20.5, 30.0, 40.0), "cam-1.a_2", "r1")


def test_optional_fields_may_be_null_or_absent() -> None:
    assert start({"box": [1, 2, 3, 4]}) == StartCommand((1.0, 2.0, 3.0, 4.0), None, None)
    nulls = {"box": [1, 2, 3, 4], "track_id": None, "normalized": None, "request_id": None}
    assert start(nulls) == StartCommand((1.0, 2.0, 3.0, 4.0), None, None)


def test_normalized_box_is_scaled_to_the_frame() -> None:
    command = start({"box": [0.25, 0.5, 0.125, 0.25], "normalized": True})
    assert command.box_xywh == (160.0, 240.0, 80.0, 120.0)


def test_box_partly_outside_the_frame_is_kept_as_sent() -> None:
    assert start({"box": [-20, 460, 50, 50]}).box_xywh == (-20.0, 460.0, 50.0, 50.0)


def test_pixel_box_before_the_first_frame_needs_only_its_size() -> None:
    assert start({"box": [5000, 5000, 10, 10]}, None).box_xywh == (5000.0, 5000.0, 10.0, 10.0)


def test_utf8_bom_is_accepted() -> None:
    payload = b"\xef\xbb\xbf" + json.dumps({"box": [1, 2, 3, 4]}).encode()
    assert parse_start(payload, FRAME_WH).box_xywh == (1.0, 2.0, 3.0, 4.0)


def test_payload_of_exactly_the_limit_is_accepted() -> None:
    body = json.dumps({"box": [1, 2, 3, 4]}).encode()
    payload = body + b" " * (MAX_COMMAND_BYTES - len(body))
    assert parse_start(payload, FRAME_WH).box_xywh == (1.0, 2.0, 3.0, 4.0)


RID = '"request_id": "req-7"'

MALFORMED_START: list[tuple[str, bytes, tuple[int, int] | None, str, str | None]] = [
    # (id, payload, frame size, expected reason part, expected request_id)
    ("too-large", b" " * (MAX_COMMAND_BYTES + 1), FRAME_WH, "limited to 65536 bytes", None),
    ("not-utf8", b'{"box": "\xff"}', FRAME_WH, "not UTF-8 text", None),
    ("empty", b"  ", FRAME_WH, "payload is empty", None),
    ("bad-json", b'{"box": [1, 2, 3, 4], ' + RID.encode() + b",}", FRAME_WH,
     "malformed JSON", "req-7"),
    ("nan", b'{"box": [NaN, 1, 2, 3], ' + RID.encode() + b"}", FRAME_WH,
     "NaN is not a valid JSON number", "req-7"),
    ("infinity", b'{"box": [1, -Infinity, 2, 3]}', FRAME_WH, "-Infinity is not a valid", None),
    ("overflow", b'{"box": [1e999, 1, 2, 3]}', FRAME_WH, "box[0] must be a finite number", None),
    ("huge-int", b'{"box": [' + b"9" * 400 + b", 1, 2, 3]}", FRAME_WH,
     "box[0] must be a finite number", None),
    ("deep", b"[" * 60_000, FRAME_WH, "malformed JSON", None),
    ("duplicate", b'{"box": [1, 2, 3, 4], "box": [1, 2, 3, 4]}', FRAME_WH,
     "field 'box' appears twice", None),
    ("array", b"[1, 2, 3, 4]", FRAME_WH, "must be a JSON object, got array", None),
    ("string", b'"box"', FRAME_WH, "must be a JSON object, got string", None),
    ("unknown", b'{"box": [1, 2, 3, 4], "bx": 1, "zz": 2, ' + RID.encode() + b"}", FRAME_WH,
     "unknown field(s) 'bx', 'zz' in a start command", "req-7"),
    ("missing-box", b'{"track_id": "a"}', FRAME_WH, "field 'box' is required", None),
    ("box-string", b'{"box": "1,2,3,4"}', FRAME_WH,
     "field 'box' must be an array of 4 numbers [x, y, w, h], got string", None),
    ("box-three", b'{"box": [1, 2, 3]}', FRAME_WH, "got an array of 3", None),
    ("box-bool", b'{"box": [1, true, 3, 4]}', FRAME_WH,
     "box[1] must be a number, got boolean", None),
    ("box-null", b'{"box": [1, 2, null, 4]}', FRAME_WH, "box[2] must be a number, got null", None),
    ("zero-width", b'{"box": [1, 2, 0, 4]}', FRAME_WH, "must be positive; got w=0, h=4", None),
    ("negative-height", b'{"box": [1, 2, 3, -4]}', None, "must be positive; got w=3, h=-4",
     None),
    ("sub-pixel", b'{"box": [300, 200, 0.5, 40]}', None, "box 0.5x40 px is smaller than 1x1 px",
     None),
    ("fractions-as-pixels", b'{"box": [0.5, 0.5, 0.2, 0.1]}', FRAME_WH,
     'box 0.2x0.1 px is smaller than 1x1 px; a box in fractions of the frame needs '
     '"normalized": true', None),
    ("normalized-sub-pixel", b'{"box": [0.5, 0.5, 0.001, 0.1], "normalized": true}', FRAME_WH,
     "box 0.64x48 px is smaller than 1x1 px", None),
    ("outside-right", b'{"box": [640, 10, 20, 20]}', FRAME_WH,
     "lies entirely outside the 640x480 frame", None),
    ("outside-top-left", b'{"box": [-30, -30, 30, 30]}', FRAME_WH,
     "lies entirely outside the 640x480 frame", None),
    ("larger-than-frame", b'{"box": [0, 0, 641, 10]}', FRAME_WH,
     "larger than the 640x480 frame", None),
    ("normalized-range", b'{"box": [0.1, 0.2, 1.5, 0.2], "normalized": true}', FRAME_WH,
     "a normalized box has values in [0, 1]; got box[2]=1.5", None),
    ("normalized-no-frame", b'{"box": [0.1, 0.2, 0.3, 0.2], "normalized": true, ' + RID.encode()
     + b"}", None, "no frame has arrived yet", "req-7"),
    ("normalized-type", b'{"box": [1, 2, 3, 4], "normalized": 1}', FRAME_WH,
     "field 'normalized' must be a boolean (true/false), got number", None),
    ("track-id-type", b'{"box": [1, 2, 3, 4], "track_id": 5}', FRAME_WH,
     "field 'track_id' must be a string, got number", None),
    ("track-id-chars", b'{"box": [1, 2, 3, 4], "track_id": "a/b"}', FRAME_WH,
     "field 'track_id' must be 1..64 ASCII letters, digits", None),
    ("track-id-empty", b'{"box": [1, 2, 3, 4], "track_id": ""}', FRAME_WH,
     "field 'track_id' must be 1..64", None),
    ("track-id-long", b'{"box": [1, 2, 3, 4], "track_id": "' + b"a" * 65 + b'"}', FRAME_WH,
     "field 'track_id' must be 1..64", None),
    ("track-id-dots", b'{"box": [1, 2, 3, 4], "track_id": ".."}', FRAME_WH,
     "starting with a letter or digit", None),
    ("track-id-unicode", '{"box": [1, 2, 3, 4], "track_id": "é"}'.encode(), FRAME_WH,
     "ASCII letters", None),
    ("request-id-type", b'{"box": [1, 2, 3, 4], "request_id": 7}', FRAME_WH,
     "field 'request_id' must be a string of 1..128 characters, got number", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "frame_wh", "reason", "request_id"),
    [case[1:] for case in MALFORMED_START],
    ids=[case[0] for case in MALFORMED_START],
)
def test_malformed_start_is_rejected_with_its_reason(
    payload: bytes, frame_wh: tuple[int, int] | None, reason: str, request_id: str | None
) -> None:
    with pytest.raises(CommandError) as caught:
        parse_start(payload, frame_wh)
    assert reason in caught.value.reason
    assert caught.value.request_id == request_id


def test_valid_request_id_comes_with_any_later_error() -> None:
    with pytest.raises(CommandError) as caught:
        start({"request_id": "abc", "box": [1, 2, 3, 4], "track_id": "bad id"})
    assert caught.value.request_id == "abc"


def test_stop_commands() -> None:
    assert parse_stop(b'{"track_id": "t1", "request_id": "r"}') == StopCommand("t1", "r")
    stop_all = parse_stop(b'{"all": true}')
    assert stop_all == StopCommand(None, None)
    assert stop_all.stops_all
    assert parse_stop(b'{"track_id": "t1", "all": false}') == StopCommand("t1", None)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{}", 'needs "track_id" or "all": true'),
        (b'{"all": false}', 'needs "track_id" or "all": true'),
        (b'{"track_id": "t1", "all": true}', "not both"),
        (b'{"all": "yes"}', "field 'all' must be a boolean"),
        (b'{"all": true, "box": [1, 2, 3, 4]}', "unknown field(s) 'box' in a stop command"),
        (b"null", "must be a JSON object, got null"),
    ],
)
def test_malformed_stop_is_rejected_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(CommandError, match=None) as caught:
        parse_stop(payload)
    assert reason in caught.value.reason


def test_parse_command_dispatches_on_kind() -> None:
    assert isinstance(parse_command("start", b'{"box": [1, 2, 3, 4]}', None), StartCommand)
    assert isinstance(parse_command("stop", b'{"all": true}', None), StopCommand)


def test_request_id_of_any_payload() -> None:
    assert request_id_of(b'{"all": true, "request_id": "x1"}') == "x1"
    assert request_id_of(b'{"oops": 1, "request_id": "x2"}') == "x2"
    assert request_id_of(b'{"request_id": "x3", ') == "x3"
    assert request_id_of(b"\xff") is None


def track(score: float | None = 0.87654, mask: MaskWindow | None = None) -> TrackResult:
    return TrackResult(
        center_xy=(100.123456, 50.0),
        size_wh=(np.float32(20.5), 10.004),  # numpy scalars come from the tracker
        bbox_xywh=(90.0, 45.0, 20.0, 10.0),
        rotated_box=((90.0, 45.0), (110.0, 45.0), (110.0, 55.0), (90.0, 55.0)),
        score=score,
        state=TrackState.TRACKING,
        mask=mask,
    )


def test_results_message_shape_and_rounding() -> None:
    mask = MaskWindow(np.ones((2, 2), np.bool_), (1, 1), (4, 4), np.zeros((0, 2), np.int32))
    message = results_message(
        12, 1000.5, (4, 4), [("a", track(mask=mask))], mask_encoding="rle", publish_time=1000.5205
    )
    assert message == {
        "protocol": PROTOCOL_VERSION,
        "frame": 12,
        "timestamp": 1000.5,
        "latency_ms": 20.5,
        "width": 4,
        "height": 4,
        "tracks": [
            {
                "track_id": "a",
                "state": "tracking",
                "center": [100.12, 50.0],
                "size": [20.5, 10.0],
                "bbox": [90.0, 45.0, 20.0, 10.0],
                "rotated_box": [[90.0, 45.0], [110.0, 45.0], [110.0, 55.0], [90.0, 55.0]],
                "score": 0.8765,
                # Column-major runs 5, 2, 2, 2, 5; from the fourth on minus the run two back.
                "mask": {"format": "rle", "size": [4, 4], "counts": "52203"},
            }
        ],
    }


def test_latency_runs_on_the_monotonic_clock_when_the_frame_has_it() -> None:
    # NTP stepped the wall clock by 400 days between capture and publishing: the results said
    # latency_ms 34560000115.6, and the metrics histogram's sum kept it for good.
    stepped_capture_time = time.time() - 400 * 86400.0
    message = results_message(
        3, stepped_capture_time, (4, 4), [], captured_mono=time.monotonic() - 0.05
    )
    assert 50.0 <= message["latency_ms"] < 50.0 + 60_000.0
    assert message["timestamp"] == round(stepped_capture_time, 3)


def test_encoded_results_are_compact_json_with_null_for_missing_numbers() -> None:
    payload = encode_results(
        0, 10.0, (4, 4), [("a", track(score=None)), ("b", track(score=math.nan))], publish_time=10
    )
    assert b" " not in payload
    decoded = json.loads(payload)
    assert [entry["score"] for entry in decoded["tracks"]] == [None, None]
    assert decoded["tracks"][0]["mask"] is None


def test_status_message_shape() -> None:
    report = StatusReport(
        model="builtin",
        provider="CPUExecutionProvider",
        source=SourceStatus(
            "camera /dev/video0",
            True,
            None,
            (1280, 720),
            mode=SourceMode(1280, 720, 30000 / 1001, "MJPG"),
        ),
        fps=29.971,
        dropped_frames=3,
        track_ids=("a", "b"),
        max_tracks=4,
        mask_encoding="rle",
        uptime_s=12.345,
        frame=41,
        frame_timestamp=1700000000.12345,
        tracks_dropped=2,
    )
    assert status_message(report, commands_dropped=1, now=5.0, results_dropped=7) == {
        "online": True,
        "protocol": PROTOCOL_VERSION,
        "version": __version__,
        "model": "builtin",
        "provider": "CPUExecutionProvider",
        "source": {
            "description": "camera /dev/video0",
            "open": True,
            "error": None,
            "state": None,
            "width": 1280,
            "height": 720,
            "mode": {"width": 1280, "height": 720, "fps": 29.97, "fourcc": "MJPG"},
        },
        "fps": 29.97,
        "dropped_frames": 3,
        "active_tracks": 2,
        "track_ids": ["a", "b"],
        "max_tracks": 4,
        "mask_encoding": "rle",
        "commands_dropped": 1,
        "results_dropped": 7,
        "tracks_dropped": 2,
        "uptime_s": 12.3,
        "frame": 41,
        "frame_timestamp": 1700000000.123,
        "timestamp": 5.0,
    }


def test_offline_error_and_ack_messages() -> None:
    assert json.loads(encode_offline("shutdown")) == {
        "online": False,
        "version": __version__,
        "reason": "shutdown",
    }
    error = CommandError("field 'box' is required", "r9")
    assert error_message(error, "p/track/start", b"{}") == {
        "reason": "field 'box' is required",
        "request_id": "r9",
        "topic": "p/track/start",
        "payload_excerpt": "{}",
    }
    long_payload = b"\xff" + b"x" * 300
    excerpt = json.loads(encode_error(error, "t", long_payload))["payload_excerpt"]
    assert excerpt == "\ufffd" + "x" * 199 + "..."
    assert ack_message("stop", None, "r1") == {"ack": "stop", "track_id": None, "request_id": "r1"}
    assert json.loads(encode_ack("start", "t1", None)) == {
        "ack": "start",
        "track_id": "t1",
        "request_id": None,
    }
