"""The web view's HTTP API against a real Service (builtin model, synthetic source) and a real
mosquitto: commands, validation with the MQTT reasons, tokens, limits, disconnecting clients."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures.mjpeg import MjpegReader
from fixtures.mosquitto import Broker, MqttCollector
from fixtures.web import HOST, RunningService

from siamedge.errors import ConfigError
from siamedge.messaging.protocol import MAX_COMMAND_BYTES
from siamedge.run import front_ends
from siamedge.service import Service

StartService = Callable[..., RunningService]
Collect = Callable[..., MqttCollector]

MALFORMED_STARTS = [
    b"",
    b"not json",
    b"[1, 2, 3]",
    b'{"track_id": "a"}',
    b'{"box": [1, 2, 3]}',
    b'{"box": [10, 10, "w", 10]}',
    b'{"box": [10, 10, 0, 10]}',
    b'{"box": [10, 10, 20, 20], "colour": "red"}',
    b'{"box": [NaN, 10, 20, 20]}',
    b'{"box": [10, 10, 20, 20], "box": [1, 1, 2, 2]}',
    b'{"box": [10, 10, 20, 20], "track_id": "no spaces allowed", "request_id": "r7"}',
    b'{"box": [5000, 10, 20, 20]}',
    b'{"box": [0, 0, 2000, 20]}',
    b'{"box": [0.5, 0.5, 2, 0.1], "normalized": true}',
    b"\xff\xfe{}",
]


def _frame_now(running: RunningService) -> int:
    frame = running.tracks()["frame"]
    assert isinstance(frame, int)
    return frame


def _tracks_after_the_next_frame(running: RunningService) -> list[object]:
    """/api/tracks shows the last processed frame: a command's effect shows from the next."""
    first = running.tracks()
    while (now := running.tracks())["frame"] == first["frame"]:
        threading.Event().wait(0.02)
    tracks: list[object] = now["tracks"]
    return tracks


def test_status_reports_model_source_broker_and_live_view(web_service: StartService) -> None:
    running = web_service()
    status = running.status()
    assert status["online"] is True
    assert status["provider"] == "CPUExecutionProvider"
    assert status["source"]["open"] is True
    assert (status["source"]["width"], status["source"]["height"]) == (640, 360)
    assert status["broker"]["connected"] is True
    assert isinstance(status["view"]["frame"], int)
    assert status["view"]["viewers"] == 0
    assert "commands_dropped" not in status


def test_page_is_one_self_contained_document(web_service: StartService) -> None:
    running = web_service()
    reply = running.request("GET", "/")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.body.decode("utf-8")
    assert "stream.mjpeg" in page and "api/tracks" in page
    # Nothing loaded from elsewhere (the device may be offline), and the browser enforces it.
    assert "http://" not in page and "https://" not in page
    assert "<script src" not in page and "<link" not in page
    assert "default-src 'none'" in reply.headers["content-security-policy"]


def test_start_and_stop_over_http_go_through_the_service_to_mqtt(
    web_service: StartService, mosquitto: Broker, mqtt_collector: Collect
) -> None:
    running = web_service()
    collector = mqtt_collector(mosquitto, [running.topics.results])
    reply = running.post_json(
        "/api/tracks",
        json.dumps({"box": running.truth_box(_frame_now(running)), "request_id": "web-1"}).encode(),
    )
    assert reply.status == 201, reply
    ack = reply.json()
    assert ack == {"ack": "start", "track_id": "t1", "request_id": "web-1"}
    assert reply.headers["location"] == "/api/tracks/t1"

    results = collector.wait_for(
        running.topics.results, where=lambda m: [t["track_id"] for t in m["tracks"]] == ["t1"]
    )
    assert json.loads(results[0].payload)["tracks"][0]["state"] == "tracking"
    tracks = running.tracks()
    assert [t["track_id"] for t in tracks["tracks"]] == ["t1"]
    assert tracks["tracks"][0]["color"] == "#3cc850"
    assert tracks["tracks"][0]["mask"] is None
    masks = [running.request("GET", "/api/tracks?mask=rle").json()["tracks"][0]["mask"]]
    while masks[-1] is None and len(masks) < 100:  # the start frame's result has no mask
        threading.Event().wait(0.02)
        masks.append(running.request("GET", "/api/tracks?mask=rle").json()["tracks"][0]["mask"])
    assert masks[-1]["format"] == "rle"
    assert masks[-1]["size"] == [360, 640]
    assert running.request("GET", "/api/tracks?mask=jpeg").status == 400

    stopped = running.request("DELETE", "/api/tracks/t1")
    assert stopped.status == 200
    assert stopped.json() == {"ack": "stop", "track_id": "t1", "request_id": None}
    collector.wait_for(running.topics.results, where=lambda m: m["tracks"] == [])
    assert _tracks_after_the_next_frame(running) == []


