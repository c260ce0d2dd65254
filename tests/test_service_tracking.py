"""The daemon over a real broker: tracking by MQTT command, several tracks, every bad command.

One daemon (a subprocess on the synthetic clip with the builtin model) serves this module; every
test leaves it with no track running.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.coco import coco_decode
from fixtures.daemon import (
    Daemon,
    box_iou,
    current_frame,
    daemon_config,
    start_daemon,
    truth_box,
    unique_prefix,
    wait_online,
)
from fixtures.mosquitto import Broker, MqttCollector

pytestmark = pytest.mark.usefixtures("mqtt_schema_check")
MIN_MEAN_IOU = 0.7
TRACKED_FRAMES = 60
MAX_TRACKS = 2


@pytest.fixture(scope="module")
def daemon(mosquitto: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    config = daemon_config(mosquitto, unique_prefix(), tracker={"max_tracks": MAX_TRACKS})
    running = start_daemon(tmp_path_factory.mktemp("daemon"), config)
    yield running
    assert running.stop() == 0


@pytest.fixture
def client(
    daemon: Daemon, mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> Iterator[MqttCollector]:
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon)
    yield collector
    collector.publish(daemon.topic("stop"), json.dumps({"all": True}))


def payloads(collector: MqttCollector, topic: str) -> list[dict[str, Any]]:
    return [json.loads(message.payload) for message in collector.messages(topic)]


def start(
    collector: MqttCollector, daemon: Daemon, track_id: str, request_id: str
) -> dict[str, Any]:
    """Start a track on the object's true box of the coming frame; returns the ack."""
    status = payloads(collector, daemon.topic("status"))
    latest = [s for s in status if s.get("frame") is not None][-1]
    box = truth_box(current_frame(latest) + 1)
    command = {"box": list(box), "track_id": track_id, "request_id": request_id}
    collector.publish(daemon.topic("start"), json.dumps(command))
    return ack(collector, daemon, request_id)


def ack(collector: MqttCollector, daemon: Daemon, request_id: str) -> dict[str, Any]:
    message = collector.wait_for(
        daemon.topic("status"), where=lambda m: m.get("ack") and m.get("request_id") == request_id
    )[0]
    payload: dict[str, Any] = json.loads(message.payload)
    return payload


def error(collector: MqttCollector, daemon: Daemon, request_id: str | None, text: str) -> str:
    """The reason of the error about request_id (or, when None, the error mentioning text)."""

    def matches(m: dict[str, Any]) -> bool:
        if request_id is not None:
            return bool(m.get("request_id") == request_id)
        return text in m.get("reason", "")

    message = collector.wait_for(daemon.topic("errors"), where=matches)[0]
    reason: str = json.loads(message.payload)["reason"]
    return reason


