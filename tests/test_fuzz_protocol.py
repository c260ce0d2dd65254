"""Property-based fuzzing of the command parser: whatever bytes arrive, it answers with a
CommandError naming a reason, or with a command whose every value is valid.

Seeded (derandomize) and bounded, so CI runs the same examples every time.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from siamedge.errors import CommandError
from siamedge.messaging.protocol import (
    MAX_COMMAND_BYTES,
    REQUEST_ID_MAX_CHARS,
    START_FIELDS,
    STOP_FIELDS,
    StartCommand,
    StopCommand,
    encode_ack,
    encode_error,
    parse_command,
    request_id_of,
)
from siamedge.messaging.topics import CommandKind
from siamedge.tracking.geometry import MIN_BOX_SIDE

FUZZ = settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TRACK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""The documented track_id alphabet (README, protocol docstring), written out again here."""

LONE_SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])
# st.text() never yields surrogates, so text is joined from single characters.
TEXT = st.lists(
    st.one_of(
        st.characters(codec="utf-8"),  # any scalar value: emoji, RTL, NUL, combining marks
        st.sampled_from('azAZ09-_. "\\\t\n/+#'),
        LONE_SURROGATES,
    ),
    max_size=80,
).map("".join)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN, infinities, subnormals, -0.0
    st.floats(min_value=-2000, max_value=2000),
    st.floats(min_value=0, max_value=1),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(TEXT, inner, max_size=6)),
    max_leaves=30,
)
BOXES = st.one_of(
    st.lists(NUMBERS, min_size=4, max_size=4),
    st.tuples(
        st.floats(-700, 700), st.floats(-500, 500), st.floats(-10, 700), st.floats(-10, 500)
    ).map(list),
    st.lists(JSON_VALUES, max_size=6),
    JSON_VALUES,
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "box": BOXES,
    "track_id": st.one_of(st.from_regex(TRACK_ID, fullmatch=True), TEXT, JSON_VALUES),
    "normalized": st.one_of(st.booleans(), JSON_VALUES),
    "request_id": st.one_of(
        st.text(min_size=1, max_size=REQUEST_ID_MAX_CHARS + 2), TEXT.filter(bool), JSON_VALUES
    ),
    "sent_at": st.one_of(st.floats(min_value=1.6e9, max_value=1.9e9), NUMBERS, JSON_VALUES),
    "all": st.one_of(st.just(True), JSON_VALUES),
}
FRAMES = st.one_of(
    st.none(),
    st.just((640, 480)),
    st.tuples(st.integers(1, 4096), st.integers(1, 4096)),
)
KINDS: st.SearchStrategy[CommandKind] = st.sampled_from(["start", "stop"])


PLAUSIBLE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "box": st.one_of(
        st.tuples(
            st.floats(-100, 700), st.floats(-100, 500), st.floats(0, 700), st.floats(0, 500)
        ).map(list),
        st.lists(st.floats(0, 1), min_size=4, max_size=4),
    ),
    "track_id": st.from_regex(TRACK_ID, fullmatch=True),
    "normalized": st.one_of(st.none(), st.booleans()),
    "request_id": st.one_of(st.none(), st.text(min_size=1, max_size=REQUEST_ID_MAX_CHARS)),
    "sent_at": st.one_of(st.none(), st.floats(min_value=-1, max_value=1.9e9)),
    "all": st.one_of(st.none(), st.booleans()),
}


@st.composite
def command_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A command object: either any subset of the fields with any values, or a plausible start
    or stop (its required fields, some optional ones) with at most one field fuzzed or one
    field added, so that rejections and acceptances are both common."""
    if draw(st.integers(0, 2)) == 0:
        fields = draw(st.sets(st.sampled_from(sorted(set(START_FIELDS) | set(STOP_FIELDS)))))
        return {name: draw(FIELD_VALUES[name]) for name in sorted(fields)}
    if draw(st.booleans()):
        required, optional = ["box"], ["track_id", "normalized", "request_id", "sent_at"]
    else:
        required = [draw(st.sampled_from(["track_id", "all"]))]
        optional = ["request_id", "sent_at"]
    fields = required + draw(st.lists(st.sampled_from(optional), unique=True))
    data = {name: draw(PLAUSIBLE_VALUES[name]) for name in fields}
    if "all" in data:
        data["all"] = True
    fuzz = draw(st.integers(0, 3))
    if fuzz == 1:
        name = draw(st.sampled_from(sorted(data)))
        data[name] = draw(FIELD_VALUES[name])
    elif fuzz == 2:
        data[draw(TEXT)] = draw(JSON_VALUES)
    return data


def to_json(value: Any, *, ascii_only: bool) -> bytes:
    """JSON text as a sender might write it: NaN/Infinity literals, escaped or raw unicode,
    huge integers as digits (json.dumps refuses past 4300), lone surrogates as escapes."""
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True, default=str)
    return text.encode("utf-8", errors="surrogatepass" if not ascii_only else "strict")


def deep(depth: int, opener: str, closer: str, middle: str = "1") -> bytes:
    return (opener * depth + middle + closer * depth).encode()


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Any payload: a command object, any JSON value, raw bytes (mostly not UTF-8), mutated
    JSON, huge numbers, deep nesting and oversize payloads."""
    shape = draw(st.integers(0, 7))
    if shape <= 2:
        return to_json(draw(command_objects()), ascii_only=draw(st.booleans()))
    if shape == 3:
        return to_json(draw(JSON_VALUES), ascii_only=draw(st.booleans()))
    if shape == 4:
        return draw(st.binary(max_size=200))
    if shape == 5:  # a valid-looking command, cut, spliced or with a bad byte
        text = to_json(draw(command_objects()), ascii_only=True)
        cut = draw(st.integers(0, len(text)))
        junk = draw(st.binary(max_size=4))
        return text[:cut] + junk + text[cut + draw(st.integers(0, 3)) :]
    if shape == 6:
        digits = draw(st.integers(300, 6000))
        number = draw(
            st.sampled_from(["1" + "0" * digits, f"1e{digits}", f"-1e{digits}", f"0.{digits}e-999"])
        )
        return f'{{"box": [{number}, 1, 10, 10], "sent_at": {number}}}'.encode()
    depth = draw(st.sampled_from([10, 1000, 20_000, 40_000]))
    nested = draw(st.sampled_from([("[", "]", "1"), ('{"a":', "}", "1")]))
    payload = deep(depth, *nested)
    if draw(st.booleans()):
        payload = b'{"request_id": "deep", "box": ' + payload + b"}"
    if len(payload) > MAX_COMMAND_BYTES or draw(st.integers(0, 9)) == 0:
        return payload + b" " * max(0, MAX_COMMAND_BYTES + 1 - len(payload))
    return payload