def test_stop_all_and_a_restart_with_a_chosen_id(web_service: StartService) -> None:
    running = web_service()
    box = running.truth_box(_frame_now(running))
    for _ in range(2):  # the second start with the same id restarts it
        reply = running.post_json(
            "/api/tracks", json.dumps({"box": box, "track_id": "cat"}).encode()
        )
        assert reply.status == 201, reply
        assert reply.json()["track_id"] == "cat"
    assert running.post_json("/api/tracks", json.dumps({"box": box}).encode()).status == 201
    reply = running.request("DELETE", "/api/tracks")
    assert reply.status == 200
    assert reply.json() == {"ack": "stop", "track_id": None, "request_id": None}
    assert _tracks_after_the_next_frame(running) == []


def test_malformed_starts_get_400_with_the_mqtt_reasons(
    web_service: StartService, mosquitto: Broker, mqtt_collector: Collect
) -> None:
    running = web_service()
    collector = mqtt_collector(mosquitto, [running.topics.errors])
    for index, payload in enumerate(MALFORMED_STARTS):
        collector.publish(running.topics.start, payload)
        mqtt_error = json.loads(collector.wait_for(running.topics.errors, index + 1)[-1].payload)
        reply = running.post_json("/api/tracks", payload)
        assert reply.status == 400, (payload, reply)
        http_error = reply.json()
        assert http_error["reason"] == mqtt_error["reason"], payload
        assert http_error["request_id"] == mqtt_error["request_id"]
        assert http_error["topic"] == "http"
    assert running.tracks()["tracks"] == []


def test_an_oversized_body_gets_413_with_the_mqtt_reason(
    web_service: StartService, mosquitto: Broker, mqtt_collector: Collect
) -> None:
    running = web_service()
    collector = mqtt_collector(mosquitto, [running.topics.errors])
    payload = b'{"box": [1, 1, 5, 5], "pad": "' + b"x" * MAX_COMMAND_BYTES + b'"}'
    collector.publish(running.topics.start, payload)
    mqtt_reason = json.loads(collector.wait_for(running.topics.errors)[0].payload)["reason"]
    reply = running.post_json("/api/tracks", payload)
    assert reply.status == 413
    assert reply.json()["reason"] == mqtt_reason


def test_an_unknown_track_gets_404_with_the_mqtt_reason(
    web_service: StartService, mosquitto: Broker, mqtt_collector: Collect
) -> None:
    running = web_service()
    collector = mqtt_collector(mosquitto, [running.topics.errors])
    collector.publish(running.topics.stop, b'{"track_id": "ghost"}')
    mqtt_reason = json.loads(collector.wait_for(running.topics.errors)[0].payload)["reason"]
    reply = running.request("DELETE", "/api/tracks/ghost")
    assert reply.status == 404
    assert reply.json()["reason"] == mqtt_reason == "no track 'ghost' (active: none)"
    bad = running.request("DELETE", "/api/tracks/no%20spaces")
    assert bad.status == 400
    assert "field 'track_id' must be" in bad.json()["reason"]


