"""The MQTT client against a real mosquitto: commands in, acks/errors/status/results out."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest
from fixtures.mosquitto import (
    WAIT_TIMEOUT_S,
    Broker,
    MqttCollector,
    TlsFiles,
    write_password_file,
)
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from siamedge.config import MqttSettings, TlsSettings
from siamedge.errors import CommandError
from siamedge.messaging.client import (
    RESULTS_IN_FLIGHT,
    ConnectionState,
    IncomingCommand,
    MqttClient,
)
from siamedge.messaging.connection import NO_MQTT_ANSWER, NO_MQTT_ANSWER_IN_TIME, stop_paho
from siamedge.messaging.protocol import (
    MAX_COMMAND_BYTES,
    SourceStatus,
    StartCommand,
    StatusReport,
    parse_command,
)
from siamedge.messaging.subscriber import Subscriber
from siamedge.tracking.result import MaskWindow, TrackResult, TrackState

pytestmark = pytest.mark.timeout(30)

FRAME_WH = (640, 480)
Collect = Callable[..., MqttCollector]


def settings_for(broker: Broker, prefix: str, **overrides: Any) -> MqttSettings:
    """Settings for a test client: its own id and prefix, quick reconnects."""
    values: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": f"siamedge-test-{uuid.uuid4().hex[:8]}",
        "topic_prefix": prefix,
        "keepalive_s": 5,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
    }
    values.update(overrides)
    return MqttSettings(**values)


@pytest.fixture
def make_client() -> Iterator[Callable[..., MqttClient]]:
    """Started clients, closed after the test."""
    clients: list[MqttClient] = []

    def make(settings: MqttSettings, **kwargs: Any) -> MqttClient:
        client = MqttClient(settings, **kwargs)
        clients.append(client)
        client.start()
        return client

    yield make
    for client in clients:
        client.close()


def connected(client: MqttClient) -> MqttClient:
    assert client.wait_connected(WAIT_TIMEOUT_S), client.connection
    return client


def wait_commands(client: MqttClient, count: int) -> list[IncomingCommand]:
    """Drain until `count` commands arrived (the service does this between frames)."""
    commands: list[IncomingCommand] = []
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while len(commands) < count:
        assert time.monotonic() < deadline, f"only {len(commands)} of {count} commands arrived"
        commands += client.drain_commands()
        time.sleep(0.01)
    return commands


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def serve(client: MqttClient, commands: list[IncomingCommand]) -> None:
    """What the service does with each command: validate, then acknowledge or reject."""
    for command in commands:
        try:
            parsed = parse_command(command.kind, command.payload, FRAME_WH)
        except CommandError as exc:
            client.reject(command, exc)
            continue
        track_id = parsed.track_id or "auto-1"
        client.acknowledge(command, track_id, parsed.request_id)


def payload_of(message: Any) -> Any:
    return json.loads(message.payload)


def test_start_and_stop_round_trip(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    topics = client.topics
    assert topics.start == f"{mqtt_prefix}track/start"
    collector = mqtt_collector(mosquitto, [topics.status])
    collector.publish(
        topics.start, '{"box": [10, 20, 30, 40], "track_id": "t1", "request_id": "a"}'
    )
    collector.publish(topics.stop, '{"track_id": "t1", "request_id": "b"}')

    start, stop = wait_commands(client, 2)
    assert (start.kind, start.topic, start.response_topic) == ("start", topics.start, None)
    assert parse_command(start.kind, start.payload, FRAME_WH) == StartCommand(
        (10.0, 20.0, 30.0, 40.0), "t1", "a"
    )
    assert stop.kind == "stop"
    serve(client, [start, stop])
    acks = collector.wait_for(topics.status, 2, where=lambda p: "ack" in p)
    assert [payload_of(m) for m in acks] == [
        {"ack": "start", "track_id": "t1", "request_id": "a"},
        {"ack": "stop", "track_id": "t1", "request_id": "b"},
    ]


MALFORMED = [
    b"not json",
    b'{"box": [1, 2, 3], "request_id": "m1"}',
    b'{"box": [1, 2, 3, 4], "colour": "red"}',
    b'{"box": [700, 10, 20, 20]}',
    b'{"box": [0.1, 0.1, 2, 0.1], "normalized": true}',
    b"\xfe\xff",
]


def test_each_malformed_command_gets_its_error(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    collector = mqtt_collector(mosquitto, [client.topics.errors])
    for payload in MALFORMED:
        collector.publish(client.topics.start, payload)
    serve(client, wait_commands(client, len(MALFORMED)))

    errors = [payload_of(m) for m in collector.wait_for(client.topics.errors, len(MALFORMED))]
    for payload, error in zip(MALFORMED, errors, strict=True):
        with pytest.raises(CommandError) as expected:
            parse_command("start", payload, FRAME_WH)
        assert error["reason"] == expected.value.reason
        assert error["request_id"] == expected.value.request_id
        assert error["topic"] == client.topics.start
        assert error["payload_excerpt"] == payload.decode("utf-8", errors="replace")
    assert errors[1]["request_id"] == "m1"


def open_descriptors() -> int:
    """How many file descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["service client", "subscriber"])
