"""The start/stop schemas and the daemon's parser agree: what the schemas accept, the parser
accepts (frame-dependent checks aside), and the documented rejection cases fail both."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siamedge.errors import CommandError
from siamedge.messaging.protocol import parse_start, parse_stop
from siamedge.schema import load_schema

CHECKS = settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
START = jsonschema.Draft202012Validator(load_schema("start"))
STOP = jsonschema.Draft202012Validator(load_schema("stop"))
FRAME_WH = (640, 480)

TRACK_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
REQUEST_IDS = st.text(min_size=1, max_size=128)
SENT_AT = st.floats(min_value=1e-6, max_value=4e9)
COORDINATE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.integers(
    -(10**6), 10**6
)
EXTENT = st.floats(min_value=1.0, max_value=1e6) | st.integers(1, 10**6)
FRACTION = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def optional(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """Each field absent, null or drawn."""
    result: dict[str, Any] = {}
    for name, strategy in fields.items():
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice != "absent":
            result[name] = None if choice == "null" else draw(strategy)
    return result


@st.composite
def start_commands(draw: st.DrawFn) -> dict[str, Any]:
    normalized = draw(st.sampled_from([None, False, True, "absent"]))
    if normalized is True:
        box = draw(st.lists(FRACTION, min_size=2, max_size=2)) + draw(
            st.lists(st.floats(min_value=1e-3, max_value=1.0), min_size=2, max_size=2)
        )
    else:
        box = [draw(COORDINATE), draw(COORDINATE), draw(EXTENT), draw(EXTENT)]
    command = {"box": box} | draw(
        optional({"track_id": TRACK_IDS, "request_id": REQUEST_IDS, "sent_at": SENT_AT})
    )
    if normalized != "absent":
        command["normalized"] = normalized
    return command


@st.composite
def stop_commands(draw: st.DrawFn) -> dict[str, Any]:
    extra = draw(optional({"request_id": REQUEST_IDS, "sent_at": SENT_AT}))
    if draw(st.booleans()):
        target = {"track_id": draw(TRACK_IDS)} | draw(optional({"all": st.just(False)}))
    else:
        target = {"all": True} | draw(optional({"track_id": st.none()}))
    return target | extra


def payload(command: object) -> bytes:
    return json.dumps(command).encode("utf-8")


@CHECKS
@given(start_commands())
def test_a_start_the_schema_accepts_is_accepted_by_the_parser(command: dict[str, Any]) -> None:
    START.validate(command)
    if command.get("normalized") is True:
        x, y, w, h = command["box"]
        # Frame-dependent (documented in the schema): a box must have a pixel inside the frame
        # and be at least 1x1 px of it.
        width, height = FRAME_WH
        if x < 1 and y < 1 and w * width >= 1 and h * height >= 1:
            parse_start(payload(command), FRAME_WH)
        with pytest.raises(CommandError, match="needs the frame size"):
            parse_start(payload(command), None)
    else:
        # Before the first frame a pixel box is taken as sent.
        parsed = parse_start(payload(command), None)
        assert parsed.box_xywh == tuple(float(v) for v in command["box"])
        assert parsed.track_id == command.get("track_id")


@CHECKS
@given(stop_commands())
def test_a_stop_the_schema_accepts_is_accepted_by_the_parser(command: dict[str, Any]) -> None:
    STOP.validate(command)
    parsed = parse_stop(payload(command))
    assert parsed.track_id == command.get("track_id")
    assert parsed.stops_all == (command.get("all") is True)


HUGE = "1" + "0" * 400
"""An integer JSON allows and no float holds."""

START_REJECTED: list[tuple[str, str]] = [
    ("missing box", "{}"),
    ("box of 3", '{"box": [1, 2, 3]}'),
    ("box of 5", '{"box": [1, 2, 3, 4, 5]}'),
    ("box not an array", '{"box": "1,2,3,4"}'),
    ("box null", '{"box": null}'),
    ("box with a string", '{"box": [1, 2, "3", 4]}'),
    ("box with a boolean", '{"box": [true, 2, 3, 4]}'),
    ("box with null", '{"box": [1, null, 3, 4]}'),
    ("zero width", '{"box": [1, 2, 0, 4]}'),
    ("negative height", '{"box": [1, 2, 3, -4]}'),
    ("under a pixel", '{"box": [1, 2, 0.5, 4]}'),
    ("fractions without normalized", '{"box": [0.1, 0.2, 0.3, 0.4], "normalized": false}'),
    ("number beyond a float", f'{{"box": [{HUGE}, 2, 3, 4]}}'),
    ("unknown field", '{"box": [1, 2, 3, 4], "colour": "red"}'),
    ("track_id not a string", '{"box": [1, 2, 3, 4], "track_id": 7}'),
    ("track_id empty", '{"box": [1, 2, 3, 4], "track_id": ""}'),
    ("track_id with a space", '{"box": [1, 2, 3, 4], "track_id": "a b"}'),
    ("track_id starting with a dot", '{"box": [1, 2, 3, 4], "track_id": ".a"}'),
    ("track_id of 65", '{"box": [1, 2, 3, 4], "track_id": "' + "a" * 65 + '"}'),
    ("track_id not ASCII", '{"box": [1, 2, 3, 4], "track_id": "caf\u00e9"}'),
    ("request_id empty", '{"box": [1, 2, 3, 4], "request_id": ""}'),
    ("request_id of 129", '{"box": [1, 2, 3, 4], "request_id": "' + "r" * 129 + '"}'),
    ("request_id a number", '{"box": [1, 2, 3, 4], "request_id": 5}'),
    ("normalized a string", '{"box": [1, 2, 3, 4], "normalized": "yes"}'),
    ("normalized box over 1", '{"box": [0.1, 0.2, 1.5, 0.3], "normalized": true}'),
    ("normalized box below 0", '{"box": [-0.1, 0.2, 0.5, 0.3], "normalized": true}'),
    ("sent_at zero", '{"box": [1, 2, 3, 4], "sent_at": 0}'),
    ("sent_at negative", '{"box": [1, 2, 3, 4], "sent_at": -5}'),
    ("sent_at a string", '{"box": [1, 2, 3, 4], "sent_at": "now"}'),
    ("an array", "[1, 2, 3, 4]"),
    ("a string", '"start"'),
]
STOP_REJECTED: list[tuple[str, str]] = [
    ("neither track_id nor all", "{}"),
    ("only a request_id", '{"request_id": "r1"}'),
    ("all false", '{"all": false}'),
    ("all null", '{"all": null, "track_id": null}'),
    ("both", '{"track_id": "t1", "all": true}'),
    ("all a string", '{"all": "true"}'),
    ("all a number", '{"all": 1}'),
    ("track_id bad", '{"track_id": "-t1"}'),
    ("unknown field", '{"track_id": "t1", "force": true}'),
    ("sent_at zero", '{"track_id": "t1", "sent_at": 0}'),
    ("an array", '["t1"]'),
]


@pytest.mark.parametrize(("case", "text"), START_REJECTED, ids=[c for c, _ in START_REJECTED])
def test_documented_start_rejections_fail_the_schema_and_the_parser(case: str, text: str) -> None:
    assert not START.is_valid(json.loads(text)), case
    for frame_wh in (None, FRAME_WH):
        with pytest.raises(CommandError):
            parse_start(text.encode("utf-8"), frame_wh)


@pytest.mark.parametrize(("case", "text"), STOP_REJECTED, ids=[c for c, _ in STOP_REJECTED])
def test_documented_stop_rejections_fail_the_schema_and_the_parser(case: str, text: str) -> None:
    assert not STOP.is_valid(json.loads(text)), case
    with pytest.raises(CommandError):
        parse_stop(text.encode("utf-8"))
