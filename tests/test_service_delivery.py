"""What the daemon owes its subscribers when the broker link stalls and when it stops: the
results message that ends the tracks goes out without waiting for a next track, and every
command it took from the broker is answered, also those it could not carry out before it
stopped (the broker has its acknowledgement and never delivers them again)."""

from __future__ import annotations

import http.client
import json
import signal
import time
from collections.abc import Callable

from fixtures.daemon import (
    TEST_FPS,
    Daemon,
    current_frame,
    daemon_config,
    truth_box,
    unique_prefix,
    wait_online,
)
from fixtures.mosquitto import Broker, MqttCollector, free_port

from siamedge.messaging.client import RESULTS_IN_FLIGHT

DaemonFactory = Callable[..., Daemon]
BrokerFactory = Callable[..., Broker]
CollectorFactory = Callable[..., MqttCollector]

HOST = "127.0.0.1"


def http_delete(port: int, path: str) -> int:
    """The status of a DELETE on the daemon's web view."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("DELETE", path)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_message_that_ends_the_tracks_goes_out_after_the_link_stalled(
    mosquitto_factory: BrokerFactory,
    daemon_factory: DaemonFactory,
    mqtt_collector: CollectorFactory,
) -> None:
    # Results waiting behind unacknowledged ones went out only with the next frame's results;
    # after the last track there is none, and dashboards kept a stopped track on screen.
    broker = mosquitto_factory()
    web_port = free_port()
    config = daemon_config(
        broker,
        unique_prefix(),
        mqtt={"results_qos": 1},
        web={"enabled": True, "host": HOST, "port": web_port},
    )
    daemon = daemon_factory(config)
    collector = mqtt_collector(broker, daemon.topics)
    status = wait_online(collector, daemon)
    box = list(truth_box(current_frame(status) + 2))
    collector.publish(daemon.topic("start"), json.dumps({"box": box, "track_id": "a"}))
    collector.wait_for(daemon.topic("results"), where=lambda m: bool(m["tracks"]))
    with broker.frozen():  # no PUBACK: the in-flight window fills, later results wait
        time.sleep((RESULTS_IN_FLIGHT + 10) / TEST_FPS)
        assert http_delete(web_port, "/api/tracks") == 200  # the stop, not through the broker
    ended = collector.wait_for(daemon.topic("results"), where=lambda m: not m["tracks"])
    assert json.loads(ended[0].payload)["tracks"] == []
    results = [json.loads(m.payload) for m in collector.messages(daemon.topic("results"))]
    assert results[-1]["tracks"] == []
    assert daemon.process.poll() is None


def test_a_start_waiting_for_a_frame_is_answered_when_the_daemon_stops(
    mosquitto: Broker, daemon_factory: DaemonFactory, mqtt_collector: CollectorFactory
) -> None:
    # It waited for a camera that is down; the stop ended the daemon without a word to the
    # client, which waited out its own timeout, and the restart never saw the command again.
    config = daemon_config(
        mosquitto,
        unique_prefix(),
        source={"uri": "/nonexistent/clip.mp4", "kind": "file"},
        mqtt={"command_max_age_s": 600},
    )
    daemon = daemon_factory(config)
    collector = mqtt_collector(mosquitto, daemon.topics)
    wait_online(collector, daemon, with_frames=False)
    start = json.dumps({"box": [10, 10, 50, 50], "track_id": "a", "request_id": "waiting-1"})
    collector.publish(daemon.topic("start"), start)
    # Sent again, it is answered as a duplicate at once: so the first is taken and waiting.
    collector.publish(daemon.topic("start"), start)
    collector.wait_for(daemon.topic("errors"), where=lambda m: m.get("request_id") == "waiting-1")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait() == 0
    errors = collector.wait_for(
        daemon.topic("errors"), 2, where=lambda m: m.get("request_id") == "waiting-1"
    )
    duplicate, stopped = (json.loads(m.payload)["reason"] for m in errors)
    assert duplicate.startswith("duplicate: request_id 'waiting-1'")
    assert stopped.startswith("shutting down: not carried out"), stopped
    assert not [m for m in collector.messages(daemon.topic("status")) if b'"ack"' in m.payload]