def test_close_releases_every_socket_without_the_garbage_collector(
    mosquitto: Broker, mqtt_prefix: str, kind: str
) -> None:
    settings = settings_for(mosquitto, mqtt_prefix)
    gc.disable()  # the client sits in a reference cycle: only close() may free its sockets
    try:
        before = open_descriptors()
        if kind == "service client":
            client: MqttClient | Subscriber = MqttClient(settings)
            client.start()
            connected(client)
        else:
            client = Subscriber(settings)
            client.start()
            assert client.wait_subscribed(WAIT_TIMEOUT_S)
        assert open_descriptors() >= before + 3  # the broker connection and paho's wake-up pair
        client.close()
        assert open_descriptors() <= before  # other threads may close theirs meanwhile
    finally:
        gc.enable()


def test_status_is_retained_online_and_offline_after_close(
    mosquitto: Broker,
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., MqttClient],
) -> None:
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    status = client.topics.status
    live = mqtt_collector(mosquitto, [status])
    first = live.wait_for(status, where=lambda p: p["online"])
    assert payload_of(first[0])["online"] is True

    report = StatusReport(
        model="builtin",
        provider="CPUExecutionProvider",
        source=SourceStatus("synthetic 1280x720", True, None, (1280, 720)),
        fps=30.0,
        dropped_frames=0,
        track_ids=("t1",),
        max_tracks=4,
        mask_encoding="rle",
        uptime_s=1.0,
    )
    client.publish_status(report)
    # The broker has it once a live subscriber got it; only then is a new subscriber's copy the
    # retained one (subscribing earlier races the publish and gets it live, retain flag clear).
    live.wait_for(status, where=lambda p: "model" in p)
    late = mqtt_collector(mosquitto, [status])
    retained = late.wait_for(status, where=lambda p: "model" in p)[0]
    assert retained.retain
    assert payload_of(retained)["track_ids"] == ["t1"]

    client.close()
    after = mqtt_collector(mosquitto, [status]).wait_for(status)[0]
    assert after.retain
    assert payload_of(after)["online"] is False
    assert payload_of(after)["reason"] == "shutdown"
    assert client.connection.connected is False


CHILD = """
import sys, time
from siamedge.config import MqttSettings
from siamedge.messaging.client import MqttClient
host, port, prefix, client_id = sys.argv[1:]
client = MqttClient(MqttSettings(host=host, port=int(port), topic_prefix=prefix,
                                 client_id=client_id, keepalive_s=5))
client.start()
print("connected" if client.wait_connected(5) else "failed", flush=True)
time.sleep(60)
"""


def test_last_will_announces_a_killed_process(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, repo_root: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mosquitto.host, str(mosquitto.port), mqtt_prefix, "child"],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"connected"
        status = f"{mqtt_prefix}track/status"
        collector = mqtt_collector(mosquitto, [status])
        collector.wait_for(status, where=lambda p: p["online"])
        child.send_signal(signal.SIGKILL)
        child.wait()
        will = collector.wait_for(status, where=lambda p: not p["online"])[0]
        assert payload_of(will)["reason"] == "connection lost"
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_reconnect_after_broker_restart_restores_subscriptions(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., Any],
) -> None:
    broker = mosquitto_factory()
    states: list[ConnectionState] = []
    lost = threading.Event()

    def record(state: ConnectionState) -> None:
        states.append(state)
        if not state.connected:
            lost.set()

    client = connected(make_client(settings_for(broker, mqtt_prefix), on_state_change=record))
    broker.stop()
    assert lost.wait(WAIT_TIMEOUT_S)
    wait_until(lambda: "Connection refused" in client.connection.reason)
    assert client.connection.connected is False
    broker.start()
    connected(client)

    # The restarted broker forgot everything: the status is back only because we re-sent it.
    # Seen live first (a subscriber quicker than the re-sent status gets it live, retain flag
    # clear), then a later subscriber must get it retained.
    online = lambda p: p["online"]  # noqa: E731
    mqtt_collector(broker, [client.topics.status]).wait_for(client.topics.status, where=online)
    collector = mqtt_collector(broker, [client.topics.status])
    retained = collector.wait_for(client.topics.status, where=online)[0]
    assert retained.retain
    collector.publish(client.topics.start, '{"box": [1, 2, 3, 4]}')
    (command,) = wait_commands(client, 1)
    assert command.kind == "start"
    assert [state.connected for state in states][:2] == [True, False]
    assert states[-1].connected is True