def with_track(track_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: any(track["track_id"] == track_id for track in m["tracks"])


def test_start_tracks_the_object_and_stop_ends_it(client: MqttCollector, daemon: Daemon) -> None:
    assert start(client, daemon, "obj", "r-start") == {
        "ack": "start",
        "track_id": "obj",
        "request_id": "r-start",
    }
    results = client.wait_for(
        daemon.topic("results"), TRACKED_FRAMES + 1, where=with_track("obj"), timeout_s=60
    )
    ious = []
    for message in results[1:]:  # the first result is the start box itself
        payload = json.loads(message.payload)
        assert (payload["width"], payload["height"]) == (640, 480)
        assert payload["latency_ms"] >= 0
        track = payload["tracks"][0]
        assert track["state"] in ("tracking", "lost")
        ious.append(box_iou(track["bbox"], truth_box(payload["frame"])))
    assert np.mean(ious) >= MIN_MEAN_IOU, ious

    mask = json.loads(results[-1].payload)["tracks"][0]["mask"]
    assert mask["format"] == "rle"
    decoded = coco_decode({"size": mask["size"], "counts": mask["counts"]})
    assert decoded.shape == (480, 640)
    assert decoded.sum() > 500

    client.publish(daemon.topic("stop"), json.dumps({"track_id": "obj", "request_id": "r-stop"}))
    assert ack(client, daemon, "r-stop") == {
        "ack": "stop",
        "track_id": "obj",
        "request_id": "r-stop",
    }
    client.wait_for(daemon.topic("results"), where=lambda m: m["tracks"] == [])


def test_several_tracks_and_the_track_limit(client: MqttCollector, daemon: Daemon) -> None:
    start(client, daemon, "a", "r-a")
    start(client, daemon, "b", "r-b")
    client.wait_for(
        daemon.topic("results"), where=lambda m: {t["track_id"] for t in m["tracks"]} == {"a", "b"}
    )
    client.publish(
        daemon.topic("start"), json.dumps({"box": [10, 10, 40, 40], "request_id": "r-c"})
    )
    assert error(client, daemon, "r-c", "").startswith("too many tracks: 2 of 2 are running")

    client.publish(daemon.topic("stop"), json.dumps({"track_id": "zzz", "request_id": "r-z"}))
    assert error(client, daemon, "r-z", "") == "no track 'zzz' (active: a, b)"

    # restarting a known id does not count against the limit
    assert start(client, daemon, "a", "r-a2")["track_id"] == "a"
    client.publish(daemon.topic("stop"), json.dumps({"all": True, "request_id": "r-all"}))
    assert ack(client, daemon, "r-all")["ack"] == "stop"
    status = client.wait_for(
        daemon.topic("status"), where=lambda m: m.get("online") and m.get("active_tracks") == 0
    )
    assert json.loads(status[0].payload)["track_ids"] == []


BAD_COMMANDS = [
    ("start", b'{"request_id": "bad-json", "box": [1,2', "bad-json", "malformed JSON"),
    (
        "start",
        b'{"box": [10,10,50,50], "colour": "red", "request_id": "bad-field"}',
        "bad-field",
        "unknown field(s) 'colour'",
    ),
    (
        "start",
        b'{"box": "10,10,50,50", "request_id": "bad-type"}',
        "bad-type",
        "field 'box' must be an array of 4 numbers",
    ),
    (
        "start",
        b'{"box": [10, 10, true, 50], "request_id": "bad-bool"}',
        "bad-bool",
        "box[2] must be a number, got boolean",
    ),
    (
        "start",
        b'{"box": [900, 10, 50, 50], "request_id": "bad-outside"}',
        "bad-outside",
        "lies entirely outside the 640x480 frame",
    ),
    (
        "start",
        b'{"box": [10, 10, 0, 50], "request_id": "bad-size"}',
        "bad-size",
        "box size must be positive; got w=0, h=50",
    ),
    (
        "start",
        b'{"box": [0.1, 0.1, 1.5, 0.2], "normalized": true, "request_id": "bad-norm"}',
        "bad-norm",
        "a normalized box has values in [0, 1]",
    ),
    ("start", b"[1, 2, 3]", None, "a command must be a JSON object"),
    ("stop", b'{"all": false, "request_id": "bad-stop"}', "bad-stop", "a stop command needs"),
]


def test_bad_commands_are_rejected_and_tracking_goes_on(
    client: MqttCollector, daemon: Daemon
) -> None:
    start(client, daemon, "keep", "r-keep")
    for kind, payload, request_id, reason in BAD_COMMANDS:
        client.publish(daemon.topic(kind), payload)
        assert reason in error(client, daemon, request_id, reason)
    oversized = b'{"box": [1, 1, 5, 5], "pad": "' + b"x" * 70_000 + b'"}'
    client.publish(daemon.topic("start"), oversized)
    assert "commands are limited to 65536 bytes" in error(client, daemon, None, "65536 bytes")

    errors = payloads(client, daemon.topic("errors"))
    assert all(e["topic"] in (daemon.topic("start"), daemon.topic("stop")) for e in errors)
    # the track kept going through all of it
    seen = len(client.messages(daemon.topic("results")))
    client.wait_for(daemon.topic("results"), seen + 10, where=with_track("keep"))


def test_normalized_box_and_response_topic(client: MqttCollector, daemon: Daemon) -> None:
    reply_to = f"{daemon.prefix}replies/1"
    client.client.subscribe(reply_to, qos=1)
    client.publish(
        daemon.topic("start"),
        json.dumps({"box": [0.4, 0.4, 0.2, 0.2], "normalized": True, "request_id": "r-n"}),
        response_topic=reply_to,
        correlation_data=b"corr-1",
    )
    reply = client.wait_for(reply_to)[0]
    assert json.loads(reply.payload)["ack"] == "start"
    assert reply.properties is not None
    assert reply.properties.CorrelationData == b"corr-1"
    track_id = json.loads(reply.payload)["track_id"]
    first = client.wait_for(daemon.topic("results"), where=with_track(track_id))[0]
    bbox = json.loads(first.payload)["tracks"][0]["bbox"]
    assert bbox == pytest.approx([256.0, 192.0, 128.0, 96.0])


def test_retained_status_describes_the_service(
    daemon: Daemon, mosquitto: Broker, mqtt_collector: Callable[..., MqttCollector]
) -> None:
    late = mqtt_collector(mosquitto, [daemon.topic("status")])
    status = json.loads(late.wait_for(daemon.topic("status"))[0].payload)
    assert status["online"] is True
    assert status["provider"] == "CPUExecutionProvider"
    assert status["model"].endswith("builtin-ncc.onnx")
    assert status["source"]["open"] is True
    assert (status["source"]["width"], status["source"]["height"]) == (640, 480)
    assert status["max_tracks"] == MAX_TRACKS
    assert status["version"]


def test_daemon_log_names_the_configuration(daemon: Daemon) -> None:
    assert f"configuration: {Path(daemon.config_path)}" in daemon.log