def assert_valid_reply(error: CommandError, payload: bytes) -> None:
    """Every rejection names a reason, and its error message can be sent."""
    assert isinstance(error.reason, str) and error.reason.strip()
    assert error.request_id is None or (
        isinstance(error.request_id, str) and 1 <= len(error.request_id) <= REQUEST_ID_MAX_CHARS
    )
    message = json.loads(encode_error(error, "track/start", payload))
    assert message["reason"] == error.reason


def assert_valid_start(command: StartCommand, frame_wh: tuple[int, int] | None) -> None:
    x, y, w, h = command.box_xywh
    assert all(isinstance(v, float) and math.isfinite(v) for v in (x, y, w, h))
    assert w >= MIN_BOX_SIDE and h >= MIN_BOX_SIDE
    if frame_wh is not None:
        width, height = frame_wh
        assert w <= width and h <= height
        assert x < width and y < height and x + w > 0 and y + h > 0
    assert command.track_id is None or TRACK_ID.fullmatch(command.track_id)


def assert_valid_common(command: StartCommand | StopCommand) -> None:
    rid = command.request_id
    assert rid is None or (isinstance(rid, str) and 1 <= len(rid) <= REQUEST_ID_MAX_CHARS)
    sent_at = command.sent_at
    assert sent_at is None or (math.isfinite(sent_at) and sent_at > 0)
    kind = "start" if isinstance(command, StartCommand) else "stop"
    ack = json.loads(encode_ack(kind, command.track_id, rid))
    assert ack["request_id"] == rid


def check(kind: CommandKind, payload: bytes, frame_wh: tuple[int, int] | None) -> bool:
    """Parse and check the property; True when the command was accepted."""
    guessed = request_id_of(payload)  # never raises: it runs on every error path
    assert guessed is None or isinstance(guessed, str)
    try:
        command = parse_command(kind, payload, frame_wh)
    except CommandError as exc:
        assert_valid_reply(exc, payload)
        return False
    assert len(payload) <= MAX_COMMAND_BYTES
    if isinstance(command, StartCommand):
        assert kind == "start"
        assert_valid_start(command, frame_wh)
    else:
        assert kind == "stop"
        assert command.track_id is None or TRACK_ID.fullmatch(command.track_id)
    assert_valid_common(command)
    assert command.request_id == guessed
    return True


@FUZZ
@given(kind=KINDS, payload=payloads(), frame_wh=FRAMES)
@example(kind="stop", payload=b'{"all": true, "request_id": "\\ud800"}', frame_wh=None)
@example(kind="start", payload=b'{"box": [1, 2, 3, 4], "request_id": "a\\udfffb"}', frame_wh=None)
@example(kind="start", payload=b'{"box": [NaN, 1, 2, 3]}', frame_wh=(640, 480))
@example(kind="start", payload=b'{"box": [1e999, 1, 2, 3]}', frame_wh=(640, 480))
@example(kind="start", payload=b"\xef\xbb\xbf" + b'{"box": [1, 1, 2, 3]}', frame_wh=None)
def test_the_parser_rejects_with_a_reason_or_accepts_only_valid_commands(
    kind: CommandKind, payload: bytes, frame_wh: tuple[int, int] | None
) -> None:
    check(kind, payload, frame_wh)


@FUZZ
@given(data=command_objects(), frame_wh=FRAMES, ascii_only=st.booleans())
def test_every_field_fuzzed_on_both_commands(
    data: dict[str, Any], frame_wh: tuple[int, int] | None, ascii_only: bool
) -> None:
    payload = to_json(data, ascii_only=ascii_only)
    kinds: tuple[CommandKind, ...] = ("start", "stop")
    for kind in kinds:
        check(kind, payload, frame_wh)


def test_a_lone_surrogate_request_id_is_rejected_with_a_reason_not_a_crash() -> None:
    """Found by the fuzzing: JSON's \\ud800 escape gave a str that no UTF-8 ack could carry,
    and the daemon's main loop died on the reply."""
    cases: list[tuple[CommandKind, bytes]] = [
        ("stop", b'{"all": true, "request_id": "\\ud800"}'),
        ("start", b'{"box": [1, 2, 3, 4], "request_id": "x\\udc00"}'),
    ]
    for kind, payload in cases:
        try:
            parse_command(kind, payload, None)
        except CommandError as exc:
            assert "request_id" in exc.reason and "surrogate" in exc.reason
            assert exc.request_id is None
            json.loads(encode_error(exc, "track/stop", payload))
        else:
            raise AssertionError(f"{payload!r} was accepted")