def test_v5_response_topic_gets_the_ack_with_correlation_data(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    reply = f"{mqtt_prefix}reply/operator"
    collector = mqtt_collector(mosquitto, [reply])
    collector.publish(
        client.topics.start,
        '{"box": [1, 2, 3, 4], "track_id": "car"}',
        response_topic=reply,
        correlation_data=b"\x00corr-1",
    )
    collector.publish(
        client.topics.stop, '{"track_id": "x y"}', response_topic=reply, correlation_data=b"c2"
    )
    start, stop = wait_commands(client, 2)
    assert (start.response_topic, start.correlation_data) == (reply, b"\x00corr-1")
    serve(client, [start, stop])

    ack, error = collector.wait_for(reply, 2)
    assert payload_of(ack) == {"ack": "start", "track_id": "car", "request_id": None}
    assert ack.properties.CorrelationData == b"\x00corr-1"
    assert "field 'track_id' must be" in payload_of(error)["reason"]
    assert error.properties.CorrelationData == b"c2"


def test_a_command_topic_named_as_response_topic_is_not_answered_there(
    mosquitto: Broker,
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The ack went to track/start, came back as a start command and was refused as one.
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    collector = mqtt_collector(mosquitto, [client.topics.status, client.topics.errors])
    with caplog.at_level(logging.WARNING, logger="siamedge.messaging.client"):
        collector.publish(
            client.topics.start,
            '{"box": [1, 2, 3, 4], "request_id": "loop"}',
            response_topic=client.topics.start,
        )
        (start,) = wait_commands(client, 1)
    assert start.response_topic is None
    assert (
        f"MQTT ignoring the response topic {client.topics.start!r}: it is a command topic, "
        "where the reply would come back as a command"
    ) in caplog.messages
    client.acknowledge(start, "t1", "loop")
    collector.wait_for(client.topics.status, where=lambda p: p.get("request_id") == "loop")
    collector.publish(client.topics.stop, '{"all": true, "request_id": "after"}')
    (stop,) = wait_commands(client, 1)  # the ack did not come back as a command
    assert b'"after"' in stop.payload
    assert collector.messages(client.topics.errors) == []


def test_clearing_a_retained_command_is_not_answered_on_mqtt_3_1_1(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    # The broker clears the retain flag towards the daemon's subscription, and the clearing
    # message was answered "payload is empty".
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix, protocol="3.1.1")))
    collector = mqtt_collector(mosquitto, [client.topics.errors], protocol="3.1.1")
    collector.publish(client.topics.start, b"", retain=True)
    collector.publish(client.topics.stop, '{"all": true, "request_id": "next"}')
    (command,) = wait_commands(client, 1)
    assert b'"next"' in command.payload
    assert collector.messages(client.topics.errors) == []


def test_mqtt_v311_round_trip(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix, protocol="3.1.1")))
    collector = mqtt_collector(mosquitto, [client.topics.status], protocol="3.1.1")
    collector.publish(client.topics.stop, '{"all": true, "request_id": "z"}')
    (command,) = wait_commands(client, 1)
    assert (command.kind, command.response_topic, command.correlation_data) == ("stop", None, None)
    client.acknowledge(command, None, "z")
    ack = collector.wait_for(client.topics.status, where=lambda p: "ack" in p)[0]
    assert payload_of(ack) == {"ack": "stop", "track_id": None, "request_id": "z"}


