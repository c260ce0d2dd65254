"""The shipped JSON Schemas and docs/asyncapi.yaml: valid documents, every reference resolves,
`siamedge schema` prints them, and the messages protocol.py builds follow them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import yaml
from fixtures.mosquitto import closed_schema, validate_published

from siamedge.cli import main
from siamedge.errors import CommandError
from siamedge.messaging.protocol import (
    OFFLINE_CONNECTION_LOST,
    OFFLINE_SHUTDOWN,
    PROTOCOL_VERSION,
    SourceStatus,
    StatusReport,
    ack_message,
    encode_offline,
    encode_online,
    error_message,
    error_summary_message,
    results_message,
    status_message,
    track_dropped_message,
)
from siamedge.schema import load_schema, schema_names
from siamedge.tracking.result import MaskWindow, TrackResult, TrackState

EXPECTED = {
    "start",
    "stop",
    "results",
    "status",
    "ack",
    "error",
    "error-summary",
    "track-dropped",
}
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "siamedge" / "schemas"


def validate(name: str, message: object) -> None:
    schema = closed_schema(name)
    jsonschema.validators.validator_for(schema)(schema).validate(message)


def test_every_payload_has_a_schema_valid_against_draft_2020_12() -> None:
    assert set(schema_names()) == EXPECTED
    assert {path.stem for path in SCHEMA_DIR.glob("*.json")} == EXPECTED
    for name in schema_names():
        schema = load_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        jsonschema.Draft202012Validator.check_schema(schema)
        for example in schema.get("examples", []):
            jsonschema.Draft202012Validator(schema).validate(example)


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _pointer(document: Any, fragment: str) -> Any:
    """The node a JSON pointer (`/a/b`, already without the `#`) names; KeyError when none."""
    node = document
    for part in filter(None, fragment.split("/")):
        key = part.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def test_asyncapi_parses_and_references_only_existing_schemas(repo_root: Path) -> None:
    path = repo_root / "docs" / "asyncapi.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["version"] == str(PROTOCOL_VERSION)
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert {"{prefix}track/" + t for t in ("start", "stop", "results", "status", "errors")} <= (
        addresses
    )
    files = set()
    for ref in _refs(document):
        target, _, fragment = ref.partition("#")
        if target:
            file = (path.parent / target).resolve()
            assert file.parent == SCHEMA_DIR, ref
            _pointer(json.loads(file.read_text(encoding="utf-8")), fragment)
            files.add(file.stem)
        else:
            _pointer(document, fragment)
    assert files == EXPECTED
    for operation in document["operations"].values():
        assert operation["action"] in {"send", "receive"}


def test_internal_references_of_every_schema_resolve() -> None:
    for name in schema_names():
        schema = load_schema(name)
        for ref in _refs(schema):
            assert ref.startswith("#"), (name, ref)
            _pointer(schema, ref[1:])


def test_schema_command_lists_and_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == sorted(EXPECTED)
    assert main(["schema", "results"]) == 0
    assert json.loads(capsys.readouterr().out) == load_schema("results")
    with pytest.raises(SystemExit):
        main(["schema", "nonsense"])


def _track(mask: MaskWindow | None, score: float | None = 0.9) -> TrackResult:
    return TrackResult(
        center_xy=(5.5, 4.0),
        size_wh=(4.0, 3.0),
        bbox_xywh=(3.0, 2.0, 4.0, 3.0),
        rotated_box=((3.0, 2.0), (7.0, 2.0), (7.0, 5.0), (3.0, 5.0)),
        score=score,
        state=TrackState.LOST,
        mask=mask,
    )


@pytest.mark.parametrize("encoding", ["rle", "polygon", "png", "none"])
def test_results_follow_the_schema_with_every_mask_encoding(encoding: Any) -> None:
    contour = np.array([[3, 2], [6, 2], [6, 4], [3, 4]], dtype=np.int32)
    mask = MaskWindow(np.ones((3, 4), np.bool_), (3, 2), (16, 12), contour)
    empty = MaskWindow(np.zeros((0, 0), np.bool_), (0, 0), (16, 12), np.zeros((0, 2), np.int32))
    tracks = [("a", _track(mask)), ("b.2", _track(empty, None)), ("c", _track(None))]
    message = results_message(7, 100.0, (16, 12), tracks, mask_encoding=encoding)
    validate("results", message)
    masks = [entry["mask"] for entry in message["tracks"]]
    assert masks[2] is None
    assert all(m is None for m in masks) == (encoding == "none")
    validate("results", results_message(8, 100.0, (16, 12), []))


def _status_report() -> StatusReport:
    return StatusReport(
        model="builtin",
        provider="CPUExecutionProvider",
        source=SourceStatus("synthetic", False, "no frames", None),
        fps=0.0,
        dropped_frames=0,
        track_ids=(),
        max_tracks=4,
        mask_encoding="png",
        uptime_s=0.0,
    )


def test_status_ack_and_error_messages_follow_their_schemas() -> None:
    report = _status_report()
    validate("status", status_message(report))
    validate("status", status_message(report, 2, commands={"accepted": 3, "duplicate": 1}))
    for payload in (
        encode_online(),
        encode_offline(OFFLINE_SHUTDOWN),
        encode_offline(OFFLINE_CONNECTION_LOST),
    ):
        validate("status", json.loads(payload))
    validate("ack", ack_message("stop", None, None))
    validate("ack", ack_message("start", "t1", "r1"))
    error = error_message(CommandError("bad", None), "p/track/start", b"\xff" * 300)
    validate("error", error)
    validate("error-summary", error_summary_message(3, 50.0))
    validate("track-dropped", track_dropped_message("t1", "the model step failed: boom"))


def test_output_schemas_accept_fields_a_later_release_adds_and_the_tests_do_not() -> None:
    # Readers ignore unknown fields (README, compatible changes), so a reader validating with
    # the shipped schemas must not break on a field a later release of protocol 1 adds.
    report = _status_report()
    contour = np.array([[3, 2], [6, 2], [6, 4], [3, 4]], dtype=np.int32)
    track = _track(MaskWindow(np.ones((3, 4), np.bool_), (3, 2), (16, 12), contour))
    messages = {
        "results": results_message(8, 100.0, (16, 12), [("t1", track)]),
        "status": status_message(report),
        "ack": ack_message("start", "t1", None),
        "error": error_message(CommandError("bad", None), "p/track/start", b"{}"),
        "error-summary": error_summary_message(3, 50.0),
        "track-dropped": track_dropped_message("t1", "frame size changed"),
    }
    for name, message in messages.items():
        validate(name, message)
        newer = {**message, "added_later": 1}
        if name == "results":
            newer["tracks"] = [{**message["tracks"][0], "added_later": 1}]
            newer["tracks"][0]["mask"] = {**message["tracks"][0]["mask"], "added_later": 1}
        schema = load_schema(name)
        jsonschema.validators.validator_for(schema)(schema).validate(newer)
        with pytest.raises(jsonschema.ValidationError, match="added_later"):
            validate(name, newer)


@pytest.mark.parametrize(
    ("topic", "message", "schema"),
    [
        ("p/track/results", {"protocol": 1, "frame": 0}, "results"),
        ("p/track/status", {"online": True, "version": "1", "extra": 1}, "status"),
        ("p/track/status", {"ack": "start", "track_id": 5, "request_id": None}, "ack"),
        ("p/track/errors", {"reason": "", "request_id": None, "topic": "t"}, "error"),
        ("p/track/errors", {"reason": "x", "count": 0}, "error-summary"),
        ("p/track/errors", {"reason": "x", "track_id": 1}, "track-dropped"),
        ("p/replies/1", {"ack": "pause", "track_id": None, "request_id": None}, "ack"),
    ],
)
def test_the_publish_check_rejects_messages_off_the_schema(
    topic: str, message: object, schema: str
) -> None:
    with pytest.raises(AssertionError, match=f"schema '{schema}'"):
        validate_published(topic, json.dumps(message).encode())


def test_the_publish_check_skips_commands_and_discovery() -> None:
    assert validate_published("p/track/start", b"not json") is None
    assert validate_published("p/track/stop", b'{"all": 1}') is None
    assert validate_published("homeassistant/sensor/x/config", b'{"name": "x"}') is None
    assert validate_published("p/track/status", b"") is None
    with pytest.raises(AssertionError, match="not JSON"):
        validate_published("p/track/results", b"{")