def test_requests_that_are_not_commands_are_refused(web_service: StartService) -> None:
    running = web_service()
    body = b'{"box": [1, 1, 5, 5]}'
    assert (
        running.request("POST", "/api/tracks", body, {"Content-Type": "text/plain"}).status == 415
    )
    no_length = running.request(
        "POST",
        "/api/tracks",
        iter([body]),  # http.client sends an iterable body chunked, without Content-Length
        {"Content-Type": "application/json"},
    )
    assert no_length.status == 411
    assert running.request("GET", "/nothing-here").status == 404
    wrong_method = running.request("PUT", "/api/tracks")
    assert wrong_method.status == 501  # http.server's answer to a method it has no handler for
    not_allowed = running.request("POST", "/api/status")
    assert not_allowed.status == 405
    assert not_allowed.headers["allow"] == "GET, HEAD"


def test_snapshot_is_a_jpeg_of_the_preview_size(web_service: StartService) -> None:
    running = web_service()
    reply = running.request("GET", "/snapshot.jpg")
    assert reply.status == 200
    assert reply.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(reply.body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (270, 480, 3)  # 640x360 scaled to preview_width 480
    assert int(reply.headers["x-frame-index"]) >= 0


def _web_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == "web-preview"]


def test_previews_are_encoded_only_while_watched_and_shared_by_viewers(
    web_service: StartService,
) -> None:
    running = web_service()
    before = running.status()["view"]
    assert before["viewers"] == 0
    assert _web_threads() == []  # no viewer yet: no encoder, no encoding
    first = MjpegReader(HOST, running.port)
    second = MjpegReader(HOST, running.port)
    try:
        assert first.status == 200
        assert first.headers["content-type"].startswith("multipart/x-mixed-replace")
        assert _web_threads() == ["web-preview"]  # one encoder for every viewer
        assert running.status()["view"]["viewers"] == 2
        parts_a = {
            p.headers["x-frame-index"]: p.jpeg for p in (first.next_part() for _ in range(6))
        }
        parts_b = {
            p.headers["x-frame-index"]: p.jpeg for p in (second.next_part() for _ in range(6))
        }
        shared = parts_a.keys() & parts_b.keys()
        assert shared, (sorted(parts_a), sorted(parts_b))
        # The same bytes: one encode served both viewers.
        assert all(
            parts_a[index] is not None and parts_a[index] == parts_b[index] for index in shared
        )
        image = cv2.imdecode(np.frombuffer(parts_a[min(shared)], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (270, 480, 3)
    finally:
        first.close()
        second.close()


def test_a_viewer_that_disconnects_mid_stream_is_dropped_quietly(
    web_service: StartService, caplog: pytest.LogCaptureFixture
) -> None:
    running = web_service()
    caplog.set_level(logging.WARNING, logger="siamedge")
    for _ in range(3):
        reader = MjpegReader(HOST, running.port)
        reader.next_part()
        reader.reset()  # TCP reset in the middle of the stream
    half = MjpegReader(HOST, running.port)
    half.next_part()
    half.close()  # an orderly close without reading the rest
    # The server goes on: a new viewer streams, and the dropped ones are no longer counted.
    viewer = MjpegReader(HOST, running.port)
    try:
        viewer.next_part()
        viewer.next_part()
        deadline_parts = 40
        while running.status()["view"]["viewers"] != 1 and deadline_parts:
            viewer.next_part()
            deadline_parts -= 1
        assert running.status()["view"]["viewers"] == 1
    finally:
        viewer.close()
    problems = [r for r in caplog.records if r.name.startswith("siamedge.web")]
    assert problems == [], [r.getMessage() for r in problems]


VIEWER_RELEASE_S = 3.0
"""How soon a viewer that left must be released, frames or not (the server looks every 0.5 s)."""


def _viewers_after(running: RunningService, count: int, timeout_s: float) -> int:
    """The status' viewer count once it is `count`, or when timeout_s have passed."""
    deadline = time.monotonic() + timeout_s
    while (viewers := running.status()["view"]["viewers"]) != count:
        if time.monotonic() > deadline:
            break
        threading.Event().wait(0.05)
    assert isinstance(viewers, int)
    return viewers


def test_viewers_that_leave_are_released_while_the_source_gives_no_frames(
    web_service: StartService,
) -> None:
    # A viewer that is sent nothing is never written to: its leaving must be noticed anyway,
    # or dashboards that retry the stream use up every slot exactly while the camera is down.
    running = _without_frames(web_service, max_streams=3)
    viewers = [MjpegReader(HOST, running.port) for _ in range(4)]
    try:
        assert [viewer.status for viewer in viewers] == [200, 200, 200, 503]
        assert running.status()["view"]["viewers"] == 3
        viewers[3].close()
        viewers[0].reset()  # a killed tab
        viewers[1].close()  # an orderly close
        assert _viewers_after(running, 1, VIEWER_RELEASE_S) == 1  # not the third: it stays
        viewers[2].close()
        assert _viewers_after(running, 0, VIEWER_RELEASE_S) == 0
        viewers = [MjpegReader(HOST, running.port) for _ in range(3)]
        assert [viewer.status for viewer in viewers] == [200, 200, 200]
    finally:
        for viewer in viewers:
            viewer.close()


def _hold_a_slot(port: int) -> socket.socket:
    """A connection that occupies a server slot: half a request, so its thread waits for the
    rest. A slot that an answered request has not given back yet gets it refused: try again."""
    for _ in range(100):
        sock = socket.create_connection((HOST, port))
        sock.sendall(b"GET /api/status HTTP/1.0\r\n")
        sock.settimeout(0.2)
        try:
            refused = sock.recv(1)
        except TimeoutError:
            sock.settimeout(None)
            return sock  # nothing came back: a thread is reading the request
        sock.close()
        assert refused, "the server closed the connection without an answer"
        threading.Event().wait(0.05)
    raise AssertionError("no slot came free")


def test_viewers_and_connections_beyond_the_limits_get_503(web_service: StartService) -> None:
    running = web_service(web={"max_connections": 4, "max_streams": 2})
    viewers = [MjpegReader(HOST, running.port) for _ in range(2)]
    held: list[socket.socket] = []
    try:
        refused = MjpegReader(HOST, running.port)
        assert refused.status == 503
        assert "web.max_streams" in json.loads(refused.body())["reason"]
        refused.close()
        # Two streams and two half-sent requests hold all 4 slots: the next connection is
        # answered 503 at once and closed.
        held = [_hold_a_slot(running.port) for _ in range(2)]
        reply = running.request("GET", "/api/status")
        assert reply.status == 503
        assert "web.max_connections" in reply.json()["reason"]
        assert reply.headers["retry-after"]
        # Give one back: requests are served again.
        held.pop().close()
        answers = [running.request("GET", "/api/status").status for _ in range(20)]
        assert 200 in answers
    finally:
        for sock in held:
            sock.close()
        for viewer in viewers:
            viewer.close()


def test_with_a_token_every_request_needs_it(
    web_service: StartService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIAMEDGE_TEST_WEB_TOKEN", "s3cret-token")
    running = web_service(token="s3cret-token", web={"token_env": "SIAMEDGE_TEST_WEB_TOKEN"})
    body = json.dumps({"box": running.truth_box(_frame_now(running))}).encode()
    json_type = {"Content-Type": "application/json"}
    for method, path, payload in [
        ("GET", "/", None),
        ("GET", "/api/status", None),
        ("GET", "/api/tracks", None),
        ("GET", "/snapshot.jpg", None),
        ("GET", "/stream.mjpeg", None),
        ("POST", "/api/tracks", body),
        ("DELETE", "/api/tracks", None),
        ("GET", "/no-such-path", None),
    ]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            reply = running.request(method, path, payload, {**json_type, **headers})
            assert reply.status == 401, (method, path, headers)
            assert reply.headers["www-authenticate"].startswith("Bearer")
    good = {"Authorization": "Bearer s3cret-token"}
    assert running.request("GET", "/", headers=good).status == 200
    assert running.request("GET", "/snapshot.jpg?token=s3cret-token").status == 200
    stream = MjpegReader(HOST, running.port, "/stream.mjpeg?token=s3cret-token")
    assert stream.status == 200
    stream.close()
    # A link cannot steer the tracker: commands never take the token from the URL.
    assert running.post_json("/api/tracks?token=s3cret-token", body).status == 401
    assert running.post_json("/api/tracks", body, good).status == 201


def test_a_token_file_is_read(web_service: StartService, tmp_path: Path) -> None:
    token_file = tmp_path / "web-token"
    token_file.write_text("from-a-file\n", encoding="utf-8")
    running = web_service(token="from-a-file", web={"token_file": str(token_file)})
    assert running.request("GET", "/api/status").status == 401
    reply = running.request("GET", "/api/status", headers={"Authorization": "Bearer from-a-file"})
    assert reply.status == 200


def _without_frames(web_service: StartService, **web: object) -> RunningService:
    """A service whose source never opens (no frame ever), once its web view answers."""
    running = web_service(
        source={"uri": "/nonexistent/clip.mp4", "kind": "file"}, web=web, wait=False
    )
    deadline = 50
    while deadline:
        try:
            running.status()
            return running
        except (OSError, AssertionError):
            deadline -= 1
            threading.Event().wait(0.1)
    raise AssertionError("the web view never answered")


def test_a_start_without_frames_gets_503_and_is_not_queued(web_service: StartService) -> None:
    running = _without_frames(web_service)
    reply = running.post_json("/api/tracks", b'{"box": [10, 10, 50, 50]}')
    assert reply.status == 503
    assert "no frame" in reply.json()["reason"]
    assert reply.headers["retry-after"]


def test_a_start_the_model_fails_on_gets_503_not_409(
    web_service: StartService,
    batched_toy_model: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 409 says the command is at fault (too many tracks, an untrackable box); here the model is.
    model = batched_toy_model("failing.onnx", split=True, init_fails_from_x=200)
    running = web_service(model={"path": str(model)})
    with caplog.at_level(logging.INFO, logger="siamedge.web.commands"):
        reply = running.post_json("/api/tracks", b'{"box": [300, 100, 40, 40]}')
    assert reply.status == 503
    assert reply.json()["reason"].startswith(f"not started: {model}: inference failed: ")
    said = [r.getMessage() for r in caplog.records if r.name == "siamedge.web.commands"]
    assert said == [f"HTTP start command rejected: {reply.json()['reason']}"]
    assert running.post_json("/api/tracks", b'{"box": [10, 10, 40, 40]}').status == 201


def test_a_taken_port_is_a_configuration_error(web_service: StartService) -> None:
    running = web_service()
    second = Service(running.settings, front_ends=front_ends(running.settings))  # same web.port
    with pytest.raises(ConfigError, match=r"web\.host/web\.port: cannot listen on"):
        second.run()


class _RefusesOnceTheBrokerSeesAClient:
    """A front end whose port turns out taken, after waiting for the daemon's MQTT connection
    (if it comes: it must not), so the order of the start-up is what the test sees."""

    def __init__(self, broker: Broker, connections: int) -> None:
        self._broker = broker
        self._connections = connections

    def start(self) -> None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if self._broker.log.count("New client connected") > self._connections:
                break
            time.sleep(0.05)
        raise ConfigError("web.host/web.port: cannot listen on it (taken, in this test)")

    def close(self) -> None:
        pass


def test_a_second_daemon_whose_port_is_taken_never_reaches_the_broker(
    web_service: StartService, mosquitto: Broker
) -> None:
    # An administrator trying the configuration by hand beside the service: its MQTT client
    # (same client id) took over the running daemon's session and published it offline.
    running = web_service()
    connections = mosquitto.log.count("New client connected")
    takeovers = mosquitto.log.count("closing old connection")  # the broker serves every test
    second = Service(
        running.settings,
        front_ends=[lambda service: _RefusesOnceTheBrokerSeesAClient(mosquitto, connections)],
    )
    with pytest.raises(ConfigError, match="taken, in this test"):
        second.run()
    assert mosquitto.log.count("New client connected") == connections
    assert mosquitto.log.count("closing old connection") == takeovers
    assert running.status()["broker"]["connected"] is True