RETAINED_REASON = "retained: a retained command would run again at every reconnect"


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_retained_commands_are_refused_with_a_reply(
    mosquitto: Broker,
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., Any],
    protocol: str,
) -> None:
    collector = mqtt_collector(mosquitto, [f"{mqtt_prefix}track/errors"])
    collector.publish(
        f"{mqtt_prefix}track/start", '{"box": [1, 2, 3, 4], "request_id": "r0"}', retain=True
    )
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix, protocol=protocol)))
    error = payload_of(collector.wait_for(client.topics.errors)[0])
    assert error["request_id"] == "r0"
    assert error["reason"].startswith(RETAINED_REASON)
    assert error["reason"].endswith(f"on {client.topics.start}")
    collector.publish(client.topics.stop, '{"all": true}')
    (command,) = wait_commands(client, 1)
    assert command.kind == "stop"
    assert client.drain_commands() == []
    assert len(collector.messages(client.topics.errors)) == 1
    collector.publish(client.topics.start, b"", retain=True)  # clear the retained message


def test_a_retained_command_published_while_subscribed_is_refused_on_mqtt5(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    # Brokers clear the retain flag towards existing subscriptions unless the subscription asks
    # for retain-as-published: without it this command ran now and was refused only later.
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    collector = mqtt_collector(mosquitto, [client.topics.errors])
    collector.publish(client.topics.stop, '{"all": true, "request_id": "live"}', retain=True)
    error = payload_of(collector.wait_for(client.topics.errors)[0])
    assert (error["request_id"], error["reason"][: len(RETAINED_REASON)]) == (
        "live",
        RETAINED_REASON,
    )
    collector.publish(client.topics.stop, b"", retain=True)
    collector.publish(client.topics.stop, '{"all": true, "request_id": "plain"}')
    (command,) = wait_commands(client, 1)
    assert b'"plain"' in command.payload
    assert len(collector.messages(client.topics.errors)) == 1


def _publish_expiring(collector: Any, topic: str, payload: str, expiry_s: int) -> None:
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = expiry_s
    info = collector.client.publish(topic, payload, qos=1, properties=properties)
    info.wait_for_publish(WAIT_TIMEOUT_S)


def test_a_command_whose_expiry_runs_out_in_the_queue_is_answered_expired(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    collector = mqtt_collector(mosquitto, [client.topics.errors])
    _publish_expiring(collector, client.topics.stop, '{"all": true, "request_id": "e1"}', 1)
    wait_until(lambda: client.queued_commands == 1)
    time.sleep(1.2)  # not readiness: the expiry interval has to run out in the queue
    assert client.drain_commands() == []
    error = payload_of(collector.wait_for(client.topics.errors)[0])
    assert error["request_id"] == "e1"
    assert error["reason"].startswith("expired: its MQTT message expiry interval ran out")


def test_a_wall_clock_step_does_not_expire_a_queued_command(
    mosquitto: Broker,
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NTP stepping a board's clock by 400 days made every queued command with an expiry
    # interval "expired: ... waited 34560000.0 s".
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    collector = mqtt_collector(mosquitto, [client.topics.errors])
    _publish_expiring(collector, client.topics.stop, '{"all": true, "request_id": "e2"}', 60)
    wait_until(lambda: client.queued_commands == 1)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 400 * 86400.0)
    (command,) = client.drain_commands()
    assert b'"e2"' in command.payload


def test_full_queue_drops_the_oldest_and_answers_it(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix), queue_size=2))
    collector = mqtt_collector(mosquitto, [client.topics.errors])
    for index in range(3):
        collector.publish(client.topics.stop, f'{{"all": true, "request_id": "q{index}"}}')
    error = payload_of(collector.wait_for(client.topics.errors)[0])
    assert error["request_id"] == "q0"
    assert error["reason"].startswith("dropped: 2 commands were waiting")
    assert client.dropped_commands == 1
    assert [c.payload for c in client.drain_commands()] == [
        b'{"all": true, "request_id": "q1"}',
        b'{"all": true, "request_id": "q2"}',
    ]


def test_commands_not_taken_before_close_are_answered_shutting_down(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect
) -> None:
    # paho acknowledged them to the broker on arrival: without an answer they were gone.
    client = MqttClient(settings_for(mosquitto, mqtt_prefix))
    client.start()
    connected(client)
    collector = mqtt_collector(mosquitto, [client.topics.errors, client.topics.status])
    for index in range(2):
        collector.publish(client.topics.stop, f'{{"all": true, "request_id": "late{index}"}}')
    wait_until(lambda: client.queued_commands == 2)
    client.close()
    errors = collector.wait_for(client.topics.errors, 2)
    assert [payload_of(m)["request_id"] for m in errors] == ["late0", "late1"]
    assert all(payload_of(m)["reason"].startswith("shutting down: not carried out") for m in errors)
    assert client.drain_commands() == []
    arrived = [(m.topic, payload_of(m)) for m in collector.messages()]
    offline = [i for i, (topic, p) in enumerate(arrived) if p.get("online") is False]
    answers = [i for i, (topic, _) in enumerate(arrived) if topic == client.topics.errors]
    assert offline and max(answers) < offline[0]  # the answers went before the offline status


def test_results_waiting_behind_unacknowledged_ones_go_out_without_a_new_frame(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., Any],
) -> None:
    broker = mosquitto_factory()
    client = connected(make_client(settings_for(broker, mqtt_prefix, results_qos=1)))
    collector = mqtt_collector(broker, [client.topics.results])
    frames = RESULTS_IN_FLIGHT + 5
    with broker.frozen():  # no PUBACK: the in-flight window fills, the rest waits
        sent = [
            client.publish_results(index, time.time(), FRAME_WH, [("t1", a_track())])
            for index in range(frames)
        ]
    assert sent[RESULTS_IN_FLIGHT - 1] and not sent[-1]
    wait_until(client.flush_results)  # what the service calls at every turn of its loop
    got = collector.wait_for(client.topics.results, frames)
    assert [payload_of(m)["frame"] for m in got] == list(range(frames))
    assert client.dropped_results == 0


def test_a_command_storm_is_logged_within_the_error_reply_limit(
    mosquitto: Broker,
    mqtt_prefix: str,
    mqtt_collector: Collect,
    make_client: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 300 commands gave 331 log lines (two per dropped command) while the replies kept to
    # mqtt.error_replies_per_s.
    settings = settings_for(mosquitto, mqtt_prefix, error_replies_per_s=5.0)
    client = connected(make_client(settings, queue_size=2))
    collector = mqtt_collector(mosquitto, [client.topics.errors])
    storm = 40
    with caplog.at_level(logging.DEBUG, logger="siamedge.messaging.client"):
        for index in range(storm):
            collector.publish(client.topics.stop, f'{{"all": true, "request_id": "s{index}"}}')
        wait_until(lambda: client.dropped_commands == storm - 2)
    said = [r for r in caplog.records if r.levelno >= logging.INFO and "command" in r.getMessage()]
    full = [r for r in said if "command queue full" in r.getMessage()]
    assert [r.levelno for r in full] == [logging.WARNING]  # once for the streak
    answered = [r for r in said if "dropped_queue_full" in r.getMessage()]
    assert 1 <= len(answered) < (storm - 2) / 2  # the budget: a burst of 5, then 5 a second

    def replies() -> int:  # the errors sent one by one, not in a summary
        return sum("count" not in payload_of(m) for m in collector.messages(client.topics.errors))

    wait_until(lambda: replies() == len(answered))  # one log line per reply let out
    client.drain_commands()
    collector.publish(client.topics.stop, '{"all": true, "request_id": "x"}')
    collector.publish(client.topics.stop, '{"all": true, "request_id": "y"}')
    collector.publish(client.topics.stop, '{"all": true, "request_id": "z"}')
    wait_until(lambda: client.dropped_commands == storm - 1)
    full = [r for r in caplog.records if "command queue full" in r.getMessage()]
    assert full[-1].levelno == logging.WARNING  # a new streak after the queue was emptied


def a_track() -> TrackResult:
    bits = np.zeros((20, 30), dtype=np.bool_)
    bits[5:15, 5:25] = True
    contour = np.array([[105, 55], [124, 55], [124, 64], [105, 64]], dtype=np.int32)
    return TrackResult(
        center_xy=(115.0, 60.0),
        size_wh=(20.0, 10.0),
        bbox_xywh=(105.0, 55.0, 20.0, 10.0),
        rotated_box=((105.0, 55.0), (125.0, 55.0), (125.0, 65.0), (105.0, 65.0)),
        score=0.9,
        state=TrackState.TRACKING,
        mask=MaskWindow(bits, (100, 50), FRAME_WH, contour),
    )


def test_results_are_published_only_while_connected(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect
) -> None:
    client = MqttClient(settings_for(mosquitto, mqtt_prefix, mask_encoding="polygon"))
    assert client.publish_results(0, time.time(), FRAME_WH, [("t1", a_track())]) is False
    assert client.publish_results(1, time.time(), FRAME_WH, [("t1", a_track())]) is False
    assert client.dropped_results == 2  # each counted once
    collector = mqtt_collector(mosquitto, [client.topics.results])
    with client:
        connected(client)
        assert client.publish_results(7, time.time(), FRAME_WH, [("t1", a_track())]) is True
        message = payload_of(collector.wait_for(client.topics.results)[0])
    assert message["frame"] == 7
    assert client.dropped_results == 2
    assert (message["width"], message["height"]) == FRAME_WH
    assert message["tracks"][0]["mask"]["points"][0] == [105, 55]
    assert message["latency_ms"] >= 0


def test_password_from_file_and_environment(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    make_client: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passwords = write_password_file(tmp_path / "passwd", {"cam": "s3cret pass"})
    broker = mosquitto_factory(anonymous=False, listener_config=[f"password_file {passwords}"])
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret pass\n", encoding="utf-8")
    monkeypatch.setenv("SIAMEDGE_TEST_MQTT_PASSWORD", "s3cret pass")

    from_file = settings_for(broker, mqtt_prefix, username="cam", password_file=str(secret))
    from_env = settings_for(
        broker, mqtt_prefix, username="cam", password_env="SIAMEDGE_TEST_MQTT_PASSWORD"
    )
    connected(make_client(from_file))
    connected(make_client(from_env))


def test_wrong_password_is_a_logged_failure_not_a_crash(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    passwords = write_password_file(tmp_path / "passwd", {"cam": "right"})
    broker = mosquitto_factory(anonymous=False, listener_config=[f"password_file {passwords}"])
    monkeypatch.setenv("SIAMEDGE_TEST_MQTT_PASSWORD", "wrong")
    refused = threading.Event()
    client = MqttClient(
        settings_for(
            broker, mqtt_prefix, username="cam", password_env="SIAMEDGE_TEST_MQTT_PASSWORD"
        ),
        on_state_change=lambda state: refused.set() if "refused" in state.reason else None,
    )
    with caplog.at_level(logging.ERROR, logger="siamedge.messaging.client"):
        client.start()
        assert refused.wait(WAIT_TIMEOUT_S)
        client.close()
    assert not client.connection.connected
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("broker refused the connection" in text for text in failures), failures
    assert any("Bad user name or password" in text or "Not authorized" in text for text in failures)


@pytest.mark.usefixtures("tls_default_of_python_3_13")
@pytest.mark.parametrize(
    ("tls_files", "x509_strict"),
    # mosquitto's TLS manual's CA (no key usage) with the default; one as RFC 5280 asks, strict
    [("mqtt_tls_files", False), ("mqtt_tls_files_rfc5280", True)],
)
def test_tls_with_a_client_certificate(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    make_client: Callable[..., Any],
    request: pytest.FixtureRequest,
    tls_files: str,
    x509_strict: bool,
) -> None:
    tls: TlsFiles = request.getfixturevalue(tls_files)
    broker = mosquitto_factory(listener_config=tls.listener_config(require_client_cert=True))
    settings = settings_for(
        broker,
        mqtt_prefix,
        tls=TlsSettings(
            ca_file=str(tls.ca_cert),
            cert_file=str(tls.client_cert),
            key_file=str(tls.client_key),
            x509_strict=x509_strict,
        ),
    )
    client = connected(make_client(settings))
    assert client.connection.connected


@pytest.mark.usefixtures("tls_default_of_python_3_13")
def test_a_ca_without_key_usage_is_refused_only_under_x509_strict(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    mqtt_tls_files: TlsFiles,
    make_client: Callable[..., Any],
) -> None:
    # mosquitto's TLS manual makes such a CA; Python 3.13's default context refused it, so the
    # same broker that worked on 3.12 was never reached (test_tls_with_a_client_certificate).
    broker = mosquitto_factory(listener_config=mqtt_tls_files.listener_config())
    strict = TlsSettings(ca_file=str(mqtt_tls_files.ca_cert), x509_strict=True)
    client = MqttClient(settings_for(broker, mqtt_prefix, tls=strict))
    with client:
        wait_until(lambda: "key usage" in client.connection.reason)
    lax = TlsSettings(ca_file=str(mqtt_tls_files.ca_cert))
    assert connected(make_client(settings_for(broker, mqtt_prefix, tls=lax))).connection.connected


def test_tls_with_an_unknown_ca_is_a_clear_failure(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    mqtt_tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = mosquitto_factory(listener_config=mqtt_tls_files.listener_config())
    # The client certificate is not a CA: the server's chain cannot be verified.
    tls = TlsSettings(ca_file=str(mqtt_tls_files.client_cert))
    with caplog.at_level(logging.WARNING, logger="siamedge.messaging.client"):
        client = MqttClient(settings_for(broker, mqtt_prefix, tls=tls))
        with client:
            wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in client.connection.reason)
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)


def test_a_plain_client_at_a_tls_listener_is_told_why(
    mosquitto_factory: Callable[..., Broker],
    mqtt_prefix: str,
    mqtt_tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The broker closes the connection without a CONNACK; paho's own words for that are
    # "Normal disconnection" or "Unspecified error", and nothing was logged.
    broker = mosquitto_factory(listener_config=mqtt_tls_files.listener_config())
    with caplog.at_level(logging.WARNING, logger="siamedge.messaging.client"):
        client = MqttClient(settings_for(broker, mqtt_prefix))
        with client:
            wait_until(lambda: client.connection.reason == NO_MQTT_ANSWER)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"MQTT disconnected from 127.0.0.1:{broker.port}: {NO_MQTT_ANSWER}" in warnings


def test_a_server_that_never_answers_is_told_apart(silent_server: int, mqtt_prefix: str) -> None:
    # It was reported as a server that closed the connection (paho gave up after a keepalive).
    settings = MqttSettings(
        host="127.0.0.1",
        port=silent_server,
        topic_prefix=mqtt_prefix,
        keepalive_s=5,
        reconnect_min_s=5.0,
        reconnect_max_s=5.0,
    )
    client, subscriber = MqttClient(settings), Subscriber(settings)
    with client:
        subscriber.start()
        try:
            wait_until(lambda: client.connection.reason == NO_MQTT_ANSWER_IN_TIME)
            wait_until(lambda: subscriber.state == NO_MQTT_ANSWER_IN_TIME)
        finally:
            subscriber.close()


def test_oversized_command_is_answered_without_queueing(
    mosquitto: Broker, mqtt_prefix: str, mqtt_collector: Collect, make_client: Callable[..., Any]
) -> None:
    client = connected(make_client(settings_for(mosquitto, mqtt_prefix)))
    collector = mqtt_collector(mosquitto, [client.topics.errors])
    payload = b'{"request_id": "big", "box": [1, 2, 3, 4]}' + b" " * MAX_COMMAND_BYTES
    collector.publish(client.topics.start, payload)
    error = payload_of(collector.wait_for(client.topics.errors)[0])
    assert error["reason"].startswith(f"payload is {len(payload)} bytes")
    assert error["payload_excerpt"].startswith('{"request_id": "big"')
    assert client.drain_commands() == []


def test_close_without_start_is_harmless(mosquitto: Broker, mqtt_prefix: str) -> None:
    states: list[ConnectionState] = []
    client = MqttClient(settings_for(mosquitto, mqtt_prefix), on_state_change=states.append)
    client.close()
    client.close()
    assert [(s.connected, s.reason) for s in states] == [(False, "closed")]


def test_a_second_client_with_our_id_is_named_once_in_the_log(
    mosquitto: Broker,
    mqtt_prefix: str,
    make_client: Callable[..., MqttClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_for(mosquitto, mqtt_prefix)
    with caplog.at_level(logging.WARNING, logger="siamedge.messaging.client"):
        ours = connected(make_client(settings))
        # the same id again, reconnecting as eagerly as ours: each connection drops the other
        rival = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id)
        rival.reconnect_delay_set(0.05, 0.5)
        rival.connect(mosquitto.host, mosquitto.port)
        rival.loop_start()
        try:
            wait_until(lambda: "another client may be connecting" in caplog.text)
            time.sleep(2.0)  # not readiness: more dropped connections, still one warning
        finally:
            stop_paho(rival)
    clashes = [r.getMessage() for r in caplog.records if "another client" in r.getMessage()]
    assert clashes == [
        "MQTT: the broker dropped 3 connections in a row within 5 s of accepting them; another "
        f"client may be connecting with client_id {settings.client_id!r} (the broker drops the "
        "older of two connections with one id): give every daemon its own mqtt.client_id"
    ]
    wait_until(lambda: ours.connection.connected)  # the rival gone, ours is back
